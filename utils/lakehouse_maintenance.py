"""Maintenance and metadata of Delta tables: ``OPTIMIZE``, ``VACUUM``, table properties and the change data feed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from utils import lakehouse_errors as errors
from utils.lakehouse import CDF_PROPERTY, require_table, version_range
from utils.runtime import get_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame


def read_changes(name: str, start_version: int, end_version: int | None = None) -> SparkDataFrame:
    """Change data feed (``readChangeFeed``) from ``start_version`` to ``end_version`` (inclusive, default latest).

    Rows carry ``_change_type`` (insert, delete, update_preimage, update_postimage),
    ``_commit_version`` and ``_commit_timestamp``.
    """
    full = require_table(name)
    lo, hi = version_range(name)
    end = hi if end_version is None else end_version
    if not lo <= start_version <= end <= hi:
        raise errors.VersionNotFoundError(
            f"table {full!r} has no change feed from version {start_version} to {end_version}: "
            f"available versions are {lo} to {hi} and the start must not be after the end"
        )
    if get_properties(name).get(CDF_PROPERTY, "false").lower() != "true":
        raise errors.LakehouseError(
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
        raise errors.LakehouseError(
            f"table {full!r} has no change data feed for versions {start_version} to {end}: "
            f"{str(exc).splitlines()[0]}; enable it with ALTER TABLE {full} SET TBLPROPERTIES "
            f"({CDF_PROPERTY} = true) (new tables get it from write())"
        ) from exc


def optimize(name: str) -> dict:
    """Compact small files (``OPTIMIZE``); returns the compaction metrics (files added and removed, ...)."""
    full = errors.quoted_name(require_table(name))
    row = errors.with_retries(f"optimize {full}", lambda: get_spark().sql(f"OPTIMIZE {full}").first())
    return row["metrics"].asDict(recursive=True) if row else {}


def vacuum(name: str, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
    """Delete files no longer referenced by versions younger than ``retention_hours`` (``VACUUM``); returns them.

    Time travel to versions older than the retention stops working for vacuumed files. A retention
    under Delta's 168-hour safety check turns the check off for this call only.
    """
    if retention_hours < 0:
        raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
    spark, full = get_spark(), errors.quoted_name(require_table(name))
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


def get_properties(name: str) -> dict[str, str]:
    """The table's properties (e.g. ``delta.enableChangeDataFeed``), from ``SHOW TBLPROPERTIES``."""
    full = errors.quoted_name(require_table(name))
    return {r["key"]: r["value"] for r in get_spark().sql(f"SHOW TBLPROPERTIES {full}").collect()}
