"""Feature store: Databricks Feature Engineering on Databricks, its local twin elsewhere.

The notebooks call the real client's API on whatever ``feature_client()`` returns:
``databricks.feature_engineering.FeatureEngineeringClient`` inside a Databricks runtime,
``utils.local.feature_store.LocalFeatureEngineeringClient`` everywhere else (same methods, same
keyword arguments, the real package's ``FeatureLookup`` and ``FeatureTable`` classes).
``utils.platform`` picks them (``feature_client``, ``online_store_spec``, ``record_lineage``,
``feature_lineage``, ``lineage_is_immediate``, ``delete_online_store``: import them from there); this module holds what is the same on
both platforms, publishing for the router, and the Lakebase store the platform asks for on Databricks.
"""

from __future__ import annotations

from typing import Any

from utils.lakebase import LAKEBASE_READY_TIMEOUT_S
from utils.platform import (
    feature_client,
    get_spark,
    lakebase_enabled,
    online_store_spec,
    online_table_name,
)


def lakebase_online_store(name: str | None = None, timeout_s: float = LAKEBASE_READY_TIMEOUT_S) -> Any:
    """The Databricks (Lakebase) online store ``name``, default ``get_config().online_store_name``, ready to publish to.

    Gets it, or creates it with the smallest capacity (``CU_1``), then waits until its state is
    ``AVAILABLE`` (creation returns while it is still ``STARTING``). A Lakebase store bills while it
    exists: ``delete_online_store()`` removes it. The default name is per catalog and schema, so the
    attendees of one workshop each get their own store. Called on Databricks by ``online_store_spec()``, and
    only when ``MLOPS_LAKEBASE=true`` (see :func:`publish_online`).

    Raises:
        PermissionError: the workspace refused to create the store (one line: the store and the permission).
        RuntimeError: the store is STOPPED or DELETING (waiting would not help), or vanished while starting.
        TimeoutError: the store is not available after ``timeout_s`` seconds.
    """
    from utils.lakebase import online_store

    return online_store(feature_client(), name, timeout_s)


def publish_online(table: str, fe: Any = None) -> int | None:
    """Publish feature table ``table`` to the online store the router reads; returns its Delta version.

    The router runs in this process (on Databricks, on the driver) and reads the
    SQLite online store (``utils.local.online_store``), so that store is filled from ``fe.read_table``,
    the latest row per key, on both platforms. With ``MLOPS_LAKEBASE=true`` on Databricks the table is
    also published for real, ``fe.publish_table`` to a Lakebase online store as ``<table>_online``,
    after enabling the change data feed its TRIGGERED mode needs. Lakebase is opt-in: it bills while it
    exists and Free Edition allows one Lakebase project.
    """
    from utils import lakehouse
    from utils.local import online_publish

    fe = fe or feature_client()
    info = fe.get_table(name=table)
    timestamp_keys = list(info.timestamp_keys or [])
    keys = [k for k in info.primary_keys if k not in timestamp_keys]
    version = lakehouse.current_version(table)
    frame = lakehouse.to_pandas(fe.read_table(name=table))
    online_publish.publish(frame, table, keys, timestamp_keys[0] if timestamp_keys else None, source_version=version)
    if lakebase_enabled():
        get_spark().sql(f"ALTER TABLE {table} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
        fe.publish_table(source_table_name=table, online_table_name=online_table_name(table),
                         online_store=online_store_spec())
    return version
