"""Delta tables by three-level name (``catalog.schema.table``), returned as Spark DataFrames.

Two backends, chosen by ``utils.platform.is_databricks()``:

* Databricks: Unity Catalog Delta tables through Spark (``spark.table``, ``saveAsTable``,
  ``DeltaTable.forName``, ``OPTIMIZE`` / ``VACUUM``).
* local (default): real Delta tables written by delta-rs (``deltalake``) under
  ``lakehouse_dir()/catalog/schema/table``, handed to Spark through Arrow.
  Only ``read`` and ``read_changes`` start Spark; everything else works on pandas or Arrow input.

Type normalisation (local backend, on every write and every read) so that Spark and delta-rs agree:

* timestamps of any unit or zone become ``timestamp[us, tz=UTC]`` (Spark's ``TimestampType``);
  naive timestamps (e.g. pandas ``datetime64[ns]``) are taken to be UTC; nanoseconds are truncated;
* ``large_string`` / ``string_view`` become ``string``, ``large_binary`` / ``binary_view`` become ``binary``;
* dictionary (pandas ``category``) columns become their value type;
* unsigned integers become the next wider signed integer (``uint64`` -> ``int64``, overflow raises),
  ``float16`` -> ``float32``, ``date64`` -> ``date32``; lists, structs and maps are normalised inside;
* every column becomes nullable (Spark marks literals NOT NULL, which would make later appends fail);
* the pandas index is dropped.

When data is written to an existing table, integer and float columns are widened to the table's type
(``int32`` into ``bigint``); any other type difference is a schema mismatch.

Concurrent writers: ``write``, ``merge`` and the other commits retry on commit conflicts with jittered
backoff (``MAX_ATTEMPTS`` tries) and raise ``LakehouseError`` if they never get through.
delta-rs does not survive ``fork``: use the ``spawn`` start method for processes that write tables.
"""

from __future__ import annotations

import numbers
import random
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from utils.platform import get_spark, is_databricks, lakehouse_dir

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

__all__ = [
    "LakehouseError",
    "SchemaMismatchError",
    "TableNotFoundError",
    "VersionNotFoundError",
    "current_version",
    "drop",
    "exists",
    "get_description",
    "get_properties",
    "history",
    "list_tables",
    "merge",
    "optimize",
    "parse_name",
    "read",
    "read_changes",
    "read_pandas",
    "set_description",
    "table_path",
    "vacuum",
    "write",
]

MAX_ATTEMPTS = 10
CDF_PROPERTY = "delta.enableChangeDataFeed"
_IDENT = re.compile(r"^[A-Za-z0-9_]+$")
_CONFLICT_MARKERS = (
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException", "DELTA_CONCURRENT", "DELTA_METADATA_CHANGED",
)
T = TypeVar("T")


# ---------------------------------------------------------------- errors


class LakehouseError(Exception):
    """A table operation failed; the message names the table and the fix."""


class TableNotFoundError(LakehouseError, LookupError):
    """The named table does not exist."""

    def __init__(self, name: str, where: str = "") -> None:
        super().__init__(
            f"table {name!r} does not exist{where}; check the name with list_tables() or exists(), "
            "or create it with write() or merge()"
        )


class VersionNotFoundError(LakehouseError, LookupError):
    """The asked version or timestamp is outside the table's history."""


class SchemaMismatchError(LakehouseError, ValueError):
    """The data's columns or types differ from the table's."""


class _Conflict(Exception):
    """A concurrent writer won the race; the operation may be retried."""


# ---------------------------------------------------------------- names and paths


def parse_name(name: str) -> tuple[str, str, str]:
    """Split ``catalog.schema.table`` into its parts (lower case, as Unity Catalog stores them)."""
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3 or not all(_IDENT.match(p) for p in parts):
        raise ValueError(
            f"invalid table name {name!r}: expected three dot-separated identifiers "
            "'catalog.schema.table' made of letters, digits and underscores, e.g. 'plantly.mlops.orders'"
        )
    catalog, schema, table = (p.lower() for p in parts)
    return catalog, schema, table


def _full(name: str) -> str:
    return ".".join(parse_name(name))


def _quoted(name: str) -> str:
    return ".".join(f"`{p}`" for p in parse_name(name))


def table_path(name: str) -> Path:
    """Folder of the local Delta table ``name`` (``lakehouse_dir()/catalog/schema/table``)."""
    return lakehouse_dir().joinpath(*parse_name(name))


def _is_delta(path: Path) -> bool:
    log = path / "_delta_log"
    return log.is_dir() and any(log.glob("*.json"))


def _open(name: str, version: int | None = None) -> Any:
    """The local ``deltalake.DeltaTable`` for ``name`` at ``version`` (default latest)."""
    from deltalake import DeltaTable

    path = table_path(name)
    if not _is_delta(path):
        raise TableNotFoundError(_full(name), f" (no Delta table at {path})")
    dt = DeltaTable(str(path))
    if version is not None:
        _check_version(name, dt, version)
        dt.load_as_version(int(version))
    return dt


def _version_range(dt: Any) -> tuple[int, int]:
    versions = [h["version"] for h in dt.history()]
    return min(versions), max(versions)


def _check_version(name: str, dt: Any, version: int) -> None:
    lo, hi = _version_range(dt)
    if not isinstance(version, numbers.Integral) or isinstance(version, bool) or not lo <= int(version) <= hi:
        raise VersionNotFoundError(
            f"table {_full(name)!r} has no version {version!r}: available versions are {lo} to {hi} "
            "(see history())"
        )


# ---------------------------------------------------------------- retries


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, _Conflict) or type(exc).__name__ == "CommitFailedError":
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _CONFLICT_MARKERS)


def _with_retries(what: str, fn: Callable[[], T]) -> T:
    """Run ``fn``, retrying on commit conflicts with jittered exponential backoff."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return fn()
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            if attempt == MAX_ATTEMPTS:
                raise LakehouseError(
                    f"{what} gave up after {MAX_ATTEMPTS} attempts: concurrent writers kept committing first "
                    f"(last error: {exc}); nothing was written, run it again or write less concurrently"
                ) from exc
            time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- Arrow normalisation


def _normal_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type both Spark and delta-rs use for ``t`` (see the module docstring)."""
    types = pa.types
    if types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC")
    if types.is_dictionary(t):
        return _normal_type(t.value_type)
    if types.is_large_string(t) or types.is_string_view(t):
        return pa.string()
    if types.is_large_binary(t) or types.is_binary_view(t):
        return pa.binary()
    if types.is_unsigned_integer(t):
        return {8: pa.int16(), 16: pa.int32()}.get(t.bit_width, pa.int64())
    if types.is_float16(t):
        return pa.float32()
    if types.is_date64(t):
        return pa.date32()
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t) or types.is_list_view(t) \
            or types.is_large_list_view(t):
        return pa.list_(_normal_type(t.value_type))
    if types.is_map(t):
        return pa.map_(_normal_type(t.key_type), _normal_type(t.item_type))
    if types.is_struct(t):
        return pa.struct([pa.field(f.name, _normal_type(f.type)) for f in t])
    return t


def _cast(col: pa.ChunkedArray, target: pa.DataType, column: str) -> pa.ChunkedArray:
    if col.type == target:
        return col
    try:
        return col.cast(target, safe=True)
    except pa.ArrowInvalid as exc:
        if "timestamp" in str(col.type) and "would lose data" in str(exc):
            return col.cast(target, safe=False)  # nanoseconds -> microseconds
        raise ValueError(f"column {column!r}: cannot convert {col.type} to {target}: {exc}") from exc


def _normalize(table: pa.Table) -> pa.Table:
    """``table`` with normalised, nullable types and no pandas metadata."""
    names = table.column_names
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise ValueError(f"duplicate column names {dupes}: rename them before writing")
    fields = [pa.field(f.name, _normal_type(f.type), nullable=True) for f in table.schema]
    columns = [_cast(col, f.type, f.name) for col, f in zip(table.columns, fields)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _to_arrow(df: Any) -> pa.Table:
    """A Spark DataFrame, pandas DataFrame or Arrow table as a normalised Arrow table."""
    if isinstance(df, pa.Table):
        table = df
    elif isinstance(df, pd.DataFrame):
        table = pa.Table.from_pandas(df, preserve_index=False)
    elif hasattr(df, "toArrow") and hasattr(df, "sparkSession"):
        table = df.toArrow()
    elif isinstance(df, pa.RecordBatch) or hasattr(df, "__arrow_c_stream__"):
        table = pa.table(df)
    else:
        raise TypeError(
            f"cannot write a {type(df).__name__}: pass a Spark DataFrame, a pandas DataFrame or a pyarrow Table"
        )
    return _normalize(table)


def _reader_to_arrow(reader: Any) -> pa.Table:
    return pa.RecordBatchReader.from_stream(reader).read_all()


def _to_spark(table: pa.Table) -> SparkDataFrame:
    return get_spark().createDataFrame(table)


# ---------------------------------------------------------------- schema checks


def _same_arrow_type(data: pa.DataType, table: pa.DataType) -> bool:
    d, t = _normal_type(data), _normal_type(table)
    if d == t or pa.types.is_null(d):
        return True
    for family in (pa.types.is_signed_integer, pa.types.is_floating):
        if family(d) and family(t):
            return d.bit_width <= t.bit_width  # lossless widening
    return False


def _schema_problems(
    data: dict[str, Any], table: dict[str, Any], same: Callable[[Any, Any], bool]
) -> tuple[list[str], list[str], list[str]]:
    """Missing columns, extra columns and type changes of ``data`` against ``table``."""
    missing = [c for c in table if c not in data]
    extra = [c for c in data if c not in table]
    changed = [f"{c}: table {table[c]} -> data {data[c]}" for c in data if c in table and not same(data[c], table[c])]
    return missing, extra, changed


def _check_schema(
    name: str, version: int, problems: tuple[list[str], list[str], list[str]], merge_schema: bool, replace: bool
) -> None:
    """Raise ``SchemaMismatchError`` unless the differences are allowed by ``merge_schema``."""
    missing, extra, changed = problems
    if replace or not (missing or extra or changed) or (merge_schema and not changed):
        return
    parts = [f"{label} {cols}" for label, cols in
             (("missing columns", missing), ("extra columns", extra), ("type changes", changed)) if cols]
    fix = (
        "Type changes cannot be merged: cast the columns, or replace the schema with mode='overwrite', "
        "merge_schema=True" if merge_schema else
        "Pass merge_schema=True to evolve the table schema (adds new columns, fills missing ones with null), "
        "or select and cast the columns to match"
    )
    raise SchemaMismatchError(
        f"data does not match the schema of table {_full(name)!r} (version {version}): "
        f"{'; '.join(parts)}. {fix}; the table was not changed"
    )


def _conform(name: str, data: pa.Table, dt: Any, merge_schema: bool, replace: bool = False) -> pa.Table:
    """``data`` checked against, reordered and cast to the table's schema (new columns last)."""
    if replace:
        return data
    schema = pa.schema(dt.schema().to_arrow())
    data_types = {f.name: f.type for f in data.schema}
    table_types = {f.name: f.type for f in schema}
    _check_schema(name, dt.version(), _schema_problems(data_types, table_types, _same_arrow_type), merge_schema, replace)
    columns, fields = [], []
    for f in schema:
        col = data.column(f.name) if f.name in data_types else pa.nulls(data.num_rows, f.type)
        columns.append(_cast(col, f.type, f.name))
        fields.append(pa.field(f.name, f.type, nullable=True))
    for f in data.schema:
        if f.name not in table_types:
            columns.append(data.column(f.name))
            fields.append(f)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# ---------------------------------------------------------------- catalogue


def exists(name: str) -> bool:
    """True if the table ``name`` exists."""
    if is_databricks():
        return bool(get_spark().catalog.tableExists(_full(name)))
    return _is_delta(table_path(name))


def list_tables(catalog: str | None = None, schema: str | None = None) -> list[str]:
    """Sorted names of existing tables, optionally only in ``catalog`` and/or ``schema``.

    On Databricks ``catalog=None`` means the current catalog.
    """
    for label, value in (("catalog", catalog), ("schema", schema)):
        if value is not None and not _IDENT.match(value):
            raise ValueError(f"invalid {label} name {value!r}: use letters, digits and underscores")
    catalog, schema = (v.lower() if v else None for v in (catalog, schema))
    if is_databricks():
        return _uc_list_tables(catalog, schema)
    root = lakehouse_dir()
    if not root.is_dir():
        return []
    names = []
    for path in root.glob("*/*/*"):
        c, s, t = path.relative_to(root).parts
        if (catalog in (None, c)) and (schema in (None, s)) and _is_delta(path):
            names.append(f"{c}.{s}.{t}")
    return sorted(names)


def drop(name: str) -> None:
    """Delete the table ``name`` and its files; ``TableNotFoundError`` if it does not exist."""
    if not exists(name):
        raise TableNotFoundError(_full(name))
    if is_databricks():
        get_spark().sql(f"DROP TABLE {_quoted(name)}")
        return
    shutil.rmtree(table_path(name))


# ---------------------------------------------------------------- writing


def write(
    df: Any,
    name: str,
    mode: str = "append",
    merge_schema: bool = False,
    partition_by: list[str] | None = None,
    enable_cdf: bool = True,
    description: str | None = None,
) -> int:
    """Append or overwrite ``df`` (Spark, pandas or Arrow) into ``name``; returns the new table version.

    A schema differing from the table's raises ``SchemaMismatchError`` and changes nothing;
    ``merge_schema=True`` adds new columns (and, with ``mode="overwrite"``, replaces the schema).
    A new table gets change data feed enabled when ``enable_cdf``.
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    parse_name(name)
    if is_databricks():
        return _uc_write(df, name, mode, merge_schema, partition_by, enable_cdf, description)
    data = _to_arrow(df)
    return _with_retries(
        f"write to {_full(name)!r}",
        lambda: _write_once(data, name, mode, merge_schema, partition_by, enable_cdf, description),
    )


def _create(data: pa.Table, name: str, partition_by: list[str] | None, enable_cdf: bool, description: str | None) -> int:
    from deltalake import write_deltalake
    from deltalake.exceptions import DeltaError

    untyped = [f.name for f in data.schema if pa.types.is_null(f.type)]
    if untyped:
        raise ValueError(
            f"cannot create table {_full(name)!r}: columns {untyped} hold only nulls, so they have no type; "
            "cast them first (e.g. df[col].astype('string'))"
        )
    unknown = [c for c in partition_by or [] if c not in data.column_names]
    if unknown:
        raise ValueError(f"partition columns {unknown} are not in the data (columns: {data.column_names})")
    path = table_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_deltalake(
            str(path), data, mode="error", partition_by=partition_by or None, name=_full(name),
            description=description, configuration={CDF_PROPERTY: "true"} if enable_cdf else None,
        )
    except DeltaError as exc:
        if "already exists" in str(exc):
            raise _Conflict(str(exc)) from exc  # another writer created it first: retry as a write to it
        raise
    return 0


def _write_once(
    data: pa.Table, name: str, mode: str, merge_schema: bool, partition_by: list[str] | None,
    enable_cdf: bool, description: str | None,
) -> int:
    from deltalake import write_deltalake

    if not _is_delta(table_path(name)):
        return _create(data, name, partition_by, enable_cdf, description)
    dt = _open(name)
    replace = mode == "overwrite" and merge_schema
    current = dt.metadata().partition_columns
    if partition_by is not None and not replace and list(partition_by) != list(current):
        raise ValueError(
            f"table {_full(name)!r} is partitioned by {current}, not {list(partition_by)}: "
            "drop partition_by, or repartition with mode='overwrite', merge_schema=True"
        )
    data = _conform(name, data, dt, merge_schema, replace)
    if description is not None and description != dt.metadata().description:
        dt.alter.set_table_description(description)
    write_deltalake(
        dt, data, mode=mode,  # type: ignore[arg-type]
        schema_mode="overwrite" if replace else "merge" if merge_schema else None,
        partition_by=partition_by if replace else None,
    )
    return dt.version()


def merge(
    df: Any,
    name: str,
    keys: list[str],
    update: bool = True,
    insert: bool = True,
    delete_missing: bool = False,
    merge_schema: bool = False,
) -> dict:
    """Upsert ``df`` into ``name`` matching rows on ``keys`` (creates the table if missing).

    Matched rows are updated (``update``), new keys inserted (``insert``), and table rows whose key is
    absent from ``df`` deleted (``delete_missing``). Returns ``num_inserted``, ``num_updated``,
    ``num_deleted`` and the new ``version``. Duplicate or null keys in ``df`` raise ``ValueError``.
    """
    parse_name(name)
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty list of column names, got {keys!r}")
    if not (update or insert or delete_missing):
        raise ValueError("merge needs at least one of update, insert, delete_missing")
    if is_databricks():
        return _uc_merge(df, name, list(keys), update, insert, delete_missing, merge_schema)
    data = _to_arrow(df)
    _check_keys(name, data, list(keys))
    return _with_retries(
        f"merge into {_full(name)!r}",
        lambda: _merge_once(data, name, list(keys), update, insert, delete_missing, merge_schema),
    )


def _check_keys(name: str, data: pa.Table, keys: list[str]) -> None:
    missing = [k for k in keys if k not in data.column_names]
    if missing:
        raise ValueError(f"merge keys {missing} are not columns of the data (columns: {data.column_names})")
    nulls = [k for k in keys if data.column(k).null_count]
    if nulls:
        raise ValueError(f"merge into {_full(name)!r}: key columns {nulls} contain nulls; nulls never match a key")
    counts = data.select(keys).group_by(keys).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts.column("count_all"), 1))
    if dupes.num_rows:
        examples = dupes.slice(0, 5).select(keys).to_pylist()
        raise ValueError(
            f"merge into {_full(name)!r}: {dupes.num_rows} key value(s) of {keys} occur more than once in the "
            f"data, e.g. {examples}; deduplicate the data first (one row per key)"
        )


def _merge_once(
    data: pa.Table, name: str, keys: list[str], update: bool, insert: bool, delete_missing: bool, merge_schema: bool
) -> dict:
    if not _is_delta(table_path(name)):
        if not insert:
            raise TableNotFoundError(_full(name))
        version = _create(data, name, None, True, None)
        return {"num_inserted": data.num_rows, "num_updated": 0, "num_deleted": 0, "version": version}
    dt = _open(name)
    absent = [k for k in keys if k not in pa.schema(dt.schema().to_arrow()).names]
    if absent:
        raise ValueError(f"merge keys {absent} are not columns of table {_full(name)!r}")
    data = _conform(name, data, dt, merge_schema)
    predicate = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    merger = dt.merge(data, predicate, source_alias="s", target_alias="t", merge_schema=merge_schema)
    if update:
        merger = merger.when_matched_update_all()
    if insert:
        merger = merger.when_not_matched_insert_all()
    if delete_missing:
        merger = merger.when_not_matched_by_source_delete()
    metrics = merger.execute()
    return {
        "num_inserted": int(metrics.get("num_target_rows_inserted", 0)),
        "num_updated": int(metrics.get("num_target_rows_updated", 0)),
        "num_deleted": int(metrics.get("num_target_rows_deleted", 0)),
        "version": dt.version(),
    }


# ---------------------------------------------------------------- reading


def _as_utc(ts: Any) -> datetime:
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _open_at(name: str, version: int | None, timestamp: Any) -> Any:
    """The local table at ``version`` or at the latest commit not after ``timestamp``."""
    if version is not None and timestamp is not None:
        raise ValueError("pass either version or timestamp, not both")
    if timestamp is None:
        return _open(name, version)
    dt = _open(name)
    when = _as_utc(timestamp)
    commits = sorted((h["timestamp"], h["version"]) for h in dt.history())
    first = datetime.fromtimestamp(commits[0][0] / 1000, timezone.utc)
    last = datetime.fromtimestamp(commits[-1][0] / 1000, timezone.utc)
    if not first <= when <= last:
        raise VersionNotFoundError(
            f"table {_full(name)!r} has no version at {when.isoformat()}: its commits run from "
            f"{first.isoformat()} (version {commits[0][1]}) to {last.isoformat()} (version {commits[-1][1]})"
        )
    dt.load_as_version(when)
    return dt


def read(name: str, version: int | None = None, timestamp: Any = None) -> SparkDataFrame:
    """The table as a Spark DataFrame, optionally as of ``version`` or ``timestamp`` (str or datetime)."""
    if is_databricks():
        return _uc_read(name, version, timestamp)
    return _to_spark(_normalize(_open_at(name, version, timestamp).to_pyarrow_table()))


def read_pandas(name: str, version: int | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """The table (or ``columns`` of it) as pandas, without Spark; for small tables."""
    if is_databricks():
        sdf = _uc_read(name, version, None)
        return (sdf.select(*columns) if columns else sdf).toPandas()
    dt = _open(name, version)
    if columns:
        unknown = [c for c in columns if c not in pa.schema(dt.schema().to_arrow()).names]
        if unknown:
            raise ValueError(f"columns {unknown} are not in table {_full(name)!r}")
    return _normalize(dt.to_pyarrow_table(columns=columns)).to_pandas()


def current_version(name: str) -> int:
    """Latest version of the table."""
    if is_databricks():
        return int(_uc_history(name, limit=1)["version"].iloc[0])
    return int(_open(name).version())


def history(name: str) -> pd.DataFrame:
    """Commits of the table, newest first (version, timestamp, operation, parameters, metrics)."""
    if is_databricks():
        return _uc_history(name)
    frame = pd.DataFrame(_open(name).history())
    for col in ("operationParameters", "operationMetrics"):
        if col not in frame:
            frame[col] = None
        frame[col] = frame[col].apply(lambda v: v if isinstance(v, dict) else {})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    first = ["version", "timestamp", "operation", "operationParameters", "operationMetrics"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.sort_values("version", ascending=False, ignore_index=True)


def read_changes(name: str, start_version: int, end_version: int | None = None) -> SparkDataFrame:
    """Change data feed from ``start_version`` to ``end_version`` (inclusive, default latest).

    Rows carry ``_change_type`` (insert, delete, update_preimage, update_postimage),
    ``_commit_version`` and ``_commit_timestamp``.
    """
    if is_databricks():
        reader = get_spark().read.option("readChangeFeed", "true").option("startingVersion", start_version)
        if end_version is not None:
            reader = reader.option("endingVersion", end_version)
        return reader.table(_full(name))
    dt = _open(name)
    lo, hi = _version_range(dt)
    end = hi if end_version is None else end_version
    if not lo <= start_version <= end <= hi:
        raise VersionNotFoundError(
            f"table {_full(name)!r} has no change feed from version {start_version} to {end_version}: "
            f"available versions are {lo} to {hi} and the start must not be after the end"
        )
    try:
        changes = _reader_to_arrow(dt.load_cdf(starting_version=start_version, ending_version=end))
    except Exception as exc:
        if "change data" not in str(exc).lower():
            raise
        raise LakehouseError(
            f"table {_full(name)!r} has no change data feed for versions {start_version} to {end}: {exc}; "
            f"create tables with enable_cdf=True (the default) or set the property {CDF_PROPERTY}=true"
        ) from exc
    return _to_spark(_normalize(changes))


# ---------------------------------------------------------------- maintenance and metadata


def optimize(name: str) -> dict:
    """Compact small files; returns the compaction metrics (files added and removed, ...)."""
    if is_databricks():
        row = get_spark().sql(f"OPTIMIZE {_quoted(name)}").first()
        return row["metrics"].asDict(recursive=True) if row else {}
    return _with_retries(f"optimize {_full(name)!r}", lambda: dict(_open(name).optimize.compact()))


def vacuum(name: str, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
    """Delete files no longer referenced by versions younger than ``retention_hours``; returns them.

    Time travel to versions older than the retention stops working for vacuumed files.
    """
    if retention_hours < 0:
        raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
    if is_databricks():
        spark, q = get_spark(), _quoted(name)
        files = [r[0] for r in spark.sql(f"VACUUM {q} RETAIN {int(retention_hours)} HOURS DRY RUN").collect()]
        if not dry_run:
            spark.sql(f"VACUUM {q} RETAIN {int(retention_hours)} HOURS")
        return files
    dt = _open(name)
    return list(dt.vacuum(retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False))


def set_description(name: str, text: str) -> None:
    """Set the table's description (comment)."""
    if is_databricks():
        escaped = text.replace("\\", "\\\\").replace("'", "\\'")
        get_spark().sql(f"COMMENT ON TABLE {_quoted(name)} IS '{escaped}'")
        return
    _with_retries(f"set description of {_full(name)!r}", lambda: _open(name).alter.set_table_description(text))


def get_description(name: str) -> str | None:
    """The table's description, or None."""
    if is_databricks():
        return get_spark().sql(f"DESCRIBE DETAIL {_quoted(name)}").first()["description"]
    return _open(name).metadata().description or None


def get_properties(name: str) -> dict[str, str]:
    """The table's properties (e.g. ``delta.enableChangeDataFeed``)."""
    if is_databricks():
        return {r["key"]: r["value"] for r in get_spark().sql(f"SHOW TBLPROPERTIES {_quoted(name)}").collect()}
    return dict(_open(name).metadata().configuration)


# ---------------------------------------------------------------- Databricks (Unity Catalog) backend


def _uc_spark_df(df: Any) -> SparkDataFrame:
    if hasattr(df, "toArrow") and hasattr(df, "sparkSession"):
        return df
    return get_spark().createDataFrame(_to_arrow(df))


def _uc_list_tables(catalog: str | None, schema: str | None) -> list[str]:
    spark = get_spark()
    catalog = catalog or spark.sql("SELECT current_catalog()").first()[0]
    query = f"SELECT table_schema, table_name FROM `{catalog}`.information_schema.tables " \
            "WHERE table_schema <> 'information_schema'"
    if schema:
        query += f" AND table_schema = '{schema}'"
    return sorted(f"{catalog}.{r[0]}.{r[1]}" for r in spark.sql(query).collect())


def _uc_types(sdf: SparkDataFrame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in sdf.schema.fields}


def _uc_write(
    df: Any, name: str, mode: str, merge_schema: bool, partition_by: list[str] | None,
    enable_cdf: bool, description: str | None,
) -> int:
    sdf, full = _uc_spark_df(df), _full(name)

    def once() -> int:
        if not exists(name):
            writer = sdf.writeTo(full).using("delta")
            if enable_cdf:
                writer = writer.tableProperty(CDF_PROPERTY, "true")
            if description:
                writer = writer.tableProperty("comment", description)
            if partition_by:
                writer = writer.partitionedBy(*partition_by)
            writer.create()
            return current_version(name)
        if not merge_schema:
            table = get_spark().table(full)
            problems = _schema_problems(_uc_types(sdf), _uc_types(table), lambda a, b: a == b)
            _check_schema(name, current_version(name), problems, merge_schema, replace=False)
        writer = sdf.write.format("delta").mode(mode)
        if merge_schema:
            writer = writer.option("overwriteSchema" if mode == "overwrite" else "mergeSchema", "true")
        if partition_by and mode == "overwrite" and merge_schema:
            writer = writer.partitionBy(*partition_by)
        writer.saveAsTable(full)
        if description is not None:
            set_description(name, description)
        return current_version(name)

    return _with_retries(f"write to {full!r}", once)


def _uc_merge(
    df: Any, name: str, keys: list[str], update: bool, insert: bool, delete_missing: bool, merge_schema: bool
) -> dict:
    from delta.tables import DeltaTable as SparkDeltaTable

    sdf, full = _uc_spark_df(df), _full(name)
    missing = [k for k in keys if k not in sdf.columns]
    if missing:
        raise ValueError(f"merge keys {missing} are not columns of the data (columns: {sdf.columns})")
    if sdf.where(" OR ".join(f"`{k}` IS NULL" for k in keys)).limit(1).count():
        raise ValueError(f"merge into {full!r}: key columns {keys} contain nulls; nulls never match a key")
    dupes = sdf.groupBy(*keys).count().where("count > 1").limit(5).collect()
    if dupes:
        raise ValueError(
            f"merge into {full!r}: key values of {keys} occur more than once in the data, e.g. "
            f"{[r.asDict() for r in dupes]}; deduplicate the data first (one row per key)"
        )

    def once() -> dict:
        if not exists(name):
            if not insert:
                raise TableNotFoundError(full)
            version = _uc_write(sdf, name, "append", False, None, True, None)
            return {"num_inserted": sdf.count(), "num_updated": 0, "num_deleted": 0, "version": version}
        if not merge_schema:
            problems = _schema_problems(_uc_types(sdf), _uc_types(get_spark().table(full)), lambda a, b: a == b)
            _check_schema(name, current_version(name), problems, merge_schema, replace=False)
        condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        builder = SparkDeltaTable.forName(get_spark(), full).alias("t").merge(sdf.alias("s"), condition)
        if merge_schema:
            builder = builder.withSchemaEvolution()
        if update:
            builder = builder.whenMatchedUpdateAll()
        if insert:
            builder = builder.whenNotMatchedInsertAll()
        if delete_missing:
            builder = builder.whenNotMatchedBySourceDelete()
        builder.execute()
        last = _uc_history(name, limit=1).iloc[0]
        metrics = last["operationMetrics"] or {}
        return {
            "num_inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "num_updated": int(metrics.get("numTargetRowsUpdated", 0)),
            "num_deleted": int(metrics.get("numTargetRowsDeleted", 0)),
            "version": int(last["version"]),
        }

    return _with_retries(f"merge into {full!r}", once)


def _uc_read(name: str, version: int | None, timestamp: Any) -> SparkDataFrame:
    if version is not None and timestamp is not None:
        raise ValueError("pass either version or timestamp, not both")
    if not exists(name):
        raise TableNotFoundError(_full(name))
    reader = get_spark().read
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    elif timestamp is not None:
        reader = reader.option("timestampAsOf", _as_utc(timestamp).isoformat())
    return reader.table(_full(name))


def _uc_history(name: str, limit: int | None = None) -> pd.DataFrame:
    if not exists(name):
        raise TableNotFoundError(_full(name))
    query = f"DESCRIBE HISTORY {_quoted(name)}" + (f" LIMIT {int(limit)}" if limit else "")
    return get_spark().sql(query).toPandas()
