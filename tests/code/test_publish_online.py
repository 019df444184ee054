"""Publishing features online, both branches: locally through the client's publish_table, and the
Databricks branch (driver-side store filled from ``read_table``) run with the local client, which returns
the real package's ``FeatureTable`` entity (primary keys include the timestamp key, as on Unity Catalog)."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pytest

from tests.support import table
from utils import lakehouse
from utils.config import get_config
from utils.features import publish_online
from utils.local import online_store
from utils.local.feature_store import LocalFeatureEngineeringClient
from utils.platform import online_table_name


def _activity_table(spark) -> str:
    name = table("fs_test", f"activity_{uuid.uuid4().hex[:8]}")
    day = dt.datetime(2024, 1, 1)
    rows = [("C1", day, 1.0), ("C1", day + dt.timedelta(days=1), 2.0), ("C2", day, 5.0)]
    df = spark.createDataFrame(rows, "customer_id string, feature_ts timestamp, rate double")
    LocalFeatureEngineeringClient().create_table(name=name, primary_keys=["customer_id", "feature_ts"],
                                                 timeseries_column="feature_ts", df=df)
    return name


@pytest.mark.parametrize("platform", ["local", "databricks"])
def test_publish_online_serves_the_latest_row_per_key_and_records_the_version(
        spark, monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    table = _activity_table(spark)
    if platform == "databricks":
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
        monkeypatch.delenv("MLOPS_LAKEBASE", raising=False)
    version = publish_online(table, LocalFeatureEngineeringClient())
    assert version == lakehouse.current_version(table)
    rows = online_store.lookup(table, [{"customer_id": "C1"}, {"customer_id": "C2"}, {"customer_id": "C9"}],
                               ["rate"], default={"rate": 0.0})
    assert [r["rate"] for r in rows] == [2.0, 5.0, 0.0]
    info = online_store.online_table_info(table)
    assert info.source_version == version and info.timeseries_column == "feature_ts"
    assert online_table_name(table) == (f"{table}_online" if platform == "databricks" else table)


def test_publish_online_is_idempotent(spark) -> None:
    table = _activity_table(spark)
    fe = LocalFeatureEngineeringClient()
    publish_online(table, fe)
    keys = [{"customer_id": "C1"}, {"customer_id": "C2"}]
    before = online_store.lookup(table, keys)
    publish_online(table, fe)
    assert online_store.lookup(table, keys) == before


class _RecordingStoreClient:
    """The Feature Engineering client's online-store calls, recorded; every store is AVAILABLE at once."""

    def __init__(self) -> None:
        self.stores: dict[str, SimpleNamespace] = {}
        self.calls: list[tuple[str, str]] = []

    def get_online_store(self, *, name: str):
        self.calls.append(("get", name))
        return self.stores.get(name)

    def create_online_store(self, *, name: str, capacity: str):
        self.calls.append(("create", name))
        self.stores[name] = SimpleNamespace(name=name, capacity=capacity, state="AVAILABLE")
        return self.stores[name]

    def delete_online_store(self, *, name: str) -> None:
        self.calls.append(("delete", name))
        del self.stores[name]


def test_each_attendee_creates_and_deletes_only_their_own_lakebase_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from utils import features, platform

    client = _RecordingStoreClient()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("MLOPS_LAKEBASE", "true")  # stores are published (and so deleted) only where opted in
    monkeypatch.setattr(platform, "feature_client", lambda: client)
    monkeypatch.setattr(features, "feature_client", lambda: client)
    monkeypatch.setenv("MLOPS_CATALOG", "workshop")
    store = f"{get_config().project.replace('_', '-')}-online-workshop"  # <project>-online-<catalog>-<schema>
    for schema in ("ada", "grace"):
        monkeypatch.setenv("MLOPS_SCHEMA", schema)
        assert features.lakebase_online_store().name == f"{store}-{schema}"
    assert sorted(client.stores) == [f"{store}-ada", f"{store}-grace"]
    assert platform.delete_online_store() is True  # grace's, the schema in use
    assert sorted(client.stores) == [f"{store}-ada"]
    assert platform.delete_online_store() is False
    assert ("delete", f"{store}-ada") not in client.calls


def test_there_is_no_online_store_to_delete_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from utils import platform

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert platform.delete_online_store() is False
