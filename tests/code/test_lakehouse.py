"""The table helpers over real Delta tables: Delta Lake for Spark, three-level names through the catalog."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pytest

from utils import lakehouse as lh
from utils import lakehouse_errors as errors


def folder(name: str) -> Path:
    """The table's files on disk (its ``DESCRIBE DETAIL`` location)."""
    return Path(urlparse(lh.table_location(name)).path)


@pytest.fixture
def name() -> str:
    """A fresh table name per test."""
    return f"test.lakehouse.t_{uuid.uuid4().hex[:10]}"


def rows(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": range(start, start + n), "amount": [float(i) for i in range(start, start + n)],
                         "label": [f"r{i}" for i in range(start, start + n)]})


def properties(spark, name: str) -> dict[str, str]:
    return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id", ignore_index=True)


# ---------------------------------------------------------------- names


def test_parse_name_splits_and_lowercases() -> None:
    assert errors.parse_name("Acme.MLOps.Orders_2") == ("acme", "mlops", "orders_2")


@pytest.mark.parametrize("bad", ["orders", "a.b", "a.b.c.d", "a..c", "a.b-c.d", "a.b.c d", "", "a.b.ö"])
def test_invalid_names_are_rejected_with_the_expected_form(bad: str) -> None:
    with pytest.raises(ValueError, match=r"catalog\.schema\.table"):
        errors.parse_name(bad)
    with pytest.raises(ValueError, match="invalid table name"):
        lh.write(rows(1), bad)


# ---------------------------------------------------------------- round trips


def test_pandas_and_arrow_round_trip_into_a_real_delta_table(spark, name: str) -> None:
    v0 = lh.write(rows(3), name)
    v1 = lh.write(pa.Table.from_pandas(rows(2, start=3), preserve_index=False), name)
    assert (v0, v1) == (0, 1)
    assert (folder(name) / "_delta_log" / "00000000000000000000.json").is_file()
    assert spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()["version"] == 1  # Delta's own history sees it
    assert lh.exists(name) and name in lh.list_tables("test", "lakehouse")
    pd.testing.assert_frame_equal(by_id(lh.read_pandas(name)), rows(5))
    assert lh.read_pandas(name, columns=["label"]).columns.tolist() == ["label"]


def test_spark_round_trip_and_read_returns_spark(spark, name: str) -> None:
    ts = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    df = spark.createDataFrame([(1, "a", ts), (2, "b", ts)], "id long, label string, ts timestamp")
    assert lh.write(df, name) == 0
    back = lh.read(name)
    assert back.schema.simpleString() == "struct<id:bigint,label:string,ts:timestamp>"
    assert sorted((r.id, r.label, r.ts) for r in back.collect()) == [(1, "a", ts.replace(tzinfo=None)), (2, "b", ts.replace(tzinfo=None))]


def test_types_are_normalised_so_pandas_and_spark_agree(spark, name: str) -> None:
    frame = pd.DataFrame({
        "id": pd.Series([1, 2], dtype="uint32"),
        "when": pd.to_datetime(["2024-01-01 10:00:00.123456789", "2024-01-02"], format="ISO8601"),  # naive, nanoseconds
        "kind": pd.Categorical(["x", "y"]),
    })
    lh.write(frame, name)
    assert spark.table(name).schema.simpleString() == "struct<id:bigint,when:timestamp,kind:string>"
    # a narrower integer appends into the wider column
    lh.write(pd.DataFrame({"id": pd.Series([3], dtype="int32"), "when": [pd.Timestamp("2024-01-03", tz="UTC")],
                           "kind": ["z"]}), name)
    back = by_id(lh.read_pandas(name))
    assert back["id"].tolist() == [1, 2, 3]
    assert back["when"][0] == pd.Timestamp("2024-01-01 10:00:00.123456", tz="UTC")


def test_write_rejects_unknown_mode_and_input(name: str) -> None:
    with pytest.raises(ValueError, match="'append' or 'overwrite'"):
        lh.write(rows(1), name, mode="upsert")
    with pytest.raises(TypeError, match="pandas DataFrame"):
        lh.write([{"id": 1}], name)
    assert not lh.exists(name)


def test_overwrite_replaces_rows(name: str) -> None:
    lh.write(rows(3), name)
    assert lh.write(rows(2, start=10), name, mode="overwrite") == 1
    assert sorted(lh.read_pandas(name)["id"]) == [10, 11]


def test_partitioned_table_keeps_its_partitioning(name: str) -> None:
    frame = pd.DataFrame({"region": ["north", "south", "north"], "id": [1, 2, 3]})
    lh.write(frame, name, partition_by=["region"])
    assert sorted(p.name for p in folder(name).glob("region=*")) == ["region=north", "region=south"]
    with pytest.raises(ValueError, match=r"partitioned by \['region'\], not \['id'\]"):
        lh.write(frame, name, partition_by=["id"])
    lh.merge(pd.DataFrame({"region": ["east"], "id": [4]}), name, keys=["id"])
    assert by_id(lh.read_pandas(name, columns=["id", "region"]))["region"].tolist() == ["north", "south", "north", "east"]


# ---------------------------------------------------------------- time travel and history


def test_time_travel_by_version_and_timestamp(spark, name: str) -> None:
    lh.write(rows(2), name)
    time.sleep(0.02)
    lh.write(rows(3, start=2), name)
    assert len(lh.read_pandas(name, version=0)) == 2
    assert len(lh.read_pandas(name, version=1)) == 5
    hist = lh.history(name).set_index("version")
    t0, t1 = hist.loc[0, "timestamp"], hist.loc[1, "timestamp"]
    assert lh.read(name, version=0).count() == 2
    assert lh.read(name, timestamp=t1.isoformat()).count() == 5
    # the latest commit at or before the timestamp, as Delta resolves it
    assert lh.read(name, timestamp=t0.to_pydatetime()).count() == 2
    assert lh.read(name, timestamp=(t0 + (t1 - t0) / 2).isoformat()).count() == 2


def test_history_lists_operations_newest_first(spark, name: str) -> None:
    lh.write(rows(2), name)
    lh.write(rows(2, start=2), name)
    lh.merge(rows(1, start=9), name, keys=["id"])
    spark.sql(f"OPTIMIZE {name}")
    hist = lh.history(name)
    assert {"version", "timestamp", "operation", "operationParameters", "operationMetrics"} <= set(hist.columns)
    assert hist["version"].tolist() == [3, 2, 1, 0]
    assert hist["operation"].tolist() == ["OPTIMIZE", "MERGE", "WRITE", "CREATE TABLE AS SELECT"]
    assert hist["timestamp"].is_monotonic_decreasing and str(hist["timestamp"].dt.tz) == "UTC"
    assert int(hist.loc[hist.version == 2, "operationMetrics"].iloc[0]["numTargetRowsInserted"]) == 1
    assert lh.current_version(name) == 3


# ---------------------------------------------------------------- merge


def test_merge_upserts_and_counts(name: str) -> None:
    first = lh.merge(rows(3), name, keys=["id"])  # creates the table
    assert first == {"num_inserted": 3, "num_updated": 0, "num_deleted": 0, "version": 0}
    change = pd.DataFrame({"id": [1, 2, 7], "amount": [10.0, 20.0, 70.0], "label": ["u1", "u2", "n7"]})
    metrics = lh.merge(change, name, keys=["id"])
    assert metrics == {"num_inserted": 1, "num_updated": 2, "num_deleted": 0, "version": 1}
    assert lh.current_version(name) == 1
    got = by_id(lh.read_pandas(name))
    assert got["id"].tolist() == [0, 1, 2, 7]
    assert got["label"].tolist() == ["r0", "u1", "u2", "n7"]


def test_merge_flags_insert_only_and_delete_missing(name: str) -> None:
    lh.write(rows(4), name)
    change = pd.DataFrame({"id": [1, 5], "amount": [-1.0, 5.0], "label": ["changed", "new"]})
    assert lh.merge(change, name, keys=["id"], update=False)["num_updated"] == 0
    assert by_id(lh.read_pandas(name))["label"].tolist() == ["r0", "r1", "r2", "r3", "new"]
    metrics = lh.merge(change, name, keys=["id"], delete_missing=True)
    assert (metrics["num_updated"], metrics["num_deleted"]) == (2, 3)
    assert sorted(lh.read_pandas(name)["id"]) == [1, 5]


def test_merge_rejects_duplicate_and_null_keys_and_leaves_table_alone(name: str) -> None:
    lh.write(rows(3), name)
    dupes = pd.DataFrame({"id": [1, 1, 4], "amount": [1.0, 2.0, 4.0], "label": ["a", "b", "c"]})
    with pytest.raises(ValueError, match=r"more than once.*'id': 1"):
        lh.merge(dupes, name, keys=["id"])
    nulls = pd.DataFrame({"id": [1.0, None], "amount": [1.0, 2.0], "label": ["a", "b"]})
    with pytest.raises(ValueError, match="contain nulls"):
        lh.merge(nulls, name, keys=["id"])
    with pytest.raises(ValueError, match=r"keys \['nope'\]"):
        lh.merge(rows(1), name, keys=["nope"])
    assert lh.current_version(name) == 0


# ---------------------------------------------------------------- schema enforcement and evolution


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (pd.DataFrame({"id": [9], "amount": [9.0], "label": ["x"], "extra": [1]}), ["extra columns", "'extra'"]),
        (pd.DataFrame({"id": [9], "amount": [9.0]}), ["missing columns", "'label'"]),
        (pd.DataFrame({"id": ["nine"], "amount": [9.0], "label": ["x"]}), ["type changes", "id: table bigint -> data string"]),
    ],
)
@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_schema_mismatch_names_columns_and_changes_nothing(
    name: str, frame: pd.DataFrame, expected: list[str], mode: str
) -> None:
    lh.write(rows(2), name)
    with pytest.raises(errors.SchemaMismatchError) as err:
        lh.write(frame, name, mode=mode)
    message = str(err.value)
    assert name in message and "merge_schema=True" in message
    assert all(part in message for part in expected), message
    assert lh.current_version(name) == 0
    pd.testing.assert_frame_equal(by_id(lh.read_pandas(name)), rows(2))
    with pytest.raises(errors.SchemaMismatchError):
        lh.merge(frame, name, keys=["id"])
    assert lh.current_version(name) == 0


def test_merge_schema_adds_columns_and_overwrite_replaces_schema(name: str) -> None:
    lh.write(rows(2), name)
    wider = rows(1, start=5).assign(score=[0.5])
    assert lh.write(wider, name, merge_schema=True) == 1
    got = by_id(lh.read_pandas(name))
    assert got.columns.tolist() == ["id", "amount", "label", "score"]
    assert got["score"].isna().tolist() == [True, True, False]
    # missing columns are filled with nulls when evolving; type changes still need an overwrite
    lh.write(pd.DataFrame({"id": [6]}), name, merge_schema=True)
    assert lh.read_pandas(name, version=2).query("id == 6")["label"].isna().all()
    with pytest.raises(errors.SchemaMismatchError, match="mode='overwrite', merge_schema=True"):
        lh.write(pd.DataFrame({"id": ["x"]}), name, merge_schema=True)
    lh.write(pd.DataFrame({"key": ["a"], "value": [1]}), name, mode="overwrite", merge_schema=True)
    assert lh.read_pandas(name).to_dict("list") == {"key": ["a"], "value": [1]}


# ---------------------------------------------------------------- change data feed


def test_change_data_feed_after_merge(spark, name: str) -> None:
    lh.write(rows(3), name)
    assert properties(spark, name)["delta.enableChangeDataFeed"] == "true"
    change = pd.DataFrame({"id": [1, 8], "amount": [100.0, 8.0], "label": ["u1", "n8"]})
    version = lh.merge(change, name, keys=["id"])["version"]
    changes = spark.read.option("readChangeFeed", "true").option("startingVersion", version).table(name).toPandas()
    assert {"_change_type", "_commit_version", "_commit_timestamp"} <= set(changes.columns)
    assert set(changes["_commit_version"]) == {version}
    kinds = {(r["_change_type"], r["id"], r["label"]) for _, r in changes.iterrows()}
    assert kinds == {("update_preimage", 1, "r1"), ("update_postimage", 1, "u1"), ("insert", 8, "n8")}
    everything = spark.read.option("readChangeFeed", "true").option("startingVersion", 0).table(name).toPandas()
    assert (everything["_change_type"] == "insert").sum() == 4  # 3 written + 1 merged in


# ---------------------------------------------------------------- maintenance, metadata, errors


def test_description_and_properties(spark, name: str) -> None:
    lh.write(rows(1), name, description="orders, one row per order")
    assert lh.get_description(name) == "orders, one row per order"
    lh.set_description(name, "renamed")
    assert lh.get_description(name) == "renamed"
    assert properties(spark, name)["delta.enableChangeDataFeed"] == "true"


def test_unknown_table_and_version_give_clear_errors(name: str) -> None:
    for call in (lambda: lh.read_pandas(name), lambda: lh.history(name), lambda: lh.current_version(name),
                 lambda: lh.drop(name)):
        with pytest.raises(errors.TableNotFoundError, match=rf"{name}.*list_tables\(\)") as err:
            call()
        assert isinstance(err.value, LookupError)
    lh.write(rows(1), name)
    lh.write(rows(1, start=1), name)
    with pytest.raises(errors.VersionNotFoundError, match=rf"{name}.*no version 7.*0 to 1.*DELTA_VERSION_NOT_FOUND"):
        lh.read_pandas(name, version=7)
    with pytest.raises(errors.VersionNotFoundError, match="no version at 2001-01-01.*0 to 1"):
        lh.read(name, timestamp="2001-01-01")


def test_a_vacuumed_version_is_named_as_such_not_left_to_fail_on_collect(spark, name: str) -> None:
    """DESCRIBE HISTORY keeps a vacuumed version: reading it says VACUUM took its files, at read time (#34)."""
    lh.write(rows(3), name)
    lh.write(rows(2, start=3), name, mode="overwrite")
    assert len(lh.read_pandas(name, version=0)) == 3 and lh.vacuumed(name, 0) is None  # no VACUUM yet
    spark.sql("SET spark.databricks.delta.retentionDurationCheck.enabled=false")
    try:
        spark.sql(f"VACUUM {name} RETAIN 0 HOURS")
    finally:
        spark.sql("SET spark.databricks.delta.retentionDurationCheck.enabled=true")
    with pytest.raises(errors.VersionVacuumedError, match=rf"version 0 of '{name}' cannot be read: VACUUM at version 2 "
                       r"\(.*retention 0 h\) removed its data files.*deletedFileRetentionDuration") as err:
        lh.read(name, version=0)
    assert isinstance(err.value, errors.VersionNotFoundError)
    assert len(lh.read_pandas(name, version=1)) == 2 and lh.vacuumed(name, 1) is None  # the current files stay


def test_drop_removes_table(name: str) -> None:
    lh.write(rows(1), name)
    where = folder(name)
    lh.drop(name)
    assert not lh.exists(name) and not where.exists()
    assert name not in lh.list_tables()
    with pytest.raises(errors.TableNotFoundError):
        lh.drop(name)


# ---------------------------------------------------------------- concurrency


def test_retries_on_commit_conflicts_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "MAX_ATTEMPTS", 4)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added")
        return "done"

    assert errors.with_retries("write to 'a.b.c'", flaky) == "done" and len(calls) == 3

    def always() -> None:
        raise RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added")

    with pytest.raises(errors.LakehouseError, match="write to 'a.b.c' gave up after 4 attempts"):
        errors.with_retries("write to 'a.b.c'", always)
    with pytest.raises(KeyError):  # other errors are not retried
        errors.with_retries("x", lambda: {}["missing"])


N_APPENDS = 6


def _concurrent_writer(worker: int, table: str, barrier, results) -> None:
    """Append one row at a time and upsert every third step, in this process's own Spark session."""
    from utils import lakehouse
    from utils.platform import get_spark

    get_spark()
    barrier.wait(timeout=600)  # both sessions up: the writes overlap (a writer that died breaks the barrier)
    for i in range(N_APPENDS):
        key = worker * 1000 + i
        lakehouse.write(pd.DataFrame({"id": [key], "worker": [worker], "touched": [0]}), table)
        if i % 3 == 2:
            lakehouse.merge(pd.DataFrame({"id": [key, key + 500], "worker": [worker] * 2, "touched": [1, 1]}),
                            table, keys=["id"])
    results.put(worker)


def test_concurrent_writers_lose_and_duplicate_nothing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from utils.platform import REPO_ROOT

    # Loading an MLflow model with code_paths (earlier tests do) puts the model's bundled copy of `utils`
    # first on sys.path, and spawned children inherit sys.path: they must import the project under test.
    monkeypatch.setattr(sys, "path", [str(REPO_ROOT), *(p for p in sys.path if p != str(REPO_ROOT))])
    ctx = mp.get_context("spawn")  # a JVM does not survive fork
    barrier, results = ctx.Barrier(2), ctx.Queue()
    child = ctx.Process(target=_concurrent_writer, args=(1, name, barrier, results))
    child.start()
    try:  # this test process is the second writer, with its own JVM: two processes, two Delta writers
        _concurrent_writer(2, name, barrier, results)
    finally:
        child.join(timeout=300)
    assert child.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in range(2)) == [1, 2]
    got = lh.read_pandas(name)
    expected = {w * 1000 + i for w in (1, 2) for i in range(N_APPENDS)}
    expected |= {w * 1000 + i + 500 for w in (1, 2) for i in range(N_APPENDS) if i % 3 == 2}
    assert len(got) == len(expected) and set(got["id"]) == expected
    touched = set(got.loc[got["touched"] == 1, "id"])
    assert touched == {k for k in expected if k % 1000 % 3 == 2 or k % 1000 >= 500}
