"""The local real-time endpoint: a real `mlflow models serve` process, real HTTP, real SQLite registry."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from utils.local.endpoints import LocalEndpoint, running_endpoints, serve
from utils.platform import REPO_ROOT
from utils.serving import (
    EndpointError,
    deploy_serving_endpoint,
    endpoint_config,
    free_port,
    resolve_versions,
)

# Every test here that starts a server waits for `mlflow models serve` to boot (several seconds each).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc (Linux)"),
]

FEATURES = ["x1", "x2"]
STARTUP_TIMEOUT_S = 300  # generous: the CI runner may be a busy, shared two-core machine


# ---------------------------------------------------------------- helpers (independent of utils.serving)


def live_group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``pgid``, read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def processes_serving_port(port: int) -> list[int]:
    """Pids whose command line asks to serve on ``port``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"--port" in args and str(port).encode() in args:
            pids.append(int(entry.name))
    return pids


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_gone(pgid: int, port: int, within_s: float = 0.0) -> None:
    """No live process is left in the server's group and nothing listens on its port."""
    deadline = time.monotonic() + within_s
    while (live_group_members(pgid) or accepts_connections(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_group_members(pgid) == [], f"processes left behind in group {pgid}"
    assert not accepts_connections(port), f"port {port} still accepts connections"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model() -> dict:
    """A tiny logistic regression, logged to the test's SQLite store and registered as version 1."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from utils.platform import configure_mlflow

    configure_mlflow("serving-tests")
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(80, 2)), columns=FEATURES)
    y = (X["x1"] - 0.5 * X["x2"] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    name = f"serving_tests_{uuid.uuid4().hex[:8]}"
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            clf,
            name="model",
            signature=infer_signature(X, clf.predict(X)),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],  # skips slow requirement inference
            registered_model_name=name,
        )
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", "1")
    X_new = pd.DataFrame(rng.normal(size=(12, 2)), columns=FEATURES)
    expected = [int(v) for v in clf.predict(X_new)]
    assert set(expected) == {0, 1}, "the check rows should cover both classes"
    return {
        "name": name,
        "registry_uri": f"models:/{name}/1",
        "alias_uri": f"models:/{name}@champion",
        "run_uri": f"runs:/{run.info.run_id}/model",
        "rows": X_new.to_dict(orient="records"),
        "frame": X_new,
        "expected": expected,
    }


@pytest.fixture(scope="module")
def _registry_endpoint(model: dict) -> Iterator[LocalEndpoint]:
    ep = LocalEndpoint(model["registry_uri"], timeout_s=STARTUP_TIMEOUT_S)
    yield ep
    ep.stop()


@pytest.fixture
def endpoint(_registry_endpoint: LocalEndpoint) -> LocalEndpoint:
    """The shared endpoint serving ``models:/<name>/1``, (re)started if a test stopped it."""
    return _registry_endpoint.start()


# ---------------------------------------------------------------- serving from the registry


def test_registered_model_serves_the_in_process_predictions(endpoint: LocalEndpoint, model: dict) -> None:
    assert endpoint.health()
    assert endpoint.url == f"http://127.0.0.1:{endpoint.port}"
    assert endpoint.startup_s is not None and endpoint.startup_s > 0
    preds = endpoint.predict(model["rows"])
    assert len(preds) == len(model["rows"])
    assert all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in preds)
    assert preds == model["expected"]
    assert endpoint.predict(model["frame"]) == model["expected"]  # a DataFrame sends the same records


def test_the_server_log_lands_under_the_state_dir(endpoint: LocalEndpoint, isolated_state: Path) -> None:
    assert endpoint.log_path is not None
    assert endpoint.log_path.is_relative_to(isolated_state / "serving")
    assert "mlflow models serve" in endpoint.log_path.read_text()


MALFORMED = {
    "empty body": ("", "application/json", "JSON"),
    "invalid JSON": ('{"dataframe_records": [{"x1": 1', "application/json", "JSON"),
    "missing column": ('{"dataframe_records": [{"x1": 0.5}]}', "application/json", "x2"),
    "wrong type": ('{"dataframe_records": [{"x1": "abc", "x2": 1.0}]}', "application/json", "x1"),
    "unknown key": ('{"records": [{"x1": 0.5, "x2": 1.0}]}', "application/json", "dataframe_records"),
    "not an object": ("[[0.5, 1.0]]", "application/json", "dataframe_records"),
    "unsupported content type": ("x1,x2\n0.5,1.0", "text/plain", "text/plain"),
}


@pytest.mark.parametrize("body, content_type, hint", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_4xx_and_the_server_stays_up(
    endpoint: LocalEndpoint, model: dict, body: str, content_type: str, hint: str
) -> None:
    resp = requests.post(endpoint.invocations_url, data=body.encode(), headers={"Content-Type": content_type}, timeout=30)
    assert 400 <= resp.status_code < 500, resp.text
    assert hint in resp.text
    assert endpoint.health()
    assert endpoint.predict(model["rows"][:3]) == model["expected"][:3]


def test_predict_raises_endpoint_error_with_status_and_reason(endpoint: LocalEndpoint) -> None:
    with pytest.raises(EndpointError, match="answered 400") as err:
        endpoint.predict([{"x1": 0.5}])
    assert err.value.status == 400
    assert "x2" in str(err.value)


def test_predict_rejects_input_that_is_not_records(endpoint: LocalEndpoint) -> None:
    with pytest.raises(TypeError, match="list of row dicts or a pandas DataFrame"):
        endpoint.predict("x1=0.5")  # type: ignore[arg-type]


def test_a_port_in_use_is_refused_before_anything_starts(endpoint: LocalEndpoint, model: dict) -> None:
    other = LocalEndpoint(model["registry_uri"], port=endpoint.port)
    with pytest.raises(EndpointError, match=f"port {endpoint.port} .* already in use"):
        other.start()
    assert other.pid is None
    assert endpoint.health()


def test_context_manager_stops_the_server_when_the_block_fails(endpoint: LocalEndpoint, model: dict) -> None:
    # Runs last among the tests sharing `endpoint`; any later user of the fixture restarts it.
    with pytest.raises(RuntimeError, match="cell failed"):
        with endpoint as ep:
            pgid, port = ep.pid, ep.port
            assert pgid is not None and port is not None
            assert len(live_group_members(pgid)) >= 2  # the `mlflow models serve` process and its uvicorn
            assert ep in running_endpoints()
            assert ep.predict(model["rows"]) == model["expected"]
            raise RuntimeError("cell failed")
    with pytest.raises(ProcessLookupError):
        os.kill(pgid, 0)
    assert_gone(pgid, port)
    assert ep.pid is None and not ep.health()
    assert ep not in running_endpoints()
    ep.stop()  # idempotent
    with pytest.raises(EndpointError, match="not running"):
        ep.predict(model["rows"])


# ---------------------------------------------------------------- other URIs, teardown paths, failures


CHILD = """
import atexit, json, os, signal, socket, sys

def report_after_stop_all():  # registered first, so atexit runs it after utils.serving's stop_all
    with socket.socket() as sock:
        print(json.dumps({"port_open_at_exit": sock.connect_ex(("127.0.0.1", ep.port)) == 0}), flush=True)

atexit.register(report_after_stop_all)
from utils.local.endpoints import serve
ep = serve(sys.argv[1], timeout_s=float(sys.argv[4]))
preds = ep.predict(json.loads(sys.argv[3]))
print(json.dumps({"pid": ep.pid, "port": ep.port, "preds": preds}), flush=True)
if sys.argv[2] == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
raise RuntimeError("a notebook cell failed and the kernel exits")
"""


@pytest.mark.parametrize("uri, how", [("run_uri", "exits with an error"), ("alias_uri", "killed")])
def test_no_orphan_server_when_the_process_that_started_it_ends(model: dict, uri: str, how: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-c", CHILD, model[uri], how, json.dumps(model["rows"]), str(STARTUP_TIMEOUT_S)]
    child = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=STARTUP_TIMEOUT_S + 60)
    lines = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    assert lines, child.stderr
    started = lines[0]
    assert started["preds"] == model["expected"]  # runs:/ and models:/<name>@alias resolve and serve
    if how == "killed":
        assert child.returncode == -9
        assert_gone(started["pid"], started["port"], within_s=20)  # the kernel's death signal stops it
    else:
        assert child.returncode == 1 and "notebook cell failed" in child.stderr
        assert lines[-1] == {"port_open_at_exit": False}  # stop_all ran at exit, before the process ended
        assert_gone(started["pid"], started["port"])


def test_a_bogus_model_uri_fails_fast_naming_the_uri() -> None:
    uri = f"models:/no_such_model_{uuid.uuid4().hex[:6]}/1"
    t0 = time.monotonic()
    with pytest.raises(EndpointError) as err:
        serve(uri, timeout_s=STARTUP_TIMEOUT_S)
    message = str(err.value)
    assert uri in message and "exited with code" in message and "not found" in message
    assert time.monotonic() - t0 < STARTUP_TIMEOUT_S
    assert running_endpoints() == []


def test_a_server_not_ready_in_time_is_stopped_and_reported(model: dict) -> None:
    ep = LocalEndpoint(model["registry_uri"], timeout_s=0.5)
    with pytest.raises(EndpointError, match=r"was not ready after .*raise timeout_s"):
        ep.start()
    assert ep.pid is None and ep not in running_endpoints()
    assert processes_serving_port(ep.port) == []  # type: ignore[arg-type]


def test_model_copies_left_by_dead_processes_are_swept(tmp_path: Path) -> None:
    from utils.local.endpoints import _sweep_stale_tmp

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"5001-20260101-000000-{dead.pid}").mkdir()
    (tmp_path / f"5002-20260101-000000-{os.getpid()}").mkdir()
    _sweep_stale_tmp(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"5002-20260101-000000-{os.getpid()}"]


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# ---------------------------------------------------------------- Databricks Model Serving (config only)


def test_endpoint_config_splits_traffic_between_named_versions() -> None:
    entities, traffic = endpoint_config("workspace.mlops.rec", {"blue": "3", "green": "4"}, {"blue": 90, "green": 10})
    assert [(e.name, e.entity_name, e.entity_version) for e in entities] == [
        ("blue", "workspace.mlops.rec", "3"),
        ("green", "workspace.mlops.rec", "4"),
    ]
    assert traffic.as_dict() == {
        "routes": [
            {"served_entity_name": "blue", "traffic_percentage": 90},
            {"served_entity_name": "green", "traffic_percentage": 10},
        ]
    }


@pytest.mark.parametrize(
    "versions, traffic, match",
    [
        ({"blue": "1"}, {"blue": 90}, "add up to 100"),
        ({"blue": "1", "green": "2"}, {"blue": 100}, "must name exactly"),
        ({"blue": "1", "green": "2"}, {"blue": 50.5, "green": 49.5}, "whole numbers"),
        ({"blue v1": "1"}, {"blue v1": 100}, "letters, digits"),
        ({}, {}, "no model versions"),
    ],
)
def test_endpoint_config_rejects_bad_routes(versions: dict, traffic: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        endpoint_config("m", versions, traffic)


def test_aliases_resolve_to_versions_in_the_registry(model: dict) -> None:
    assert resolve_versions(model["name"], {"blue": "champion", "green": 1}) == {"blue": "1", "green": "1"}


def test_deploying_a_serving_endpoint_off_databricks_names_the_local_alternative() -> None:
    with pytest.raises(EndpointError, match=r"only on Databricks.*utils\.local\.endpoints\.serve"):
        deploy_serving_endpoint("recommender", "workspace.mlops.rec", {"champion": "champion"}, {"champion": 100})
