"""The data-profiling monitor's baseline, written by Spark from the scored rows in the inference log's shape.

The monitor's API calls are tested against the workspace stand-in in ``test_workspace_calls.py``; here the
baseline table's SQL runs for real on local Spark and Delta, the same statement notebook 06 runs on Databricks.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from tests.support import table
from utils import lakehouse
from utils.data_profiling import baseline_query, monitor_spec
from utils.plantly_features import FEATURES, LABEL
from utils.scoring import inference_log_schema


def test_baseline_has_the_inference_logs_columns_and_only_the_rows_before_the_cut(spark):
    rng = pd.Series(range(6))
    scored = pd.DataFrame({c: (rng * 1.5 if i % 2 else rng.astype(str)) for i, c in enumerate(FEATURES)})
    scored["invasive"] = False
    scored = scored.assign(event_id=[f"e{i}" for i in range(6)],
                           event_ts=pd.date_range("2026-01-01", periods=6, freq="7D", tz="UTC"),
                           **{LABEL: [0, 1, 0, 1, 0, 1]}, prediction=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                           model_uri=f"models:/{table('tests', 'm')}/7")
    source, target = table("tests", "dp_scored"), table("tests", "dp_baseline")
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {source.rsplit('.', 1)[0]}")
    spark.createDataFrame(scored).write.format("delta").mode("overwrite").saveAsTable(source)
    spark.sql(baseline_query(target, source, pd.Timestamp("2026-01-20", tz="UTC")))
    baseline = lakehouse.read_pandas(target).sort_values("event_id", ignore_index=True)
    assert list(baseline.columns) == inference_log_schema().names
    assert list(baseline.event_id) == ["e0", "e1", "e2"]  # 1, 8 and 15 January: before the 20th
    assert set(baseline.model_version) == {"7"} and set(baseline.source) == {"baseline"}
    assert baseline.request_id.isna().all() and baseline.prediction.tolist() == [0.1, 0.2, 0.3]
    types = {f.name: f.type for f in inference_log_schema()}
    assert types["ts"] == pa.timestamp("us", tz="UTC") and str(spark.table(target).schema["ts"].dataType) == "TimestampType()"


def test_monitor_spec_names_every_inference_log_column_it_uses():
    spec = monitor_spec("t", "s", "/Workspace/Users/u/x", None, ["source"]).as_dict()
    log = spec["data_profiling_config"]["inference_log"]
    names = set(inference_log_schema().names)
    assert {log["timestamp_column"], log["prediction_column"], log["model_id_column"]} <= names
    assert "label_column" not in log, "labels arrive later, in the quality table"
