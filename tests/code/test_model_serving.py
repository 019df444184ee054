"""Databricks Model Serving through databricks-sdk, against a local stand-in for the workspace REST API.

No workspace is reachable from CI, so these tests run the real ``databricks.sdk.WorkspaceClient`` (its
authentication, URL building, JSON bodies, error mapping and waiting) against ``tests.databricks_workspace``,
a small HTTP server that answers the serving-endpoints API the way the REST reference documents it:
``GET``/``POST /api/2.0/serving-endpoints``, ``PUT .../{name}/config``, and scoring at
``/serving-endpoints/{name}/served-models/{served}/invocations``. What they cannot show is how a real
workspace builds and runs the model's container.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databricks_workspace import RunningWorkspace, StandInWorkspace
from tests.support import publish_tiny_online_store, register_constant_model
from utils.config import Config
from utils.deploy import Router, serving_backend
from utils.local.served_models import LocalBackend
from utils.serving import (
    EndpointError,
    ModelServingBackend,
    deploy_serving_endpoint,
    served_entity_name,
    traffic_percentages,
)

DEFAULTS = Config()
ENDPOINT = DEFAULTS.model_base_name.replace("_", "-")  # an endpoint named for the model, e.g. <project>-recommender
GOOD = {"customer_id": "C1", "plant_id": "P1", "page": "home", "position": 2, "price": 12.5}


@pytest.fixture
def workspace() -> Iterator[tuple[Any, StandInWorkspace]]:
    """A started stand-in workspace and a ``WorkspaceClient`` authenticated to it with a token."""
    with RunningWorkspace() as running:
        yield running.client(), running.workspace


def writes(ws: StandInWorkspace) -> list[tuple[str, str, Any]]:
    return ws.writes()


# ---------------------------------------------------------------- names and traffic


def test_served_entity_names_are_valid_and_name_the_version() -> None:
    assert served_entity_name(DEFAULTS.model_name, 3) == f"{DEFAULTS.model_base_name}-3"
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
    assert isinstance(serving_backend("m", ENDPOINT), LocalBackend)


def test_without_a_client_model_serving_needs_databricks() -> None:
    with pytest.raises(EndpointError, match="only on Databricks.*client=WorkspaceClient"):
        ModelServingBackend(ENDPOINT, "m").apply({"1": 100})


# ---------------------------------------------------------------- create, update, leave alone


def test_endpoints_log_to_an_ai_gateway_inference_table_put_on_them_once_they_exist(workspace) -> None:
    client, ws = workspace
    table = ("main", "ml", "endpoint")
    deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client, inference_table=table)
    (create, _, create_body), (method, path, body) = writes(ws)
    assert create == "POST" and "ai_gateway" not in create_body, "the endpoint first: a refused table cannot stop it"
    assert (method, path) == ("PUT", "/api/2.0/serving-endpoints/recs/ai-gateway")
    assert body["inference_table_config"] == {"catalog_name": "main", "schema_name": "ml",
                                              "table_name_prefix": "endpoint", "enabled": True}
    deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client, inference_table=table)
    assert len(writes(ws)) == 2, "already logging and already serving this: nothing to change"

    deploy_serving_endpoint("old", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client)  # made without one
    assert "old" not in ws.gateways
    deploy_serving_endpoint("old", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client, inference_table=table)
    method, path, body = writes(ws)[-1]
    assert (method, path) == ("PUT", "/api/2.0/serving-endpoints/old/ai-gateway")
    assert body["inference_table_config"]["table_name_prefix"] == "endpoint" and body["inference_table_config"]["enabled"]

    ws.gateways["old"] = {"usage_tracking_config": {"enabled": True}}  # someone's other AI Gateway setting
    deploy_serving_endpoint("old", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client, inference_table=table)
    body = writes(ws)[-1][2]
    assert body["usage_tracking_config"] == {"enabled": True}, "a PUT replaces the whole config: keep the rest"
    assert body["inference_table_config"]["enabled"]


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
    classic = ModelServingBackend(ENDPOINT, name, client=client, scale_to_zero=False)  # classic's pick
    router = Router(name, log_predictions=False, backend=classic)
    router.reload({"champion": 100, "challenger": 0})
    with router:
        config = ws.endpoints[ENDPOINT]
        assert {e["name"]: e["entity_version"] for e in config["served_entities"]} == {
            f"modelserving-{blue}": blue, f"modelserving-{green}": green}
        assert {r["served_entity_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]} == {
            f"modelserving-{blue}": 100, f"modelserving-{green}": 0}
        # an entity the router calls directly at 0% traffic must not be scaled to zero (cold start > timeout)
        assert [e["scale_to_zero_enabled"] for e in config["served_entities"]] == [False, False]

        answer = router.predict([GOOD, {**GOOD, "customer_id": "C2", "plant_id": "P2"}])
        assert answer["model_version"] == blue and answer["predictions"] == [int(blue) / 100] * 2
        scored = [c for c in ws.calls if c[1].endswith("/invocations")]
        assert scored[-1][1] == f"/serving-endpoints/{ENDPOINT}/served-models/modelserving-{blue}/invocations"
        assert len(scored[-1][2]["dataframe_records"]) == 2 and "invasive" in scored[-1][2]["dataframe_records"][0]

        registry.promote(name, green, {"passed": True, "failed": []}, reason="blue/green on Model Serving")
        try:
            router.reload()
            assert router.predict(GOOD)["model_version"] == green
            routes = ws.endpoints[ENDPOINT]["traffic_config"]["routes"]
            assert {r["served_entity_name"]: r["traffic_percentage"] for r in routes} == {
                f"modelserving-{green}": 100, f"modelserving-{blue}": 0}, "the previous champion stays served at 0%"
        finally:
            registry.rollback(name, reason="back to blue")
        router.reload({"champion": 90, "challenger": 10})
        routes = ws.endpoints[ENDPOINT]["traffic_config"]["routes"]
        assert {r["served_entity_name"]: r["traffic_percentage"] for r in routes} == {
            f"modelserving-{blue}": 90, f"modelserving-{green}": 10}
    assert ENDPOINT in ws.endpoints, "stopping the router leaves the endpoint serving"


@pytest.mark.parametrize(("runtime", "scales"), [("client.4.9", True), ("17.3", False)])
def test_the_endpoint_scales_to_zero_on_serverless_and_stays_up_on_classic(workspace, monkeypatch, runtime, scales):
    """Review R18: an always-on endpoint burns Free Edition's daily quota, and Free Edition is serverless only
    (runtime version ``client.<n>``); a classic cluster keeps the router's entities up (a cold start outlasts it)."""
    client, ws = workspace
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", runtime)
    monkeypatch.setenv("MLOPS_CATALOG", "workshop")
    monkeypatch.setenv("MLOPS_SCHEMA", "ada")
    backend = serving_backend("main.ml.rec", ENDPOINT)
    backend.client = client
    backend.apply({"3": 100})
    assert [e["scale_to_zero_enabled"] for e in ws.endpoints[ENDPOINT]["served_entities"]] == [scales]
    assert ModelServingBackend(ENDPOINT, "m").scale_to_zero, "built by hand, it scales to zero unless asked not to"


def test_after_a_traffic_change_every_served_entity_is_warmed_up_before_the_router_uses_it(workspace) -> None:
    """A served entity that answers 503 while waking up is retried with backoff until its model answers."""
    from utils.serving import warm_up

    client, ws = workspace
    backend = ModelServingBackend(ENDPOINT, "main.ml.rec", client=client)
    ws.cold_invocations = 2
    upstreams = backend.apply({"3": 100})
    assert ws.cold_invocations == 0  # both 503s were retried through
    calls = [c for c in ws.calls if c[1].endswith("/invocations")]
    assert len(calls) == 3 and all(c[2] == {"dataframe_records": []} for c in calls)
    ws.cold_invocations = 1000
    with pytest.raises(EndpointError, match=r"served entity rec-3 .* did not answer within 2 s .*HTTP 503"):
        warm_up(list(upstreams.values()), timeout_s=2, first_wait_s=0.2)
