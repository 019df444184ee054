"""The local Feature Engineering client: tables, point-in-time training sets, models, online publish."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from databricks.feature_engineering import FeatureLookup
from databricks.ml_features.entities.feature_table import FeatureTable
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from tests import support
from utils import lakehouse
from utils.local import online_store as online
from utils.local.feature_lookups import FeatureLookupError
from utils.local.feature_registry import FeatureTableNotFoundError
from utils.local.feature_spec import MODEL_DATA_DIR, SPEC_FILE, FeatureSpec
from utils.local.feature_store import LocalFeatureEngineeringClient
from utils.local.feature_writes import FeatureTableWriteError
from utils.local.point_in_time import within_spine_time_range
from utils.platform import (
    feature_client,
    feature_lineage,
    online_store_spec,
    record_lineage,
)

BASE = dt.datetime(2024, 1, 1)
SEEDS = range(6)


def _name(prefix: str) -> str:
    return support.table("fs_test", f"{prefix}_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def module_spark(spark):
    """The shared Spark session, for module-scoped fixtures."""
    return spark


@pytest.fixture(scope="module")
def fe() -> LocalFeatureEngineeringClient:
    return LocalFeatureEngineeringClient()


def _value(v: Any) -> Any:
    """A cell as a plain Python value, NaN/NaT as None (to compare Spark output with the oracle)."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if hasattr(v, "item"):
        return v.item()
    return v


# ---------------------------------------------------------------- random worlds and a brute-force oracle

CUSTOMER_SCHEMA = StructType([
    StructField("customer_id", LongType()), StructField("ts", TimestampType()),
    StructField("spend", DoubleType()), StructField("visits", LongType()), StructField("segment", StringType()),
])
AFFINITY_SCHEMA = StructType([
    StructField("customer_id", LongType()), StructField("region", StringType()), StructField("ts", TimestampType()),
    StructField("affinity", DoubleType()),
])
PLANT_SCHEMA = StructType([
    StructField("plant_id", IntegerType()), StructField("price", DoubleType()), StructField("care", StringType()),
])
SPINE_SCHEMA = StructType([
    StructField("rid", LongType()), StructField("customer_id", LongType()), StructField("region", StringType()),
    StructField("plant_id", IntegerType()), StructField("event_ts", TimestampType()), StructField("label", IntegerType()),
])


def _minute(m: int) -> dt.datetime:
    return BASE + dt.timedelta(minutes=int(m))


def _world(seed: int) -> dict[str, list[tuple]]:
    """Random small tables for one seed: keys disjoint across seeds, timestamps on a coarse grid (ties)."""
    rng = np.random.default_rng(seed)
    offset = seed * 1000
    n_cust, n_plants = int(rng.integers(2, 6)), int(rng.integers(2, 5))
    customers, affinity = [], []
    for c in range(n_cust):
        for m in rng.choice(30, size=int(rng.integers(0, 7)), replace=False):
            spend = None if rng.random() < 0.15 else float(rng.normal(50, 10))
            segment = [None, "new", "loyal"][int(rng.integers(0, 3))]
            customers.append((offset + c, _minute(m), spend, int(rng.integers(0, 100)), segment))
        for region in ("eu", "us"):
            for m in rng.choice(30, size=int(rng.integers(0, 4)), replace=False):
                affinity.append((offset + c, region, _minute(m), float(rng.random())))
    plants = [(offset + p, float(rng.integers(3, 40)), None if rng.random() < 0.3 else str(rng.choice(["easy", "hard"])))
              for p in range(n_plants) if rng.random() < 0.8]
    spine = []
    for i in range(int(rng.integers(15, 35))):
        ts = None if rng.random() < 0.08 else _minute(int(rng.integers(-2, 34)))
        region = str(rng.choice(["eu", "us", "apac"]))
        spine.append((offset * 100 + i, offset + int(rng.integers(0, n_cust + 2)), region,
                      offset + int(rng.integers(0, n_plants + 2)), ts, int(rng.integers(0, 2))))
    # duplicate a few spine rows exactly: same key and same timestamp must get the same features
    spine += [(offset * 100 + 900 + j, *spine[j][1:]) for j in range(3)]
    return {"customers": customers, "affinity": affinity, "plants": plants, "spine": spine}


def _oracle(spine: pd.DataFrame, table: pd.DataFrame, lookup_key: list[str], pks: list[str], ts_key: str | None,
            ts_col: str | None, outputs: dict[str, str], lookback: dt.timedelta | None,
            defaults: dict[str, Any]) -> pd.DataFrame:
    """Brute force: for each spine row scan the whole table for the latest eligible row."""
    out: dict[str, list[Any]] = {o: [] for o in outputs.values()}
    for _, row in spine.iterrows():
        match = None
        keys_known = all(_value(row[k]) is not None for k in lookup_key)
        time_known = ts_key is None or _value(row[ts_key]) is not None
        if keys_known and time_known:
            cand = table
            for lk, pk in zip(lookup_key, pks):
                cand = cand[cand[pk] == row[lk]]
            if ts_col is not None and ts_key is not None:
                cand = cand[cand[ts_col] <= row[ts_key]]
                if lookback is not None:
                    cand = cand[cand[ts_col] >= row[ts_key] - lookback]
            if len(cand):
                match = cand.loc[pd.to_datetime(cand[ts_col]).idxmax()] if ts_col is not None else cand.iloc[0]
        for f, o in outputs.items():
            v = None if match is None else _value(match[f])
            out[o].append(defaults.get(o) if v is None else v)
    return pd.DataFrame(out, index=spine.index)


@pytest.fixture(scope="module")
def worlds(module_spark, fe):
    """Three feature tables holding every seed's random data (disjoint keys), created once."""
    spark = module_spark
    data = {s: _world(s) for s in SEEDS}
    rows = {k: [r for s in SEEDS for r in data[s][k]] for k in ("customers", "affinity", "plants")}
    names = {k: _name(k) for k in rows}
    fe.create_table(name=names["customers"], primary_keys=["customer_id", "ts"], timeseries_column="ts",
                    df=spark.createDataFrame(rows["customers"], CUSTOMER_SCHEMA))
    fe.create_table(name=names["affinity"], primary_keys=["customer_id", "region", "ts"], timeseries_column="ts",
                    df=spark.createDataFrame(rows["affinity"], AFFINITY_SCHEMA))
    fe.create_table(name=names["plants"], primary_keys="plant_id",
                    df=spark.createDataFrame(rows["plants"], PLANT_SCHEMA))
    frames = {
        "customers": pd.DataFrame(rows["customers"], columns=CUSTOMER_SCHEMA.names, dtype=object),
        "affinity": pd.DataFrame(rows["affinity"], columns=AFFINITY_SCHEMA.names, dtype=object),
        "plants": pd.DataFrame(rows["plants"], columns=PLANT_SCHEMA.names, dtype=object),
    }
    return {"data": data, "names": names, "frames": frames}


def test_point_in_time_training_set_matches_a_brute_force_oracle(spark, fe, worlds):
    """Every seed's random world in one training set (one Spark query), checked row by row."""
    names, frames = worlds["names"], worlds["frames"]
    customers, affinity, plants = names["customers"], names["affinity"], names["plants"]
    minutes = dt.timedelta(minutes=1)
    # (lookup, table frame, lookup keys, table keys, timestamp key, timeseries column, lookback, defaults)
    cases = [
        (FeatureLookup(table_name=customers, lookup_key="customer_id", feature_names=["spend", "visits"],
                       timestamp_lookup_key="event_ts"),
         "customers", ["customer_id"], None, {}),
        (FeatureLookup(table_name=customers, lookup_key="customer_id", feature_names=["spend"],
                       rename_outputs={"spend": "spend_same_minute"}, timestamp_lookup_key="event_ts",
                       lookback_window=dt.timedelta(0), default_values={"spend_same_minute": -1.0}),
         "customers", ["customer_id"], dt.timedelta(0), {"spend_same_minute": -1.0}),
        (FeatureLookup(table_name=customers, lookup_key="customer_id", feature_names=["spend", "visits"],
                       rename_outputs={"spend": "spend_3m", "visits": "visits_3m"}, timestamp_lookup_key="event_ts",
                       lookback_window=3 * minutes, default_values={"spend_3m": -1.0}),
         "customers", ["customer_id"], 3 * minutes, {"spend_3m": -1.0}),
        (FeatureLookup(table_name=affinity, lookup_key=["customer_id", "region"], timestamp_lookup_key="event_ts",
                       default_values={"affinity": 0.5}),
         "affinity", ["customer_id", "region"], None, {"affinity": 0.5}),
        (FeatureLookup(table_name=affinity, lookup_key=["customer_id", "region"], feature_names=["affinity"],
                       rename_outputs={"affinity": "affinity_10m"}, timestamp_lookup_key="event_ts",
                       lookback_window=10 * minutes),
         "affinity", ["customer_id", "region"], 10 * minutes, {}),
        (FeatureLookup(table_name=plants, lookup_key="plant_id", feature_names=["price", "care"],
                       default_values={"care": "unknown"}),
         "plants", ["plant_id"], None, {"care": "unknown"}),
        (FeatureLookup(table_name=customers, lookup_key="customer_id", feature_names=["segment"],
                       rename_outputs={"segment": "segment_latest"}),  # no timestamp key: the latest value
         "customers", ["customer_id"], None, {}),
    ]
    spine_rows = [r for s in SEEDS for r in worlds["data"][s]["spine"]]
    spine = spark.createDataFrame(spine_rows, SPINE_SCHEMA)
    training_set = fe.create_training_set(df=spine, feature_lookups=[c[0] for c in cases], label="label",
                                          exclude_columns=["region"])
    got = training_set.load_df().toPandas().set_index("rid").sort_index()

    spine_pd = pd.DataFrame(spine_rows, columns=SPINE_SCHEMA.names, dtype=object).set_index("rid").sort_index()
    expected = []
    for lookup, table, keys, window, defaults in cases:
        frame = frames[table]
        ts_col = "ts" if "ts" in frame.columns else None
        features = lookup.feature_names or [c for c in frame.columns if c not in keys and c != ts_col]
        outputs = {f: lookup._get_output_name(f) for f in features}
        expected.append(_oracle(spine_pd, frame, keys, keys, lookup.timestamp_lookup_key, ts_col, outputs, window,
                                defaults))
    expected = pd.concat(expected, axis=1)

    assert list(got.columns) == ["customer_id", "plant_id", "event_ts", "label", *expected.columns]
    assert list(got.index) == list(spine_pd.index)  # every spine row exactly once, duplicates included
    for column in expected.columns:
        assert [_value(v) for v in got[column]] == [_value(v) for v in expected[column]], column
    # the random worlds exercise what the oracle is for: matches, misses, ties and defaults
    assert got["spend"].notna().any() and got["spend"].isna().any()
    assert (got["spend_same_minute"] == -1.0).any() and (got["spend_same_minute"] != -1.0).any()
    assert (got["care"] == "unknown").any() and (got["affinity"] == 0.5).any()


def test_point_in_time_join_never_leaks_the_future_where_a_naive_join_does(spark, fe):
    rng = np.random.default_rng(7)
    name = _name("as_of")
    rows = [(c, _minute(m), float(m), 0, None) for c in range(5) for m in rng.choice(60, 8, replace=False)]
    fe.create_table(name=name, primary_keys=["customer_id", "ts"], timeseries_column="ts",
                    df=spark.createDataFrame(rows, CUSTOMER_SCHEMA))  # spend = the minute it was computed
    spine = spark.createDataFrame(
        [(i, int(rng.integers(0, 5)), "eu", 0, _minute(int(rng.integers(0, 60))), 0) for i in range(200)], SPINE_SCHEMA)
    pit = fe.create_training_set(df=spine, label="label", feature_lookups=[
        FeatureLookup(table_name=name, lookup_key="customer_id", feature_names=["spend"],
                      timestamp_lookup_key="event_ts")]).load_df()
    event_minute = (F.col("event_ts").cast("long") - int(BASE.replace(tzinfo=dt.UTC).timestamp())) / 60
    assert pit.where(F.col("spend") > event_minute).count() == 0
    assert pit.where(F.col("spend").isNotNull()).count() > 0
    naive = spine.join(fe.read_table(name=name).select("customer_id", "spend"), "customer_id")
    assert naive.where(F.col("spend") > event_minute).count() > 0  # a plain key join sees the future


def test_timeseries_filtering_reads_only_the_spine_time_range_and_changes_nothing(spark, fe, worlds):
    names = worlds["names"]
    spine = spark.createDataFrame([r for s in SEEDS for r in worlds["data"][s]["spine"]], SPINE_SCHEMA)
    lookups = [
        FeatureLookup(table_name=names["customers"], lookup_key="customer_id", feature_names=["spend"],
                      timestamp_lookup_key="event_ts"),
        FeatureLookup(table_name=names["affinity"], lookup_key=["customer_id", "region"],
                      timestamp_lookup_key="event_ts", lookback_window=dt.timedelta(minutes=3)),
        FeatureLookup(table_name=names["plants"], lookup_key="plant_id", feature_names=["price"]),
    ]

    def build(filtering: bool) -> pd.DataFrame:
        training_set = fe.create_training_set(df=spine, feature_lookups=lookups, label="label",
                                              use_timeseries_filtering=filtering)
        return training_set.load_df().toPandas().set_index("rid").sort_index()

    plain, filtered = build(False), build(True)
    assert list(filtered.columns) == list(plain.columns) and list(filtered.index) == list(plain.index)
    for column in plain.columns:
        assert [_value(v) for v in filtered[column]] == [_value(v) for v in plain[column]], column

    narrow = spine.where(F.col("event_ts").between(F.lit(_minute(10)), F.lit(_minute(12))))
    times = narrow.toPandas()["event_ts"]
    table = fe.read_table(name=names["customers"])
    kept = within_spine_time_range(table, narrow, "ts", "event_ts", dt.timedelta(minutes=3)).toPandas()
    assert list(kept.columns) == table.columns
    assert 0 < len(kept) < table.count()
    assert kept["ts"].max() <= times.max() and kept["ts"].min() >= times.min() - pd.Timedelta(minutes=3)


# ---------------------------------------------------------------- bad input: named, before any join


def _assert_no_spark_job(spark, call, error, match):
    """``call`` raises ``error`` before it runs a query on the engine (catalog look-ups and analysis are not jobs)."""
    from pyspark.sql.connect.client import SparkConnectClient

    executed = []
    real = SparkConnectClient._execute_and_fetch_as_iterator

    def counting(self, request, *args, **kwargs):
        plan = request.plan
        if not (plan.HasField("root") and plan.root.WhichOneof("rel_type") == "catalog"):
            executed.append(plan)
        return real(self, request, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SparkConnectClient, "_execute_and_fetch_as_iterator", counting)
        with pytest.raises(error, match=match):
            call()
    assert executed == []


def test_missing_table_feature_or_key_is_named_before_any_join(spark, fe, worlds):
    names = worlds["names"]
    spine = spark.createDataFrame(worlds["data"][1]["spine"], SPINE_SCHEMA)
    missing_table = support.table("fs_test", "no_such_table")
    cases = [
        (FeatureLookup(table_name=missing_table, lookup_key="customer_id"), FeatureTableNotFoundError, "no_such_table"),
        (FeatureLookup(table_name=names["customers"], lookup_key="customer_id", feature_names=["spend", "loyalty"],
                       timestamp_lookup_key="event_ts"), FeatureLookupError, "loyalty"),
        (FeatureLookup(table_name=names["customers"], lookup_key="shopper_id", feature_names=["spend"],
                       timestamp_lookup_key="event_ts"), FeatureLookupError, "shopper_id"),
        (FeatureLookup(table_name=names["customers"], lookup_key="customer_id", feature_names=["spend"],
                       timestamp_lookup_key="order_ts"), FeatureLookupError, "order_ts"),
        (FeatureLookup(table_name=names["plants"], lookup_key="plant_id", timestamp_lookup_key="event_ts"),
         FeatureLookupError, "no timeseries column"),
        (FeatureLookup(table_name=names["plants"], lookup_key="region"), FeatureLookupError, "region"),
        (FeatureLookup(table_name=names["plants"], lookup_key="plant_id", feature_names=["price"],
                       rename_outputs={"price": "label"}), ValueError, "label"),
        (FeatureLookup(table_name=names["plants"], lookup_key="plant_id", feature_names=["price"],
                       rename_outputs={"price": "event_ts"}), FeatureLookupError, "event_ts"),
    ]
    good = FeatureLookup(table_name=names["plants"], lookup_key="plant_id", feature_names=["price"])
    for bad, error, match in cases:
        _assert_no_spark_job(
            spark, lambda bad=bad: fe.create_training_set(df=spine, feature_lookups=[good, bad], label="label"),
            error, match,
        )
    _assert_no_spark_job(spark, lambda: fe.create_training_set(df=spine, feature_lookups=[good], label="bought"),
                         ValueError, "bought")
    _assert_no_spark_job(spark, lambda: fe.create_training_set(df=spine, feature_lookups=[good, good], label="label"),
                         FeatureLookupError, "price")


def test_lookup_key_type_mismatch_is_named(spark, fe, worlds):
    spine = spark.createDataFrame(worlds["data"][2]["spine"], SPINE_SCHEMA).withColumn(
        "plant_id", F.col("plant_id").cast("string"))
    lookup = FeatureLookup(table_name=worlds["names"]["plants"], lookup_key="plant_id")
    with pytest.raises(FeatureLookupError, match="plant_id.*string.*int"):
        fe.create_training_set(df=spine, feature_lookups=[lookup], label="label")


def test_training_set_pins_feature_table_versions(spark, fe):
    name = _name("pinned")
    fe.create_table(name=name, primary_keys="plant_id",
                    df=spark.createDataFrame([(1, 5.0, "easy")], PLANT_SCHEMA))
    spine = spark.createDataFrame([(1, 1)], "plant_id int, label int")
    ts = fe.create_training_set(df=spine, feature_lookups=[FeatureLookup(table_name=name, lookup_key="plant_id")],
                                label="label")
    fe.write_table(name=name, df=spark.createDataFrame([(1, 9.0, "easy")], PLANT_SCHEMA))
    assert ts.load_df().first()["price"] == 5.0  # the version the training set was built from
    assert ts.feature_spec.tables == {name: 0}
    fresh = fe.create_training_set(df=spine, feature_lookups=[FeatureLookup(table_name=name, lookup_key="plant_id")],
                                   label="label")
    assert fresh.load_df().first()["price"] == 9.0
    assert fresh.feature_spec.tables == {name: lakehouse.current_version(name)}


# ---------------------------------------------------------------- tables: create, merge, overwrite, bad writes


def _plants(spark, rows):
    return spark.createDataFrame(rows, PLANT_SCHEMA)


def test_create_get_and_drop_table(spark, fe):
    name = _name("plants")
    table = fe.create_table(name=name, primary_keys=["plant_id"], df=_plants(spark, [(1, 5.0, "easy")]),
                            description="plant prices", tags={"team": "plants"})
    assert isinstance(table, FeatureTable)
    assert table.primary_keys == ["plant_id"] and table.timestamp_keys == []
    again = LocalFeatureEngineeringClient().get_table(name=name)  # a fresh client reads persisted metadata
    assert isinstance(again, FeatureTable) and again.table_id == table.table_id
    # as from Unity Catalog, a table's features are all its columns, keys included
    assert (again.description, again.tags, again.features) == (
        "plant prices", {"team": "plants"}, ["plant_id", "price", "care"])
    fe.set_feature_table_tag(name=name, key="owner", value="ml")
    assert fe.get_table(name=name).tags == {"team": "plants", "owner": "ml"}
    fe.delete_feature_table_tag(name=name, key="team")
    assert fe.get_table(name=name).tags == {"owner": "ml"}
    with pytest.warns(UserWarning, match="already exists"):
        fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(2, 1.0, "easy")]))
    assert fe.read_table(name=name).count() == 1  # as on Databricks, create_table does not overwrite
    fe.drop_table(name=name)
    assert not lakehouse.exists(name)
    with pytest.raises(FeatureTableNotFoundError, match=name):
        fe.get_table(name=name)


def test_time_series_table_keys_are_reported_as_databricks_does(spark, fe):
    name = _name("ts_keys")
    created = fe.create_table(name=name, primary_keys=["ts", "customer_id"], timeseries_column="ts",
                              df=spark.createDataFrame([(1, _minute(0), 1.0, 1, "new")], CUSTOMER_SCHEMA))
    for table in (created, fe.get_table(name=name)):
        assert table.primary_keys == ["customer_id", "ts"]  # the timestamp key is part of the primary key, last
        assert table.timestamp_keys == ["ts"]
        assert not hasattr(table, "timeseries_column")  # the real FeatureTable has none: use timestamp_keys
    # a lookup still gives one spine column per non-time key, and the timestamp key separately
    spine = spark.createDataFrame([(1, _minute(3), 0)], "customer_id long, event_ts timestamp, label int")
    got = fe.create_training_set(df=spine, label="label", feature_lookups=[
        FeatureLookup(table_name=name, lookup_key="customer_id", feature_names=["spend"],
                      timestamp_lookup_key="event_ts")]).load_df().first()
    assert got["spend"] == 1.0


def test_timeseries_column_must_be_a_primary_key(spark, fe):
    with pytest.raises(ValueError, match="Timeseries column 'ts' is not in primary_keys"):
        fe.create_table(name=_name("bad"), primary_keys="customer_id", timeseries_column="ts",
                        df=spark.createDataFrame([], CUSTOMER_SCHEMA))


def test_create_table_rejects_duplicate_keys_and_writes_nothing(spark, fe):
    name = _name("dups")
    with pytest.raises(FeatureTableWriteError, match="duplicate primary key"):
        fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(1, 5.0, "a"), (1, 6.0, "b")]))
    assert not lakehouse.exists(name)


def test_write_table_merge_upserts_by_primary_key(spark, fe):
    name = _name("merge")
    fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(1, 5.0, "easy"), (2, 6.0, "hard")]))
    before = lakehouse.current_version(name)
    fe.write_table(name=name, df=_plants(spark, [(2, 7.5, "hard"), (3, 8.0, None)]), mode="merge")
    got = fe.read_table(name=name).toPandas().set_index("plant_id").sort_index()
    assert got["price"].tolist() == [5.0, 7.5, 8.0]
    assert lakehouse.current_version(name) > before
    old = fe.read_table(name=name, version=before).toPandas().set_index("plant_id").sort_index()
    assert old["price"].tolist() == [5.0, 6.0]  # time travel to the version before the merge


def test_write_table_merge_on_a_time_series_table_keeps_history(spark, fe):
    name = _name("history")
    fe.create_table(name=name, primary_keys=["customer_id", "ts"], timeseries_column="ts",
                    df=spark.createDataFrame([(1, _minute(0), 1.0, 1, "new")], CUSTOMER_SCHEMA))
    fe.write_table(name=name, df=spark.createDataFrame(
        [(1, _minute(5), 2.0, 2, "loyal"), (1, _minute(0), 1.5, 1, "new")], CUSTOMER_SCHEMA))
    got = fe.read_table(name=name).orderBy("ts").toPandas()
    assert got["spend"].tolist() == [1.5, 2.0]  # same (key, ts) updated, new ts appended


def test_write_table_overwrite_replaces_the_rows(spark, fe):
    name = _name("overwrite")
    fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(1, 5.0, "easy"), (2, 6.0, "hard")]))
    fe.write_table(name=name, df=_plants(spark, [(3, 1.0, "easy")]), mode="overwrite")
    assert [r["plant_id"] for r in fe.read_table(name=name).collect()] == [3]


@pytest.mark.parametrize(
    "rows, schema, match",
    [
        ([(1, 9.0, "x"), (1, 8.0, "y")], PLANT_SCHEMA, "duplicate primary key"),
        ([(None, 9.0, "x")], PLANT_SCHEMA, "null primary key"),
        ([(1, "cheap", "x")], "plant_id int, price string, care string", "'price' is string but the table has double"),
        ([(1, 9.0)], "plant_id int, price double", "lacks columns \\['care'\\]"),
    ],
)
@pytest.mark.parametrize("mode", ["merge", "overwrite"])
def test_bad_writes_are_rejected_and_leave_the_table_unchanged(spark, fe, rows, schema, match, mode):
    name = _name("guarded")
    fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(1, 5.0, "easy")]))
    version = lakehouse.current_version(name)
    with pytest.raises(FeatureTableWriteError, match=match):
        fe.write_table(name=name, df=spark.createDataFrame(rows, schema), mode=mode)
    assert lakehouse.current_version(name) == version
    assert [tuple(r) for r in fe.read_table(name=name).collect()] == [(1, 5.0, "easy")]


def test_write_table_adds_new_columns_as_features(spark, fe):
    name = _name("evolve")
    fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(1, 5.0, "easy")]))
    fe.write_table(name=name, df=spark.createDataFrame([(2, 6.0, "hard", 3)], "plant_id int, price double, care string, light int"))
    assert fe.get_table(name=name).features == ["plant_id", "price", "care", "light"]
    got = fe.read_table(name=name).toPandas().set_index("plant_id").sort_index()
    assert got["light"].isna().tolist() == [True, False]


def test_unknown_write_mode_and_missing_table(spark, fe):
    absent = support.table("fs_test", "absent")
    with pytest.raises(FeatureTableNotFoundError, match=absent):
        fe.write_table(name=absent, df=_plants(spark, [(1, 5.0, "easy")]))
    name = _name("mode")
    fe.create_table(name=name, primary_keys="plant_id", df=_plants(spark, [(1, 5.0, "easy")]))
    with pytest.raises(ValueError, match="append"):
        fe.write_table(name=name, df=_plants(spark, [(1, 5.0, "easy")]), mode="append")


# ---------------------------------------------------------------- lineage


def test_lineage_records_source_tables_and_versions(spark, fe):
    source = _name("silver_orders")
    lakehouse.write(spark.createDataFrame([(1, 5.0), (1, 7.0), (2, 1.0)], "plant_id int, amount double"), source,
                    mode="overwrite")
    lakehouse.write(spark.createDataFrame([(3, 2.0)], "plant_id int, amount double"), source, mode="append")
    source_version = lakehouse.current_version(source)
    features = (lakehouse.read(source).groupBy("plant_id").agg(F.sum("amount").alias("revenue"))
                .withColumn("plant_id", F.col("plant_id").cast("int")))
    name = _name("plant_revenue")
    fe.create_table(name=name, primary_keys="plant_id", df=features)
    record_lineage(name, {source: source_version})
    table = fe.get_table(name=name)
    assert table.table_data_sources == [source]
    lineage = feature_lineage(name)
    assert lineage[["source_table", "source_version"]].values.tolist() == [[source, source_version]]
    assert lineage["feature_table_version"].tolist() == [lakehouse.current_version(name)]


# ---------------------------------------------------------------- models: log_model, score_batch, serving


@pytest.fixture(scope="module")
def logged_model(module_spark, fe, worlds):
    """A sklearn pipeline trained on a point-in-time training set and logged with its feature spec."""
    spark = module_spark
    import mlflow
    import mlflow.sklearn
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from utils.platform import configure_mlflow

    configure_mlflow("fs-tests")
    names = worlds["names"]
    rows = [r for s in SEEDS for r in worlds["data"][s]["spine"]]
    spine = spark.createDataFrame(rows, SPINE_SCHEMA)
    lookups = [
        FeatureLookup(table_name=names["customers"], lookup_key="customer_id", feature_names=["spend", "visits"],
                      rename_outputs={"spend": "customer_spend"}, timestamp_lookup_key="event_ts",
                      default_values={"customer_spend": 0.0}),
        FeatureLookup(table_name=names["plants"], lookup_key="plant_id", feature_names=["price"]),
    ]
    training_set = fe.create_training_set(df=spine, feature_lookups=lookups, label="label",
                                          exclude_columns=["rid", "customer_id", "region", "plant_id", "event_ts"])
    train = training_set.load_df().toPandas()
    x, y = train.drop(columns="label"), train["label"]
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(x, y)
    model_name = f"fs_test_model_{uuid.uuid4().hex[:6]}"
    with mlflow.start_run():
        info = fe.log_model(model=model, artifact_path="model", flavor=mlflow.sklearn, training_set=training_set,
                            registered_model_name=model_name, skops_trusted_types=["numpy.dtype"])
    return {"model": model, "info": info, "uri": f"models:/{model_name}/1", "spine": spine, "x": x,
            "training_set": training_set, "names": names, "lookups": lookups}


def test_log_model_stores_the_feature_spec(logged_model, tmp_path):
    import mlflow

    root = mlflow.artifacts.download_artifacts(artifact_uri=logged_model["uri"], dst_path=str(tmp_path))
    spec = FeatureSpec.load(f"{root}/data/{MODEL_DATA_DIR}/{SPEC_FILE}")
    names = logged_model["names"]
    assert isinstance(spec, FeatureSpec)
    assert set(spec.tables) == {names["customers"], names["plants"]}
    assert spec.tables == logged_model["training_set"].feature_spec.tables
    assert spec.model_input_columns == list(logged_model["x"].columns) == ["customer_spend", "visits", "price"]
    customers = next(lk for lk in spec.lookups if lk.table_name == names["customers"])
    assert customers.timestamp_lookup_key == "event_ts" and customers.rename_outputs == {"spend": "customer_spend"}


@pytest.mark.slow
def test_score_batch_from_keys_alone_equals_predicting_on_the_training_features(logged_model, fe):
    keys = logged_model["spine"].select("rid", "customer_id", "plant_id", "event_ts")
    scored = fe.score_batch(model_uri=logged_model["uri"], df=keys).toPandas().set_index("rid").sort_index()
    with_ids = fe.create_training_set(
        df=logged_model["spine"], feature_lookups=logged_model["lookups"], label="label",
        exclude_columns=["customer_id", "region", "plant_id", "event_ts"],
    ).load_df().toPandas().set_index("rid").sort_index()
    expected = logged_model["model"].predict(with_ids[list(logged_model["x"].columns)])
    assert len(scored) == len(with_ids) == logged_model["spine"].count()
    assert scored["prediction"].astype(float).tolist() == [float(v) for v in expected]
    assert {"customer_id", "customer_spend", "visits", "price", "prediction"} <= set(scored.columns)


def test_score_batch_rejects_missing_keys(logged_model, fe):
    with pytest.raises(ValueError, match="event_ts"):
        fe.score_batch(model_uri=logged_model["uri"], df=logged_model["spine"].select("customer_id", "plant_id"))


@pytest.mark.slow
def test_served_model_looks_features_up_online(spark, fe, logged_model):
    import mlflow.pyfunc

    names = logged_model["names"]
    for table in (names["customers"], names["plants"]):
        result = fe.publish_table(name=table, online_store=online.SqliteOnlineStore())
        assert result["rows"] > 0
    # online holds the latest values: the same as a point-in-time lookup far in the future
    requests = logged_model["spine"].select("customer_id", "plant_id").distinct()
    future = requests.withColumn("event_ts", F.lit(dt.datetime(2100, 1, 1))).withColumn("label", F.lit(0))
    offline = fe.create_training_set(df=future, feature_lookups=logged_model["lookups"], label="label").load_df()
    offline = offline.toPandas().sort_values(["customer_id", "plant_id"]).reset_index(drop=True)
    served = mlflow.pyfunc.load_model(logged_model["uri"])
    got = served.predict(offline[["customer_id", "plant_id"]])  # keys only: features come from the online store
    want = logged_model["model"].predict(offline[list(logged_model["x"].columns)])
    assert list(got) == list(want)


@pytest.mark.slow
def test_logged_model_serves_from_keys_in_a_fresh_process(tmp_path, fe, logged_model):
    """A model server has no notebook state: the model carries its lookup code and finds the store."""
    import json
    import os
    import subprocess
    import sys

    from utils.platform import tracking_uri

    names = logged_model["names"]
    for table in (names["customers"], names["plants"]):
        fe.publish_table(name=table, online_store=online_store_spec())
    keys = logged_model["spine"].select("customer_id", "plant_id").limit(20).toPandas()
    direct = mlflow_predict(logged_model["uri"], keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PYTHONPATH"))}
    env["MLFLOW_TRACKING_URI"] = tracking_uri()
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        "keys = pd.DataFrame(json.loads(sys.argv[2]))\n"
        "print(json.dumps([float(v) for v in mlflow.pyfunc.load_model(sys.argv[1]).predict(keys)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, logged_model["uri"], keys.to_json(orient="records")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [float(v) for v in direct]


def mlflow_predict(uri: str, keys: pd.DataFrame) -> list[Any]:
    import mlflow.pyfunc

    return list(mlflow.pyfunc.load_model(uri).predict(keys))


# ---------------------------------------------------------------- online publish through the client


def test_publish_table_puts_the_offline_latest_value_online(spark, fe, worlds):
    name = worlds["names"]["customers"]
    fe.publish_table(source_table_name=name, online_store=online_store_spec())
    fe.publish_table(name=name, online_store=online_store_spec())  # idempotent; name= as on Databricks
    offline = fe.read_table(name=name).toPandas()
    latest = offline.sort_values("ts").groupby("customer_id").tail(1).set_index("customer_id").sort_index()
    stored = pd.DataFrame(online.lookup(name, [{"customer_id": k} for k in latest.index])).set_index("customer_id")
    assert [_value(v) for v in stored["spend"]] == [_value(v) for v in latest["spend"]]
    assert [_value(v) for v in stored["ts"]] == [_value(v) for v in latest["ts"]]
    unknown = online.lookup(name, [{"customer_id": -5}], default={"spend": 0.0})
    assert unknown[0]["spend"] == 0.0
    assert fe.get_table(name=name).online_stores[-1]["version"] == lakehouse.current_version(name)
    fe.drop_online_table(name, online_store_spec())
    assert fe.get_table(name=name).online_stores == []
    with pytest.raises(online.OnlineTableNotFoundError):
        online.lookup(name, {"customer_id": 1})


def test_feature_client_is_local_off_databricks(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert isinstance(feature_client(), LocalFeatureEngineeringClient)
