"""Benchmark: the keys-only endpoint against its floor and against bare `mlflow models serve`, side by side.

Builds an isolated lifecycle state (``catch_up("05")``: data, features, a registered champion, the online
store), then times, one record per request, for the same champion version:

* ``floor``: in-process ``pyfunc.predict`` of one 15-column model-input row (no HTTP, no lookup) by the
  recommender inside the champion (its ``raw_model``: the champion is logged with the feature client);
* ``mlflow models serve``: MLflow's scoring server (``--env-manager local``) of that same recommender,
  ``POST`` of the full 15-column model-input row as ``dataframe_records``;
* ``keys-only endpoint``: the project's endpoint (``utils.deploy.serve_aliases``: uvicorn + the router's
  ASGI app, the champion loaded once in memory), ``POST`` of the keys and request context only; the
  served champion looks its own features up in the SQLite online store (automatic feature lookup, from
  the feature spec it was logged with), scores in process, and the router buffers the log rows;
* the same endpoint with two processes sharing the port (``SO_REUSEPORT``), where the kernel spreads
  connections over them: the multi-worker case on 2 cores.

Each endpoint runs in its own process, so its CPU time per request is read from ``/proc`` (the server
process and its children), apart from the client's. HTTP cases run at concurrency 1 and 10 (threads,
one keep-alive session each) after untimed warm-up requests; latency is measured by the client.
Then, at concurrency 1, every impression is scored by the floor, the endpoint and
`mlflow models serve` in turn (the order rotating), and the endpoint's distance from the floor is the
median of the per-impression differences: on a shared machine whose speed drifts during a run, cases timed
in separate stretches can differ by more than the gap being measured. Finally one ``predict`` is broken down (schema enforcement, the model's own conversion, the classifier)
to say where the floor's milliseconds go.

    .venv/bin/python bench/bench_endpoint.py                     # 300 requests per case
    .venv/bin/python bench/bench_endpoint.py --requests 50 --no-record --state-dir /tmp/epstate
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, machine_description, markdown_table, percentiles, record, timed
from state import add_state_args, champion, cleanup, isolate

SCRIPT = "bench/bench_endpoint.py"
FLOOR = "floor: in-process `pyfunc.predict`, one row"
BARE = "`mlflow models serve`, full input row"
KEYS = "keys-only endpoint (uvicorn, model in memory, the model looks its features up)"
KEYS2 = "keys-only endpoint, 2 processes (SO_REUSEPORT)"
KEY_FIELDS = ["customer_id", "plant_id", "page", "position", "price"]
TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300, help="timed requests per case")
    p.add_argument("--warmup", type=int, default=30, help="untimed requests before each case")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 10], help="client threads")
    add_state_args(p)
    return p.parse_args()


def request_bodies(n: int, seed: int) -> tuple[list[bytes], list[bytes], Any]:
    """``n`` keys-only bodies, the matching full-input bodies (same impressions), and the model-input frame."""
    from utils import lakehouse
    from utils.online_features import OnlineFeatures
    from utils.plantly_features import training_set_table
    from utils.scoring import model_inputs

    keys = lakehouse.read_pandas(training_set_table(), columns=KEY_FIELDS)
    keys = keys.sample(n=n, replace=len(keys) < n, random_state=seed).reset_index(drop=True)
    records = [{"customer_id": str(r["customer_id"]), "plant_id": str(r["plant_id"]), "page": str(r["page"]),
                "position": int(r["position"]), "price": float(r["price"])} for r in keys.to_dict(orient="records")]
    frame = OnlineFeatures().build(records)  # what the endpoint scores, row for row
    inputs = model_inputs(frame)
    routed = [json.dumps({"dataframe_records": [r]}).encode() for r in records]
    direct = [json.dumps({"dataframe_records": [r]}).encode() for r in inputs.to_dict(orient="records")]
    return routed, direct, inputs


# ---------------------------------------------------------------- the keys-only endpoint in its own process


def _endpoint_process(model_name: str, port: int, ready: Any, stop: Any) -> None:
    """Child process: serve ``model_name``'s champion on ``port`` (SO_REUSEPORT) until ``stop`` is set."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from utils.deploy import serve_aliases

    router = serve_aliases(model_name, {"champion": 100}, port=port, reuse_port=True)
    ready.set()
    stop.wait()
    router.stop(flush=False)  # the benchmark's requests are not predictions anyone needs in the inference log


class EndpointProcesses:
    """``workers`` processes serving the keys-only endpoint on one port; ``cpu_s()`` sums their CPU time."""

    def __init__(self, model_name: str, workers: int) -> None:
        ctx = mp.get_context("spawn")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.stop_event = ctx.Event()
        self.procs = []
        for _ in range(workers):
            ready = ctx.Event()
            proc = ctx.Process(target=_endpoint_process, args=(model_name, self.port, ready, self.stop_event), daemon=True)
            proc.start()
            if not ready.wait(300):
                raise RuntimeError("the endpoint process did not start in 300 s")
            self.procs.append(proc)
        self.url = f"http://127.0.0.1:{self.port}/invocations"

    def cpu_s(self) -> float:
        return sum(process_cpu_s(p.pid) for p in self.procs)

    def close(self) -> None:
        self.stop_event.set()
        for p in self.procs:
            p.join(60)
            if p.is_alive():
                p.kill()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (``/proc/<pid>/task`` and descendants)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            total += sum(child.cpu_times()[:2])
        return total
    except psutil.NoSuchProcess:
        return 0.0


# ---------------------------------------------------------------- timing


def run_case(url: str, warm: list[bytes], bodies: list[bytes], concurrency: int, label: str,
             cpu: Any) -> dict[str, float]:
    """POST ``warm`` (untimed), then every body of ``bodies`` to ``url`` from ``concurrency`` threads."""
    import requests

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
        list(pool.map(post, warm))  # untimed: opens the connections, warms the server
        cpu0 = cpu()
        start = time.perf_counter()
        latencies = list(pool.map(post, bodies))
        wall = time.perf_counter() - start
        cpu_ms = (cpu() - cpu0) * 1000 / len(bodies)
    print(f"  {label}, concurrency {concurrency}: p50 {statistics.median(latencies) * 1000:.2f} ms", flush=True)
    return {**percentiles(latencies), "rps": len(bodies) / wall, "n": len(bodies), "cpu_ms": cpu_ms}


def floor_case(model: Any, inputs: Any, n: int, warmup: int) -> dict[str, float]:
    """In-process ``pyfunc.predict`` of one row at a time: latency per call and CPU ms per call."""
    rows = [inputs.iloc[[i % len(inputs)]] for i in range(n + warmup)]
    for row in rows[:warmup]:
        model.predict(row)
    latencies = []
    cpu0, start = time.process_time(), time.perf_counter()
    for row in rows[warmup:]:
        t = time.perf_counter()
        model.predict(row)
        latencies.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {**percentiles(latencies), "rps": n / wall, "n": n, "cpu_ms": cpu * 1000 / n}


def interleaved_case(model: Any, inputs: Any, endpoint_url: str, bare_url: str, routed: list[bytes],
                     direct: list[bytes], warmup: int) -> dict[str, Any]:
    """Concurrency 1, side by side per impression: the floor, the keys-only endpoint and `mlflow models serve` in turn.

    Each impression is scored by the three paths one after the other, the order rotating from one impression
    to the next, so a machine that slows down or speeds up during the run moves all three alike. Returns each
    path's latency percentiles and the median of the per-impression differences (endpoint minus floor).
    """
    import requests

    http = requests.Session()
    http.trust_env = False
    json_type = {"Content-Type": "application/json"}

    def post(url: str, body: bytes) -> None:
        resp = http.post(url, data=body, headers=json_type, timeout=60)
        if resp.status_code != 200:
            raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:300]}")

    rows = [inputs.iloc[[i % len(inputs)]] for i in range(len(routed))]
    paths = {"floor": lambda i: model.predict(rows[i]), "keys": lambda i: post(endpoint_url, routed[i]),
             "bare": lambda i: post(bare_url, direct[i])}
    names = list(paths)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(len(routed)):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            start = time.perf_counter()
            paths[name](i)
            if i >= warmup:
                samples[name].append(time.perf_counter() - start)
    gap = statistics.median(k - f for k, f in zip(samples["keys"], samples["floor"])) * 1000
    bare_gap = statistics.median(b - f for b, f in zip(samples["bare"], samples["floor"])) * 1000
    return {**{name: percentiles(v) for name, v in samples.items()}, "n": len(samples["floor"]),
            "gap_ms": gap, "bare_gap_ms": bare_gap}


def predict_breakdown(model: Any, inputs: Any, n: int = 200) -> dict[str, float]:
    """Median ms of one row through each layer of the champion: pyfunc, the python model, the classifier."""
    from utils.feature_types import features_frame

    python_model = model.unwrap_python_model()
    clf = python_model.classifier
    columns = python_model.columns or list(inputs.columns)
    row = inputs.iloc[[0]]
    X = features_frame(row)[columns]

    def median_ms(fn: Any) -> float:
        return statistics.median(timed(fn, n)) * 1000

    return {"pyfunc.predict (signature check + model)": median_ms(lambda: model.predict(row)),
            "python model predict (conversion + rule + classifier)": median_ms(lambda: python_model.predict(None, row)),
            "features_frame (the model's input conversion)": median_ms(lambda: features_frame(row)),
            "classifier.predict_proba (sklearn pipeline)": median_ms(lambda: clf.predict_proba(X))}


def main() -> None:
    """Serve, time every path at each concurrency, print and record the table."""
    args = parse_args()
    state = isolate(args, "bench-endpoint-")
    machine = machine_description()
    try:
        import mlflow.pyfunc

        from utils.local.endpoints import LocalEndpoint
        from utils.platform import stop_spark
        from utils.training import scoring_model_uri

        model = champion(args, online=True)
        stop_spark()  # catch_up's Spark session is not needed for serving: free its memory and threads
        routed, direct, inputs = request_bodies(args.requests + args.warmup, args.seed)
        warm_r, timed_r = routed[:args.warmup], routed[args.warmup:]
        warm_d, timed_d = direct[:args.warmup], direct[args.warmup:]
        raw_uri = scoring_model_uri(model.uri)  # the recommender inside the feature-store champion
        pyfunc = mlflow.pyfunc.load_model(raw_uri)
        results: list[tuple[str, int, dict[str, float]]] = [
            (FLOOR, 1, floor_case(pyfunc, inputs, args.requests, args.warmup))]
        print(f"  floor: p50 {results[0][2]['p50_ms']:.2f} ms", flush=True)
        breakdown = predict_breakdown(pyfunc, inputs)
        bare = LocalEndpoint(raw_uri, timeout_s=300).start()
        one = EndpointProcesses(model.name, 1)
        try:
            diff = same_predictions(one.url, bare.invocations_url, routed, direct)
            if diff > 1e-9:
                raise AssertionError(f"the endpoint and mlflow models serve disagree by {diff} on the same impression")
            paired = interleaved_case(pyfunc, inputs, one.url, bare.invocations_url, routed, direct, args.warmup)
            print(f"  interleaved: endpoint - floor, median per impression {paired['gap_ms']:+.2f} ms", flush=True)
            bare_cpu = lambda: process_cpu_s(bare.pid)
            for concurrency in args.concurrency:  # the two paths side by side at each concurrency
                results.append((BARE, concurrency, run_case(bare.invocations_url, warm_d, timed_d, concurrency, BARE, bare_cpu)))
                results.append((KEYS, concurrency, run_case(one.url, warm_r, timed_r, concurrency, KEYS, one.cpu_s)))
        finally:
            one.close()
            bare.stop()
        two = EndpointProcesses(model.name, 2)
        try:
            c = max(args.concurrency)
            results.append((KEYS2, c, run_case(two.url, warm_r * 2, timed_r, c, KEYS2, two.cpu_s)))
        finally:
            two.close()
    finally:
        cleanup(args, state)

    rows = [[label, c, fmt(r["n"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["rps"], 1), fmt(r["cpu_ms"])]
            for label, c, r in results]
    table = markdown_table(["case", "concurrency", "requests", "p50 ms", "p99 ms", "req/s", "server CPU ms/request"],
                           rows, "lrrrrrr")
    by = {(label, c): r for label, c, r in results}
    floor = by[(FLOOR, 1)]
    side = markdown_table(["path (interleaved, concurrency 1)", "requests", "p50 ms", "p99 ms"],
                          [[label, fmt(paired["n"]), fmt(paired[key]["p50_ms"]), fmt(paired[key]["p99_ms"])]
                           for label, key in ((FLOOR, "floor"), (KEYS, "keys"), (BARE, "bare"))], "lrrr")
    notes = [(f"the keys-only endpoint's p50 is {by[(KEYS, 1)]['p50_ms'] - floor['p50_ms']:+.1f} ms from the floor at "
              "concurrency 1 in the table above (each case timed in its own stretch)")]
    for c in args.concurrency:
        notes.append(f"concurrency {c}: {by[(KEYS, c)]['rps'] / by[(BARE, c)]['rps']:.2f}× the req/s of "
                     f"`mlflow models serve` given the full row")
    parts = "; ".join(f"{k} {v:.2f} ms" for k, v in breakdown.items())
    body = (f"Champion v{model.version} ({args.data_rows:,} generated impressions); one record per request, "
            f"{args.warmup} untimed warm-up requests per case, client-side latency, keep-alive sessions; each server "
            "in its own process, its CPU time read from /proc (server process and children), so the client's is not "
            f"counted. Endpoint and `mlflow models serve` predictions identical (max difference {diff:.1e}). "
            f"`mlflow models serve --env-manager local` runs 1 uvicorn worker.\n\n{table}\n\n"
            + "; ".join(notes) + ".\n\nSide by side per impression (each impression scored by the floor, the endpoint "
            "and `mlflow models serve` in turn, the order rotating; the same client):\n\n"
            f"{side}\n\nthe keys-only endpoint minus the floor, median of the per-impression differences: "
            f"**{paired['gap_ms']:+.2f} ms** (target ≤ +3 ms); `mlflow models serve` minus the floor: "
            f"{paired['bare_gap_ms']:+.2f} ms.\n\nWhere one in-process predict goes (median of 200): {parts}.")
    print(table)
    print(body.split(table, 1)[1])
    if args.no_record:
        return
    record("Real-time endpoint: keys-only endpoint vs its floor and `mlflow models serve`", body, SCRIPT, machine)


def same_predictions(endpoint_url: str, bare_url: str, routed: list[bytes], direct: list[bytes], k: int = 20) -> float:
    """Largest difference between the endpoint's and `mlflow models serve`'s prediction for the first ``k`` requests."""
    import requests

    worst = 0.0
    json_type = {"Content-Type": "application/json"}
    for r_body, d_body in zip(routed[:k], direct[:k]):
        resp = requests.post(endpoint_url, data=r_body, headers=json_type, timeout=60)
        resp.raise_for_status()
        via_endpoint = resp.json()["predictions"][0]
        resp = requests.post(bare_url, data=d_body, headers=json_type, timeout=60)
        resp.raise_for_status()
        out = resp.json()
        direct_pred = out["predictions"][0] if isinstance(out, dict) else out[0]
        if isinstance(direct_pred, dict):
            direct_pred = next(iter(direct_pred.values()))
        worst = max(worst, abs(float(via_endpoint) - float(direct_pred)))
    return worst


if __name__ == "__main__":
    main()
