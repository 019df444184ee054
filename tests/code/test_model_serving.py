"""Databricks Model Serving through databricks-sdk, against a local stand-in for the workspace REST API.

No workspace is reachable from CI, so these tests run the real ``databricks.sdk.WorkspaceClient`` (its
authentication, URL building, JSON bodies, error mapping and waiting) against a small HTTP server that
answers the serving-endpoints API the way the REST reference documents it: ``GET``/``POST``
``/api/2.0/serving-endpoints``, ``PUT .../{name}/config``, and scoring at
``/serving-endpoints/{name}/served-models/{served}/invocations``. What they cannot show is how a real
workspace builds and runs the model's container.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import publish_tiny_online_store, register_constant_model
from utils.deploy import Router, serving_backend
from utils.local.endpoints import LocalBackend
from utils.serving import (
    EndpointError,
    ModelServingBackend,
    deploy_serving_endpoint,
    served_entity_name,
    traffic_percentages,
)

TOKEN = secrets.token_hex(16)  # made up per run: the stand-in accepts only this one
GOOD = {"customer_id": "C1", "plant_id": "P1", "page": "home", "position": 2, "price": 12.5}


class Workspace(BaseHTTPRequestHandler):
    """The serving-endpoints part of a workspace: endpoints kept in memory, every call recorded."""

    endpoints: dict[str, dict[str, Any]]
    calls: list[tuple[str, str, Any]]
    in_progress_polls: list[int]  # GETs left that report an update in progress

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._answer(401, {"error_code": "UNAUTHENTICATED", "message": "missing or wrong token"})
        return False

    def _detailed(self, name: str) -> dict[str, Any]:
        updating = "IN_PROGRESS" if self.in_progress_polls and self.in_progress_polls[0] > 0 else "NOT_UPDATING"
        if updating == "IN_PROGRESS":
            self.in_progress_polls[0] -= 1
        return {"name": name, "state": {"ready": "READY", "config_update": updating},
                "config": self.endpoints[name]}

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, None))
        found = re.fullmatch(r"/api/2\.0/serving-endpoints/([^/]+)", self.path)
        if not found:  # e.g. the client's look at /.well-known/databricks-config
            return self._answer(404, {"error_code": "NOT_FOUND", "message": f"no route {self.path}"})
        if not self._authorized():
            return None
        if found.group(1) not in self.endpoints:
            return self._answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                      "message": f"Endpoint with name '{found.group(1)}' does not exist."})
        self._answer(200, self._detailed(found.group(1)))

    def do_POST(self) -> None:
        body = self._body()
        self.calls.append(("POST", self.path, body))
        if not self._authorized():
            return
        if self.path == "/api/2.0/serving-endpoints":
            self.endpoints[body["name"]] = body["config"]
            return self._answer(200, self._detailed(body["name"]))
        found = re.fullmatch(r"/serving-endpoints/([^/]+)/served-models/([^/]+)/invocations", self.path)
        config = self.endpoints.get(found.group(1)) if found else None
        entity = next((e for e in (config or {}).get("served_entities", []) if e["name"] == found.group(2)), None)
        if entity is None:
            return self._answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"nothing at {self.path}"})
        rows = body["dataframe_records"]
        self._answer(200, {"predictions": [int(entity["entity_version"]) / 100 for _ in rows]})

    def do_PUT(self) -> None:
        body = self._body()
        self.calls.append(("PUT", self.path, body))
        found = re.fullmatch(r"/api/2\.0/serving-endpoints/([^/]+)/config", self.path)
        if not self._authorized():
            return
        if not found or found.group(1) not in self.endpoints:
            return self._answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"nothing at {self.path}"})
        self.endpoints[found.group(1)] = {k: body[k] for k in ("served_entities", "traffic_config")}
        self._answer(200, self._detailed(found.group(1)))


@pytest.fixture
def workspace() -> Iterator[tuple[Any, type[Workspace]]]:
    """A started stand-in workspace and a ``WorkspaceClient`` authenticated to it with a token."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    handler = type("StandIn", (Workspace,), {"endpoints": {}, "calls": [], "in_progress_polls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    client = WorkspaceClient(config=Config(host=host, token=TOKEN, auth_type="pat", retry_timeout_seconds=30))
    try:
        yield client, handler
    finally:
        server.shutdown()
        server.server_close()


def writes(handler: type[Workspace]) -> list[tuple[str, str, Any]]:
    return [c for c in handler.calls if c[0] in ("POST", "PUT") and c[1].startswith("/api/")]


# ---------------------------------------------------------------- names and traffic


def test_served_entity_names_are_valid_and_name_the_version() -> None:
    assert served_entity_name("plantly.mlops.plantly_recommender", 3) == "plantly_recommender-3"
    assert served_entity_name("main.ml.my model", "12") == "my_model-12"


@pytest.mark.parametrize("weights, expected", [
    ({"a": 100, "b": 0}, {"a": 100, "b": 0}),
    ({"a": 90, "b": 10}, {"a": 90, "b": 10}),
    ({"a": 9, "b": 1}, {"a": 90, "b": 10}),
    ({"a": 1, "b": 1, "c": 1}, {"a": 34, "b": 33, "c": 33}),
    ({"a": 2, "b": 1}, {"a": 67, "b": 33}),
])
def test_traffic_percentages_are_whole_and_add_up_to_100(weights: dict, expected: dict) -> None:
    assert traffic_percentages(weights) == expected


@pytest.mark.parametrize("weights", [{"a": 0}, {"a": -1, "b": 2}, {"a": 0.5, "b": 0.5}, {}])
def test_traffic_percentages_refuse_weights_that_route_nothing(weights: dict) -> None:
    with pytest.raises(ValueError, match="whole numbers >= 0"):
        traffic_percentages(weights)


def test_the_backend_is_local_off_databricks() -> None:
    assert isinstance(serving_backend("m", "plantly-recommender"), LocalBackend)


def test_without_a_client_model_serving_needs_databricks() -> None:
    with pytest.raises(EndpointError, match="only on Databricks.*client=WorkspaceClient"):
        ModelServingBackend("plantly-recommender", "m").apply({"1": 100})


# ---------------------------------------------------------------- create, update, leave alone


def test_deploy_creates_then_updates_and_leaves_an_unchanged_endpoint_alone(workspace) -> None:
    client, ws = workspace
    deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client)
    (method, path, body), = writes(ws)
    assert (method, path) == ("POST", "/api/2.0/serving-endpoints")
    assert body["name"] == "recs"
    assert body["config"]["served_entities"] == [{"name": "rec-3", "entity_name": "main.ml.rec", "entity_version": "3",
                                                  "workload_size": "Small", "scale_to_zero_enabled": True}]
    assert body["config"]["traffic_config"] == {"routes": [{"served_entity_name": "rec-3", "traffic_percentage": 100}]}

    deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3", "rec-4": "4"}, {"rec-3": 90, "rec-4": 10},
                            client=client)
    method, path, body = writes(ws)[-1]
    assert (method, path) == ("PUT", "/api/2.0/serving-endpoints/recs/config")
    assert [e["entity_version"] for e in body["served_entities"]] == ["3", "4"]
    assert body["traffic_config"]["routes"][1] == {"served_entity_name": "rec-4", "traffic_percentage": 10}

    before = len(writes(ws))
    detailed = deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3", "rec-4": "4"},
                                       {"rec-3": 90, "rec-4": 10}, client=client)
    assert len(writes(ws)) == before, "an endpoint already serving this config must not be updated again"
    assert detailed.name == "recs" and detailed.state.ready.value == "READY"


def test_deploy_waits_for_an_update_in_progress_before_changing_the_endpoint(workspace) -> None:
    client, ws = workspace
    deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client)
    ws.in_progress_polls.append(2)  # the next two GETs report an update in progress
    deploy_serving_endpoint("recs", "main.ml.rec", {"rec-4": "4"}, {"rec-4": 100}, client=client)
    gets = [i for i, c in enumerate(ws.calls) if c[0] == "GET" and c[1] == "/api/2.0/serving-endpoints/recs"]
    put = next(i for i, c in enumerate(ws.calls) if c[0] == "PUT")
    assert ws.in_progress_polls == [0] and len([i for i in gets if i < put]) >= 3  # polled until not updating
    assert ws.endpoints["recs"]["served_entities"][0]["entity_version"] == "4"


def test_a_refused_token_is_an_error_not_a_silent_no_op(workspace) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    client, ws = workspace
    wrong = WorkspaceClient(config=Config(host=client.config.host, token=secrets.token_hex(16), auth_type="pat",
                                          retry_timeout_seconds=10))
    with pytest.raises(Exception, match="missing or wrong token"):
        deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=wrong)
    assert ws.endpoints == {}


# ---------------------------------------------------------------- the router over Model Serving


@pytest.fixture(scope="module")
def served_model(isolated_state: Path) -> tuple[str, str, str]:
    publish_tiny_online_store(activity_source_version=3)
    name = "test.models.modelserving"
    blue, green = register_constant_model(name, isolated_state)
    return name, blue, green


def test_the_router_serves_through_model_serving_and_moves_its_traffic_with_the_aliases(workspace, served_model):
    from utils import registry

    client, ws = workspace
    name, blue, green = served_model
    router = Router(name, log_predictions=False, backend=ModelServingBackend("plantly-recommender", name, client=client))
    router.reload({"champion": 100, "challenger": 0})
    with router:
        config = ws.endpoints["plantly-recommender"]
        assert {e["name"]: e["entity_version"] for e in config["served_entities"]} == {
            f"modelserving-{blue}": blue, f"modelserving-{green}": green}
        assert {r["served_entity_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]} == {
            f"modelserving-{blue}": 100, f"modelserving-{green}": 0}
        # an entity the router calls directly at 0% traffic must not be scaled to zero (cold start > timeout)
        assert [e["scale_to_zero_enabled"] for e in config["served_entities"]] == [False, False]

        answer = router.predict([GOOD, {**GOOD, "customer_id": "C2", "plant_id": "P2"}])
        assert answer["model_version"] == blue and answer["predictions"] == [int(blue) / 100] * 2
        scored = [c for c in ws.calls if c[1].endswith("/invocations")]
        assert scored[-1][1] == f"/serving-endpoints/plantly-recommender/served-models/modelserving-{blue}/invocations"
        assert len(scored[-1][2]["dataframe_records"]) == 2 and "invasive" in scored[-1][2]["dataframe_records"][0]

        registry.promote(name, green, {"passed": True, "failed": []}, reason="blue/green on Model Serving")
        try:
            router.reload()
            assert router.predict(GOOD)["model_version"] == green
            routes = ws.endpoints["plantly-recommender"]["traffic_config"]["routes"]
            assert {r["served_entity_name"]: r["traffic_percentage"] for r in routes} == {
                f"modelserving-{green}": 100, f"modelserving-{blue}": 0}, "the previous champion stays served at 0%"
        finally:
            registry.rollback(name, reason="back to blue")
        router.reload({"champion": 90, "challenger": 10})
        routes = ws.endpoints["plantly-recommender"]["traffic_config"]["routes"]
        assert {r["served_entity_name"]: r["traffic_percentage"] for r in routes} == {
            f"modelserving-{blue}": 90, f"modelserving-{green}": 10}
    assert "plantly-recommender" in ws.endpoints, "stopping the router leaves the endpoint serving"
