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


def online_store_spec(name: str | None = None) -> Any:
    """The online store to publish to: a Databricks online store there, the SQLite file locally."""
    if not is_databricks():
        from utils.local.online_store import SqliteOnlineStore

        return SqliteOnlineStore()
    from utils.config import get_config

    client = feature_client()
    store_name = name or f"{get_config().project}-online"
    store = client.get_online_store(name=store_name)
    return store if store is not None else client.create_online_store(name=store_name, capacity="CU_1")


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
