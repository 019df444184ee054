"""Delta tables by three-level name (``catalog.schema.table``): the helpers the lifecycle code repeats.

One code path: every function here is Spark and Delta Lake (``spark.table``, ``saveAsTable``,
``DeltaTable.forName(...).merge``, ``DESCRIBE HISTORY``, ``versionAsOf``, ``readChangeFeed``), the
same calls on Databricks (Unity Catalog) and locally (Delta Lake for Spark over Spark's session
catalog, see ``utils.local.catalog``). Notebooks call those APIs directly; ``utils`` calls these
helpers for what the platforms do not offer themselves:

* writes of pandas or Arrow data (normalised to types Spark and Delta agree on, see below);
* retries of commits that lost a race to a concurrent writer (jittered backoff, ``MAX_ATTEMPTS``);
* checks with errors that name the table and the fix: unknown tables and versions, schema mismatches
  (integer and float columns are widened to the table's type, ``int32`` into ``bigint``; any other
  difference raises ``SchemaMismatchError`` unless ``merge_schema``), null or duplicate merge keys.

Type normalisation of pandas and Arrow input: timestamps of any unit or zone become
``timestamp[us, tz=UTC]`` (naive ones are taken to be UTC); ``large_string``/``string_view`` become
``string``; dictionaries their value type; unsigned integers the next wider signed integer;
``float16`` -> ``float32``; ``date64`` -> ``date32``; every column nullable; the pandas index is dropped.
"""

from __future__ import annotations

import numbers
import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from utils.config import get_config
from utils.runtime import get_spark, refresh_tables, use_catalog

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
    "table_location",
    "vacuum",
    "write",
]

MAX_ATTEMPTS = 10
CDF_PROPERTY = "delta.enableChangeDataFeed"
_IDENT = re.compile(r"^[A-Za-z0-9_]+$")
_CONFLICT_MARKERS = (
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException", "DELTA_CONCURRENT", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED",
)
_ALREADY_EXISTS_MARKERS = ("TABLE_OR_VIEW_ALREADY_EXISTS", "LOCATION_ALREADY_EXISTS", "DELTA_TABLE_ALREADY_EXISTS",
                           "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "already exists")
_WIDENING = {
    "tinyint": ("smallint", "int", "bigint"), "smallint": ("int", "bigint"), "int": ("bigint",),
    "float": ("double",),
}
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


class VersionVacuumedError(VersionNotFoundError):
    """The asked version is still in the table's history, but VACUUM removed its data files."""


class SchemaMismatchError(LakehouseError, ValueError):
    """The data's columns or types differ from the table's."""


class _Conflict(Exception):
    """A concurrent writer won the race; the operation may be retried."""


# ---------------------------------------------------------------- names


def parse_name(name: str) -> tuple[str, str, str]:
    """Split ``catalog.schema.table`` into its parts (lower case, as Unity Catalog stores them).

    Raises ``ValueError`` for anything but three identifiers of letters, digits and underscores.
    """
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3 or not all(_IDENT.match(p) for p in parts):
        raise ValueError(
            f"invalid table name {name!r}: expected three dot-separated identifiers "
            "'catalog.schema.table' made of letters, digits and underscores, e.g. 'workspace.mlops.orders'"
        )
    catalog, schema, table = (p.lower() for p in parts)
    return catalog, schema, table


def _full(name: str) -> str:
    catalog, schema, table = parse_name(name)
    use_catalog(catalog)
    return f"{catalog}.{schema}.{table}"


def _quoted(name: str) -> str:
    return ".".join(f"`{p}`" for p in _full(name).split("."))


# ---------------------------------------------------------------- retries


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, LakehouseError):  # a nested helper already retried and gave up: do not repeat the write
        return False
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
    """The Arrow type Spark and Delta agree on for ``t`` (see the module docstring)."""
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
    """A pandas DataFrame or Arrow table as a normalised Arrow table."""
    if isinstance(df, pa.Table):
        table = df
    elif isinstance(df, pd.DataFrame):
        table = pa.Table.from_pandas(df, preserve_index=False)
    elif isinstance(df, pa.RecordBatch) or hasattr(df, "__arrow_c_stream__"):
        table = pa.table(df)
    else:
        raise TypeError(
            f"cannot write a {type(df).__name__}: pass a Spark DataFrame, a pandas DataFrame or a pyarrow Table"
        )
    return _normalize(table)


def _is_spark(df: Any) -> bool:
    return hasattr(df, "sparkSession") and hasattr(df, "schema") and hasattr(df, "write")


def _spark_df(df: Any) -> SparkDataFrame:
    """``df`` (Spark, pandas or Arrow) as a Spark DataFrame."""
    if _is_spark(df):
        return df
    from pyspark.sql.pandas.types import from_arrow_schema

    table = _to_arrow(df)  # the schema given: Spark Connect infers none from an empty table
    return get_spark().createDataFrame(table, schema=from_arrow_schema(table.schema))


def _types(sdf: SparkDataFrame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in sdf.schema.fields}


def _same_type(data: str, table: str) -> bool:
    return data == table or data == "void" or table in _WIDENING.get(data, ())


# ---------------------------------------------------------------- schema checks


def _schema_problems(data: dict[str, str], table: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Missing columns, extra columns and type changes of ``data`` against ``table``."""
    missing = [c for c in table if c not in data]
    extra = [c for c in data if c not in table]
    changed = [f"{c}: table {table[c]} -> data {data[c]}" for c in data if c in table and not _same_type(data[c], table[c])]
    return missing, extra, changed


def _check_schema(name: str, problems: tuple[list[str], list[str], list[str]], merge_schema: bool) -> None:
    """Raise ``SchemaMismatchError`` unless the differences are allowed by ``merge_schema``."""
    missing, extra, changed = problems
    if not (missing or extra or changed) or (merge_schema and not changed):
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
        f"data does not match the schema of table {_full(name)!r} (version {current_version(name)}): "
        f"{'; '.join(parts)}. {fix}; the table was not changed"
    )


def _conform(name: str, sdf: SparkDataFrame, merge_schema: bool) -> SparkDataFrame:
    """``sdf`` checked against the table's schema: integer and float columns widened to the table's, and
    (with ``merge_schema``) the table's columns it lacks added as typed nulls."""
    from pyspark.sql import functions as F

    table_types = _types(get_spark().table(_full(name)))
    data_types = _types(sdf)
    _check_schema(name, _schema_problems(data_types, table_types), merge_schema)
    widen = {c: t for c, t in table_types.items() if c in data_types and data_types[c] != t}
    missing = [c for c in table_types if c not in data_types]
    if not (widen or missing):
        return sdf
    columns = [F.col(f"`{c}`").cast(widen[c]).alias(c) if c in widen else F.col(f"`{c}`") for c in sdf.columns]
    return sdf.select(*columns, *[F.lit(None).cast(table_types[c]).alias(c) for c in missing])


# ---------------------------------------------------------------- catalogue


def exists(name: str) -> bool:
    """True if the table ``name`` exists."""
    full = _full(name)
    spark = get_spark()
    if spark.catalog.tableExists(full):
        return True
    refresh_tables()  # locally: a table another process created since this session started
    return bool(spark.catalog.tableExists(full))


def _require(name: str) -> str:
    if not exists(name):
        raise TableNotFoundError(_full(name))
    return _full(name)


def list_tables(catalog: str | None = None, schema: str | None = None) -> list[str]:
    """Sorted ``catalog.schema.table`` names of existing tables, optionally only in ``catalog`` / ``schema``.

    ``catalog=None`` means the config's catalog (``get_config().catalog``).
    """
    for label, value in (("catalog", catalog), ("schema", schema)):
        if value is not None and not _IDENT.match(value):
            raise ValueError(f"invalid {label} name {value!r}: use letters, digits and underscores")
    spark = get_spark()
    refresh_tables()
    catalog = (catalog or get_config().catalog).lower()
    use_catalog(catalog)
    schemas = [schema.lower()] if schema else [
        r[0] for r in spark.sql(f"SHOW SCHEMAS IN `{catalog}`").collect()
        if r[0] != "information_schema" and _IDENT.match(r[0] or "")  # a schema Unity Catalog could name
    ]
    names = []
    for s in schemas:
        if not spark.catalog.databaseExists(f"{catalog}.{s}"):
            continue
        shown = spark.sql(f"SHOW TABLES IN `{catalog}`.`{s}`").collect()  # names only: no table is loaded
        names += [f"{catalog}.{s}.{r['tableName']}" for r in shown if not r["isTemporary"]]
    return sorted(names)


def table_location(name: str) -> str:
    """Storage location (URI) of the table's files, from ``DESCRIBE DETAIL``."""
    return str(get_spark().sql(f"DESCRIBE DETAIL {_quoted(_require(name))}").first()["location"])


def drop(name: str) -> None:
    """Drop the table ``name`` (``DROP TABLE``) and delete its files; ``TableNotFoundError`` if absent."""
    from utils.runtime import delete_table_files

    location = table_location(name)
    get_spark().sql(f"DROP TABLE {_quoted(name)}")
    delete_table_files(location)


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

    A new table is created (``writeTo(...).create()``) with change data feed when ``enable_cdf``;
    an append is ``writeTo(...).append()``, an overwrite ``writeTo(...).overwrite(lit(True))`` (the
    table keeps its schema, properties and partitioning). A schema differing from the table's raises
    ``SchemaMismatchError`` and changes nothing; ``merge_schema=True`` adds new columns (Delta's
    ``mergeSchema``) and, with ``mode="overwrite"``, replaces schema and data in one commit
    (``createOrReplace()``, keeping the description, the table properties and, where its columns are
    still there, the partitioning unless ``partition_by`` says otherwise).
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    full = _full(name)
    sdf = _spark_df(df)
    return _with_retries(f"write to {full!r}", lambda: _write_once(sdf, name, mode, merge_schema, partition_by,
                                                                   enable_cdf, description))


def _create(sdf: SparkDataFrame, name: str, partition_by: list[str] | None, enable_cdf: bool,
            description: str | None) -> int:
    catalog, schema, _ = parse_name(name)
    untyped = [c for c, t in _types(sdf).items() if t == "void"]
    if untyped:
        raise ValueError(
            f"cannot create table {_full(name)!r}: columns {untyped} hold only nulls, so they have no type; "
            "cast them first (e.g. df[col].astype('string'))"
        )
    unknown = [c for c in partition_by or [] if c not in sdf.columns]
    if unknown:
        raise ValueError(f"partition columns {unknown} are not in the data (columns: {sdf.columns})")
    get_spark().sql(f"CREATE SCHEMA IF NOT EXISTS `{catalog}`.`{schema}`")
    writer = _table_writer(sdf, _full(name), {}, enable_cdf, description, partition_by)
    try:
        writer.create()
    except Exception as exc:
        if any(marker in str(exc) for marker in _ALREADY_EXISTS_MARKERS):
            raise _Conflict(str(exc)) from exc  # another writer created it first: retry as a write to it
        raise
    return current_version(name)


def _table_writer(sdf: SparkDataFrame, full: str, properties: dict[str, str], enable_cdf: bool,
                  comment: str | None, partition_by: list[str] | None) -> Any:
    """``sdf.writeTo(full)`` as a Delta table with ``properties``, the change data feed, comment and partitioning."""
    writer = sdf.writeTo(full).using("delta")
    for key, value in {**properties, **({CDF_PROPERTY: "true"} if enable_cdf else {})}.items():
        writer = writer.tableProperty(key, value)
    if comment:
        writer = writer.tableProperty("comment", comment)
    return writer.partitionedBy(*partition_by) if partition_by else writer


def _write_once(sdf: SparkDataFrame, name: str, mode: str, merge_schema: bool, partition_by: list[str] | None,
                enable_cdf: bool, description: str | None) -> int:
    from pyspark.sql import functions as F

    if not exists(name):
        return _create(sdf, name, partition_by, enable_cdf, description)
    full = _full(name)
    if mode == "overwrite" and merge_schema:  # replace schema and data in one commit (CREATE OR REPLACE)
        detail = _detail(full)
        comment = description if description is not None else detail.get("description")
        kept = [c["col_name"] for c in detail["partitionColumns"]]
        partitions = partition_by if partition_by is not None else [c for c in kept if c in sdf.columns]
        _table_writer(sdf, full, detail.get("properties") or {}, enable_cdf, comment, partitions).createOrReplace()
        return current_version(name)
    if partition_by is not None:
        current = [r["col_name"] for r in _detail(full)["partitionColumns"]]
        if list(partition_by) != current:
            raise ValueError(
                f"table {full!r} is partitioned by {current}, not {list(partition_by)}: "
                "drop partition_by, or repartition with mode='overwrite', merge_schema=True"
            )
    writer = _conform(name, sdf, merge_schema).writeTo(full)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if mode == "append":
        writer.append()
    else:
        writer.overwrite(F.lit(True))  # keeps the table's schema, properties and partitioning
    if description is not None and description != get_description(name):
        set_description(name, description)
    return current_version(name)


def _detail(full: str) -> dict:
    row = get_spark().sql(f"DESCRIBE DETAIL {full}").first()
    detail = row.asDict()
    detail["partitionColumns"] = [{"col_name": c} for c in detail.get("partitionColumns") or []]
    return detail


def merge(
    df: Any,
    name: str,
    keys: list[str],
    update: bool = True,
    insert: bool = True,
    delete_missing: bool = False,
    merge_schema: bool = False,
) -> dict:
    """Upsert ``df`` into ``name`` matching rows on ``keys`` with Delta's MERGE (creates the table if missing).

    Matched rows are updated (``update``), new keys inserted (``insert``), and table rows whose key is
    absent from ``df`` deleted (``delete_missing``). Returns ``num_inserted``, ``num_updated``,
    ``num_deleted`` (Delta's operation metrics) and the new ``version``.
    Duplicate or null keys in ``df`` raise ``ValueError``; a schema mismatch ``SchemaMismatchError``.
    """
    full = _full(name)
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty list of column names, got {keys!r}")
    if not (update or insert or delete_missing):
        raise ValueError("merge needs at least one of update, insert, delete_missing")
    keys = list(keys)
    if _is_spark(df):
        sdf = df
        _check_spark_keys(full, sdf, keys)
    else:
        data = _to_arrow(df)
        _check_keys(full, data, keys)
        sdf = _spark_df(data)
    return _with_retries(f"merge into {full!r}",
                         lambda: _merge_once(sdf, name, keys, update, insert, delete_missing, merge_schema))


def _check_keys(full: str, data: pa.Table, keys: list[str]) -> None:
    missing = [k for k in keys if k not in data.column_names]
    if missing:
        raise ValueError(f"merge keys {missing} are not columns of the data (columns: {data.column_names})")
    nulls = [k for k in keys if data.column(k).null_count]
    if nulls:
        raise ValueError(f"merge into {full!r}: key columns {nulls} contain nulls; nulls never match a key")
    counts = data.select(keys).group_by(keys).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts.column("count_all"), 1))
    if dupes.num_rows:
        examples = dupes.slice(0, 5).select(keys).to_pylist()
        raise ValueError(
            f"merge into {full!r}: {dupes.num_rows} key value(s) of {keys} occur more than once in the "
            f"data, e.g. {examples}; deduplicate the data first (one row per key)"
        )


def _check_spark_keys(full: str, sdf: SparkDataFrame, keys: list[str]) -> None:
    missing = [k for k in keys if k not in sdf.columns]
    if missing:
        raise ValueError(f"merge keys {missing} are not columns of the data (columns: {sdf.columns})")
    if sdf.where(" OR ".join(f"`{k}` IS NULL" for k in keys)).limit(1).count():
        raise ValueError(f"merge into {full!r}: key columns {keys} contain nulls; nulls never match a key")
    dupes = sdf.groupBy(*keys).count().where("count > 1").limit(5).collect()
    if dupes:
        raise ValueError(
            f"merge into {full!r}: key values of {keys} occur more than once in the data, e.g. "
            f"{[{k: r[k] for k in keys} for r in dupes]}; deduplicate the data first (one row per key)"
        )


def _merge_once(sdf: SparkDataFrame, name: str, keys: list[str], update: bool, insert: bool,
                delete_missing: bool, merge_schema: bool) -> dict:
    import uuid

    full = _full(name)
    if not exists(name):
        if not insert:
            raise TableNotFoundError(full)
        version = _create(sdf, name, None, True, None)
        return {"num_inserted": sdf.count(), "num_updated": 0, "num_deleted": 0, "version": version}
    absent = [k for k in keys if k not in get_spark().table(full).columns]
    if absent:
        raise ValueError(f"merge keys {absent} are not columns of table {full!r}")
    sdf = _conform(name, sdf, merge_schema)
    before = current_version(name)
    source = f"merge_source_{uuid.uuid4().hex[:12]}"
    sdf.createOrReplaceTempView(source)
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    clauses = [c for c, wanted in (("WHEN MATCHED THEN UPDATE SET *", update),
                                   ("WHEN NOT MATCHED THEN INSERT *", insert),
                                   ("WHEN NOT MATCHED BY SOURCE THEN DELETE", delete_missing)) if wanted]
    # SQL, not DeltaTable's builder: the builder needs Delta's Connect plugin on a Spark Connect engine.
    statement = (f"MERGE {'WITH SCHEMA EVOLUTION ' if merge_schema else ''}INTO {_quoted(name)} t "
                 f"USING {source} s ON {condition} {' '.join(clauses)}")
    try:
        counts = get_spark().sql(statement).first()  # Delta's own metrics of this MERGE (not of a later commit)
    finally:
        get_spark().catalog.dropTempView(source)
    version = current_version(name)
    if counts is None or version == before:  # nothing to change: Delta commits no new version
        return {"num_inserted": 0, "num_updated": 0, "num_deleted": 0, "version": before}
    return {
        "num_inserted": int(counts["num_inserted_rows"]),
        "num_updated": int(counts["num_updated_rows"]),
        "num_deleted": int(counts["num_deleted_rows"]),
        "version": version,
    }


# ---------------------------------------------------------------- reading


def _as_utc(ts: Any) -> datetime:
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _version_range(name: str) -> tuple[int, int]:
    versions = [r[0] for r in get_spark().sql(f"DESCRIBE HISTORY {_quoted(name)}").select("version").collect()]
    return min(versions), max(versions)


def read(name: str, version: int | None = None, timestamp: Any = None) -> SparkDataFrame:
    """The table as a Spark DataFrame, optionally as of ``version`` (``versionAsOf``) or ``timestamp``.

    Raises ``TableNotFoundError`` for an unknown table and ``VersionNotFoundError`` (with Delta's own
    message) for a version or timestamp outside the table's history.
    """
    if version is not None and timestamp is not None:
        raise ValueError("pass either version or timestamp, not both")
    full = _require(name)
    reader = get_spark().read
    if version is not None:
        if not isinstance(version, numbers.Integral) or isinstance(version, bool):
            raise VersionNotFoundError(f"table {full!r} has no version {version!r}: versions are integers")
        reader = reader.option("versionAsOf", int(version))
    elif timestamp is not None:
        reader = reader.option("timestampAsOf", _as_utc(timestamp).strftime("%Y-%m-%d %H:%M:%S.%f"))
    try:
        sdf = reader.table(full)
        if version is not None or timestamp is not None:
            sdf.schema  # noqa: B018 - time travel is resolved here, so a bad version fails now
    except Exception as exc:
        text = str(exc)
        travel = version is not None or timestamp is not None
        if travel and any(m in text for m in ("VERSION_NOT_FOUND", "TIMESTAMP", "time travel", "TIME_TRAVEL")):
            lo, hi = _version_range(name)
            asked = f"version {version}" if version is not None else f"version at {timestamp}"
            raise VersionNotFoundError(
                f"table {full!r} has no {asked}: "
                f"available versions are {lo} to {hi} (see DESCRIBE HISTORY). Delta said: {text.splitlines()[0]}"
            ) from exc
        raise
    if version is not None:
        problem = vacuumed(full, int(version), sdf)
        if problem:
            raise VersionVacuumedError(f"version {version} of {full!r} cannot be read: {problem}")
    return sdf


def vacuumed(name: str, version: int, sdf: SparkDataFrame | None = None) -> str | None:
    """Why ``version`` of ``name`` can no longer be read, or None when it can (or no VACUUM ran since it).

    ``DESCRIBE HISTORY`` keeps listing a version after ``VACUUM`` removed its data files, and a read of it
    fails only when a task opens a missing file (Spark's ``FAILED_READ_FILE.FILE_NOT_EXIST``, whose advice,
    ``REFRESH TABLE``, does not help). So when the history shows a ``VACUUM`` after ``version``, the version's
    files (``inputFiles`` of ``sdf``, the version as read) are checked for existence, by Spark, on any storage.
    The answer names the VACUUM (its version, time and retention) and what to do.
    """
    from pyspark.sql import functions as F

    spark = get_spark()
    full = _full(name)
    runs = (spark.sql(f"DESCRIBE HISTORY {_quoted(full)}").where((F.col("operation") == "VACUUM START") & (F.col("version") > version))
            .orderBy("version").select("version", "timestamp", "operationParameters").collect())
    if not runs:
        return None
    files = list((sdf if sdf is not None else spark.read.option("versionAsOf", version).table(full)).inputFiles())
    try:
        if files:
            spark.read.format("binaryFile").load(files).schema  # noqa: B018 - fails now on a missing path
        return None
    except Exception as exc:  # noqa: BLE001 - anything but a missing file is re-raised below
        if "PATH_NOT_FOUND" not in str(exc):
            raise
    first = runs[0]
    params = first["operationParameters"] or {}
    millis = params.get("specifiedRetentionMillis") or params.get("defaultRetentionMillis")
    retention = f"retention {int(millis) / 3_600_000:g} h" if millis not in (None, "") else "its retention"
    return (f"VACUUM at version {first['version']} ({first['timestamp']:%Y-%m-%d %H:%M}, {retention}) removed its data "
            f"files; DESCRIBE HISTORY still lists it, but only its log entry is left, so it cannot be reproduced. Read "
            f"version {first['version']} or later, and keep old versions longer with the table property "
            "delta.deletedFileRetentionDuration")


def read_pandas(name: str, version: int | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """The table (or ``columns`` of it) as pandas; timestamps tz-aware UTC. For small tables."""
    sdf = read(name, version)
    if columns:
        unknown = [c for c in columns if c not in sdf.columns]
        if unknown:
            raise ValueError(f"columns {unknown} are not in table {_full(name)!r}")
        sdf = sdf.select(*[f"`{c}`" for c in columns])
    return to_pandas(sdf)


def to_pandas(sdf: SparkDataFrame) -> pd.DataFrame:
    """A Spark DataFrame as pandas through Arrow, timestamps tz-aware UTC (as :func:`read_pandas` gives them).

    Filter in Spark first: everything the DataFrame holds is collected to the driver.
    """
    return _normalize(sdf.toArrow()).to_pandas()


def current_version(name: str) -> int:
    """Latest version of the table (``DESCRIBE HISTORY ... LIMIT 1``)."""
    return int(get_spark().sql(f"DESCRIBE HISTORY {_quoted(_require(name))} LIMIT 1").first()["version"])


def history(name: str) -> pd.DataFrame:
    """Commits of the table, newest first (version, timestamp, operation, parameters, metrics)."""
    frame = get_spark().sql(f"DESCRIBE HISTORY {_quoted(_require(name))}").toPandas()
    for col in ("operationParameters", "operationMetrics"):
        frame[col] = frame[col].apply(lambda v: dict(v) if isinstance(v, dict) else {})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.sort_values("version", ascending=False, ignore_index=True)


def read_changes(name: str, start_version: int, end_version: int | None = None) -> SparkDataFrame:
    """Change data feed (``readChangeFeed``) from ``start_version`` to ``end_version`` (inclusive, default latest).

    Rows carry ``_change_type`` (insert, delete, update_preimage, update_postimage),
    ``_commit_version`` and ``_commit_timestamp``.
    """
    full = _require(name)
    lo, hi = _version_range(name)
    end = hi if end_version is None else end_version
    if not lo <= start_version <= end <= hi:
        raise VersionNotFoundError(
            f"table {full!r} has no change feed from version {start_version} to {end_version}: "
            f"available versions are {lo} to {hi} and the start must not be after the end"
        )
    if get_properties(name).get(CDF_PROPERTY, "false").lower() != "true":
        raise LakehouseError(
            f"table {full!r} has no change data feed: enable it with ALTER TABLE {full} SET TBLPROPERTIES "
            f"({CDF_PROPERTY} = true) (new tables get it from write()); changes are recorded from then on"
        )
    reader = (get_spark().read.option("readChangeFeed", "true")
              .option("startingVersion", int(start_version)).option("endingVersion", int(end)))
    try:
        changes = reader.table(full)
        changes.schema  # noqa: B018 - resolve now so a table without the feed fails here
        return changes
    except Exception as exc:
        if "CHANGE_DATA" not in str(exc) and "change data" not in str(exc).lower():
            raise
        raise LakehouseError(
            f"table {full!r} has no change data feed for versions {start_version} to {end}: "
            f"{str(exc).splitlines()[0]}; enable it with ALTER TABLE {full} SET TBLPROPERTIES "
            f"({CDF_PROPERTY} = true) (new tables get it from write())"
        ) from exc


# ---------------------------------------------------------------- maintenance and metadata


def optimize(name: str) -> dict:
    """Compact small files (``OPTIMIZE``); returns the compaction metrics (files added and removed, ...)."""
    full = _quoted(_require(name))
    row = _with_retries(f"optimize {full}", lambda: get_spark().sql(f"OPTIMIZE {full}").first())
    return row["metrics"].asDict(recursive=True) if row else {}


def vacuum(name: str, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
    """Delete files no longer referenced by versions younger than ``retention_hours`` (``VACUUM``); returns them.

    Time travel to versions older than the retention stops working for vacuumed files. A retention
    under Delta's 168-hour safety check turns the check off for this call only.
    """
    if retention_hours < 0:
        raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
    spark, full = get_spark(), _quoted(_require(name))
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    previous = spark.conf.get(check, None)
    if retention_hours < 168:
        spark.conf.set(check, "false")
    try:
        files = [r[0] for r in spark.sql(f"VACUUM {full} RETAIN {int(retention_hours)} HOURS DRY RUN").collect()]
        if not dry_run:
            spark.sql(f"VACUUM {full} RETAIN {int(retention_hours)} HOURS")
    finally:
        if retention_hours < 168:
            spark.conf.unset(check) if previous is None else spark.conf.set(check, previous)
    return files


def set_description(name: str, text: str) -> None:
    """Set the table's description (``COMMENT ON TABLE``)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    full = _quoted(_require(name))
    _with_retries(f"set description of {full}", lambda: get_spark().sql(f"COMMENT ON TABLE {full} IS '{escaped}'"))


def get_description(name: str) -> str | None:
    """The table's description, or None."""
    return _detail(_quoted(_require(name))).get("description") or None


def get_properties(name: str) -> dict[str, str]:
    """The table's properties (e.g. ``delta.enableChangeDataFeed``), from ``SHOW TBLPROPERTIES``."""
    full = _quoted(_require(name))
    return {r["key"]: r["value"] for r in get_spark().sql(f"SHOW TBLPROPERTIES {full}").collect()}
