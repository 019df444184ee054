"""Delta tables by three-level name (``catalog.schema.table``): the helpers the lifecycle code repeats.

One code path: every function here is Spark and Delta Lake (``spark.table``, ``writeTo``, ``MERGE INTO``,
``DESCRIBE HISTORY``, ``versionAsOf``), the same calls on Databricks (Unity Catalog) and locally (Delta
Lake for Spark over Spark's session catalog, see ``utils.local.catalog``). Notebooks call those APIs
directly; ``utils`` calls these helpers for what the platforms do not offer themselves:

* writes of pandas or Arrow data, normalised to types Spark and Delta agree on (``utils.lakehouse_types``);
* retries of commits that lost a race to a concurrent writer (``utils.lakehouse_errors.with_retries``);
* checks with errors that name the table and the fix: unknown tables and versions, schema mismatches
  (integer and float columns are widened to the table's type, ``int32`` into ``bigint``; any other
  difference raises ``SchemaMismatchError`` unless ``merge_schema``), null or duplicate merge keys.
"""

from __future__ import annotations

import numbers
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from utils import lakehouse_errors as errors
from utils import lakehouse_types as types
from utils.config import get_config
from utils.platform.runtime import get_spark, refresh_tables, use_catalog

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

CDF_PROPERTY = "delta.enableChangeDataFeed"
_ALREADY_EXISTS_MARKERS = ("TABLE_OR_VIEW_ALREADY_EXISTS", "LOCATION_ALREADY_EXISTS", "DELTA_TABLE_ALREADY_EXISTS",
                           "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "already exists")


def _conform(name: str, sdf: SparkDataFrame, merge_schema: bool) -> SparkDataFrame:
    """``sdf`` checked against the table's schema: integer and float columns widened to the table's, and
    (with ``merge_schema``) the table's columns it lacks added as typed nulls."""
    from pyspark.sql import functions as F

    table_types = types.column_types(get_spark().table(errors.full_name(name)))
    data_types = types.column_types(sdf)
    problem = types.schema_problem(data_types, table_types, merge_schema)
    if problem:
        raise errors.SchemaMismatchError(f"data does not match the schema of table {errors.full_name(name)!r} "
                                  f"(version {current_version(name)}): {problem}; the table was not changed")
    widen = {c: t for c, t in table_types.items() if c in data_types and data_types[c] != t}
    missing = [c for c in table_types if c not in data_types]
    if not (widen or missing):
        return sdf
    columns = [F.col(f"`{c}`").cast(widen[c]).alias(c) if c in widen else F.col(f"`{c}`") for c in sdf.columns]
    return sdf.select(*columns, *[F.lit(None).cast(table_types[c]).alias(c) for c in missing])


def exists(name: str) -> bool:
    """True if the table ``name`` exists."""
    full = errors.full_name(name)
    spark = get_spark()
    if spark.catalog.tableExists(full):
        return True
    refresh_tables()  # locally: a table another process created since this session started
    return bool(spark.catalog.tableExists(full))


def require_table(name: str) -> str:
    """The full name of the table ``name``; raises ``errors.TableNotFoundError`` when it does not exist."""
    if not exists(name):
        raise errors.TableNotFoundError(errors.full_name(name))
    return errors.full_name(name)


def list_tables(catalog: str | None = None, schema: str | None = None) -> list[str]:
    """Sorted ``catalog.schema.table`` names of existing tables, optionally only in ``catalog`` / ``schema``.

    ``catalog=None`` means the config's catalog (``get_config().catalog``).
    """
    for label, value in (("catalog", catalog), ("schema", schema)):
        if value is not None and not errors.IDENT.match(value):
            raise ValueError(f"invalid {label} name {value!r}: use letters, digits and underscores")
    spark = get_spark()
    refresh_tables()
    catalog = (catalog or get_config().catalog).lower()
    use_catalog(catalog)
    schemas = [schema.lower()] if schema else [
        r[0] for r in spark.sql(f"SHOW SCHEMAS IN `{catalog}`").collect()
        if r[0] != "information_schema" and errors.IDENT.match(r[0] or "")  # a schema Unity Catalog could name
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
    return str(get_spark().sql(f"DESCRIBE DETAIL {errors.quoted_name(require_table(name))}").first()["location"])


def drop(name: str) -> None:
    """Drop the table ``name`` (``DROP TABLE``) and delete its files; ``errors.TableNotFoundError`` if absent."""
    from utils.platform.runtime import delete_table_files

    location = table_location(name)
    get_spark().sql(f"DROP TABLE {errors.quoted_name(name)}")
    delete_table_files(location)


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
    ``errors.SchemaMismatchError`` and changes nothing; ``merge_schema=True`` adds new columns (Delta's
    ``mergeSchema``) and, with ``mode="overwrite"``, replaces schema and data in one commit
    (``createOrReplace()``, keeping the description, the table properties and, where its columns are
    still there, the partitioning unless ``partition_by`` says otherwise).
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    full = errors.full_name(name)
    sdf = types.spark_frame(df)
    return errors.with_retries(f"write to {full!r}", lambda: _write_once(sdf, name, mode, merge_schema, partition_by,
                                                                   enable_cdf, description))


def _create(sdf: SparkDataFrame, name: str, partition_by: list[str] | None, enable_cdf: bool,
            description: str | None) -> int:
    catalog, schema, _ = errors.parse_name(name)
    untyped = [c for c, t in types.column_types(sdf).items() if t == "void"]
    if untyped:
        raise ValueError(
            f"cannot create table {errors.full_name(name)!r}: columns {untyped} hold only nulls, so they have no type; "
            "cast them first (e.g. df[col].astype('string'))"
        )
    unknown = [c for c in partition_by or [] if c not in sdf.columns]
    if unknown:
        raise ValueError(f"partition columns {unknown} are not in the data (columns: {sdf.columns})")
    get_spark().sql(f"CREATE SCHEMA IF NOT EXISTS `{catalog}`.`{schema}`")
    writer = _table_writer(sdf, errors.full_name(name), {}, enable_cdf, description, partition_by)
    try:
        writer.create()
    except Exception as exc:
        if any(marker in str(exc) for marker in _ALREADY_EXISTS_MARKERS):
            raise errors.CommitConflict(str(exc)) from exc  # another writer created it first: retry as a write to it
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
    full = errors.full_name(name)
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
    Duplicate or null keys in ``df`` raise ``ValueError``; a schema mismatch ``errors.SchemaMismatchError``.
    """
    full = errors.full_name(name)
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty list of column names, got {keys!r}")
    if not (update or insert or delete_missing):
        raise ValueError("merge needs at least one of update, insert, delete_missing")
    keys = list(keys)
    if types.is_spark(df):
        sdf = df
        _check_spark_keys(full, sdf, keys)
    else:
        data = types.to_arrow(df)
        _check_keys(full, data, keys)
        sdf = types.spark_frame(data)
    return errors.with_retries(f"merge into {full!r}",
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

    full = errors.full_name(name)
    if not exists(name):
        if not insert:
            raise errors.TableNotFoundError(full)
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
    statement = (f"MERGE {'WITH SCHEMA EVOLUTION ' if merge_schema else ''}INTO {errors.quoted_name(name)} t "
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


def _as_utc(ts: Any) -> datetime:
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()
def version_range(name: str) -> tuple[int, int]:
    """The oldest and the latest version in the table's history (``DESCRIBE HISTORY``)."""
    versions = [r[0] for r in get_spark().sql(f"DESCRIBE HISTORY {errors.quoted_name(name)}").select("version").collect()]
    return min(versions), max(versions)


def read(name: str, version: int | None = None, timestamp: Any = None) -> SparkDataFrame:
    """The table as a Spark DataFrame, optionally as of ``version`` (``versionAsOf``) or ``timestamp``.

    Raises ``errors.TableNotFoundError`` for an unknown table and ``errors.VersionNotFoundError`` (with Delta's own
    message) for a version or timestamp outside the table's history.
    """
    if version is not None and timestamp is not None:
        raise ValueError("pass either version or timestamp, not both")
    full = require_table(name)
    reader = get_spark().read
    if version is not None:
        if not isinstance(version, numbers.Integral) or isinstance(version, bool):
            raise errors.VersionNotFoundError(f"table {full!r} has no version {version!r}: versions are integers")
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
            lo, hi = version_range(name)
            asked = f"version {version}" if version is not None else f"version at {timestamp}"
            raise errors.VersionNotFoundError(
                f"table {full!r} has no {asked}: "
                f"available versions are {lo} to {hi} (see DESCRIBE HISTORY). Delta said: {text.splitlines()[0]}"
            ) from exc
        raise
    if version is not None:
        problem = vacuumed(full, int(version), sdf)
        if problem:
            raise errors.VersionVacuumedError(f"version {version} of {full!r} cannot be read: {problem}")
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
    full = errors.full_name(name)
    runs = (spark.sql(f"DESCRIBE HISTORY {errors.quoted_name(full)}").where((F.col("operation") == "VACUUM START") & (F.col("version") > version))
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
            raise ValueError(f"columns {unknown} are not in table {errors.full_name(name)!r}")
        sdf = sdf.select(*[f"`{c}`" for c in columns])
    return to_pandas(sdf)


def to_pandas(sdf: SparkDataFrame) -> pd.DataFrame:
    """A Spark DataFrame as pandas through Arrow, timestamps tz-aware UTC (as :func:`read_pandas` gives them).

    Filter in Spark first: everything the DataFrame holds is collected to the driver.
    """
    return types.normalize_arrow(sdf.toArrow()).to_pandas()


def current_version(name: str) -> int:
    """Latest version of the table (``DESCRIBE HISTORY ... LIMIT 1``)."""
    return int(get_spark().sql(f"DESCRIBE HISTORY {errors.quoted_name(require_table(name))} LIMIT 1").first()["version"])


def history(name: str) -> pd.DataFrame:
    """Commits of the table, newest first (version, timestamp, operation, parameters, metrics)."""
    frame = get_spark().sql(f"DESCRIBE HISTORY {errors.quoted_name(require_table(name))}").toPandas()
    for col in ("operationParameters", "operationMetrics"):
        frame[col] = frame[col].apply(lambda v: dict(v) if isinstance(v, dict) else {})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.sort_values("version", ascending=False, ignore_index=True)


def set_description(name: str, text: str) -> None:
    """Set the table's description (``COMMENT ON TABLE``)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    full = errors.quoted_name(require_table(name))
    errors.with_retries(f"set description of {full}", lambda: get_spark().sql(f"COMMENT ON TABLE {full} IS '{escaped}'"))


def get_description(name: str) -> str | None:
    """The table's description, or None."""
    return _detail(errors.quoted_name(require_table(name))).get("description") or None
