"""The Databricks dashboard definition: well formed, and every dataset's SQL runs on the real table schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest

from utils import lakeview
from utils.alerts import alerts_to_frame
from utils.config import Config, monitoring_tables
from utils.drift import drift_schema
from utils.model_quality import QUALITY_COLUMNS
from utils.scoring import inference_log_schema, request_log_schema


def _widgets() -> list[dict]:
    return [item["widget"] for page in lakeview.definition(Config())["pages"] for item in page["layout"]]


def test_every_widget_reads_a_defined_dataset_and_encodes_its_own_fields() -> None:
    spec = lakeview.definition(Config())
    names = {d["name"] for d in spec["datasets"]}
    widgets = _widgets()
    assert len({w["name"] for w in widgets}) == len(widgets)
    data_widgets = [w for w in widgets if "queries" in w]
    assert {w["queries"][0]["query"]["datasetName"] for w in data_widgets} == names, "every dataset is shown"
    for w in data_widgets:
        fields = {f["name"] for f in w["queries"][0]["query"]["fields"]}
        kind = w["spec"]["widgetType"]
        assert w["spec"]["version"] == lakeview.WIDGET_VERSIONS[kind]
        encoded = ([c["fieldName"] for c in w["spec"]["encodings"]["columns"]] if kind == "table"
                   else [e["fieldName"] for e in w["spec"]["encodings"].values()])
        assert encoded and set(encoded) <= fields, w["name"]
    for item in spec["pages"][0]["layout"]:
        pos = item["position"]
        assert pos["x"] + pos["width"] <= 6 and pos["width"] > 0 and pos["height"] > 0


def test_names_follow_the_config() -> None:
    text = lakeview.render(Config(project="acme", model_base_name="ranker"))
    assert "`ranker`" in text and "acme" in text
    assert "request_log" in text and "monitoring_alerts" in text


def _view(spark, name: str, table: pa.Table) -> None:
    """Register ``table`` (Arrow, so types hold even when empty) as a view named like the lifecycle table."""
    from pyspark.sql.pandas.types import from_arrow_schema

    # The schema given: Spark Connect infers none from an empty table.
    spark.createDataFrame(table, schema=from_arrow_schema(table.schema)).createOrReplaceTempView(name.rsplit(".", 1)[-1])


def test_every_dataset_query_runs_on_the_lifecycle_table_schemas(spark) -> None:
    cfg = Config()
    now = datetime.now(UTC)
    requests = pd.DataFrame({
        "request_id": ["a", "b", "c", "d"], "ts": [now - timedelta(minutes=m) for m in (1, 2, 3, 60 * 30)],
        "model_name": cfg.model_name, "path": "/invocations", "status_code": [200, 200, 422, 200],
        "latency_ms": [10.0, 30.0, 1.0, 99.0], "records": [1, 1, 0, 1],
        "model_versions": ["1", "1", None, "1"], "error": [None, None, "unknown customer_id", None],
    })
    quality = pa.schema([(c, pa.timestamp("us", tz="UTC") if c.startswith("window") else pa.float64())
                         for c in QUALITY_COLUMNS])
    tables = monitoring_tables(cfg)
    _view(spark, cfg.table("request_log"), pa.Table.from_pandas(requests, schema=request_log_schema(), preserve_index=False))
    _view(spark, cfg.table("inference_log"), inference_log_schema().empty_table())
    _view(spark, tables["drift"], drift_schema().empty_table())
    _view(spark, tables["quality"], quality.empty_table())
    _view(spark, tables["alerts"], pa.Table.from_pandas(alerts_to_frame([]), preserve_index=False))
    results = {dataset: spark.sql(query).toPandas() for dataset, query in lakeview.datasets(cfg).items()
               if "information_schema" not in query}  # information_schema exists in Unity Catalog only
    health = results["endpoint_health"].iloc[0]
    assert health["requests"] == 3 and health["error_rate"] == pytest.approx(1 / 3)
    assert health["p50_ms"] == 10.0 and health["p99_ms"] == 30.0  # the refused request is not timed
    assert results["latency_by_hour"]["requests"].sum() == 4
    assert results["traffic_by_version"].empty and results["alerts"].empty and results["drift"].empty
