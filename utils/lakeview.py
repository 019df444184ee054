"""The 360° view as a Databricks AI/BI (Lakeview) dashboard definition, deployed with the bundle.

``make dashboard`` renders the same picture locally as one HTML page (``utils.dashboard``). On
Databricks the page is a Lakeview dashboard whose datasets are SQL over the tables the lifecycle
writes: the request log (latency, errors), the inference log (traffic by version), the monitoring
tables (drift, quality, alerts) and ``information_schema.tables`` (freshness). Table names are left
unqualified: the bundle sets ``dataset_catalog`` / ``dataset_schema`` per target, so one definition
serves dev, staging and prod.

What differs from the HTML page: model versions, aliases and the promotion audit trail live in the
registry, which SQL cannot read, so the page links to the model in Catalog Explorer instead; endpoint
health is Model Serving's own page.

    python -m utils.lakeview --out resources/dashboards/mlops_360.lvdash.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from utils.config import Config, get_config

DEFAULT_PATH = Path("resources") / "dashboards" / "mlops_360.lvdash.json"
WIDGET_VERSIONS = {"counter": 2, "table": 1, "line": 3, "bar": 3}


def _short(cfg: Config, name: str) -> str:
    """Table ``name`` without catalog and schema (the bundle sets them per target)."""
    return cfg.table(name).rsplit(".", 1)[-1]


def datasets(cfg: Config | None = None) -> dict[str, str]:
    """Dataset name -> SQL, over the tables the lifecycle writes."""
    from utils.config import monitoring_tables

    cfg = cfg or get_config()
    mon = {k: v.rsplit(".", 1)[-1] for k, v in monitoring_tables(cfg).items()}
    requests, inference = _short(cfg, "request_log"), _short(cfg, "inference_log")
    return {
        "endpoint_health": (
            "SELECT count(*) AS requests,\n"
            "       avg(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) AS error_rate,\n"
            "       percentile_approx(CASE WHEN status_code < 400 THEN latency_ms END, 0.5) AS p50_ms,\n"
            "       percentile_approx(CASE WHEN status_code < 400 THEN latency_ms END, 0.99) AS p99_ms\n"
            f"FROM {requests}\nWHERE ts >= current_timestamp() - INTERVAL 24 HOURS"),
        "latency_by_hour": (
            "SELECT date_trunc('HOUR', ts) AS hour,\n"
            "       percentile_approx(latency_ms, 0.5) AS p50_ms, percentile_approx(latency_ms, 0.99) AS p99_ms,\n"
            "       count(*) AS requests, sum(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) AS errors\n"
            f"FROM {requests}\nWHERE ts >= current_timestamp() - INTERVAL 7 DAYS\nGROUP BY ALL"),
        "traffic_by_version": (
            "SELECT date_trunc('HOUR', ts) AS hour, source, model_version, count(*) AS predictions\n"
            f"FROM {inference}\nWHERE ts >= current_timestamp() - INTERVAL 7 DAYS\nGROUP BY ALL"),
        "drift": (
            "SELECT window.end AS window_end, column_name, population_stability_index, js_distance\n"
            f"FROM {mon['drift']}\nWHERE role = 'feature' AND drift_type = 'BASELINE'"),
        "quality": f"SELECT window_start, auc, n_labeled FROM {mon['quality']}",
        "alerts": (
            "SELECT created_at, severity, metric, `column`, value, threshold, message\n"
            f"FROM {mon['alerts']}\nORDER BY created_at DESC\nLIMIT 50"),
        "freshness": (
            "SELECT table_name, last_altered, last_altered_by\nFROM information_schema.tables\n"
            "WHERE table_schema = current_schema()\nORDER BY last_altered DESC"),
    }


def _fields(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "expression": f"`{n}`"} for n in names]


def _widget(name: str, kind: str, dataset: str, fields: list[str], encodings: dict[str, Any], title: str,
            position: tuple[int, int, int, int]) -> dict[str, Any]:
    """One data widget reading ``fields`` (already aggregated by the dataset's SQL) from ``dataset``."""
    x, y, w, h = position
    return {
        "widget": {
            "name": name,
            "queries": [{"name": "main_query", "query": {
                "datasetName": dataset, "fields": _fields(*fields), "disaggregated": True}}],
            "spec": {"version": WIDGET_VERSIONS[kind], "widgetType": kind, "encodings": encodings,
                     "frame": {"showTitle": True, "title": title}},
        },
        "position": {"x": x, "y": y, "width": w, "height": h},
    }


def _text(name: str, lines: list[str], position: tuple[int, int, int, int]) -> dict[str, Any]:
    x, y, w, h = position
    return {"widget": {"name": name, "multilineTextboxSpec": {"lines": lines}},
            "position": {"x": x, "y": y, "width": w, "height": h}}


def _axis(field: str, kind: str, label: str) -> dict[str, Any]:
    return {"fieldName": field, "scale": {"type": kind}, "displayName": label}


def _columns(*names: str) -> dict[str, Any]:
    return {"columns": [{"fieldName": n, "displayName": n} for n in names]}


def definition(cfg: Config | None = None) -> dict[str, Any]:
    """The serialized Lakeview dashboard (datasets and one page) for ``cfg``'s names."""
    cfg = cfg or get_config()
    sql = datasets(cfg)
    layout = [
        _text("title", [f"# {cfg.project} · the 360° view\n",
                        f"Model `{cfg.model_name.rsplit('.', 1)[-1]}` (versions, aliases and the promotion audit trail: "
                        "Catalog Explorer → Models). Endpoint state: Serving → the model's endpoint."], (0, 0, 6, 2)),
        _widget("requests_24h", "counter", "endpoint_health", ["requests"],
                {"value": {"fieldName": "requests", "displayName": "requests, last 24 h"}}, "Requests (24 h)", (0, 2, 2, 3)),
        _widget("error_rate_24h", "counter", "endpoint_health", ["error_rate"],
                {"value": {"fieldName": "error_rate", "displayName": "share refused or failed"}}, "Error rate (24 h)",
                (2, 2, 2, 3)),
        _widget("p99_24h", "counter", "endpoint_health", ["p99_ms"],
                {"value": {"fieldName": "p99_ms", "displayName": "p99 latency, ms"}}, "p99 latency (24 h, ms)", (4, 2, 2, 3)),
        _widget("traffic", "line", "traffic_by_version", ["hour", "model_version", "predictions"],
                {"x": _axis("hour", "temporal", "hour"), "y": _axis("predictions", "quantitative", "predictions"),
                 "color": _axis("model_version", "categorical", "model version")},
                "Predictions per hour by model version", (0, 5, 3, 6)),
        _widget("latency", "line", "latency_by_hour", ["hour", "p99_ms"],
                {"x": _axis("hour", "temporal", "hour"), "y": _axis("p99_ms", "quantitative", "p99 latency (ms)")},
                "Endpoint p99 latency per hour", (3, 5, 3, 6)),
        _widget("drift_psi", "line", "drift", ["window_end", "column_name", "population_stability_index"],
                {"x": _axis("window_end", "temporal", "window end"),
                 "y": _axis("population_stability_index", "quantitative", "PSI"),
                 "color": _axis("column_name", "categorical", "feature")},
                f"Feature drift (PSI; alert above {cfg.thresholds.psi})", (0, 11, 3, 6)),
        _widget("quality_auc", "line", "quality", ["window_start", "auc"],
                {"x": _axis("window_start", "temporal", "window"), "y": _axis("auc", "quantitative", "AUC")},
                "Model quality per window (AUC)", (3, 11, 3, 6)),
        _widget("alerts_table", "table", "alerts",
                ["created_at", "severity", "metric", "column", "value", "threshold", "message"],
                _columns("created_at", "severity", "metric", "column", "value", "threshold", "message"),
                "Alerts (newest first)", (0, 17, 6, 6)),
        _widget("freshness_table", "table", "freshness", ["table_name", "last_altered", "last_altered_by"],
                _columns("table_name", "last_altered", "last_altered_by"), "Data freshness: last change of every table",
                (0, 23, 6, 6)),
    ]
    return {
        "datasets": [{"name": name, "displayName": name.replace("_", " "), "queryLines": query.splitlines(keepends=True)}
                     for name, query in sql.items()],
        "pages": [{"name": "overview", "displayName": "360° view", "layout": layout}],
    }


def render(cfg: Config | None = None) -> str:
    """The definition as the JSON text stored in the bundle (stable key order, trailing newline)."""
    return json.dumps(definition(cfg), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard definition for the current config."""
    parser = argparse.ArgumentParser(description="Write the Lakeview dashboard definition of the 360° view.")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
