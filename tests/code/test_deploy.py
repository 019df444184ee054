"""The keys-only router: a real HTTP server, real SQLite online store, real upstream HTTP servers, real registry."""

from __future__ import annotations

import json
import math
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.support import publish_tiny_online_store, register_constant_model
from utils.ab_statistics import two_proportion_test
from utils.config import get_config
from utils.deploy import Router, assign_arm
from utils.local import online_store
from utils.online_features import (
    OnlineFeatures,
    UnknownKeyError,
    ensure_online_features,
    unknown_key_hint,
)
from utils.plantly_features import FEATURES, feature_table_names
from utils.router_http import RequestError, parse_request
from utils.scoring import (
    INFERENCE_LOG_COLUMNS,
    read_inference_log,
    read_request_log,
    request_log_schema,
)

GOOD = {"customer_id": "C1", "plant_id": "P1", "page": "home", "position": 2, "price": 12.5}


# ---------------------------------------------------------------- fixtures


class StubModel(BaseHTTPRequestHandler):
    """Stands in for a model server: answers ``score`` for every row, and records the columns it got."""

    score = 0.0
    seen: list[list[str]]

    def log_message(self, *args):
        return

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        rows = body["dataframe_records"]
        self.seen.append(sorted(rows[0]))
        data = json.dumps({"predictions": [self.score for _ in rows]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def upstreams(isolated_state: Path) -> Iterator[dict[str, tuple[str, list]]]:
    publish_tiny_online_store(activity_source_version=3)
    servers, out = [], {}
    for version, score in (("1", 0.1), ("2", 0.2)):
        seen: list = []
        handler = type(f"Stub{version}", (StubModel,), {"score": score, "seen": seen})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        out[version] = (f"http://127.0.0.1:{srv.server_address[1]}/invocations", seen)
    yield out
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def router(upstreams) -> Iterator[Router]:
    r = Router("test.models.stub", log_predictions=True)
    for version, (url, _) in upstreams.items():
        r.add_upstream(version, url)
    r.set_routes({"champion": "1", "challenger": "2"}, {"champion": 100, "challenger": 0})
    with r:
        yield r


def post(router: Router, body: bytes | str, path: str = "/invocations") -> requests.Response:
    return requests.post(router.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30)


# ---------------------------------------------------------------- request parsing


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty"),
    (b"   ", 400, "empty"),
    (b"{not json", 400, "invalid JSON"),
    (b"[]", 400, "at least one record"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "plant_id"}).encode(), 422, "plant_id"),
    (json.dumps({**GOOD, "position": "third"}).encode(), 422, "position must be an integer"),
    (json.dumps({**GOOD, "price": "abc"}).encode(), 422, "price must be a number"),
    (json.dumps({**GOOD, "position": True}).encode(), 422, "position"),
    (json.dumps({**GOOD, "price": -1}).encode(), 422, "positive"),
    (json.dumps({"records": [GOOD, 5]}).encode(), 422, "record 1"),
])
def test_bad_requests_are_refused_with_a_reason(body, status, words):
    with pytest.raises(RequestError) as err:
        parse_request(body)
    assert err.value.status == status
    assert words in str(err.value)


def test_request_shapes_single_list_and_records():
    assert parse_request(json.dumps(GOOD).encode()) == [GOOD]
    assert parse_request(json.dumps([GOOD, GOOD]).encode()) == [GOOD, GOOD]
    assert parse_request(json.dumps({"records": [GOOD], "ignored": 1}).encode()) == [GOOD]
    assert parse_request(json.dumps({**GOOD, "extra": "x"}).encode()) == [GOOD]  # extra fields are dropped


OTHER = {"customer_id": "C2", "plant_id": "P2", "page": "search", "position": 0, "price": 30}
MLFLOW_FORMATS = {  # MLflow's scoring request formats (what Databricks Model Serving clients send), keys inside
    "dataframe_records": {"dataframe_records": [GOOD, OTHER]},
    "dataframe_split": {"dataframe_split": {"columns": list(GOOD), "data": [list(GOOD.values()), list(OTHER.values())]}},
    "dataframe_split with index": {"dataframe_split": {"index": [7, 8], "columns": list(GOOD),
                                                       "data": [list(GOOD.values()), list(OTHER.values())]}},
    "instances": {"instances": [GOOD, OTHER]},
    "inputs as records": {"inputs": [GOOD, OTHER]},
    "inputs as columns": {"inputs": {k: [GOOD[k], OTHER[k]] for k in GOOD}},
}


@pytest.mark.parametrize("fmt", MLFLOW_FORMATS, ids=list(MLFLOW_FORMATS))
def test_mlflow_request_formats_give_the_records(fmt):
    assert parse_request(json.dumps(MLFLOW_FORMATS[fmt]).encode()) == [GOOD, OTHER]


@pytest.mark.parametrize("body, words", [
    ({"data": [GOOD]}, ["unrecognised request format", "['data']"]),
    ({"dataframe_records": [GOOD], "instances": [GOOD]}, ["2 request formats"]),
    ({"dataframe_split": {"data": [list(GOOD.values())]}}, ['needs "columns"']),
    ({"dataframe_split": {"columns": list(GOOD), "data": [["C1", "P1"]]}}, ["row 0", "5 values"]),
    ({"dataframe_split": [GOOD]}, ['"dataframe_split" must be']),
    ({"inputs": {"customer_id": ["C1", "C2"], "plant_id": ["P1"]}}, ["all of one length"]),
    ({"instances": GOOD}, ['"instances" must hold a list of records']),
    ({"dataframe_records": [GOOD], "params": {"k": 1}}, ["no params"]),
    ({"dataframe_records": []}, ["no record"]),
    ("C1", ["a JSON str is not a request"]),
])
def test_unrecognised_request_formats_get_400_naming_the_accepted_ones(body, words):
    with pytest.raises(RequestError) as err:
        parse_request(json.dumps(body).encode())
    assert err.value.status == 400, str(err.value)
    for word in words:
        assert word in str(err.value)
    if "unrecognised" in words[0] or "not a request" in words[0]:
        for fmt in ("dataframe_records", "dataframe_split", "instances", "inputs"):
            assert fmt in str(err.value)


@pytest.mark.parametrize("position, expected", [(3.0, 3), (0.0, 0), (2**53, 2**53)])
def test_whole_number_float_positions_are_the_integers_they_write(position, expected):
    [record] = parse_request(json.dumps({**GOOD, "position": position}).encode())
    assert record["position"] == expected and type(record["position"]) is int


@pytest.mark.parametrize("field, value, words", [
    ("position", 2.5, "position must be an integer"),
    ("position", 2**53 + 1, "beyond 2**53"),
    ("position", 1e30, "beyond 2**53"),
    ("price", 2**60 + 1, "beyond 2**53"),
])
def test_values_a_float64_input_cannot_hold_are_refused(field, value, words):
    with pytest.raises(RequestError, match=words.replace("*", r"\*")) as err:
        parse_request(json.dumps({**GOOD, field: value}).encode())
    assert err.value.status == 422 and field in str(err.value)


# ---------------------------------------------------------------- features


def test_online_features_fill_activity_defaults_and_refuse_unknown_keys(upstreams):
    feats = OnlineFeatures()
    frame = feats.build([GOOD, {**GOOD, "customer_id": "C2", "plant_id": "P2"}])
    assert set(FEATURES) <= set(frame.columns)
    assert frame.loc[0, "cust_impressions_30d"] == 7 and frame.loc[0, "region"] == "north"
    assert frame.loc[1, "cust_impressions_30d"] == 0 and frame.loc[1, "plant_purchase_rate_30d"] == 0.0
    assert bool(frame.loc[1, "invasive"]) is True
    with pytest.raises(UnknownKeyError, match="unknown customer_id 'C9'"):
        feats.build([{**GOOD, "customer_id": "C9"}])
    with pytest.raises(UnknownKeyError, match="record 1: unknown plant_id 'P9'"):
        feats.build([GOOD, {**GOOD, "plant_id": "P9"}])
    assert feats.versions()[feature_table_names()["customer_activity"]] == 3


# ---------------------------------------------------------------- the router over HTTP


def test_router_answers_keys_only_requests_with_version_and_request_id(router, upstreams):
    out = router.predict([GOOD, {**GOOD, "customer_id": "C2"}])
    assert out["predictions"] == [0.1, 0.1]
    assert out["model_version"] == "1" and out["model_versions"] == ["1", "1"]
    assert len(out["request_id"]) == 32
    # the 15 features and the lookup keys (a model logged with its lookups requires them; a plain one ignores them)
    assert upstreams["1"][1][-1] == sorted([*FEATURES, "customer_id", "plant_id"])
    assert router.pending_log_rows() == 2


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty"),
    (b"{oops", 400, "invalid JSON"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "price"}), 422, "price"),
    (json.dumps({**GOOD, "position": "third"}), 422, "position"),
    (json.dumps({**GOOD, "customer_id": "C-NOBODY"}), 422, "unknown customer_id 'C-NOBODY'"),
    (json.dumps({**GOOD, "plant_id": "P-NOBODY"}), 422, "unknown plant_id 'P-NOBODY'"),
    (json.dumps({"records": [GOOD] * 20000}), 413, "limit"),
    (b"x" * 3_000_000, 413, "limit"),
])
def test_bad_input_gets_a_4xx_the_server_stays_up_and_nothing_is_logged(router, body, status, words):
    resp = post(router, body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["error"]
    assert router.pending_log_rows() == 0
    assert requests.get(router.url + "/health", timeout=10).status_code == 200
    assert router.predict(GOOD)["predictions"] == [0.1]  # still serving


@pytest.mark.parametrize("fmt", MLFLOW_FORMATS, ids=list(MLFLOW_FORMATS))
def test_router_serves_mlflow_request_formats_over_http(router, fmt):
    resp = post(router, json.dumps(MLFLOW_FORMATS[fmt]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == [0.1, 0.1] and router.pending_log_rows() == 2


def test_router_answers_an_unknown_format_with_400_naming_the_accepted_ones(router):
    resp = post(router, json.dumps({"data": [GOOD]}))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert all(f in error for f in ("dataframe_records", "dataframe_split", "instances", "inputs", '"records"'))
    assert router.pending_log_rows() == 0


def test_unknown_path_is_404(router):
    assert post(router, json.dumps(GOOD), "/nope").status_code == 404
    assert requests.get(router.url + "/routes", timeout=10).json()["versions"] == {"champion": "1", "challenger": "2"}


def test_upstream_down_is_503_and_the_router_stays_up(upstreams):
    r = Router("test.models.stub")
    r.add_upstream("1", "http://127.0.0.1:9/invocations")  # nothing listens on the discard port
    r.set_routes({"champion": "1"}, {"champion": 100})
    with r:
        resp = post(r, json.dumps(GOOD))
        assert resp.status_code == 503 and "unreachable" in resp.json()["error"]
        assert r.pending_log_rows() == 0 and r.running


def test_routes_need_an_endpoint_for_every_routed_version(router):
    with pytest.raises(ValueError, match=r"\['9'\] have no endpoint"):
        router.set_routes({"champion": "9"}, {"champion": 100})
    assert router.routes.versions["champion"] == "1"  # the old table is kept


# ---------------------------------------------------------------- A/B assignment


def test_ab_assignment_is_deterministic_per_customer_and_weighted():
    weights = {"champion": 90, "challenger": 10}
    customers = [f"C{i:05d}" for i in range(5000)]
    arms = [assign_arm(c, weights, "m") for c in customers]
    assert arms == [assign_arm(c, {"challenger": 10, "champion": 90}, "m") for c in customers]  # order-free
    share = arms.count("challenger") / len(arms)
    assert 0.08 < share < 0.12, share
    assert assign_arm("C00001", {"champion": 100, "challenger": 0}) == "champion"
    with pytest.raises(ValueError):
        assign_arm("C1", {"champion": 0})


def test_router_splits_traffic_by_customer(router):
    router.set_routes({"champion": "1", "challenger": "2"}, {"champion": 50, "challenger": 50})
    out = router.predict([{**GOOD, "customer_id": c} for c in ("C1", "C2")] * 3)
    by_customer = {}
    for rec_customer, version, pred in zip(["C1", "C2"] * 3, out["model_versions"], out["predictions"]):
        by_customer.setdefault(rec_customer, set()).add(version)
        assert pred == {"1": 0.1, "2": 0.2}[version]
    assert all(len(v) == 1 for v in by_customer.values())
    expected = {c: {"champion": "1", "challenger": "2"}[assign_arm(c, {"champion": 50, "challenger": 50}, router.model_name)]
                for c in ("C1", "C2")}
    assert {c: v.pop() for c, v in by_customer.items()} == expected


# ---------------------------------------------------------------- blue/green through the registry


@pytest.fixture(scope="module")
def two_versions(isolated_state: Path) -> tuple[str, str, str]:
    name = "test.models.bluegreen"
    blue, green = register_constant_model(name, isolated_state)
    return name, blue, green


def test_blue_green_switch_is_atomic_and_rolls_back(upstreams, two_versions):
    from utils import registry

    name, blue, green = two_versions
    r = Router(name, log_predictions=False)
    r.add_upstream(blue, upstreams["1"][0])
    r.add_upstream(green, upstreams["2"][0])
    r.reload({"champion": 100})
    seen: list[tuple[str, float]] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                out = r.predict([GOOD, {**GOOD, "customer_id": "C2"}])
                assert len(set(out["model_versions"])) == 1  # one request never mixes tables
                seen.append((out["model_version"], out["predictions"][0]))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    with r:
        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        registry.promote(name, green, {"passed": True, "failed": []}, reason="blue/green switch")
        r.reload()
        after_switch = len(seen)
        assert r.predict(GOOD)["model_version"] == green
        registry.rollback(name, reason="roll back")
        r.reload()
        assert r.predict(GOOD)["model_version"] == blue
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert {v for v, _ in seen} <= {blue, green}
    assert all(p == {blue: 0.1, green: 0.2}[v] for v, p in seen)
    assert after_switch <= len(seen)
    assert str(registry.get_alias_version(name, "champion").version) == blue


# ---------------------------------------------------------------- inference log


def test_flushed_predictions_land_in_the_inference_log_with_its_schema(router):
    before = len(read_inference_log())
    answer = router.predict([GOOD, {**GOOD, "customer_id": "C2", "plant_id": "P2"}])
    assert router.flush_log() == 2
    log = read_inference_log()
    assert list(log.columns) == INFERENCE_LOG_COLUMNS
    assert len(log) == before + 2
    new = log[log["request_id"] == answer["request_id"]]
    assert len(new) == 2
    assert set(new["source"]) == {"realtime"} and set(new["model_version"]) == {"1"}
    assert new["request_id"].nunique() == 1 and new["event_id"].is_unique
    assert str(new["ts"].dtype).startswith("datetime64") and new["tenure_days"].dtype == float
    assert json.loads(new["feature_versions"].iloc[0])[feature_table_names()["customer_activity"]] == 3
    assert router.flush_log() == 0


def test_a_client_cannot_override_features_such_as_the_invasive_flag(router):
    """Features come from the online store only: fields a client adds are dropped before the lookup."""
    body = json.dumps({**GOOD, "plant_id": "P2", "invasive": False, "category": "fern", "tenure_days": 9999}).encode()
    records = parse_request(body)
    assert set(records[0]) == {"customer_id", "plant_id", "page", "position", "price"}
    frame = OnlineFeatures().build(records)
    assert bool(frame.loc[0, "invasive"]) is True and frame.loc[0, "category"] == "vine"
    assert frame.loc[0, "tenure_days"] == 100
    assert router.predict(json.loads(body))["predictions"]  # served, with the store's features


def test_every_request_lands_in_the_request_log_with_status_and_latency(router):
    before = set(read_request_log()["request_id"])
    answer = router.predict([GOOD])
    assert post(router, b"{not json").status_code == 400
    assert post(router, json.dumps({**GOOD, "customer_id": "NOPE"})).status_code == 422
    assert post(router, b"{}", path="/nowhere").status_code == 404
    assert router.pending_requests() == 4 and router.pending_log_rows() == 1
    router.flush_log()
    log = read_request_log()
    assert list(log.columns) == request_log_schema().names
    new = log[~log["request_id"].isin(before)]
    assert sorted(new["status_code"]) == [200, 400, 404, 422]
    ok = new[new["status_code"] == 200].iloc[0]
    assert ok["request_id"] == answer["request_id"] and ok["records"] == 1 and ok["model_versions"] == "1"
    assert pd.isna(ok["error"]) and ok["latency_ms"] > 0
    refused = new[new["status_code"] >= 400]
    assert (refused["records"] == 0).all() and refused["error"].str.len().gt(0).all()
    assert "NOPE" in refused.loc[refused["status_code"] == 422, "error"].iloc[0]


def test_a_negative_or_garbled_content_length_is_refused_and_the_router_stays_up(router):
    import socket

    for header in (b"-5", b"abc"):
        with socket.create_connection((router.host, router.port), timeout=10) as sock:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: " + header + b"\r\n\r\n")
            reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert router.predict([GOOD])["predictions"]


# ---------------------------------------------------------------- A/B analysis


def test_two_proportion_test_matches_hand_computation():
    res = two_proportion_test(200, 1000, 250, 1000, control="A", treatment="B")
    pooled = 450 / 2000
    z = 0.05 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert res.z == pytest.approx(z) and res.z == pytest.approx(2.6774, abs=1e-4)
    assert res.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert res.p_value == pytest.approx(0.00742, abs=1e-4)
    half = 1.959964 * math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)
    assert (res.ci_low, res.ci_high) == pytest.approx((0.05 - half, 0.05 + half), abs=1e-6)
    assert res.significant and res.difference == pytest.approx(0.05)
    same = two_proportion_test(30, 300, 3, 30)
    assert same.difference == 0 and same.p_value == pytest.approx(1.0) and not same.significant
    with pytest.raises(ValueError, match="between 0 and"):
        two_proportion_test(5, 4, 1, 10)


def _tiny_feature_tables(cfg):
    """The four feature tables of ``cfg``, offline only: customer C7 'west', one row in each of the others."""
    from utils.platform import feature_client

    t = feature_table_names(cfg)
    fe = feature_client()
    fe.create_table(name=t["customer"], primary_keys=["customer_id"],
                    df=pd.DataFrame({"customer_id": ["C7"], "region": ["west"], "age_band": ["18-24"],
                                     "device": ["tablet"], "tenure_days": [3]}))
    for key, table in t.items():
        if key != "customer":
            ts = key.endswith("activity")
            df = pd.DataFrame({"plant_id" if "plant" in key else "customer_id": ["X"], "v": [1.0]})
            if ts:
                df["feature_ts"] = pd.Timestamp("2024-01-01", tz="UTC")
            fe.create_table(name=table, primary_keys=[df.columns[0]] + (["feature_ts"] if ts else []), df=df,
                            timeseries_column="feature_ts" if ts else None)
    return fe


def test_ensure_online_features_publishes_missing_tables(spark):
    from utils import lakehouse

    cfg = get_config(schema="deploytest")
    t = feature_table_names(cfg)
    _tiny_feature_tables(cfg)
    versions = ensure_online_features(cfg)
    assert set(versions) == set(t.values()) and versions[t["customer"]] == lakehouse.current_version(t["customer"])
    assert online_store.lookup(t["customer"], {"customer_id": "C7"}, ["region"])[0]["region"] == "west"


def test_ensure_online_features_republishes_a_table_the_offline_side_moved_past(spark):
    """05 re-run after 06: the customers 06 landed offline are published again, not refused as unknown."""
    from utils import lakehouse

    cfg = get_config(schema="staletest")
    t = feature_table_names(cfg)
    fe = _tiny_feature_tables(cfg)
    first = ensure_online_features(cfg)
    fe.write_table(name=t["customer"], df=pd.DataFrame({"customer_id": ["C8"], "region": ["east"], "age_band": ["25-34"],
                                                        "device": ["phone"], "tenure_days": [1]}))
    offline = lakehouse.current_version(t["customer"])
    assert first[t["customer"]] < offline
    hint = unknown_key_hint("record 0: unknown customer_id 'C8'", cfg)
    assert (f"{t['customer']} is online from Delta version {first[t['customer']]} and offline at version {offline}"
            in hint and "ensure_online_features(cfg)" in hint), hint
    assert unknown_key_hint("record 0: unknown page 'x'", cfg) == ""
    again = ensure_online_features(cfg)
    assert again == {**first, t["customer"]: offline}
    assert online_store.lookup(t["customer"], {"customer_id": "C8"}, ["region"])[0]["region"] == "east"
    assert "is current" in unknown_key_hint("record 0: unknown customer_id 'C9'", cfg)


def test_the_router_client_names_the_feature_table_behind_an_unknown_key(router, spark):
    """`router.predict` (05's A/B replay) adds the table and its versions to the endpoint's 422."""
    with pytest.raises(RequestError) as err:
        router.predict({**GOOD, "customer_id": "C-NOBODY"})
    assert err.value.status == 422 and "unknown customer_id 'C-NOBODY'" in str(err.value)
    assert f"{feature_table_names()['customer']} is online from Delta version " in str(err.value), str(err.value)
    with pytest.raises(RequestError) as err:
        router.predict({**GOOD, "position": "third"})
    assert "Delta version" not in str(err.value), "only an unknown key gets the hint"


@pytest.mark.slow
def test_the_local_endpoint_serves_registered_versions_in_its_own_process(upstreams, two_versions):
    """serve_aliases loads each routed version once, in memory, and blue/green swaps the endpoint config."""
    import sys

    from utils import registry
    from utils.deploy import serve_aliases
    from utils.local import endpoints
    from utils.local.served_models import ServedModel

    name, blue, green = two_versions
    registry.set_alias(name, "champion", blue, "test: blue serves")
    registry.set_alias(name, "challenger", green, "test: green waits")
    path_before = list(sys.path)
    router = serve_aliases(name, {"champion": 100, "challenger": 0})
    try:
        served = router.backend.served
        assert sorted(served) == sorted([blue, green]) and all(isinstance(m, ServedModel) for m in served.values())
        assert sys.path == path_before, "loading a model must not leave its bundled code first on sys.path"
        assert not endpoints.running_endpoints(), "no second server process: the versions are served in memory"
        out = router.predict([GOOD, {**GOOD, "customer_id": "C2", "plant_id": "P2"}])
        assert out["predictions"] == [0.5, 0.5] and out["model_version"] == blue
        config = requests.get(f"{router.url}/config", timeout=10).json()
        assert [e["entity_version"] for e in config["served_entities"]] == sorted([blue, green], key=int)
        assert {r["traffic_percentage"] for r in config["traffic_config"]["routes"]} == {100, 0}
        loaded = {v: id(m) for v, m in served.items()}
        router.reload({"challenger": 100})
        assert router.predict(GOOD)["model_version"] == green
        assert {v: id(m) for v, m in router.backend.served.items()} == loaded, "a switch must not reload models"
        assert post(router, json.dumps({**GOOD, "price": "abc"})).status_code == 422
    finally:
        router.stop()
    assert not router.running and not router.backend.served


class ThreadRecordingModel:
    """An in-process served model (it has ``predict_frame``) that records which thread scored each call."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def predict_frame(self, inputs):
        self.threads.append(threading.current_thread().name)
        return [0.3] * len(inputs)


def test_small_requests_to_in_process_models_are_scored_on_the_event_loop_big_ones_in_a_worker(upstreams):
    from utils.router_http import INLINE_BODY_BYTES

    model = ThreadRecordingModel()
    r = Router("test.models.inline", log_predictions=False)
    r.add_upstream("1", model)
    r.set_routes({"champion": "1"}, {"champion": 100})
    with r:
        assert r.scores_in_process()
        small = json.dumps([GOOD])
        big = json.dumps([GOOD] * 60)
        assert len(small) <= INLINE_BODY_BYTES < len(big)
        assert post(r, small).json()["predictions"] == [0.3]
        assert post(r, big).json()["predictions"] == [0.3] * 60
    server_thread, worker_thread = model.threads
    assert server_thread.startswith("router"), model.threads  # uvicorn's loop runs in the thread BackgroundServer names
    assert worker_thread != server_thread, model.threads
    url_router = Router("test.models.http")
    url_router.add_upstream("1", upstreams["1"][0])
    url_router.set_routes({"champion": "1"}, {"champion": 100})
    assert not url_router.scores_in_process(), "a network hop is never awaited on the event loop"


# ---------------------------------------------------------------- automatic feature lookup (a feature-store model)


def _feature_store_model(name: str, folder: Path) -> str:
    """Register a model logged with the feature client's ``log_model`` over the example's four lookups; returns its version.

    Its raw model scores ``tenure_days / 1000 + cust_purchase_rate_30d`` (0 for an invasive plant), so a
    prediction tells which features it was given. The training set is built from its feature spec
    alone (nothing to join here): ``log_model`` reads only the spec, as on Databricks.
    """
    import mlflow
    from mlflow.types.schema import ColSpec, Schema

    from utils import registry
    from utils.local.feature_lookups import LocalTrainingSet
    from utils.local.feature_spec import FeatureSpec, LookupSpec
    from utils.online_features import (
        CUSTOMER_ACTIVITY,
        CUSTOMER_FEATURES,
        PLANT_ACTIVITY,
        PLANT_FEATURES,
    )
    from utils.platform import configure_mlflow, feature_client

    t = feature_table_names()
    lookups = [LookupSpec(t["customer"], ["customer_id"], CUSTOMER_FEATURES),
               LookupSpec(t["customer_activity"], ["customer_id"], list(CUSTOMER_ACTIVITY), timestamp_lookup_key="event_ts",
                          default_values=dict(CUSTOMER_ACTIVITY)),
               LookupSpec(t["plant"], ["plant_id"], PLANT_FEATURES),
               LookupSpec(t["plant_activity"], ["plant_id"], list(PLANT_ACTIVITY), timestamp_lookup_key="event_ts",
                          default_values=dict(PLANT_ACTIVITY))]
    outputs = ["page", "position", "price", *[f for lk in lookups for f in lk.feature_names], "purchased"]
    spec = FeatureSpec(lookups, source_columns=["event_id", "customer_id", "plant_id", "event_ts", "page", "position",
                                                "price", "purchased"],
                       labels=["purchased"], exclude_columns=["event_id", "customer_id", "plant_id", "event_ts"],
                       output_columns=outputs, data_types={"tenure_days": "int", "cust_purchase_rate_30d": "double"})
    code = folder / "feature_rate_model.py"
    code.write_text("import mlflow\nimport numpy as np\nimport pandas as pd\n"
                    "class M(mlflow.pyfunc.PythonModel):\n"
                    "    def predict(self, context, model_input, params=None):\n"
                    "        x = model_input\n"
                    "        score = x['tenure_days'].astype(float) / 1000 + x['cust_purchase_rate_30d'].astype(float)\n"
                    "        return pd.Series(np.where(x['invasive'].astype(bool), 0.0, score))\n"
                    "mlflow.models.set_model(M())\n")
    configure_mlflow("test-deploy")
    with mlflow.start_run(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = feature_client().log_model(model=str(code), artifact_path="m", flavor=mlflow.pyfunc,
                                          training_set=LocalTrainingSet(None, spec), pip_requirements=["mlflow"],
                                          output_schema=Schema([ColSpec("double", "probability")]))
    assert info.signature.outputs.input_names() == ["probability"], "output_schema is the served model's output"
    assert not [w for w in caught if "input example" in str(w.message)], "notebooks show stderr warnings as failures"
    version = str(registry.register(info.model_uri, name=name).version)
    registry.set_alias(name, "champion", version, "feature-store model")
    return version


@pytest.mark.slow
def test_a_feature_store_model_looks_its_own_features_up_from_the_keys(upstreams, isolated_state, two_versions):
    """Automatic feature lookup: the router sends keys and context, the served version reads the online store itself."""
    from utils.deploy import serve_aliases

    name = "test.models.lookup"
    version = _feature_store_model(name, isolated_state)
    two_plain = (two_versions[0], two_versions[1])
    router = serve_aliases(name, {"champion": 100})
    try:
        served = router.upstreams[version]
        assert served.looks_up_features and router._features is None
        c2 = {**GOOD, "customer_id": "C2"}
        out = router.predict([GOOD, c2, {**GOOD, "plant_id": "P2"}])
        # C1: tenure 100, rate 0.25; C2: tenure 5 and no activity row (the activity default, 0.0); P2 is invasive
        assert out["predictions"] == pytest.approx([0.35, 0.005, 0.0]) and out["model_version"] == version
        assert router._features is None, "the router looked nothing up: the model did"
        before = router.pending_log_rows()
        refused = post(router, json.dumps([GOOD, {**GOOD, "customer_id": "C-NOBODY"}, {**GOOD, "plant_id": "P-NONE"}]))
        assert refused.status_code == 422
        assert "record 1: unknown customer_id 'C-NOBODY'" in refused.json()["error"]
        assert "record 2: unknown plant_id 'P-NONE'" in refused.json()["error"]
        assert router.pending_log_rows() == before, "a refused request logs no prediction"
        assert router.flush_log() == 3
        log = read_inference_log()
        rows = log[log["request_id"] == out["request_id"]].sort_values("customer_id")
        assert rows["tenure_days"].tolist() == [100.0, 100.0, 5.0]  # the features the model looked up, logged
        assert json.loads(rows["feature_versions"].iloc[0])[feature_table_names()["customer_activity"]] == 3
        # offline code (the gate, batch scoring) scores the raw model inside on full rows: the same predictions
        import mlflow.pyfunc

        from utils.training import scoring_model_uri

        uri = f"models:/{name}/{version}"
        raw = scoring_model_uri(uri)
        assert raw.endswith("data/feature_store/raw_model")
        assert scoring_model_uri(uri) != raw, "a registered version's number can be reused: its download is not cached"
        offline = mlflow.pyfunc.load_model(raw).predict(rows.sort_values(["customer_id", "plant_id"])[FEATURES].reset_index(drop=True))
        assert list(offline) == pytest.approx([0.35, 0.0, 0.005])
        plain = f"models:/{two_plain[0]}/{two_plain[1]}"
        assert scoring_model_uri(plain) == plain, "any other model is scored as it is"
    finally:
        router.stop()


@pytest.mark.slow
def test_a_feature_store_model_whose_tables_are_not_online_fails_the_switch_not_the_requests(isolated_state, tmp_path,
                                                                                           monkeypatch):
    """Model Serving does not start a model whose features it cannot look up; the local endpoint refuses it at apply."""
    from utils.deploy import serve_aliases
    from utils.local.endpoints import EndpointError

    name = "test.models.unpublished"
    _feature_store_model(name, isolated_state)
    monkeypatch.setenv("MLOPS_ONLINE_STORE", str(tmp_path / "empty-online.db"))  # a store nothing was published to
    with pytest.raises(EndpointError, match=r"could not load .* to serve it: OnlineTableNotFoundError: .*customer_features"):
        serve_aliases(name, {"champion": 100})
