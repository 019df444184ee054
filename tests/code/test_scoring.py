"""Batch and streaming scoring and the inference log: real Spark, real Delta tables, real MLflow, real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import write_tiny_feature_tables
from utils import lakehouse
from utils.plantly_features import FEATURES, feature_table_names
from utils.scoring import (
    INFERENCE_LOG_COLUMNS,
    StreamScorer,
    append_inference_log,
    inference_log_schema,
    inference_log_table,
    inference_rows,
    land_events,
    model_inputs,
    read_inference_log,
    spark_udf_scores,
    start_stream,
    streaming_quarantine_table,
)
from utils.stream_batch import validate_events

MODEL_CODE = """
import mlflow
import numpy as np
import pandas as pd

class PriceModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        score = np.clip(model_input["price"].astype(float) / 100.0, 0, 1)
        return pd.Series(np.where(model_input["invasive"].astype(bool), 0.0, score), name="probability")

mlflow.models.set_model(PriceModel())
"""


def feature_rows(n: int, start: int = 0) -> pd.DataFrame:
    i = np.arange(start, start + n)
    return pd.DataFrame({
        "event_id": [f"E{k}" for k in i], "customer_id": "C1", "plant_id": "P1",
        "region": "north", "age_band": "25-34", "device": "mobile", "category": "fern", "care_level": "easy",
        "light_needs": "shade", "page": "home", "tenure_days": 10, "cust_impressions_30d": 3,
        "cust_purchase_rate_30d": 0.1, "plant_impressions_30d": 5, "plant_purchase_rate_30d": 0.2,
        "position": i % 5, "price": 5.0 + i, "invasive": i % 7 == 0,
    })


@pytest.fixture(scope="module")
def model_uri(isolated_state: Path) -> str:
    import mlflow

    from utils.platform import configure_mlflow

    configure_mlflow("test-scoring")
    code = isolated_state / "price_model.py"
    code.write_text(MODEL_CODE)
    with mlflow.start_run():
        return mlflow.pyfunc.log_model(name="m", python_model=str(code), pip_requirements=["mlflow"]).model_uri


def test_inference_rows_have_the_log_schema_and_log_once():
    frame = feature_rows(4)
    rows = inference_rows(frame, [0.1, 0.2, 0.3, 0.4], source="batch", model_name="m", model_version=3,
                          feature_versions={"t": 2}, request_id="r1")
    assert list(rows.columns) == INFERENCE_LOG_COLUMNS
    assert set(FEATURES) <= set(rows.columns)
    assert rows["event_id"].tolist() == ["E0", "E1", "E2", "E3"] and set(rows["model_version"]) == {"3"}
    assert json.loads(rows["feature_versions"][0]) == {"t": 2}
    assert append_inference_log(rows) == 4
    assert append_inference_log(rows) == 0  # a replay adds nothing
    log = lakehouse.read_pandas(inference_log_table())
    assert len(log[log["source"] == "batch"]) == 4
    assert lakehouse.read(inference_log_table()).columns == inference_log_schema().names
    with pytest.raises(ValueError, match="source"):
        inference_rows(frame, [0.0] * 4, source="carrier-pigeon", model_name="m", model_version=1, feature_versions={})
    with pytest.raises(ValueError, match="3 predictions for 4 rows"):
        inference_rows(frame, [0.0] * 3, source="batch", model_name="m", model_version=1, feature_versions={})
    given = inference_rows(frame, [0.1, 0.2, 0.3, 0.4], source="batch", model_name="m", model_version=3,
                           feature_versions={"t": 2}, request_id="r1", ts=rows["ts"][0], inputs=model_inputs(frame))
    pd.testing.assert_frame_equal(given, rows)  # precomputed model inputs give the same rows
    with pytest.raises(ValueError, match="3 model-input rows for 4 rows"):
        inference_rows(frame, [0.0] * 4, source="batch", model_name="m", model_version=1, feature_versions={},
                       inputs=model_inputs(frame.head(3)))


def test_validate_events_quarantines_with_reasons():
    good = {"event_id": "E1", "customer_id": "C1", "plant_id": "P1", "event_ts": "2024-01-01T00:00:00",
            "page": "home", "position": "2", "price": "9.5", "_corrupt_record": None}
    events = pd.DataFrame([good,
                           {**good, "event_id": "E2", "position": "third"},
                           {**good, "event_id": "E3", "price": "abc"},
                           {**good, "event_id": "E4", "plant_id": None},
                           {**good, "event_id": "E5", "event_ts": "yesterday"},
                           {k: None for k in good} | {"_corrupt_record": "{broken"}])
    valid, bad = validate_events(events)
    assert valid["event_id"].tolist() == ["E1"] and valid["position"].dtype == np.int64
    reasons = dict(zip(bad["event_id"].fillna("-"), bad["reason"]))
    assert "position 'third'" in reasons["E2"] and "price 'abc'" in reasons["E3"]
    assert "plant_id" in reasons["E4"] and "event_ts" in reasons["E5"] and reasons["-"] == "malformed JSON"


@pytest.mark.parametrize("position, expected", [("3", 3), ("3.0", 3), (" 7 ", 7), ("0", 0), (str(2**53), 2**53)])
def test_streamed_positions_are_read_exactly(position, expected):
    event = {"event_id": "E1", "customer_id": "C1", "plant_id": "P1", "event_ts": "2024-01-01T00:00:00",
             "page": "home", "position": position, "price": "9.5", "_corrupt_record": None}
    valid, bad = validate_events(pd.DataFrame([event]))
    assert bad.empty and valid["position"].tolist() == [expected]


@pytest.mark.parametrize("position", ["2.5", "1e20", str(2**53 + 1), "-1", "inf", "nan"])
def test_streamed_positions_a_model_input_cannot_hold_are_quarantined(position):
    event = {"event_id": "E1", "customer_id": "C1", "plant_id": "P1", "event_ts": "2024-01-01T00:00:00",
             "page": "home", "position": position, "price": "9.5", "_corrupt_record": None}
    valid, bad = validate_events(pd.DataFrame([event]))
    assert valid.empty and bad["reason"].str.contains(f"position {position!r}", regex=False).all()


def test_spark_udf_scores_every_row_and_zeroes_invasive_plants(spark, model_uri):
    df = spark.createDataFrame(feature_rows(40)).repartition(3)
    a = spark_udf_scores(df, model_uri).select("event_id", "prediction").toPandas().sort_values("event_id")
    assert len(a) == 40 and a["event_id"].is_unique
    assert a["prediction"].max() > 0 and (a.set_index("event_id").loc["E7", "prediction"] == 0.0)


@pytest.fixture()
def stream_cfg(spark):
    """A schema of its own holding the tiny feature tables, and no online store for its duration.

    The streaming callback runs in the engine's Python process, which on Databricks serverless sees no file of the
    notebook's: it must take its features from the Delta tables, so a local online store must not be needed.
    """
    import shutil

    from utils.config import get_config
    from utils.local import online_store

    cfg = get_config(schema="streaming_test")
    write_tiny_feature_tables(cfg)
    store, aside = online_store.online_dir(), online_store.online_dir().with_name("online-aside")
    if store.exists():
        store.rename(aside)
    try:
        yield cfg
    finally:
        shutil.rmtree(store, ignore_errors=True)
        if aside.exists():
            aside.rename(store)


def test_streaming_restart_scores_only_new_events_and_quarantines_bad_ones(spark, model_uri, isolated_state, stream_cfg):
    """Features come from the Delta feature tables (latest row per key, versions logged): no online store exists here."""
    from pyspark import cloudpickle

    from utils.local import online_store
    from utils.scoring import event_schema

    folder, checkpoint = isolated_state / "landing-test", isolated_state / "ckpt-test"
    events = pd.DataFrame({"event_id": [f"S{i}" for i in range(6)], "customer_id": ["C1", "C2"] * 3,
                           "plant_id": ["P1", "P2", "P1", "P1", "P2", "P1"], "event_ts": "2024-01-05T10:00:00",
                           "page": "home", "position": [1, 2, 3, 4, 5, 6], "price": 10.0})
    land_events(events.iloc[:3], folder, raw_lines=['{"event_id": "BAD1", oops'])
    land_events(events.iloc[3:4].assign(customer_id="C-UNKNOWN"), folder)
    scorer = StreamScorer("m", "1", model_uri, stream_cfg)
    carried = cloudpickle.dumps(scorer.foreach_batch)  # what Spark Connect ships to the engine's Python process
    assert str(online_store.online_dir()).encode() not in carried, "the callback must not refer to the online store"
    start_stream(scorer, folder, checkpoint)  # availableNow: returns once what landed is scored
    assert not online_store.online_dir().exists()  # scored without an online store
    first = read_inference_log(stream_cfg)
    assert sorted(first.loc[first["source"] == "streaming", "event_id"]) == ["S0", "S1", "S2"]
    land_events(events.iloc[4:], folder)
    restarted = StreamScorer("m", "1", model_uri, stream_cfg)  # a new process would start from the checkpoint too
    query = start_stream(restarted, folder, checkpoint)
    log = read_inference_log(stream_cfg)
    log = log[log["source"] == "streaming"].set_index("event_id")
    assert sorted(log.index) == ["S0", "S1", "S2", "S4", "S5"] and log.index.is_unique
    assert len([p for p in query.recentProgress if p.numInputRows > 0]) == 1  # only the new file was read
    replay = spark.createDataFrame(events.iloc[4:].astype(str).assign(_corrupt_record=None), schema=event_schema())
    assert restarted.foreach_batch(replay, batch_id=99) == {"logged": 0, "quarantined": 0}
    assert len(read_inference_log(stream_cfg).query("source == 'streaming'")) == 5
    quarantine = lakehouse.read_pandas(streaming_quarantine_table(stream_cfg))
    reasons = " | ".join(quarantine["reason"])
    assert "malformed JSON" in reasons and "unknown customer_id 'C-UNKNOWN'" in reasons and len(quarantine) == 2
    assert log.loc["S1", "prediction"] == 0.0 and log.loc["S0", "prediction"] == pytest.approx(0.1)  # P2 is invasive
    assert log.loc["S0", "cust_impressions_30d"] == 7.0 and log.loc["S1", "cust_impressions_30d"] == 0.0  # latest row; none
    versions = {t: lakehouse.current_version(t) for t in feature_table_names(stream_cfg).values()}
    assert json.loads(log.loc["S0", "feature_versions"]) == versions


def test_the_streaming_callback_runs_where_utils_cannot_be_imported(spark, model_uri, isolated_state, stream_cfg,
                                                                  tmp_path):
    """Serverless runs ``foreachBatch`` in a process that cannot import this project: the callback travels by value.

    A fresh process with ``import utils`` made to fail loads the pickled callback (as Spark Connect ships it), joins
    the engine as a client and scores a micro-batch into the inference log.
    """
    import subprocess
    import sys

    from pyspark import cloudpickle

    from utils.local import engine
    from utils.platform import state_dir

    scorer = StreamScorer("m", "1", model_uri, stream_cfg)
    (tmp_path / "callback.pkl").write_bytes(cloudpickle.dumps(scorer.foreach_batch))
    script = ("import json, pickle, sys; sys.modules['utils'] = None  # import utils fails from here on\n"
              "from pyspark.sql import SparkSession\n"
              "from pyspark.sql.types import StringType, StructField, StructType\n"
              f"fn = pickle.loads(open({str(tmp_path / 'callback.pkl')!r}, 'rb').read())\n"
              f"spark = SparkSession.builder.remote({engine.status(state_dir())['url']!r}).getOrCreate()\n"
              "cols = ['event_id', 'customer_id', 'plant_id', 'event_ts', 'page', 'position', 'price', '_corrupt_record']\n"
              "rows = [('W1', 'C1', 'P1', '2024-01-05T10:00:00', 'home', '1', '10.0', None),\n"
              "        ('W2', 'C-NOBODY', 'P1', '2024-01-05T10:00:00', 'home', '2', '10.0', None)]\n"
              "df = spark.createDataFrame(rows, StructType([StructField(c, StringType()) for c in cols]))\n"
              "print(json.dumps(fn(df, 5)))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"logged": 1, "quarantined": 1}
    log = read_inference_log(stream_cfg).set_index("event_id")
    assert log.loc["W1", "source"] == "streaming" and log.loc["W1", "prediction"] == pytest.approx(0.1)
    quarantined = lakehouse.read_pandas(streaming_quarantine_table(stream_cfg))
    assert "unknown customer_id 'C-NOBODY'" in " ".join(quarantined["reason"])


def test_a_continuous_stream_keeps_scoring_files_as_they_land(spark, model_uri, isolated_state, stream_cfg):
    import time

    folder, checkpoint = isolated_state / "landing-continuous", isolated_state / "ckpt-continuous"
    events = pd.DataFrame({"event_id": [f"K{i}" for i in range(4)], "customer_id": ["C1", "C2"] * 2,
                           "plant_id": "P1", "event_ts": "2024-01-05T10:00:00", "page": "home",
                           "position": [1, 2, 3, 4], "price": 10.0})

    def streamed() -> list[str]:
        log = read_inference_log(stream_cfg)
        return sorted(log.loc[(log["source"] == "streaming") & log["event_id"].str.startswith("K"), "event_id"])

    def wait_for(expected: list[str], timeout_s: float = 180.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while (got := streamed()) != expected and time.monotonic() < deadline and query.isActive:
            time.sleep(0.5)
        return got

    query = start_stream(StreamScorer("m", "1", model_uri, stream_cfg), folder, checkpoint, processing_time="1 second")
    try:
        land_events(events.iloc[:2], folder)
        assert wait_for(["K0", "K1"]) == ["K0", "K1"]
        land_events(events.iloc[2:], folder)  # the same query picks the next file up: nothing restarts
        assert wait_for(["K0", "K1", "K2", "K3"]) == ["K0", "K1", "K2", "K3"]
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
    assert not query.isActive
