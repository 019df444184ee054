"""The Lakebase online-store calls, through the real Feature Engineering client, against a stand-in workspace.

On Databricks ``utils.platform.feature_client()`` builds ``databricks.feature_engineering.FeatureEngineeringClient``,
whose ``*_online_store`` methods go through its own ``WorkspaceClient`` (configured from the environment:
``DATABRICKS_HOST``, ``DATABRICKS_TOKEN``) to ``/api/2.0/feature-store/online-stores``. These tests run that
real client, unchanged, against ``tests.databricks_workspace``. The client is built as it is outside a
Spark driver node (its own supported mode, in which it starts no Spark session): its Spark operations
are not what is tested here. What they cannot show is how long a real Lakebase instance takes to start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.databricks_workspace import RunningWorkspace, StandInWorkspace
from utils import features, lakebase, platform
from utils.config import Config, get_config

STORES = "/api/2.0/feature-store/online-stores"


def _store_of(schema: str) -> str:
    """The Lakebase store of another attendee's schema in the default catalog, e.g. ``<project>-online-<project>-grace``."""
    return Config(schema=schema).online_store_name


class _OffTheDriver:
    """``pyspark.TaskContext`` as a Spark executor sees it: the client then starts no Spark session."""

    @staticmethod
    def get() -> object:
        return object()


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInWorkspace]:
    """The Databricks branch of ``utils.platform``, its Feature Engineering client talking to a stand-in."""
    from databricks.ml_features._feature_serving_endpoint_client import (
        _feature_serving_endpoint_client,
    )
    from databricks.ml_features._spark_client import _spark_client

    for module in (_spark_client, _feature_serving_endpoint_client):  # the two places the client checks for a driver
        monkeypatch.setattr(module, "TaskContext", _OffTheDriver)
    with RunningWorkspace() as running:
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
        monkeypatch.setenv("DATABRICKS_HOST", running.host)
        monkeypatch.setenv("DATABRICKS_TOKEN", running.workspace.token)
        monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
        monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")  # no profile of the machine's
        monkeypatch.delenv("MLOPS_LAKEBASE_STORE", raising=False)
        yield running.workspace


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between polls of the Lakebase store (``utils.lakebase``), recorded instead of slept.

    Only that module's ``time`` is replaced: patching ``time.sleep`` itself would also record (and turn into
    busy loops) the sleeps of every other thread still running in the test process.
    """
    import time
    import types

    waited: list[float] = []
    monkeypatch.setattr(lakebase, "time", types.SimpleNamespace(sleep=waited.append, monotonic=time.monotonic))
    return waited


def test_the_feature_client_on_databricks_is_the_real_one(workspace: StandInWorkspace) -> None:
    from databricks.feature_engineering import FeatureEngineeringClient

    client = platform.feature_client()
    assert isinstance(client, FeatureEngineeringClient)
    assert client._workspace_client.config.host == workspace.host


def test_the_store_is_created_with_the_smallest_capacity_and_waited_for_until_available(
        workspace: StandInWorkspace, sleeps: list[float]) -> None:
    from databricks.ml_features.entities.online_store import DatabricksOnlineStore

    workspace.starting_polls = 2
    name = get_config().online_store_name
    store = features.lakebase_online_store()
    assert store.name == name and store.capacity == "CU_1"
    assert store.state == DatabricksOnlineStore.State.AVAILABLE
    assert workspace.writes() == [("POST", STORES, {"name": name, "capacity": "CU_1"})]
    after_create = workspace.calls[workspace.calls.index(("POST", STORES, {"name": name, "capacity": "CU_1"})) + 1:]
    assert after_create == [("GET", f"{STORES}/{name}", None)] * 3, "polled until AVAILABLE, then no more"
    assert len(sleeps) == 3, "the create and two GETs answer STARTING, each followed by a wait"
    assert workspace.online_stores[name]["creator"] == workspace.user_name


def test_an_existing_store_is_found_and_nothing_is_created(workspace: StandInWorkspace, sleeps: list[float]) -> None:
    first = features.lakebase_online_store()
    before, waited = list(workspace.writes()), len(sleeps)
    again = features.lakebase_online_store()
    assert again.name == first.name
    assert workspace.writes() == before, "a store that exists must not be created again"
    assert len(sleeps) == waited, "an available store needs no waiting"


def test_delete_removes_exactly_this_schemas_store_and_says_whether_there_was_one(
        workspace: StandInWorkspace, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    from databricks.feature_engineering import FeatureEngineeringClient

    monkeypatch.setenv("MLOPS_LAKEBASE", "true")  # publishing went to Lakebase (without it: tests/code/test_refused_previews.py)
    FeatureEngineeringClient().create_online_store(name=_store_of("grace"), capacity="CU_1")
    name = features.lakebase_online_store().name
    assert platform.delete_online_store() is True
    assert workspace.writes()[-1] == ("DELETE", f"{STORES}/{name}", None)
    assert sorted(workspace.online_stores) == [_store_of("grace")], "another attendee's store stays"
    deletes = [c for c in workspace.writes() if c[0] == "DELETE"]
    assert platform.delete_online_store() is False
    assert [c for c in workspace.writes() if c[0] == "DELETE"] == deletes, "nothing to delete: no DELETE sent"


def test_a_store_that_never_becomes_available_times_out_naming_it(
        workspace: StandInWorkspace, sleeps: list[float]) -> None:
    workspace.starting_polls = 10**9
    name = get_config().online_store_name
    with pytest.raises(TimeoutError, match=f"online store '{name}' is STARTING after 0 s: check it in Compute → Lakebase"):
        features.lakebase_online_store(timeout_s=0.05)
    assert sleeps, "it polled before giving up"


def test_a_refused_create_names_the_store_and_the_missing_permission(
        workspace: StandInWorkspace, sleeps: list[float]) -> None:
    workspace.refuse(r"/feature-store/online-stores$", 403, "PERMISSION_DENIED",
                     "User does not have permission to create database instances.")
    name = get_config().online_store_name
    with pytest.raises(PermissionError) as refused:
        features.lakebase_online_store()
    message = str(refused.value)
    assert "\n" not in message
    assert f"Lakebase online store {name!r}" in message and "permission to create Lakebase database instances" in message
    assert "MLOPS_LAKEBASE_STORE" in message and "(User does not have permission to create database instances)" in message
    assert "Config:" not in message and workspace.token not in message
    assert not workspace.online_stores


def test_listing_shows_every_store_and_pages_through_them(workspace: StandInWorkspace) -> None:
    from databricks.feature_engineering import FeatureEngineeringClient

    client = FeatureEngineeringClient()
    for schema in ("ada", "grace", "mary"):
        client.create_online_store(name=_store_of(schema), capacity="CU_1")
    assert sorted(s.name for s in client.list_online_stores()) == [
        _store_of("ada"), _store_of("grace"), _store_of("mary")]
    paged = list(client._workspace_client.feature_store.list_online_stores(page_size=2))
    assert len(paged) == 3 and sum(c[1] == STORES and c[0] == "GET" for c in workspace.calls) == 3


def test_unknown_stores_and_capacities_are_refused_as_the_api_does(workspace: StandInWorkspace) -> None:
    from databricks.feature_engineering import FeatureEngineeringClient
    from databricks.sdk.errors import InvalidParameterValue, NotFound

    client = FeatureEngineeringClient()
    assert client.get_online_store(name="nobody") is None
    with pytest.raises(NotFound, match="'nobody' not found"):
        client.delete_online_store(name="nobody")
    with pytest.raises(InvalidParameterValue, match="CU_3"):
        client.create_online_store(name=_store_of("x"), capacity="CU_3")


@pytest.mark.parametrize("state", ["STOPPED", "DELETING"])
def test_a_stopped_or_deleting_store_fails_at_once_instead_of_waiting(
        workspace: StandInWorkspace, sleeps: list[float], state: str) -> None:
    name = get_config().online_store_name
    workspace.online_stores[name] = {"name": name, "capacity": "CU_1", "creator": workspace.user_name,
                                     "creation_time": "2024-01-01T00:00:00Z", "read_replica_count": 0,
                                     "state": state, "_polls": 0}
    with pytest.raises(RuntimeError, match=f"online store '{name}' is {state}: start it in Compute → Lakebase"):
        features.lakebase_online_store()
    assert sleeps == [], "waiting would not make it available"
