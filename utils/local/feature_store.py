"""The local twin of Databricks Feature Engineering in Unity Catalog (``FeatureEngineeringClient``).

``utils.features.feature_client()`` returns :class:`LocalFeatureEngineeringClient` outside Databricks.
It has the real client's method names and keyword arguments and accepts the package's real
``FeatureLookup`` objects, so notebook code is the same in both places.

Design:

- Feature tables are Delta tables written through Spark and Delta Lake (``utils.lakehouse``), so they
  have history and time travel as on Unity Catalog. Their schema is read from the Delta log.
- Feature-table metadata (primary keys, timeseries column, description, tags, online stores and
  the lineage of every write: which source tables at which Delta versions produced which
  feature-table version) lives in a SQLite registry, ``state_dir()/feature_store/registry.db``.
  A database rather than a JSON file next to each table because it is transactional (two writers
  cannot tear it), answers in one query, does not depend on how the lakehouse lays out its
  folders, and survives ``VACUUM`` of the table folder. Writes record the sources
  ``utils.lakehouse.sources_of(df)`` can trace when the lakehouse offers it; :func:`record_lineage`
  records them explicitly.
- Point-in-time lookups run in Spark as a union + running window, one pass for all the lookups that
  share a lookup key and timestamp (see :func:`point_in_time_join_tables`).
- ``log_model`` stores ``feature_spec.yaml`` (``utils.local.feature_spec``: tables, Delta versions,
  keys, features, renames, defaults, timestamp keys) inside the MLflow model, which is a pyfunc that
  looks its features up in the online store (``utils.local.online_store``) when served, as a
  Databricks feature-store model does in Model Serving.

Every public method the real client also has takes exactly the real client's parameters (names,
kinds, order, defaults; ``tests/code/test_feature_client_conformance.py`` checks it), and
``get_table``/``create_table`` return the real package's ``FeatureTable`` entity, filled as the real
client fills it for a Unity Catalog table (``primary_keys`` include the timestamp key, ``features``
are all the table's columns). A parameter the local client cannot honour (streaming, Photon joins,
Databricks online stores) raises naming it when given a non-default value; none is ignored.

Where the local client goes beyond (or differs from) Databricks, it says so: ``write_table`` also
takes ``mode="overwrite"`` and ``read_table`` also ``version=``; a lookup on a time series table
without ``timestamp_lookup_key`` gets the latest value per key (what the online store serves);
``default_values`` also replace nulls stored in the table (as Databricks' ``fillna`` does).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sqlite3
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from utils.local import online_publish
from utils.local import online_store as online
from utils.local.feature_spec import (
    MODEL_DATA_DIR,
    SPEC_FILE,
    FeatureSpec,
    LookupSpec,
    yaml_safe,
)
from utils.runtime import REPO_ROOT, state_dir

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

_log = logging.getLogger(__name__)

MERGE = "merge"
OVERWRITE = "overwrite"
_INTEGRAL = {"tinyint", "smallint", "int", "bigint"}
_TIME = {"timestamp", "timestamp_ntz", "date"}
_TS = "__fs_ts"
_SRC = "__fs_src"
_ROW = "__fs_row"
_FTS = "__fs_feature_ts"
_LO = "__fs_spine_lo"
_HI = "__fs_spine_hi"
# Defaults of the real client's parameters, copied rather than imported: this module ships inside
# logged models (see _BUNDLED_MODULES), whose servers do not install the Databricks packages.
PUBLISH_MODE_TRIGGERED = "TRIGGERED"
DEFAULT_WRITE_TRIGGER: dict[str, Any] = {"processingTime": "5 seconds"}  # never mutated
DEFAULT_PUBLISH_TRIGGER: dict[str, Any] = {"processingTime": "5 minutes"}  # never mutated


class _Unset:
    """Type of :data:`AWAIT_REGISTRATION_FOR_UNSET` (the real client's sentinel of the same name)."""

    def __repr__(self) -> str:
        return "AWAIT_REGISTRATION_FOR_UNSET"


AWAIT_REGISTRATION_FOR_UNSET: Any = _Unset()
"""``log_model``'s default ``await_registration_for``: not given, so MLflow's own default applies."""


class FeatureTableNotFoundError(ValueError):
    """The named feature table does not exist."""


class FeatureLookupError(ValueError):
    """A FeatureLookup (or the training DataFrame it is applied to) is invalid."""


class FeatureTableWriteError(ValueError):
    """Data cannot be written to a feature table as given; the table was left unchanged."""



# ---------------------------------------------------------------- metadata registry


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


@dataclass
class _TableMeta:
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


def _load_table_meta(name: str) -> _TableMeta | None:
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
    pks = json.loads(row[1])
    ts = row[2]
    return _TableMeta(
        name=name,
        table_id=row[0],
        description=row[4],
        primary_keys=[k for k in pks if k != ts],
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


def table_schema(name: str) -> StructType:
    """The Spark schema of the Delta table ``name`` (from the catalog; no Spark job)."""
    from utils.runtime import get_spark

    return get_spark().table(name).schema


def _schema_items(schema: StructType) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


# ---------------------------------------------------------------- lineage


def _source_versions(df: Any) -> dict[str, int]:
    """Lakehouse tables (and Delta versions) ``df`` was read from, as far as the lakehouse can tell."""
    from utils import lakehouse

    finder = getattr(lakehouse, "sources_of", None)
    if finder is None:
        return {}
    try:
        found = finder(df)
    except Exception as exc:  # noqa: BLE001 - lineage is best effort, never a reason to fail a write
        _log.debug("could not trace the sources of a DataFrame: %s", exc)
        return {}
    return {str(k): int(v) for k, v in dict(found or {}).items()}


def record_lineage(name: str, sources: Mapping[str, int | None] | Sequence[str], version: int | None = None) -> None:
    """Record that feature table ``name`` (at ``version``, default its latest) was built from ``sources``.

    ``sources`` maps source table to the Delta version read (a list of names means their current
    versions). Writes through the local client record what ``utils.lakehouse`` can trace by
    themselves; call this for sources it cannot.

    Raises:
        FeatureTableNotFoundError: ``name`` is not a feature table.
    """
    from utils import lakehouse

    meta = _require_table(name)
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
                (name, target, json.dumps(merged), dt.datetime.now(dt.UTC).isoformat()),
            )
        else:
            conn.execute(
                "UPDATE feature_table_writes SET sources = ? WHERE name = ? AND version = ?",
                (json.dumps(merged), name, target),
            )
    finally:
        conn.close()


def feature_lineage(name: str) -> pd.DataFrame:
    """One row per (feature-table version, source table, source version) that produced it."""
    import pandas as pd

    meta = _require_table(name)
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
    return pd.DataFrame(
        rows,
        columns=["feature_table", "feature_table_version", "mode", "source_table", "source_version", "written_at"],
    )


def _require_table(name: str, with_version: bool = True) -> _TableMeta:
    """Full metadata of an existing feature table (live schema and version); raises naming the fix.

    The schema comes from the catalog (no Spark job); the Delta version needs one, so callers that
    do not use it (or must validate everything before any job runs) pass ``with_version=False``.
    """
    from utils import lakehouse

    meta = _load_table_meta(name)
    if meta is None:
        hint = (
            "it is a Delta table but not a feature table: create a feature table from it under another name"
            if lakehouse.exists(name)
            else "create it with feature_client().create_table(name=..., primary_keys=..., df=...)"
        )
        raise FeatureTableNotFoundError(f"feature table {name!r} does not exist: {hint}")
    if not lakehouse.exists(name):
        raise FeatureTableNotFoundError(
            f"feature table {name!r} is registered but its Delta table is gone: "
            f"drop it with feature_client().drop_table(name={name!r}) and create it again"
        )
    meta.version = lakehouse.current_version(name) if with_version else None
    meta.schema = dict(_schema_items(table_schema(name)))
    meta.features = [c for c in meta.schema if c not in meta.keys]
    return meta


def _check_name(name: str) -> None:
    if not isinstance(name, str) or len(name.split(".")) != 3 or not all(name.split(".")):
        raise ValueError(f"feature table name {name!r} must have three parts: 'catalog.schema.table'")


# ---------------------------------------------------------------- point-in-time joins (Spark)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class AsOfFeatures:
    """One feature table's part of a point-in-time join (see :func:`point_in_time_join_tables`).

    ``features`` holds keys ``feature_keys`` (in the order of the join's lookup keys) and the time
    ``timeseries_column``; ``outputs`` maps feature column to output column name;
    ``lookback_window`` (a ``timedelta`` or seconds) bounds how old a matched row may be.
    """

    features: DataFrame
    feature_keys: Sequence[str]
    timeseries_column: str
    outputs: Mapping[str, str]
    lookback_window: dt.timedelta | float | None = None


def point_in_time_join(
    df: DataFrame,
    features: DataFrame,
    lookup_key: Sequence[str],
    feature_keys: Sequence[str],
    timestamp_lookup_key: str,
    timeseries_column: str,
    outputs: Mapping[str, str],
    lookback_window: dt.timedelta | float | None = None,
) -> DataFrame:
    """``df`` plus, per row, the features of the latest ``features`` row for its key at or before its time.

    A feature row matches when its keys equal the row's ``lookup_key`` values and its
    ``timeseries_column`` is <= the row's ``timestamp_lookup_key`` (and >= that time minus
    ``lookback_window`` when given); no match gives nulls. ``outputs`` maps feature column to
    output column name. One table's case of :func:`point_in_time_join_tables`.
    """
    part = AsOfFeatures(features, feature_keys, timeseries_column, outputs, lookback_window)
    return point_in_time_join_tables(df, lookup_key, timestamp_lookup_key, [part])


def point_in_time_join_tables(
    df: DataFrame,
    lookup_key: Sequence[str],
    timestamp_lookup_key: str,
    tables: Sequence[AsOfFeatures],
) -> DataFrame:
    """``df`` plus, per row and per table of ``tables``, the features of that table's latest row at or before its time.

    Every table is looked up with the same ``lookup_key`` columns of ``df`` and at the same
    ``timestamp_lookup_key``; each table matches as in :func:`point_in_time_join` (its own lookback
    window; no match gives nulls). Returns ``df``'s columns, then each table's outputs in order.

    How: the spine rows and every table's feature rows are stacked into one frame, partitioned by
    key and ordered by time (feature rows before spine rows at equal times), and each spine row
    takes, per table, the last non-null feature struct seen so far: ``last(..., ignorenulls)`` over
    a running window. That is one shuffle and one sort for all the tables, linear in the rows of
    every side, whatever the number of feature rows per key, with no row ids and no join back
    (duplicate spine rows stay).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = [f"{_ROW}{i}" for i in range(len(tables))]
    parts = [
        t.features.select(
            *[F.col(fk).cast(df.schema[lk].dataType).alias(lk) for fk, lk in zip(t.feature_keys, lookup_key)],
            F.col(t.timeseries_column).cast("timestamp").alias(_TS),
            F.lit(0).alias(_SRC),
            F.struct(
                F.col(t.timeseries_column).cast("timestamp").alias(_FTS),
                *[F.col(f).alias(o) for f, o in t.outputs.items()],
            ).alias(row),
        )
        for t, row in zip(tables, rows)
    ]
    stacked = df.select(
        "*",
        F.col(timestamp_lookup_key).cast("timestamp").alias(_TS),
        F.lit(1).alias(_SRC),
        *[F.lit(None).cast(part.schema[row].dataType).alias(row) for part, row in zip(parts, rows)],
    )
    for part in parts:
        stacked = stacked.unionByName(part, allowMissingColumns=True)
    window = (
        Window.partitionBy(*lookup_key)
        .orderBy(F.col(_TS).asc_nulls_first(), F.col(_SRC))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    matched = stacked.withColumns({row: F.last(row, ignorenulls=True).over(window) for row in rows})
    matched = matched.where(F.col(_SRC) == 1)
    for t, row in zip(tables, rows):
        if t.lookback_window is not None:
            lookback = t.lookback_window
            seconds = lookback.total_seconds() if isinstance(lookback, dt.timedelta) else lookback
            age = F.col(_TS).cast("double") - F.col(f"{row}.{_FTS}").cast("double")
            matched = matched.withColumn(row, F.when(age <= F.lit(float(seconds)), F.col(row)))
    return matched.select(
        *[F.col(f"`{c}`") for c in df.columns],
        *[F.col(row)[o].alias(o) for t, row in zip(tables, rows) for o in t.outputs.values()],
    )


def exact_join(
    df: DataFrame,
    features: DataFrame,
    lookup_key: Sequence[str],
    feature_keys: Sequence[str],
    outputs: Mapping[str, str],
) -> DataFrame:
    """``df`` left-joined to the ``features`` row whose keys equal its ``lookup_key`` values."""
    from pyspark.sql import functions as F

    right = features.select(
        *[F.col(fk).cast(df.schema[lk].dataType).alias(lk) for fk, lk in zip(feature_keys, lookup_key)],
        *[F.col(f).alias(o) for f, o in outputs.items()],
    )
    joined = df.join(right, on=list(lookup_key), how="left")
    return joined.select(*[F.col(f"`{c}`") for c in df.columns], *[F.col(f"`{o}`") for o in outputs.values()])


def within_spine_time_range(
    features: DataFrame,
    spine: DataFrame,
    timeseries_column: str,
    timestamp_lookup_key: str,
    lookback_window: dt.timedelta | float | None = None,
) -> DataFrame:
    """The ``features`` rows a point-in-time lookup from ``spine`` can match (``use_timeseries_filtering``).

    Rows stamped after the spine's latest ``timestamp_lookup_key`` can never match; with a
    ``lookback_window`` neither can rows older than the spine's earliest time minus the window.
    The bounds are one aggregate of the spine, broadcast to the feature rows: nothing runs
    before the result is computed, and the join's result is the same as without the filter.
    """
    from pyspark.sql import functions as F

    spine_time = F.col(timestamp_lookup_key).cast("timestamp").cast("double")
    bounds = spine.agg(F.min(spine_time).alias(_LO), F.max(spine_time).alias(_HI))
    feature_time = F.col(timeseries_column).cast("timestamp").cast("double")
    keep = feature_time <= F.col(_HI)
    if lookback_window is not None:
        seconds = lookback_window.total_seconds() if isinstance(lookback_window, dt.timedelta) else lookback_window
        keep = keep & (feature_time >= F.col(_LO) - F.lit(float(seconds)))
    return features.crossJoin(F.broadcast(bounds)).where(keep).drop(_LO, _HI)


def latest_rows(features: DataFrame, keys: Sequence[str], timeseries_column: str) -> DataFrame:
    """The row with the latest ``timeseries_column`` for each key."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy(*keys).orderBy(F.col(timeseries_column).desc())
    return features.withColumn("__fs_rank", F.row_number().over(window)).where("__fs_rank = 1").drop("__fs_rank")


# ---------------------------------------------------------------- resolving lookups (all checks before any join)


def _spark_df(df: Any) -> DataFrame:
    from pyspark.sql import DataFrame

    if isinstance(df, DataFrame):
        return df
    try:
        import pandas as pd
        import pyarrow as pa
    except ImportError:  # pragma: no cover
        pd = pa = None
    if pd is not None and isinstance(df, (pd.DataFrame, pa.Table)):
        from utils.runtime import get_spark

        if len(df) == 0:  # Spark Connect infers no schema from no rows: take Arrow's
            from pyspark.sql.pandas.types import from_arrow_schema

            table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
            return get_spark().createDataFrame(table, schema=from_arrow_schema(table.schema))
        return get_spark().createDataFrame(df)
    raise TypeError(f"expected a Spark DataFrame, got {type(df).__name__}")


def _compatible(left: str, right: str) -> bool:
    return left == right or (left in _INTEGRAL and right in _INTEGRAL)


def resolve_lookups(
    df_schema: StructType, feature_lookups: Sequence[Any], pin_versions: bool = True
) -> tuple[list[LookupSpec], dict[str, str]]:
    """Validate ``feature_lookups`` against the feature tables and ``df``; raise naming the first problem.

    Checks, before any data is read: every table exists, every feature is a column of its table,
    every lookup key (and timestamp lookup key) is a column of ``df`` (or an output of an earlier
    lookup) of a type matching the table's key, output names are unique and do not shadow ``df``.
    No Spark job runs until all of that passed; then, with ``pin_versions``, each table's current
    Delta version is pinned. Returns the resolved lookups and the Spark type of every column they produce.
    """
    if not isinstance(feature_lookups, (list, tuple)):
        raise TypeError("feature_lookups must be a list of FeatureLookup objects")
    available = {f.name: f.dataType.simpleString() for f in df_schema.fields}
    source_cols = set(available)
    specs: list[LookupSpec] = []
    seen_outputs: dict[str, str] = {}
    for i, fl in enumerate(feature_lookups):
        if not hasattr(fl, "table_name") or not hasattr(fl, "lookup_key"):
            raise TypeError(f"feature_lookups[{i}] is a {type(fl).__name__}, not a FeatureLookup")
        where = f"FeatureLookup(table_name={fl.table_name!r})"
        meta = _require_table(fl.table_name, with_version=False)  # versions once all lookups are valid
        lookup_key = _as_list(fl.lookup_key)
        if len(lookup_key) != len(meta.primary_keys):
            raise FeatureLookupError(
                f"{where}: lookup_key {lookup_key} has {len(lookup_key)} column(s) but the table's primary keys "
                f"are {meta.primary_keys}: give one spine column per primary key, in that order"
            )
        for lk, pk in zip(lookup_key, meta.primary_keys):
            if lk not in available:
                raise FeatureLookupError(
                    f"{where}: lookup key {lk!r} is not a column of the training DataFrame "
                    f"(columns: {sorted(source_cols)}): add it to df or fix lookup_key"
                )
            if not _compatible(available[lk], meta.schema[pk]):
                raise FeatureLookupError(
                    f"{where}: lookup key {lk!r} is {available[lk]} in the DataFrame but primary key {pk!r} is "
                    f"{meta.schema[pk]} in the table: cast it, e.g. df.withColumn({lk!r}, F.col({lk!r}).cast("
                    f"{meta.schema[pk]!r}))"
                )
        ts_key = fl.timestamp_lookup_key
        if ts_key is not None:
            if meta.timeseries_column is None:
                raise FeatureLookupError(
                    f"{where}: timestamp_lookup_key={ts_key!r} given but the table has no timeseries column: "
                    "drop timestamp_lookup_key for an exact key lookup"
                )
            if ts_key not in available:
                raise FeatureLookupError(
                    f"{where}: timestamp lookup key {ts_key!r} is not a column of the training DataFrame "
                    f"(columns: {sorted(source_cols)})"
                )
            if available[ts_key] not in _TIME:
                raise FeatureLookupError(
                    f"{where}: timestamp lookup key {ts_key!r} is {available[ts_key]}, expected a timestamp or "
                    f"date: convert it with F.to_timestamp({ts_key!r})"
                )
        names = list(fl.feature_names) if fl.feature_names else list(meta.features)
        for name in names:
            if name in meta.keys:
                raise FeatureLookupError(f"{where}: {name!r} is a key of the table, not a feature")
            if name not in meta.schema:
                raise FeatureLookupError(
                    f"{where}: feature {name!r} is not in the table (features: {meta.features}): fix feature_names"
                )
        rename = dict(getattr(fl, "_rename_outputs", None) or {})
        unknown_renames = [f for f in rename if f not in names]
        if unknown_renames:
            raise FeatureLookupError(f"{where}: rename_outputs names {unknown_renames}, which are not looked up")
        outputs = {n: rename.get(n, n) for n in names}
        for out in outputs.values():
            if out in source_cols:
                raise FeatureLookupError(
                    f"{where}: output column {out!r} is already a column of the training DataFrame: "
                    "drop it from df or rename the feature with rename_outputs"
                )
            if out in seen_outputs:
                raise FeatureLookupError(
                    f"{where}: output column {out!r} is also produced by {seen_outputs[out]}: use rename_outputs"
                )
            seen_outputs[out] = where
        defaults = dict(fl.default_values or {})
        stray = [d for d in defaults if d not in outputs.values()]
        if stray:
            raise FeatureLookupError(
                f"{where}: default_values for {stray}, which are not output columns of this lookup "
                f"({list(outputs.values())})"
            )
        window = fl.lookback_window
        specs.append(
            LookupSpec(
                table_name=fl.table_name,
                lookup_key=lookup_key,
                feature_names=names,
                rename_outputs={f: o for f, o in outputs.items() if f != o},
                timestamp_lookup_key=ts_key,
                lookback_window_seconds=window.total_seconds() if window is not None else None,
                default_values={k: yaml_safe(v) for k, v in defaults.items()},
                table_version=None,  # pinned below, once every lookup is valid
                table_id=meta.table_id,
                primary_keys=list(meta.primary_keys),
                timeseries_column=meta.timeseries_column,
            )
        )
        for f, out in outputs.items():
            available[out] = meta.schema[f]
    if pin_versions:  # reading a Delta version runs a Spark job: only now that the input is known good
        from utils import lakehouse

        versions = {t: lakehouse.current_version(t) for t in dict.fromkeys(lk.table_name for lk in specs)}
        for lk in specs:
            lk.table_version = versions[lk.table_name]
    return specs, {c: t for c, t in available.items() if c not in source_cols}


def apply_lookups(
    df: DataFrame,
    lookups: Sequence[LookupSpec],
    use_pinned_versions: bool = True,
    use_timeseries_filtering: bool = False,
) -> DataFrame:
    """``df`` with every lookup's features joined in (columns already in ``df`` are kept, not looked up).

    ``use_timeseries_filtering`` first narrows each point-in-time lookup's table to the time range
    of ``df`` (see :func:`within_spine_time_range`); the result is the same.
    """
    from pyspark.sql import functions as F

    from utils import lakehouse

    groups: list[tuple[LookupSpec, dict[str, str], dict[str, Any]]] = []
    index: dict[tuple[Any, ...], int] = {}
    for lk in lookups:
        outputs = {f: o for f, o in lk.outputs.items() if o not in df.columns}
        if not outputs:
            continue
        version = lk.table_version if use_pinned_versions else None
        group_key = (lk.table_name, version, tuple(lk.lookup_key), lk.timestamp_lookup_key, lk.lookback_window_seconds)
        keys_from_source = all(k in df.columns for k in lk.lookup_key)
        if keys_from_source and group_key in index:
            _, outs, defaults = groups[index[group_key]]
            outs.update(outputs)
            defaults.update(lk.default_values)
            continue
        if keys_from_source:
            index[group_key] = len(groups)
        groups.append((lk, dict(outputs), dict(lk.default_values)))

    # point-in-time lookups whose keys and timestamp are columns of df share one pass per (keys, timestamp)
    passes: list[list[int]] = []
    by_key: dict[tuple[Any, ...], int] = {}
    for i, (lk, _, _) in enumerate(groups):
        as_of = bool(lk.timeseries_column and lk.timestamp_lookup_key)
        from_source = as_of and all(k in df.columns for k in [*lk.lookup_key, lk.timestamp_lookup_key])
        pass_key = (tuple(lk.lookup_key), lk.timestamp_lookup_key)
        if from_source and pass_key in by_key:
            passes[by_key[pass_key]].append(i)
            continue
        if from_source:
            by_key[pass_key] = len(passes)
        passes.append([i])

    result = df
    tables: dict[tuple[str, int | None], DataFrame] = {}

    def read(lk: LookupSpec) -> DataFrame:
        version = lk.table_version if use_pinned_versions else None
        if (lk.table_name, version) not in tables:  # each table version is read once per training set
            tables[(lk.table_name, version)] = lakehouse.read(lk.table_name, version=version)
        return tables[(lk.table_name, version)]

    for members in passes:
        first = groups[members[0]][0]
        if first.timeseries_column and first.timestamp_lookup_key:
            parts = []
            for i in members:
                lk, outputs, _ = groups[i]
                table = read(lk)
                if use_timeseries_filtering:
                    spine = df if lk.timestamp_lookup_key in df.columns else result  # bounds from the cheaper plan
                    table = within_spine_time_range(
                        table, spine, lk.timeseries_column, lk.timestamp_lookup_key, lk.lookback_window_seconds
                    )
                parts.append(
                    AsOfFeatures(table, lk.primary_keys, lk.timeseries_column, outputs, lk.lookback_window_seconds)
                )
            result = point_in_time_join_tables(result, first.lookup_key, first.timestamp_lookup_key, parts)
        else:
            lk, outputs, _ = groups[members[0]]
            table = read(lk)
            if lk.timeseries_column:  # no timestamp to look up at: the latest value, as served online
                table = latest_rows(table, lk.primary_keys, lk.timeseries_column)
            result = exact_join(result, table, lk.lookup_key, lk.primary_keys, outputs)
        for i in members:
            _, outputs, defaults = groups[i]
            for out in outputs.values():
                if out in defaults and defaults[out] is not None:
                    dtype = result.schema[out].dataType
                    result = result.withColumn(out, F.coalesce(F.col(f"`{out}`"), F.lit(defaults[out]).cast(dtype)))
    order = [*df.columns, *[out for _, outputs, _ in groups for out in outputs.values()]]
    return result.select(*[F.col(f"`{c}`") for c in order])


# ---------------------------------------------------------------- training set


class LocalTrainingSet:
    """A training set: the spine, the resolved lookups, and ``load_df()`` to build it."""

    def __init__(self, df: DataFrame, feature_spec: FeatureSpec, use_timeseries_filtering: bool = False):
        self._df = df
        self._spec = feature_spec
        self._use_timeseries_filtering = use_timeseries_filtering

    @property
    def feature_spec(self) -> FeatureSpec:
        """Tables, Delta versions, keys and features this training set uses (its lineage)."""
        return self._spec

    @property
    def labels(self) -> list[str]:
        """Label column names."""
        return list(self._spec.labels)

    def load_df(self) -> DataFrame:
        """The training DataFrame: spine columns, looked-up features and labels, minus excluded columns."""
        from pyspark.sql import functions as F

        joined = apply_lookups(
            self._df,
            self._spec.lookups,
            use_pinned_versions=True,
            use_timeseries_filtering=self._use_timeseries_filtering,
        )
        return joined.select(*[F.col(f"`{c}`") for c in self._spec.output_columns])


# ---------------------------------------------------------------- model packaging


# What the served model imports (the pyfunc loader, the spec and their imports), relative to ``utils``.
_BUNDLED_MODULES = ("__init__.py", "environment.py", "parameters.py", "config.py", "local/__init__.py",
                    "local/feature_spec.py", "local/online_store.py", "local/online_values.py")


def _bundle_code(target: Path) -> Path:
    """A copy of the few ``utils`` modules the served model needs, to ship inside the model."""
    pkg = target / "utils"
    pkg.mkdir(parents=True)
    for module in _BUNDLED_MODULES:
        (pkg / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / "utils" / module, pkg / module)
    return pkg


def _requirements(raw_model_path: Path, extra: Sequence[str] | None) -> list[str]:
    req_file = raw_model_path / "requirements.txt"
    reqs = [
        line.strip()
        for line in (req_file.read_text().splitlines() if req_file.exists() else [])
        if line.strip() and not line.startswith("#")
    ]
    for pkg in ["pandas", "pyyaml", *(extra or [])]:
        if not any(r.split("=")[0].split(">")[0].split("<")[0].strip().lower() == pkg.lower() for r in reqs):
            reqs.append(pkg)
    return reqs


def _download_model(model_uri: str) -> Path:
    import mlflow

    local = Path(tempfile.mkdtemp(prefix="fs-model-", dir=_scratch_dir()))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(local)))


def _scratch_dir() -> str:
    from utils.runtime import tmp_dir

    path = tmp_dir()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def load_feature_spec(model_uri: str) -> FeatureSpec:
    """The feature spec stored with a model logged by ``log_model`` (which tables, versions, features)."""
    root = _download_model(model_uri)
    try:
        path = root / "data" / MODEL_DATA_DIR / SPEC_FILE
        if not path.exists():
            raise ValueError(
                f"model {model_uri!r} has no {SPEC_FILE}: it was not logged with feature_client().log_model"
            )
        return FeatureSpec.load(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- the local client


class LocalFeatureEngineeringClient:
    """The local twin of ``databricks.feature_engineering.FeatureEngineeringClient``.

    Its public methods are the real client's, with the same signatures; tables come back as the
    real ``FeatureTable`` entity (see :meth:`_TableMeta.to_feature_table`).
    """

    # -------------------------------------------------------- tables

    def create_table(
        self,
        *,
        name: str,
        primary_keys: str | list[str],
        df: DataFrame | None = None,
        timeseries_column: str | None = None,
        partition_columns: str | list[str] | None = None,
        schema: StructType | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Create a feature table (and write ``df`` to it); returns it as Databricks' ``FeatureTable``.

        As on Databricks, if the feature table already exists it is returned unchanged (``df`` is
        not written: use ``write_table`` for that, a warning says so). ``timestamp_keys=`` and
        ``timeseries_columns=`` are accepted for ``timeseries_column``, as by the real client.
        """
        from utils import lakehouse

        _check_name(name)
        timeseries_column = timeseries_column or kwargs.pop("timestamp_keys", None) or kwargs.pop(
            "timeseries_columns", None
        )
        if isinstance(timeseries_column, list):
            if len(timeseries_column) > 1:
                raise ValueError("Setting multiple timeseries keys is not supported.")
            timeseries_column = timeseries_column[0] if timeseries_column else None
        if kwargs:
            raise TypeError(f"create_table() got unexpected keyword arguments {sorted(kwargs)}")
        pks = _as_list(primary_keys)
        if not pks:
            raise ValueError(f"feature table {name!r} needs primary_keys")
        if len(set(pks)) != len(pks):
            raise ValueError(f"primary_keys {pks} has duplicates")
        if timeseries_column is not None and timeseries_column not in pks:
            raise ValueError(
                f"Timeseries column '{timeseries_column}' is not in primary_keys. Timeseries columns must be primary keys."
            )
        if timeseries_column is not None and len(pks) < 2:
            raise ValueError(f"feature table {name!r} needs a primary key besides the timeseries column")
        if df is None and schema is None:
            raise ValueError("Either schema or df must be provided")
        if df is not None:
            df = _spark_df(df)
            if schema is not None and _schema_items(schema) != _schema_items(df.schema):
                raise ValueError(
                    "Provide either 'schema' or 'df' arguments. If both arguments are provided, their schemas must match."
                )
        spark_schema = schema if schema is not None else df.schema
        cols = {f.name for f in spark_schema.fields}
        missing = [k for k in pks + _as_list(partition_columns) if k not in cols]
        if missing:
            raise ValueError(f"feature table {name!r}: key/partition columns {missing} are not in the schema")
        if timeseries_column is not None and spark_schema[timeseries_column].dataType.simpleString() not in _TIME:
            raise ValueError(
                f"timeseries column {timeseries_column!r} is {spark_schema[timeseries_column].dataType.simpleString()}, "
                "expected a timestamp or date"
            )

        existing = _load_table_meta(name)
        if existing is not None and lakehouse.exists(name):
            if df is not None:
                warnings.warn(
                    f"feature table {name!r} already exists: returned as is and df NOT written "
                    "(use write_table(name=..., df=...) to add data, or drop_table first)",
                    stacklevel=2,
                )
            return _require_table(name, with_version=False).to_feature_table()
        if existing is None and lakehouse.exists(name):
            raise ValueError(f"Data table {name} already exists. Use a different name.")
        if existing is not None:  # stale registry entry whose Delta table was dropped elsewhere
            self._forget(name)

        data = _to_arrow(df) if df is not None else _empty_arrow(spark_schema)
        _check_keys(data, name, pks)
        version = lakehouse.write(
            data,
            name,
            mode="overwrite",
            partition_by=_as_list(partition_columns) or None,
            description=description,
        )
        conn = _registry()
        try:
            conn.execute(
                "INSERT INTO feature_tables (name, table_id, primary_keys, timeseries_column, partition_columns, "
                "description, tags, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    str(uuid.uuid4()),
                    json.dumps(pks),
                    timeseries_column,
                    json.dumps(_as_list(partition_columns)),
                    description,
                    json.dumps(dict(tags or {})),
                    int(dt.datetime.now(dt.UTC).timestamp() * 1000),
                ),
            )
        finally:
            conn.close()
        _record_write(name, version, "create", data.num_rows, df)
        return _require_table(name, with_version=False).to_feature_table()

    def write_table(
        self,
        *,
        name: str,
        df: DataFrame,
        mode: str = MERGE,
        checkpoint_location: str | None = None,
        trigger: dict[str, Any] = DEFAULT_WRITE_TRIGGER,
    ) -> None:
        """Upsert ``df`` into the feature table by its primary keys (``mode="merge"``) or replace it (``"overwrite"``).

        Rejected, leaving the table unchanged: duplicate or null primary keys in ``df``, a missing
        or differently typed column. Columns ``df`` adds are added as new features (as on Databricks).
        ``"overwrite"`` is a local extra: the Databricks client only merges. Streaming writes are
        not supported locally, so ``checkpoint_location`` and ``trigger`` (streaming options) raise
        when given.
        """
        from utils import lakehouse

        if mode not in (MERGE, OVERWRITE):
            raise ValueError(f"Unsupported mode {mode!r}: use 'merge' (upsert by primary keys) or 'overwrite'")
        _reject_streaming_options("write_table", checkpoint_location, trigger, DEFAULT_WRITE_TRIGGER)
        meta = _require_table(name)
        df = _spark_df(df)
        if df.isStreaming:
            raise NotImplementedError(
                "write_table: streaming DataFrames are not supported by the local feature store: write a batch "
                "DataFrame (e.g. from spark.read instead of spark.readStream)"
            )
        incoming = dict(_schema_items(df.schema))
        missing = [c for c in meta.schema if c not in incoming]
        if missing:
            raise FeatureTableWriteError(
                f"cannot write to {name!r}: df lacks columns {missing} of the feature table; "
                "include every column (the table was not changed)"
            )
        wrong = {c: (incoming[c], t) for c, t in meta.schema.items() if not _writable(incoming[c], t)}
        if wrong:
            details = ", ".join(f"{c!r} is {got} but the table has {want}" for c, (got, want) in wrong.items())
            raise FeatureTableWriteError(
                f"cannot write to {name!r}: schema mismatch: {details}; cast those columns "
                "(the table was not changed)"
            )
        from pyspark.sql import functions as F

        new_columns = [c for c in incoming if c not in meta.schema]
        conformed = df.select(
            *[F.col(f"`{c}`").cast(t).alias(c) if incoming[c] != t else F.col(f"`{c}`") for c, t in meta.schema.items()],
            *[F.col(f"`{c}`") for c in new_columns],
        )
        data = _to_arrow(conformed)
        _check_keys(data, name, meta.keys)
        if mode == OVERWRITE:
            if new_columns:  # replace the schema: existing columns keep their types (cast above)
                version = lakehouse.write(data, name, mode="overwrite", merge_schema=True)
            else:
                version = lakehouse.write(data, name, mode="overwrite")
        else:
            version = lakehouse.merge(data, name, keys=meta.keys, merge_schema=bool(new_columns))["version"]
        _record_write(name, version, mode, data.num_rows, df)

    def read_table(self, *, name: str, **kwargs: Any) -> DataFrame:
        """The feature table as a Spark DataFrame (``as_of_delta_timestamp=`` or ``version=`` time-travel)."""
        from utils import lakehouse

        _require_table(name, with_version=False)
        version = kwargs.pop("version", None)
        timestamp = kwargs.pop("as_of_delta_timestamp", None)
        if kwargs:
            raise TypeError(f"read_table() got unexpected keyword arguments {sorted(kwargs)}")
        return lakehouse.read(name, version=version, timestamp=timestamp)

    def get_table(self, *, name: str) -> Any:
        """A feature table's metadata as Databricks' ``FeatureTable`` (keys, timestamp keys, features, tags, sources).

        As on Databricks, ``primary_keys`` include the timestamp key: the table's timeseries column
        is ``timestamp_keys[0]`` (``timestamp_keys`` is empty for a table without one).
        """
        return _require_table(name, with_version=False).to_feature_table()

    def drop_table(self, *, name: str) -> None:
        """Delete the feature table and its Delta table (published online tables are kept, as on Databricks)."""
        from utils import lakehouse

        if _load_table_meta(name) is None:
            _require_table(name)  # raises the not-found error with its hint
        if lakehouse.exists(name):
            lakehouse.drop(name)
        self._forget(name)

    def set_feature_table_tag(self, *, name: str, key: str, value: str) -> None:
        """Create or overwrite one tag of a feature table."""
        meta = _require_table(name)
        self._set_tags(name, {**meta.tags, key: value})

    def delete_feature_table_tag(self, *, name: str, key: str) -> None:
        """Remove one tag of a feature table (a warning if it was not set)."""
        meta = _require_table(name)
        if key not in meta.tags:
            warnings.warn(f"feature table {name!r} has no tag {key!r}", stacklevel=2)
            return
        self._set_tags(name, {k: v for k, v in meta.tags.items() if k != key})

    # -------------------------------------------------------- training sets

    def create_training_set(
        self,
        *,
        df: DataFrame,
        feature_lookups: list[Any] | None = None,
        feature_spec: str | None = None,
        features: list[Any] | None = None,
        label: str | list[str] | None,
        exclude_columns: list[str] | None = None,
        use_spark_native_join: bool = False,
        use_timeseries_filtering: bool = False,
        **kwargs: Any,
    ) -> LocalTrainingSet:
        """A training set joining ``feature_lookups`` into ``df`` (point in time where a timestamp key is given).

        Everything is validated first (tables, features, keys, labels, names); no join runs on bad input.
        The feature tables' current Delta versions are pinned: ``load_df()`` reads those versions.
        ``use_timeseries_filtering=True`` reads, for each point-in-time lookup, only the feature rows
        the time range of ``df`` can match (same result, less data). Not available locally, and
        raising when given: ``feature_spec`` and ``features`` (Unity Catalog feature specs and
        declarative features) and the Photon join hints ``use_spark_native_join``,
        ``hint_low_cardinality_columns`` and ``use_scalable_native_join``.
        """
        hints = {"hint_low_cardinality_columns", "use_scalable_native_join"}
        unknown_kwargs = sorted(set(kwargs) - hints)
        if unknown_kwargs:
            raise TypeError(f"create_training_set() got unexpected keyword arguments {unknown_kwargs}")
        _reject_hints("create_training_set", use_spark_native_join=use_spark_native_join, **kwargs)
        if not isinstance(use_timeseries_filtering, bool):
            raise TypeError(f"'use_timeseries_filtering' must be a bool, got {use_timeseries_filtering!r}")
        options = {"feature_lookups": feature_lookups, "feature_spec": feature_spec, "features": features}
        given = [n for n, v in options.items() if v is not None]
        if not given:
            raise ValueError("One of 'feature_lookups', 'feature_spec', or 'features' must be provided.")
        if len(given) > 1:
            raise ValueError("Only one of 'feature_lookups', 'feature_spec', or 'features' can be provided.")
        if feature_lookups is None:
            raise NotImplementedError(
                f"create_training_set: {given[0]}= (a Unity Catalog feature spec or declarative features) is not "
                "supported by the local feature store: pass feature_lookups=[FeatureLookup(...), ...] instead"
            )
        df = _spark_df(df)
        columns = list(df.columns)
        if len(set(columns)) != len(columns):
            raise ValueError(f"Found duplicate DataFrame column names {columns}.")
        labels = _as_list(label)
        exclude = list(exclude_columns or [])
        for lab in labels:
            if lab not in columns:
                raise ValueError(f"Label column '{lab}' was not found in DataFrame (columns: {columns})")
            if lab in exclude:
                raise ValueError(f"Label column '{lab}' cannot be excluded")
        lookups, feature_types = resolve_lookups(df.schema, feature_lookups)
        outputs = [o for lk in lookups for o in lk.outputs.values()]
        for lab in labels:
            if lab in outputs:
                raise ValueError(f"Feature cannot have same output name as label '{lab}'.")
        unknown = [c for c in exclude if c not in columns and c not in outputs]
        if unknown:
            raise ValueError(f"exclude_columns {unknown} are neither DataFrame columns nor feature outputs")
        output = [c for c in [*columns, *outputs] if c not in exclude]
        data_types = {**{f.name: f.dataType.simpleString() for f in df.schema.fields}, **feature_types}
        spec = FeatureSpec(
            lookups=lookups,
            source_columns=columns,
            labels=labels,
            exclude_columns=exclude,
            output_columns=output,
            data_types={c: t for c, t in data_types.items() if c in output},
            created_at=dt.datetime.now(dt.UTC).isoformat(),
        )
        return LocalTrainingSet(df, spec, use_timeseries_filtering=use_timeseries_filtering)

    # -------------------------------------------------------- models

    def log_model(
        self,
        *,
        model: Any,
        artifact_path: str,
        flavor: ModuleType,
        training_set: LocalTrainingSet | None = None,
        registered_model_name: str | None = None,
        await_registration_for: int | None = AWAIT_REGISTRATION_FOR_UNSET,
        infer_input_example: bool = False,
        extra_pip_requirements: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Log ``model`` with MLflow packaged with its feature spec; returns MLflow's ``ModelInfo``.

        The logged model is a pyfunc: given only the lookup keys it fetches its features from the
        online store (``utils.local.online_store``), as a Databricks feature-store model does when served.
        ``score_batch`` instead looks the features up offline, point in time. Layout, as on
        Databricks: ``data/feature_store/{feature_spec.yaml, raw_model/}``; the few ``utils`` modules
        the lookup needs ship in ``code/`` so a model server needs no checkout of this repository.
        ``kwargs`` go to ``flavor.save_model`` (e.g. ``skops_trusted_types`` for ``mlflow.sklearn``), except
        ``output_schema`` (an MLflow ``Schema``), which, as on Databricks, becomes the logged model's output
        schema in place of the one Databricks infers from the label's type.
        ``await_registration_for`` is forwarded to MLflow only when given (MLflow's default otherwise),
        as by the real client. ``infer_input_example=True`` is not supported locally (it raises): pass
        ``input_example=...`` instead, which goes to ``flavor.save_model``.
        """
        import mlflow
        import mlflow.pyfunc

        if infer_input_example:
            raise NotImplementedError(
                "log_model: infer_input_example=True is not supported by the local feature store: pass "
                "input_example=<a row of the model's inputs> instead (it goes to flavor.save_model)"
            )
        if training_set is None or not isinstance(training_set, LocalTrainingSet):
            raise ValueError(
                "log_model needs the training_set= returned by create_training_set (it records which features "
                "to look up); to log a model without features use the MLflow flavor's log_model"
            )
        spec = training_set.feature_spec
        output_schema = kwargs.pop("output_schema", None)
        signature = None
        if output_schema is not None:  # inputs stay unchecked: a request holds keys, context and any overrides
            from mlflow.models import ModelSignature

            signature = ModelSignature(inputs=None, outputs=output_schema)
        with tempfile.TemporaryDirectory(prefix="fs-log-", dir=_scratch_dir()) as tmp:
            data_path = Path(tmp) / MODEL_DATA_DIR
            raw_path = data_path / "raw_model"
            data_path.mkdir()
            if flavor.__name__ == "mlflow.pyfunc":
                flavor.save_model(str(raw_path), python_model=model, **kwargs)
            else:
                flavor.save_model(model, str(raw_path), **kwargs)
            if not (raw_path / "MLmodel").exists() or "python_function" not in (raw_path / "MLmodel").read_text():
                raise ValueError(f"log_model does not support {flavor.__name__}: it has no python_function flavor")
            spec.save(data_path / SPEC_FILE)
            (data_path / online.SERVING_FILE).write_text(
                json.dumps({"online_store": str(online.SqliteOnlineStore().db_path())})
            )
            code = _bundle_code(Path(tmp) / "code")
            registration = {"await_registration_for": await_registration_for}
            if await_registration_for is AWAIT_REGISTRATION_FOR_UNSET:
                registration = {}  # MLflow's own default, as the real client does
            with warnings.catch_warnings():  # an output schema alone makes MLflow ask for an input example; the
                # served model's input is a request (keys and context), of which log time has none to give
                warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
                info = mlflow.pyfunc.log_model(
                    name=artifact_path,
                    loader_module="utils.local.online_store",
                    data_path=str(data_path),
                    code_paths=[str(code)],
                    pip_requirements=_requirements(raw_path, extra_pip_requirements),
                    registered_model_name=registered_model_name,
                    signature=signature,
                    metadata={"feature_store": {"tables": spec.tables, "spec": f"data/{MODEL_DATA_DIR}/{SPEC_FILE}"}},
                    **registration,
                )
        if mlflow.active_run() is not None:
            mlflow.log_dict(spec.to_dict(), f"{artifact_path}_{SPEC_FILE}")
            mlflow.set_tags({f"feature_table.{t}": str(v) for t, v in spec.tables.items()})
        return info

    def score_batch(
        self,
        *,
        model_uri: str,
        df: DataFrame,
        result_type: str = "double",
        env_manager: str = "local",
        params: dict[str, Any] | None = None,
        use_spark_native_join: bool = False,
        **kwargs: Any,
    ) -> DataFrame:
        """``df`` plus its looked-up features and a ``prediction`` column, from the lookup keys alone.

        Features are read from the feature tables' latest versions, point in time where the model's
        lookups have a timestamp key; feature columns already in ``df`` are used as given.
        ``use_spark_native_join=True`` (a Photon join) is not available locally and raises.
        """
        import mlflow.pyfunc
        from pyspark.sql import functions as F

        from utils.runtime import get_spark

        if kwargs:
            raise TypeError(
                f"score_batch() got unexpected keyword arguments {sorted(kwargs)} (the local client has no "
                "Databricks-only options such as prebuilt_env_uri)"
            )
        _reject_hints("score_batch", use_spark_native_join=use_spark_native_join)

        df = _spark_df(df)
        if "prediction" in df.columns:
            raise ValueError("df must not have a 'prediction' column: score_batch adds it")
        root = _download_model(model_uri)
        spec_path = root / "data" / MODEL_DATA_DIR / SPEC_FILE
        if not spec_path.exists():
            raise ValueError(f"model {model_uri!r} was not logged with feature_client().log_model: no {SPEC_FILE}")
        spec = FeatureSpec.load(spec_path)
        missing = [c for c in spec.required_input_columns if c not in df.columns]
        if missing:
            raise ValueError(
                f"df lacks columns {missing} that the model's feature lookups need (lookup and timestamp keys)"
            )
        for lk in spec.lookups:
            _require_table(lk.table_name, with_version=False)
        features = apply_lookups(df, spec.lookups, use_pinned_versions=False)
        absent = [c for c in spec.model_input_columns if c not in features.columns]
        if absent:
            raise ValueError(f"df lacks columns {absent} that the model was trained on (they are not looked up)")
        predict = mlflow.pyfunc.spark_udf(
            get_spark(),
            str(root / "data" / MODEL_DATA_DIR / "raw_model"),
            result_type=result_type,
            env_manager=env_manager,
            params=params,
        )
        inputs = F.struct(*[F.col(f"`{c}`") for c in spec.model_input_columns])
        return features.withColumn("prediction", predict(inputs))

    # -------------------------------------------------------- online store

    def publish_table(
        self,
        *,
        online_store: Any,
        source_table_name: str | None = None,
        online_table_name: str | None = None,
        publish_mode: str = PUBLISH_MODE_TRIGGERED,
        filter_condition: str | None = None,
        mode: str = MERGE,
        streaming: bool = False,
        checkpoint_location: str | None = None,
        trigger: dict[str, Any] = DEFAULT_PUBLISH_TRIGGER,
        features: str | list[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Publish the latest row per primary key of a feature table to the local online store (SQLite).

        Idempotent upsert; ``name=`` is accepted for ``source_table_name`` as on Databricks, and
        ``online_store`` is required as there (locally: ``online_store_spec()`` or a
        ``utils.local.online_store.SqliteOnlineStore``). ``filter_condition`` and ``features`` are honoured.
        The online table is named after the feature table, so ``online_table_name`` may only repeat
        that name. Streaming and continuous publishing are not available locally: ``streaming``,
        ``checkpoint_location``, ``trigger`` and a ``publish_mode`` other than ``"TRIGGERED"`` raise.
        Returns what was published (table, rows, Delta version, store path).
        """
        from utils import lakehouse

        name = source_table_name if source_table_name is not None else kwargs.pop("name", None)
        kwargs.pop("name", None)  # source_table_name wins over name=, as on Databricks
        if kwargs:
            raise TypeError(f"publish_table() got unexpected keyword arguments {sorted(kwargs)}")
        if name is None:
            raise ValueError("source_table_name is required")
        if online_store is None:
            raise ValueError(
                "publish_table: online_store is required: pass online_store=online_store_spec() "
                "(from utils.features) for the local SQLite store"
            )
        if mode != MERGE:
            raise ValueError(f"Unsupported mode '{mode}'. 'merge' is the only supported mode.")
        if streaming:
            raise NotImplementedError(
                "publish_table: streaming=True is not supported by the local online store: leave streaming out "
                "and publish again after each write"
            )
        if publish_mode != PUBLISH_MODE_TRIGGERED:
            raise NotImplementedError(
                f"publish_table: publish_mode={publish_mode!r} is not supported by the local online store: leave "
                f"publish_mode out ({PUBLISH_MODE_TRIGGERED!r}, an upsert of the latest row per key)"
            )
        _reject_streaming_options("publish_table", checkpoint_location, trigger, DEFAULT_PUBLISH_TRIGGER)
        if online_table_name is not None and online_table_name != name:
            raise ValueError(
                f"publish_table: online_table_name={online_table_name!r} differs from the feature table {name!r}: "
                "the local online table always has the feature table's name: leave online_table_name out or "
                "pass the same name"
            )
        store = online_store
        meta = _require_table(name)
        version = meta.version
        if filter_condition:
            data = lakehouse.read(name, version=version).where(filter_condition).toPandas()
        else:
            data = lakehouse.read_pandas(name, version=version)
        rows = online_publish.publish(
            data,
            name,
            meta.keys,
            meta.timeseries_column,
            store=store,
            source_version=version,
            features=_as_list(features) or None,
        )
        entry = {
            "store_type": "sqlite",
            "path": str(online._store(store).db_path()),
            "online_table_name": name,
            "version": version,
            "published_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        stores = [s for s in meta.online_stores if s["path"] != entry["path"]] + [entry]
        conn = _registry()
        try:
            conn.execute("UPDATE feature_tables SET online_stores = ? WHERE name = ?", (json.dumps(stores), name))
        finally:
            conn.close()
        return {"table_name": name, "rows": rows, **entry}

    def drop_online_table(self, name: str, online_store: Any) -> None:
        """Remove a feature table's online table from ``online_store`` (e.g. ``online_store_spec()``) and its record."""
        if online_store is None:
            raise ValueError(
                "drop_online_table: online_store is required: pass online_store=online_store_spec() "
                "(from utils.features) for the local SQLite store"
            )
        online_publish.drop_online_table(name, online_store)
        path = str(online._store(online_store).db_path())
        meta = _load_table_meta(name)
        if meta is not None and any(s.get("path") == path for s in meta.online_stores):
            stores = [s for s in meta.online_stores if s.get("path") != path]
            conn = _registry()
            try:
                conn.execute("UPDATE feature_tables SET online_stores = ? WHERE name = ?", (json.dumps(stores), name))
            finally:
                conn.close()

    # -------------------------------------------------------- helpers

    @staticmethod
    def _set_tags(name: str, tags: dict[str, str]) -> None:
        conn = _registry()
        try:
            conn.execute("UPDATE feature_tables SET tags = ? WHERE name = ?", (json.dumps(tags), name))
        finally:
            conn.close()

    @staticmethod
    def _forget(name: str) -> None:
        conn = _registry()
        try:
            conn.execute("DELETE FROM feature_tables WHERE name = ?", (name,))
            conn.execute("DELETE FROM feature_table_writes WHERE name = ?", (name,))
        finally:
            conn.close()


def _reject_streaming_options(
    method: str, checkpoint_location: str | None, trigger: Mapping[str, Any], default_trigger: Mapping[str, Any]
) -> None:
    """Raise naming ``checkpoint_location``/``trigger`` when given: the local feature store does not stream."""
    if checkpoint_location is not None:
        raise NotImplementedError(
            f"{method}: checkpoint_location={checkpoint_location!r} is a Structured Streaming option and the local "
            "feature store does not stream: leave checkpoint_location out"
        )
    if trigger != default_trigger:
        raise NotImplementedError(
            f"{method}: trigger={trigger!r} is a Structured Streaming option and the local feature store does not "
            "stream: leave trigger out"
        )


def _reject_hints(method: str, **hints: Any) -> None:
    """Raise naming a Databricks join hint set to True (the local client has no Photon or native join to use)."""
    for hint, value in hints.items():
        if not isinstance(value, bool):
            raise TypeError(f"'{hint}' must be a bool, got {value!r}")
        if value:
            raise NotImplementedError(
                f"{method}: {hint}=True selects a Databricks (Photon) join the local client does not have: "
                f"leave {hint} out (the local join is already a Spark join; results are the same)"
            )


def _to_arrow(df: Any) -> Any:
    """A Spark or pandas DataFrame (or Arrow table) as an Arrow table, computed once."""
    import pyarrow as pa

    if isinstance(df, pa.Table):
        return df
    return _spark_df(df).toArrow()


def _empty_arrow(schema: StructType) -> Any:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema).empty_table()


def _writable(incoming: str, table: str) -> bool:
    """Whether a column of Spark type ``incoming`` can be written to a table column of type ``table``."""
    widening = {"tinyint": 0, "smallint": 1, "int": 2, "bigint": 3}
    if incoming == table:
        return True
    if incoming in widening and table in widening:
        return widening[incoming] <= widening[table]
    return (incoming, table) in {("float", "double"), ("timestamp_ntz", "timestamp"), ("date", "date")}


def _check_keys(data: Any, name: str, keys: Sequence[str]) -> None:
    """Raise if the Arrow table ``data`` has a null or duplicate primary key (nothing is written)."""
    import pyarrow.compute as pc

    missing = [k for k in keys if k not in data.column_names]
    if missing:
        raise FeatureTableWriteError(f"cannot write to {name!r}: df lacks primary key columns {missing}")
    nulls = [k for k in keys if data.column(k).null_count]
    if nulls:
        raise FeatureTableWriteError(
            f"cannot write to {name!r}: df has rows with a null primary key in {nulls}; "
            "drop or fix them (the table was not changed)"
        )
    counts = data.select(list(keys)).group_by(list(keys)).aggregate([([], "count_all")])
    dups = counts.filter(pc.greater(counts.column("count_all"), 1))
    if dups.num_rows:
        examples = dups.slice(0, 3).select(list(keys)).to_pylist()
        raise FeatureTableWriteError(
            f"cannot write to {name!r}: df has {dups.num_rows} duplicate primary key value(s) of {list(keys)}, "
            f"e.g. {examples}; deduplicate it first, e.g. keep the latest row per key (the table was not changed)"
        )


def _record_write(name: str, version: int, mode: str, rows: int | None, df: Any) -> None:
    """Remember a write of ``name`` and the source tables it read (when they can be traced)."""
    sources = _source_versions(df) if df is not None else {}
    conn = _registry()
    try:
        conn.execute(
            "INSERT OR REPLACE INTO feature_table_writes (name, version, mode, rows, sources, written_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, int(version), mode, rows, json.dumps(sources), dt.datetime.now(dt.UTC).isoformat()),
        )
    finally:
        conn.close()
