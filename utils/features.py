"""Feature store: Databricks Feature Engineering on Databricks, its local twin elsewhere.

The notebooks call the real client's API on whatever :func:`feature_client` returns:
``databricks.feature_engineering.FeatureEngineeringClient`` inside a Databricks runtime,
``utils.local.feature_store.LocalFeatureEngineeringClient`` everywhere else (same methods, same
keyword arguments, the real package's ``FeatureLookup`` and ``FeatureTable`` classes).
The functions here are the few the two platforms answer differently; everything local-only lives in
``utils.local``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from utils.platform import is_databricks

if TYPE_CHECKING:
    import pandas as pd


def feature_client() -> Any:
    """The Feature Engineering client: the real one on Databricks, the local one elsewhere."""
    if is_databricks():
        from databricks.feature_engineering import FeatureEngineeringClient

        return FeatureEngineeringClient()
    from utils.local.feature_store import LocalFeatureEngineeringClient

    return LocalFeatureEngineeringClient()


LAKEBASE_READY_TIMEOUT_S = 900.0


def online_store_spec(name: str | None = None, timeout_s: float = LAKEBASE_READY_TIMEOUT_S) -> Any:
    """The online store ``publish_table`` writes to: the SQLite file locally, a Lakebase online store on Databricks.

    Databricks: gets the online store ``name`` (default ``<project>-online``) or creates it with the
    smallest capacity (``CU_1``), then waits until its state is ``AVAILABLE`` (creation returns while it
    is still ``STARTING``). A Lakebase store bills while it exists: delete it with
    :func:`delete_online_store` when done. Only called when ``MLOPS_LAKEBASE=true`` (see :func:`publish_online`).

    Raises:
        TimeoutError: the store is not available after ``timeout_s`` seconds.
    """
    if not is_databricks():
        from utils.local.online_store import SqliteOnlineStore

        return SqliteOnlineStore()
    import time

    from utils.config import get_config

    client = feature_client()
    store_name = name or f"{get_config().project}-online"
    store = client.get_online_store(name=store_name)
    if store is None:
        store = client.create_online_store(name=store_name, capacity="CU_1")
    deadline = time.monotonic() + timeout_s
    while "AVAILABLE" not in str(getattr(store, "state", "AVAILABLE")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"online store {store_name!r} is {store.state} after {timeout_s:.0f} s: "
                               "check it in Compute → Lakebase, then rerun")
        time.sleep(10)
        store = client.get_online_store(name=store_name)
    return store


def delete_online_store(name: str | None = None) -> bool:
    """Delete the Lakebase online store ``name`` (default ``<project>-online``) so it stops billing; False if none.

    Locally there is nothing to delete (the SQLite file is part of the state folder): returns False.
    """
    if not is_databricks():
        return False
    from utils.config import get_config

    client = feature_client()
    store_name = name or f"{get_config().project}-online"
    if client.get_online_store(name=store_name) is None:
        return False
    client.delete_online_store(name=store_name)
    return True


def online_table_name(table: str) -> str:
    """The name of ``table``'s online table: locally the same name; on Databricks ``<table>_online``.

    A Lakebase online table is a Unity Catalog table of its own (a synced table), so it cannot take
    the offline Delta table's name.
    """
    return f"{table}_online" if is_databricks() else table


def publish_online(table: str, fe: Any = None) -> int | None:
    """Publish feature table ``table`` to the online store the router and streaming scorer read; returns its Delta version.

    Locally: ``fe.publish_table`` (the local client) into the SQLite online store.
    Databricks: the router and the streaming scorer run on the driver and read a SQLite online store
    on its local disk, so that store is filled from ``fe.read_table`` (latest row per key); with
    ``MLOPS_LAKEBASE=true`` the table is also published for real, ``fe.publish_table`` to a Lakebase
    online store as ``<table>_online``, after enabling the change data feed its TRIGGERED mode
    needs. Lakebase is opt-in: it bills while it exists and Free Edition allows one Lakebase project.
    """
    import os

    from utils import lakehouse

    fe = fe or feature_client()
    if not is_databricks():
        fe.publish_table(source_table_name=table, online_table_name=table, online_store=online_store_spec())
        from utils.local import online_store

        return online_store.online_table_info(table).source_version
    from utils.local import online_store

    info = fe.get_table(name=table)
    timestamp_keys = list(info.timestamp_keys or [])
    keys = [k for k in info.primary_keys if k not in timestamp_keys]
    version = lakehouse.current_version(table)
    frame = fe.read_table(name=table).toPandas()
    online_store.publish(frame, table, keys, timestamp_keys[0] if timestamp_keys else None, source_version=version)
    if os.environ.get("MLOPS_LAKEBASE", "").strip().lower() in {"1", "true", "yes", "on"}:
        from utils.platform import get_spark

        get_spark().sql(f"ALTER TABLE {table} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
        fe.publish_table(source_table_name=table, online_table_name=online_table_name(table),
                         online_store=online_store_spec())
    return version


def record_lineage(name: str, sources: Mapping[str, int | None] | Sequence[str], version: int | None = None) -> None:
    """Record that feature table ``name`` (at ``version``, default its latest) was built from ``sources``.

    ``sources`` maps source table to the Delta version read (a list of names means their current
    versions). A no-op on Databricks, where Unity Catalog captures lineage itself; locally see
    ``utils.local.feature_store.record_lineage``.
    """
    if is_databricks():
        return
    from utils.local import feature_store

    feature_store.record_lineage(name, sources, version)


def feature_lineage(name: str) -> pd.DataFrame:
    """The sources of feature table ``name``: one row per source table (locally also per version written).

    Databricks: the table's ``table_data_sources`` as Unity Catalog records them (columns
    ``feature_table``, ``source_table``). Locally: ``feature_table``, ``feature_table_version``,
    ``mode``, ``source_table``, ``source_version``, ``written_at`` from the local registry.
    """
    if is_databricks():
        import pandas as pd

        table = feature_client().get_table(name=name)
        return pd.DataFrame({"feature_table": name, "source_table": list(table.table_data_sources)})
    from utils.local import feature_store

    return feature_store.feature_lineage(name)
