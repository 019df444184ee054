"""Benchmark: real-time endpoint latency, through the keys-only router and straight to `mlflow models serve`.

Builds an isolated lifecycle state (``catch_up("05")``: data, features, a registered champion,
the online store), starts one ``mlflow models serve --env-manager local`` endpoint for the
champion version and a ``utils.deploy.Router`` in front of it, then times, side by side:

* ``router + online lookup``: ``POST /invocations`` to the router with a keys-only body
  ``{"records": [{"customer_id", "plant_id", "page", "position", "price"}]}`` (one record per request,
  keys that exist); the router looks the features up in the SQLite online store, forwards the
  15 model inputs to the endpoint and logs the prediction;
* ``mlflow models serve``: the same model version, ``POST`` of the full 15-column model input row
  (the very row the router would forward) as ``dataframe_records`` to the endpoint's ``/invocations``.

Each case runs ``--requests`` requests at concurrency 1 and 10 (a thread pool, one keep-alive
HTTP session per thread) after ``--warmup`` untimed ones. Latency is measured by the client.

    .venv/bin/python bench/bench_endpoint.py                     # 300 requests per case
    .venv/bin/python bench/bench_endpoint.py --requests 50 --no-record
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, machine_description, markdown_table, percentiles, record
from state import add_state_args, champion, cleanup, isolate

SCRIPT = "bench/bench_endpoint.py"
ENDPOINT = "`mlflow models serve`, full input row"
ROUTER = "router + online lookup, keys only"
KEY_FIELDS = ["customer_id", "plant_id", "page", "position", "price"]


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300, help="timed requests per case")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests before each case")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 10], help="client threads")
    p.add_argument("--workers", type=int, default=1, help="`mlflow models serve --workers`")
    add_state_args(p)
    return p.parse_args()


def request_bodies(n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` keys-only router bodies and the matching full-input endpoint bodies (same impressions)."""
    from utils import lakehouse
    from utils.online_features import OnlineFeatures
    from utils.plantly_features import training_set_table
    from utils.scoring import model_inputs

    keys = lakehouse.read_pandas(training_set_table(), columns=KEY_FIELDS)
    keys = keys.sample(n=n, replace=len(keys) < n, random_state=seed).reset_index(drop=True)
    records = [{"customer_id": str(r["customer_id"]), "plant_id": str(r["plant_id"]), "page": str(r["page"]),
                "position": int(r["position"]), "price": float(r["price"])} for r in keys.to_dict(orient="records")]
    frame, _ = OnlineFeatures().build(records, strict=True)  # what the router forwards, row for row
    rows = model_inputs(frame).to_dict(orient="records")
    routed = [json.dumps({"records": [r]}).encode() for r in records]
    direct = [json.dumps({"dataframe_records": [r]}).encode() for r in rows]
    return routed, direct


def run_case(url: str, warm: list[bytes], bodies: list[bytes], concurrency: int, label: str) -> dict[str, float]:
    """POST ``warm`` (untimed), then every body of ``bodies`` to ``url`` from ``concurrency`` threads."""
    import requests
    from tqdm import tqdm

    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.trust_env = False  # never through an HTTP proxy
        return local.s

    def post(body: bytes) -> float:
        start = time.perf_counter()
        resp = session().post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
        elapsed = time.perf_counter() - start
        if resp.status_code != 200:
            raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:300]}")
        return elapsed

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(post, warm))  # untimed: opens the connections, warms both servers
        latencies: list[float] = []
        bar = tqdm(total=len(bodies), desc=f"{label}, concurrency {concurrency}", unit="req", leave=False,
                   file=sys.stderr)
        start = time.perf_counter()
        for latency in pool.map(post, bodies):
            latencies.append(latency)
            bar.update()
        wall = time.perf_counter() - start
        bar.close()
    return {**percentiles(latencies), "rps": len(bodies) / wall, "n": len(bodies)}


def same_predictions(router_url: str, endpoint_url: str, routed: list[bytes], direct: list[bytes], k: int = 20) -> float:
    """Largest difference between the router's and the endpoint's prediction for the first ``k`` requests."""
    import requests

    worst = 0.0
    json_type = {"Content-Type": "application/json"}
    for r_body, d_body in zip(routed[:k], direct[:k]):
        resp = requests.post(router_url, data=r_body, headers=json_type, timeout=60)
        resp.raise_for_status()
        via_router = resp.json()["predictions"][0]
        resp = requests.post(endpoint_url, data=d_body, headers=json_type, timeout=60)
        resp.raise_for_status()
        out = resp.json()
        direct_pred = out["predictions"][0] if isinstance(out, dict) else out[0]
        if isinstance(direct_pred, dict):
            direct_pred = next(iter(direct_pred.values()))
        worst = max(worst, abs(float(via_router) - float(direct_pred)))
    return worst


def main() -> None:
    """Serve, time both paths at each concurrency, print and record the table."""
    args = parse_args()
    state = isolate(args, "bench-endpoint-")
    machine = machine_description()
    try:
        from utils.deploy import Router, _Handler
        from utils.local.endpoints import LocalEndpoint

        shipped_nodelay = bool(getattr(_Handler, "disable_nagle_algorithm", False))
        flipped_label = ("same router, Nagle's algorithm on" if shipped_nodelay
                         else "same router, TCP_NODELAY")
        flipped_short = "with Nagle's algorithm on" if shipped_nodelay else "with TCP_NODELAY"

        model = champion(args, online=True)
        from utils.platform import stop_spark

        stop_spark()  # catch_up's Spark session is not needed for serving: free its memory and threads
        routed, direct = request_bodies(args.requests + args.warmup, args.seed)
        warm_r, timed_r = routed[:args.warmup], routed[args.warmup:]
        warm_d, timed_d = direct[:args.warmup], direct[args.warmup:]
        results: list[tuple[str, int, dict[str, float]]] = []
        endpoint = LocalEndpoint(model.uri, workers=args.workers, timeout_s=300)
        with endpoint:
            print(f"endpoint {endpoint.command} ready in {endpoint.startup_s:.1f} s", flush=True)
            router = Router(model.name)
            router.add_upstream(model.version, endpoint)  # not owned: the `with` above stops it
            router.set_routes({"champion": model.version}, {"champion": 100})
            # the same router with the other TCP_NODELAY setting on its response sockets (StreamRequestHandler
            # reads the class attribute per connection): shows what Nagle's algorithm costs a small response
            flipped = Router(model.name)
            flipped.add_upstream(model.version, endpoint)
            flipped.set_routes({"champion": model.version}, {"champion": 100})
            with router, flipped:
                flipped._server.RequestHandlerClass.disable_nagle_algorithm = not shipped_nodelay
                router_url = f"{router.url}/invocations"
                diff = same_predictions(router_url, endpoint.invocations_url, routed, direct)
                if diff > 1e-9:
                    raise AssertionError(f"router and endpoint disagree by {diff} on the same impression")
                cases: list[tuple[str, str, list[bytes], list[bytes]]] = [
                    (ENDPOINT, endpoint.invocations_url, warm_d, timed_d),
                    (ROUTER, router_url, warm_r, timed_r),
                    (flipped_label, f"{flipped.url}/invocations", warm_r, timed_r),
                ]
                for concurrency in args.concurrency:  # all paths side by side at each concurrency
                    for label, url, warm, bodies in cases:
                        results.append((label, concurrency, run_case(url, warm, bodies, concurrency, label)))
                logged = router.pending_log_rows() + flipped.pending_log_rows()
            print(f"the routers logged {logged:,} predictions (written to the inference log on stop)")
    finally:
        cleanup(args, state)

    rows = [[label, c, fmt(r["n"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["rps"], 1)]
            for label, c, r in results]
    table = markdown_table(["case", "concurrency", "requests", "p50 ms", "p99 ms", "req/s"], rows, "lrrrrr")
    by = {(label, c): r for label, c, r in results}
    notes = []
    for c in args.concurrency:
        base, routed_r, fixed = by.get((ENDPOINT, c)), by.get((ROUTER, c)), by.get((flipped_label, c))
        if base and routed_r and fixed:
            notes.append(f"concurrency {c}: the router adds {routed_r['p50_ms'] - base['p50_ms']:.1f} ms at p50 "
                         f"({routed_r['rps'] / base['rps']:.2f}× the endpoint's req/s), "
                         f"{fixed['p50_ms'] - base['p50_ms']:.1f} ms {flipped_short}")
    body = (f"Champion v{model.version} ({args.data_rows:,} generated impressions), one `mlflow models serve "
            f"--env-manager local --workers {args.workers}` process; the router (`utils.deploy.Router`, stdlib "
            f"threading HTTP server) looks up the 4 online feature tables (SQLite) and forwards to that same process. "
            f"One record per request, {args.warmup} untimed warm-up requests per case, client-side latency, "
            f"keep-alive sessions. Router and endpoint predictions identical (max difference {diff:.1e}). "
            f"The router as shipped has TCP_NODELAY {'on' if shipped_nodelay else 'off'} on its response sockets; "
            f"the third case is the same router with it {'off' if shipped_nodelay else 'on'} (with Nagle's algorithm "
            f"on, the response's header and body writes can wait for the client's delayed ACK).\n\n"
            f"{table}\n\n" + "; ".join(notes) + ".")
    print(table)
    if args.no_record:
        return
    record("Real-time endpoint latency: router with online lookup vs `mlflow models serve`", body, SCRIPT, machine)


if __name__ == "__main__":
    main()
