"""Feature lineage on both platforms: locally the twin's registry, recorded with each write; on Databricks
Unity Catalog's lineage system table, ``system.access.table_lineage``, read with a parameterised query.

The Databricks branch runs offline: a recording session checks the query text and named parameters it
sends and the frame it builds, and the query itself runs on local Spark against rows shaped like the
system table (its documented columns), with the table name swapped for a temporary view.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from pyspark.sql import Row

from tests.support import table
from utils import lakehouse, platform
from utils.local.feature_store import LocalFeatureEngineeringClient

TABLE = "workshop.ada.customer_activity_features"
SOURCE = "workshop.ada.silver_clickstream"

# The table lineage system table's columns (https://docs.databricks.com/aws/en/admin/system-tables/lineage)
SYSTEM_TABLE_SCHEMA = (
    "account_id string, metastore_id string, workspace_id string, entity_type string, entity_id string, "
    "entity_run_id string, source_table_full_name string, source_table_catalog string, source_table_schema string, "
    "source_table_name string, source_path string, source_type string, target_table_full_name string, "
    "target_table_catalog string, target_table_schema string, target_table_name string, target_path string, "
    "target_type string, created_by string, event_time timestamp, event_date date"
)


def _event(source: str | None, target: str | None, minute: int, run: str = "r1", source_type: str = "TABLE") -> tuple:
    def parts(full: str | None) -> list[str | None]:
        return full.split(".") if full else [None, None, None]

    at = dt.datetime(2026, 11, 30, 9, minute)
    return ("acct", "meta", "123", "NOTEBOOK", "nb-1", run, source, *parts(source),
            None if source else "s3://bucket/raw", source_type if source else "PATH", target, *parts(target), None,
            "TABLE" if target else None, "ada@example.com", at, at.date())


class _RecordingSpark:
    """A session that records each ``sql(query, args)`` call and answers with the given rows."""

    def __init__(self, rows: list[Row] | None = None, error: Exception | None = None) -> None:
        self.rows, self.error, self.calls = rows or [], error, []

    def sql(self, query: str, args: dict | None = None):
        self.calls.append((query, args))
        if self.error is not None:
            raise self.error
        rows = self.rows
        return type("Result", (), {"collect": lambda _self: list(rows)})()


@pytest.fixture
def on_databricks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")


def test_databricks_reads_the_lineage_system_table_with_named_parameters(on_databricks, monkeypatch, capsys) -> None:
    at = dt.datetime(2026, 11, 30, 9, 5)
    row = Row(feature_table=TABLE, source_table=SOURCE, source_type="TABLE", entity_type="NOTEBOOK", entity_id="nb-1",
              entity_run_id="r1", created_by="ada@example.com", event_time=at)
    session = _RecordingSpark([row])
    monkeypatch.setattr(platform, "get_spark", lambda *a, **k: session)
    lineage = platform.feature_lineage("Workshop.Ada.Customer_Activity_Features")
    [(query, args)] = session.calls
    assert query == platform.LINEAGE_QUERY and "FROM system.access.table_lineage" in query
    assert "target_table_full_name = :table" in query and "Workshop" not in query  # a marker, not formatted in
    assert args == {"table": TABLE}  # Unity Catalog stores names in lower case
    assert list(lineage.columns) == platform.LINEAGE_COLUMNS
    assert lineage[["feature_table", "source_table", "event_time"]].values.tolist() == [[TABLE, SOURCE, at]]
    assert capsys.readouterr().out == ""
    assert platform.lineage_is_immediate() is False


def test_the_lineage_query_keeps_the_tables_sources_in_time_order(spark) -> None:
    other = "workshop.grace.customer_activity_features"
    events = [
        _event(SOURCE, TABLE, 7, run="r2"),
        _event(SOURCE, TABLE, 5),
        _event(SOURCE, TABLE, 5),                       # the same event twice: shown once
        _event("workshop.ada.silver_customers", TABLE, 6),
        _event(TABLE, TABLE, 8),                         # a MERGE reading its own target
        _event(None, TABLE, 9),                          # a path read: no source table
        _event(SOURCE, other, 4),                        # another attendee's table
        _event(TABLE, None, 3),                          # a read of the feature table
    ]
    view = f"table_lineage_{uuid.uuid4().hex[:8]}"
    spark.createDataFrame(events, SYSTEM_TABLE_SCHEMA).createOrReplaceTempView(view)
    query = platform.LINEAGE_QUERY.replace("system.access.table_lineage", view)
    # The local engine's Delta SQL parser drops parameter markers on Spark 4.1 (delta-io/delta#7640), and Spark
    # Connect's planner ignores the legacy substitution that binds them in classic mode (apache/spark#55392): here
    # the marker becomes its literal, so this checks the query's filters and order. Databricks' own parser binds
    # the marker as written (feature_lineage passes args).
    got = spark.sql(query.replace(":table", f"'{TABLE}'")).toPandas()
    assert list(got.columns) == platform.LINEAGE_COLUMNS
    assert got[["source_table", "entity_run_id"]].values.tolist() == [
        [SOURCE, "r1"], ["workshop.ada.silver_customers", "r1"], [SOURCE, "r2"]]
    assert set(got.feature_table) == {TABLE} and got.event_time.is_monotonic_increasing


def test_no_lineage_yet_is_an_empty_frame_and_one_line_saying_why(on_databricks, monkeypatch, capsys) -> None:
    monkeypatch.setattr(platform, "get_spark", lambda *a, **k: _RecordingSpark([]))
    lineage = platform.feature_lineage(TABLE)
    assert lineage.empty and list(lineage.columns) == platform.LINEAGE_COLUMNS
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "minutes after" in out and "Catalog Explorer" in out


def test_an_unreadable_system_table_is_one_line_naming_the_fix(on_databricks, monkeypatch, capsys) -> None:
    error = RuntimeError("[TABLE_OR_VIEW_NOT_FOUND] The table or view `system`.`access`.`table_lineage` cannot be found.\n"
                         "Verify the spelling ... (long JVM stack follows)")
    monkeypatch.setattr(platform, "get_spark", lambda *a, **k: _RecordingSpark(error=error))
    lineage = platform.feature_lineage(TABLE)
    assert lineage.empty and list(lineage.columns) == platform.LINEAGE_COLUMNS
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "TABLE_OR_VIEW_NOT_FOUND" in out and "GRANT SELECT" in out


def test_record_lineage_is_left_to_unity_catalog_on_databricks(on_databricks, monkeypatch) -> None:
    from utils.local import feature_registry

    monkeypatch.setattr(feature_registry, "record_lineage", lambda *a, **k: pytest.fail("the local registry was written"))
    platform.record_lineage(TABLE, {SOURCE: 3})


def test_locally_lineage_is_recorded_with_the_write(spark, monkeypatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    source = table("lineage_test", f"src_{uuid.uuid4().hex[:8]}")
    lakehouse.write(spark.createDataFrame([("C1", 1.0)], "customer_id string, rate double"), source, mode="overwrite")
    name = table("lineage_test", f"feat_{uuid.uuid4().hex[:8]}")
    LocalFeatureEngineeringClient().create_table(name=name, primary_keys=["customer_id"], df=lakehouse.read(source))
    platform.record_lineage(name, [source])
    lineage = platform.feature_lineage(name)
    assert platform.lineage_is_immediate() is True
    assert list(lineage.columns) == ["feature_table", "feature_table_version", "mode", "source_table", "source_version",
                                     "written_at"]
    assert lineage[["feature_table", "source_table"]].values.tolist()[-1] == [name, source]
    assert lineage.source_version.iloc[-1] == lakehouse.current_version(source)
