"""A workspace that refuses a preview feature: the lifecycle goes on, with one line saying what was skipped.

AI Gateway inference tables, data profiling and Lakebase are previews, or missing in some regions and editions
(Free Edition among the unknowns). The workspace stand-in switches each off (``StandInWorkspace.turn_off``): its
calls then answer ``FEATURE_DISABLED`` as the REST API does for a feature that is not enabled. Databricks services
give that answer with different HTTP statuses, so each test runs with several; the code must read the error, not
the status. Review of round 3: R6 (endpoint creation stopped by its inference table), R8 (06's unconditional
online-store delete); data profiling is the third preview 05 and 06 use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.code.test_online_store_calls import _OffTheDriver
from tests.code.test_workspace_calls import on_databricks, running, runtime_auth  # noqa: F401 - fixtures
from tests.databricks_workspace import RunningWorkspace, StandInWorkspace
from utils import platform, serving
from utils.config import get_config

STATUSES = [400, 403, 404]
TABLE = ("main", "ml", "endpoint")


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    (line,) = capsys.readouterr().out.splitlines()
    return line


def test_the_stand_in_refuses_a_turned_off_preview_as_the_api_does() -> None:
    from databricks.sdk.errors import DatabricksError

    with RunningWorkspace() as running_ws:
        running_ws.workspace.turn_off("data_profiling", status=403)
        with pytest.raises(DatabricksError) as refused:
            running_ws.client().data_quality.get_monitor(object_type="table", object_id="t1")
        assert refused.value.error_code == "FEATURE_DISABLED" and "not enabled" in str(refused.value)
        with pytest.raises(ValueError, match="unknown preview feature 'genie'"):
            running_ws.workspace.turn_off("genie")


# ---------------------------------------------------------------- AI Gateway inference tables (R6)


@pytest.mark.parametrize("status", STATUSES)
def test_a_refused_inference_table_leaves_the_endpoint_created_and_says_so_once(
        status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(serving, "_INFERENCE_TABLE_REFUSED", set(), raising=False)
    with RunningWorkspace() as running_ws:
        client, ws = running_ws.client(), running_ws.workspace
        ws.turn_off("ai_gateway", status)
        detailed = serving.deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client,
                                                   inference_table=TABLE)
        assert detailed.name == "recs" and ws.endpoints["recs"]["served_entities"][0]["entity_version"] == "3"
        assert "recs" not in ws.gateways
        line = _one_line(capsys)
        assert "endpoint recs serves without an AI Gateway inference table (FEATURE_DISABLED" in line, line
        assert "inference log" in line and "Config:" not in line and ws.token not in line
        create = next(body for verb, path, body in ws.writes() if (verb, path) == ("POST", "/api/2.0/serving-endpoints"))
        assert "ai_gateway" not in create, "the endpoint is created on its own, the table put on it after"

        serving.deploy_serving_endpoint("recs", "main.ml.rec", {"rec-4": "4"}, {"rec-4": 100}, client=client,
                                        inference_table=TABLE)  # 05 deploys the endpoint again: asked once only
        assert ws.endpoints["recs"]["served_entities"][0]["entity_version"] == "4"
        assert capsys.readouterr().out == ""
        assert [p for _, p, _ in ws.writes() if p.endswith("/ai-gateway")] == ["/api/2.0/serving-endpoints/recs/ai-gateway"]


def test_an_existing_endpoint_whose_inference_table_is_refused_is_still_updated(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(serving, "_INFERENCE_TABLE_REFUSED", set(), raising=False)
    with RunningWorkspace() as running_ws:
        client, ws = running_ws.client(), running_ws.workspace
        serving.deploy_serving_endpoint("old", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client)
        ws.turn_off("ai_gateway")
        serving.deploy_serving_endpoint("old", "main.ml.rec", {"rec-4": "4"}, {"rec-4": 100}, client=client,
                                        inference_table=TABLE)
        assert ws.endpoints["old"]["served_entities"][0]["entity_version"] == "4" and "old" not in ws.gateways
        assert "endpoint old serves without an AI Gateway inference table" in _one_line(capsys)


def test_with_ai_gateway_enabled_the_inference_table_is_put_on_the_new_endpoint() -> None:
    with RunningWorkspace() as running_ws:
        client, ws = running_ws.client(), running_ws.workspace
        serving.deploy_serving_endpoint("recs", "main.ml.rec", {"rec-3": "3"}, {"rec-3": 100}, client=client,
                                        inference_table=TABLE)
        assert [(verb, path) for verb, path, _ in ws.writes()] == [
            ("POST", "/api/2.0/serving-endpoints"), ("PUT", "/api/2.0/serving-endpoints/recs/ai-gateway")]
        assert ws.gateways["recs"]["inference_table_config"] == {"catalog_name": "main", "schema_name": "ml",
                                                                 "table_name_prefix": "endpoint", "enabled": True}


# ---------------------------------------------------------------- data profiling


@pytest.mark.parametrize("status", STATUSES)
def test_06_skips_the_profiling_monitor_in_one_line_where_data_profiling_is_off(
        status: int, runtime_auth: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    runtime_auth.tables["workshop.ada.inference_log"] = "tbl-7"
    runtime_auth.schemas["workshop.ada"] = "sch-3"
    runtime_auth.turn_off("data_profiling", status)
    result = platform.data_profiling()
    assert result["action"] == "skipped" and result["table"] == "workshop.ada.inference_log"
    assert runtime_auth.monitors == {} and runtime_auth.refreshes == []
    line = _one_line(capsys)
    assert line.startswith("data-profiling monitor skipped: data profiling is not enabled in this workspace"), line
    assert "monitored_predictions" in line and "Config:" not in line


def test_06_skips_the_profiling_monitor_in_one_line_on_any_other_refusal(
        runtime_auth: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A baseline the service rejects (or a quota) is one line, not a traceback that stops 06 (review R13)."""
    runtime_auth.tables["workshop.ada.inference_log"] = "tbl-7"
    runtime_auth.schemas["workshop.ada"] = "sch-3"
    runtime_auth.refuse(r"/data-quality/v1/monitors", 400, "INVALID_PARAMETER_VALUE",
                        "Baseline table schema does not match the monitored table")
    result = platform.data_profiling()
    assert result["action"] == "skipped" and runtime_auth.monitors == {}
    line = _one_line(capsys)
    assert line.startswith("data-profiling monitor skipped: the service refused it (INVALID_PARAMETER_VALUE: "), line
    assert "Baseline table schema does not match" in line


# ---------------------------------------------------------------- Lakebase (R8)


@pytest.fixture
def lakebase_ws(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInWorkspace]:
    """The Databricks branch of ``utils.platform`` with the real Feature Engineering client talking to a stand-in."""
    from databricks.ml_features._feature_serving_endpoint_client import (
        _feature_serving_endpoint_client,
    )
    from databricks.ml_features._spark_client import _spark_client

    for module in (_spark_client, _feature_serving_endpoint_client):
        monkeypatch.setattr(module, "TaskContext", _OffTheDriver)
    with RunningWorkspace() as running_ws:
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
        monkeypatch.setenv("DATABRICKS_HOST", running_ws.host)
        monkeypatch.setenv("DATABRICKS_TOKEN", running_ws.workspace.token)
        monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
        monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")
        monkeypatch.delenv("MLOPS_LAKEBASE_STORE", raising=False)
        yield running_ws.workspace


def test_without_lakebase_06_does_not_call_it_and_says_so(lakebase_ws: StandInWorkspace, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MLOPS_LAKEBASE", raising=False)
    lakebase_ws.turn_off("lakebase")
    assert platform.delete_online_store() is False
    assert not [c for c in lakebase_ws.calls if "online-stores" in c[1]], "nothing was published: nothing to ask"
    assert "no Lakebase online store to delete: MLOPS_LAKEBASE is not true" in _one_line(capsys)


@pytest.mark.parametrize("status", [400, 403])
def test_a_refused_lakebase_api_is_one_line_at_the_end_of_06(status: int, lakebase_ws: StandInWorkspace,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """404 is left out: the Feature Engineering client reads any 404 as "no such store", which is then the answer."""
    monkeypatch.setenv("MLOPS_LAKEBASE", "true")
    lakebase_ws.turn_off("lakebase", status)
    assert platform.delete_online_store() is False
    line = _one_line(capsys)
    store = get_config().online_store_name
    assert f"Lakebase online store {store!r} not deleted (FEATURE_DISABLED" in line and "Compute → Lakebase" in line, line
    assert "Config:" not in line and lakebase_ws.token not in line
