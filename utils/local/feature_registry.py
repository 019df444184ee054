"""The local feature store's registry: feature-table metadata and lineage, in SQLite.

Primary keys, timeseries column, description, tags, online stores and the lineage of every write
(which source tables at which Delta versions produced which feature-table version) live in
``state_dir()/feature_store/registry.db``. A database rather than a JSON file next to each table
because it is transactional (two writers cannot tear it), answers in one query, does not depend on
how the lakehouse lays out its folders, and survives ``VACUUM`` of the table folder. The tables
themselves are Delta tables (``utils.lakehouse``); their schema is read from the Delta log.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.platform.runtime import state_dir

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.types import StructType

LINEAGE_COLUMNS = ["feature_table", "feature_table_version", "mode", "source_table", "source_version", "written_at"]


class FeatureTableNotFoundError(ValueError):
    """The named feature table does not exist."""


def registry_path() -> Path:
    """The SQLite file holding local feature-table metadata and lineage."""
    return state_dir() / "feature_store" / "registry.db"


def _registry() -> sqlite3.Connection:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS feature_tables (
            name TEXT PRIMARY KEY, table_id TEXT NOT NULL, primary_keys TEXT NOT NULL,
            timeseries_column TEXT, partition_columns TEXT NOT NULL, description TEXT,
            tags TEXT NOT NULL, created_ms INTEGER NOT NULL,
            online_stores TEXT NOT NULL DEFAULT '[]');
        CREATE TABLE IF NOT EXISTS feature_table_writes (
            name TEXT NOT NULL, version INTEGER NOT NULL, mode TEXT NOT NULL, rows INTEGER,
            sources TEXT NOT NULL, written_at TEXT NOT NULL, PRIMARY KEY (name, version));
        """
    )
    return conn


def _execute(*statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run ``(sql, parameters)`` statements on the registry, in order (each commits on its own)."""
    conn = _registry()
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    finally:
        conn.close()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class TableMeta:
    """What the local client knows of one feature table: registry record, live schema and Delta version.

    Internal only: the public API returns :meth:`to_feature_table`, Databricks' own entity.
    ``primary_keys`` here exclude the timeseries column (``keys`` has both), ``features`` exclude
    every key, and ``schema`` maps column to Spark type, as the lookups need them.
    """

    name: str
    table_id: str
    description: str | None
    primary_keys: list[str]
    timestamp_keys: list[str]
    partition_columns: list[str]
    features: list[str]
    tags: dict[str, str]
    creation_timestamp: int
    schema: dict[str, str]
    version: int | None = None
    online_stores: list[dict[str, Any]] = field(default_factory=list)
    source_lineage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def timeseries_column(self) -> str | None:
        """The timeseries column, or None for a table without one."""
        return self.timestamp_keys[0] if self.timestamp_keys else None

    @property
    def keys(self) -> list[str]:
        """Every key column: the primary keys and the timeseries column."""
        return self.primary_keys + self.timestamp_keys

    @property
    def table_data_sources(self) -> list[str]:
        """Source tables any write of this feature table read from."""
        return sorted({t for entry in self.source_lineage for t in entry["sources"]})

    def to_feature_table(self) -> Any:
        """This table as ``databricks.ml_features.entities.feature_table.FeatureTable``, filled as the real client does.

        As Databricks' ``get_table`` returns a Unity Catalog table: ``primary_keys`` end with the
        timestamp key ("Make TK part of PK" in its compute client), ``features`` are all the
        table's columns, keys included, and a missing description is ``""``. ``table_data_sources``
        are the source tables recorded by the lineage; paths are never sources locally.
        """
        from databricks.ml_features.entities.feature_table import FeatureTable

        return FeatureTable(
            name=self.name,
            table_id=self.table_id,
            description=self.description if self.description is not None else "",
            primary_keys=self.primary_keys + [k for k in self.timestamp_keys if k not in self.primary_keys],
            partition_columns=list(self.partition_columns),
            features=list(self.schema),
            creation_timestamp=self.creation_timestamp,
            online_stores=[dict(s) for s in self.online_stores],
            table_data_sources=self.table_data_sources,
            path_data_sources=[],
            timestamp_keys=list(self.timestamp_keys),
            tags=dict(self.tags),
        )


def load_table_meta(name: str) -> TableMeta | None:
    """Registry metadata of ``name`` (schema and version left empty), or None if it is not registered."""
    conn = _registry()
    try:
        row = conn.execute(
            "SELECT table_id, primary_keys, timeseries_column, partition_columns, description, tags, "
            "created_ms, online_stores FROM feature_tables WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        writes = conn.execute(
            "SELECT version, mode, rows, sources, written_at FROM feature_table_writes WHERE name = ? ORDER BY version",
            (name,),
        ).fetchall()
    finally:
        conn.close()
    ts = row[2]
    return TableMeta(
        name=name,
        table_id=row[0],
        description=row[4],
        primary_keys=[k for k in json.loads(row[1]) if k != ts],
        timestamp_keys=[ts] if ts else [],
        partition_columns=json.loads(row[3]),
        features=[],
        tags=json.loads(row[5]),
        creation_timestamp=row[6],
        schema={},
        online_stores=json.loads(row[7]),
        source_lineage=[
            {"version": v, "mode": m, "rows": n, "sources": json.loads(s), "written_at": w} for v, m, n, s, w in writes
        ],
    )


def schema_items(schema: StructType) -> list[tuple[str, str]]:
    """``(column, Spark type)`` of every field of ``schema``, in order (types as ``simpleString()``)."""
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


def require_table(name: str, with_version: bool = True) -> TableMeta:
    """Full metadata of an existing feature table (live schema and version); raises naming the fix.

    The schema comes from the catalog (no Spark job); the Delta version needs one, so callers that
    do not use it (or must validate everything before any job runs) pass ``with_version=False``.

    Raises:
        FeatureTableNotFoundError: ``name`` is not registered, or its Delta table is gone.
    """
    from utils import lakehouse
    from utils.platform.runtime import get_spark

    meta = load_table_meta(name)
    if meta is None:
        hint = (
            "it is a Delta table but not a feature table: create a feature table from it under another name"
            if lakehouse.exists(name)
            else "create it with feature_client().create_table(name=..., primary_keys=..., df=...)"
        )
        raise FeatureTableNotFoundError(f"feature table {name!r} does not exist: {hint}")
    if not lakehouse.exists(name):
        raise FeatureTableNotFoundError(f"feature table {name!r} is registered but its Delta table is gone: "
                                        f"drop it with feature_client().drop_table(name={name!r}) and create it again")
    meta.version = lakehouse.current_version(name) if with_version else None
    meta.schema = dict(schema_items(get_spark().table(name).schema))
    meta.features = [c for c in meta.schema if c not in meta.keys]
    return meta


def check_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a three-part ``catalog.schema.table`` name."""
    if not isinstance(name, str) or len(name.split(".")) != 3 or not all(name.split(".")):
        raise ValueError(f"feature table name {name!r} must have three parts: 'catalog.schema.table'")


# ---------------------------------------------------------------- writes to the registry


def register_table(name: str, primary_keys: Sequence[str], timeseries_column: str | None,
                   partition_columns: Sequence[str], description: str | None, tags: Mapping[str, str] | None) -> None:
    """Record a new feature table (a fresh ``table_id``, created now, no online stores)."""
    _execute(
        (
            ("INSERT INTO feature_tables (name, table_id, primary_keys, timeseries_column, partition_columns, "
             "description, tags, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (name, str(uuid.uuid4()), json.dumps(list(primary_keys)), timeseries_column,
             json.dumps(list(partition_columns)), description, json.dumps(dict(tags or {})),
             int(dt.datetime.now(dt.UTC).timestamp() * 1000)),
        )
    )


def record_write(name: str, version: int, mode: str, rows: int | None) -> None:
    """Remember a write of ``name`` (its Delta ``version``, ``mode`` and row count), with no sources yet."""
    _execute(
        (
            ("INSERT OR REPLACE INTO feature_table_writes (name, version, mode, rows, sources, written_at) "
             "VALUES (?, ?, ?, ?, ?, ?)"),
            (name, int(version), mode, rows, json.dumps({}), _now()),
        )
    )


def set_tags(name: str, tags: Mapping[str, str]) -> None:
    """Replace the tags of feature table ``name``."""
    _execute(("UPDATE feature_tables SET tags = ? WHERE name = ?", (json.dumps(dict(tags)), name)))


def set_online_stores(name: str, stores: Sequence[Mapping[str, Any]]) -> None:
    """Replace the online-store records of feature table ``name``."""
    _execute(("UPDATE feature_tables SET online_stores = ? WHERE name = ?", (json.dumps(list(stores)), name)))


def forget(name: str) -> None:
    """Delete feature table ``name`` and its lineage from the registry (its Delta table is not touched)."""
    _execute(("DELETE FROM feature_tables WHERE name = ?", (name,)),
             ("DELETE FROM feature_table_writes WHERE name = ?", (name,)))


# ---------------------------------------------------------------- lineage


def record_lineage(name: str, sources: Mapping[str, int | None] | Sequence[str], version: int | None = None) -> None:
    """Record that feature table ``name`` (at ``version``, default its latest) was built from ``sources``.

    ``sources`` maps source table to the Delta version read (a list of names means their current
    versions); they are added to what the write already recorded.

    Raises:
        FeatureTableNotFoundError: ``name`` is not a feature table.
    """
    from utils import lakehouse

    meta = require_table(name)
    pinned = dict(sources) if isinstance(sources, Mapping) else {s: None for s in sources}
    resolved = {src: int(v) if v is not None else lakehouse.current_version(src) for src, v in pinned.items()}
    target = meta.version if version is None else int(version)
    conn = _registry()
    try:
        row = conn.execute(
            "SELECT sources FROM feature_table_writes WHERE name = ? AND version = ?", (name, target)
        ).fetchone()
        merged = {**(json.loads(row[0]) if row else {}), **resolved}
        if row is None:
            conn.execute(
                "INSERT INTO feature_table_writes (name, version, mode, rows, sources, written_at) "
                "VALUES (?, ?, 'external', NULL, ?, ?)",
                (name, target, json.dumps(merged), _now()),
            )
        else:
            conn.execute("UPDATE feature_table_writes SET sources = ? WHERE name = ? AND version = ?",
                         (json.dumps(merged), name, target))
    finally:
        conn.close()


def feature_lineage(name: str) -> pd.DataFrame:
    """One row per (feature-table version, source table, source version) that produced it.

    Columns :data:`LINEAGE_COLUMNS`; a version written without known sources has one row with null sources.

    Raises:
        FeatureTableNotFoundError: ``name`` is not a feature table.
    """
    import pandas as pd

    meta = require_table(name)
    rows = [
        {
            "feature_table": name,
            "feature_table_version": entry["version"],
            "mode": entry["mode"],
            "source_table": src,
            "source_version": ver,
            "written_at": entry["written_at"],
        }
        for entry in meta.source_lineage
        for src, ver in (entry["sources"].items() or [(None, None)])
    ]
    return pd.DataFrame(rows, columns=LINEAGE_COLUMNS)
