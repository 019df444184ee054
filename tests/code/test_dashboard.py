"""The dashboard page on a real (temporary) state: real MLflow registry, real Delta tables, real HTTP endpoints."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.support import mlflow_restored, own_schema
from utils import dashboard, dashboard_data, dashboard_figures, lakehouse, registry
from utils.alerts import alerts_from_breaches, alerts_to_frame
from utils.config import get_config, monitoring_tables
from utils.drift import DRIFT_COLUMNS, drift_to_arrow
from utils.scoring import append_request_log
from utils.serving import free_port

SECTIONS = ("status", "models", "deployments", "freshness", "monitoring", "lineage", "alerts")


def section(page: str, section_id: str) -> str:
    """The HTML of ``<section id=section_id>`` (sections do not nest)."""
    match = re.search(rf'<section id="{section_id}"[^>]*>(.*?)</section>', page, re.DOTALL)
    assert match, f"section {section_id!r} is missing from the page"
    return match.group(1)


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database, made once: a fresh SQLite store costs seconds of migrations."""
    from utils.platform import configure_mlflow

    state = tmp_path_factory.mktemp("dashboard-template")
    before = os.environ["MLOPS_STATE_DIR"]
    os.environ["MLOPS_STATE_DIR"] = str(state)
    try:
        with mlflow_restored():
            configure_mlflow()
    finally:
        os.environ["MLOPS_STATE_DIR"] = before
    return state / "mlflow"


@pytest.fixture()
def fresh_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path) -> Iterator[Path]:
    """An empty schema and MLflow store of its own (the session's hold other tests' tables and runs)."""
    with own_schema(tmp_path, monkeypatch, mlflow_template) as folder:
        yield folder


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[float]:
        return [0.5] * len(model_input)


def drift_frame(psi: dict[str, float], start: datetime) -> pd.DataFrame:
    """Drift rows shaped like utils.drift.drift_metrics output, one per column."""
    rows = []
    for col, value in psi.items():
        row = dict.fromkeys(DRIFT_COLUMNS)
        row.update(column_name=col, role="feature", drift_type="BASELINE", data_type="double",
                   window={"start": start, "end": start + timedelta(days=7)},
                   population_stability_index=value, js_distance=value / 4, count=100, count_cmp=100, count_delta=0)
        rows.append(row)
    return pd.DataFrame(rows)


def make_small_state(now: datetime) -> dict[str, object]:
    """A champion trained on a pinned table version, an inference log, drift/quality metrics and alerts."""
    cfg = get_config()
    training = cfg.table("training_set")
    lakehouse.write(pd.DataFrame({"event_id": ["e1", "e2"], "price": [10.0, 20.0]}), training)
    lakehouse.write(pd.DataFrame({"event_id": ["e3"], "price": [30.0]}), training, mode="append")  # version 1
    with mlflow.start_run(run_name="dashboard-test") as run:
        mlflow.set_tag(f"input.{training}", "0")
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant(), pip_requirements=["mlflow"])
    old_alert = alerts_from_breaches([{"metric": "population_stability_index", "column": "tenure_days",
                                       "value": 0.31, "threshold": 0.2}], cfg.model_name,
                                     now=now - timedelta(days=30))
    names = monitoring_tables(cfg)
    lakehouse.write(alerts_to_frame(old_alert), names["alerts"], mode="append")
    mv = registry.register(info.model_uri, name=cfg.model_name)
    registry.set_version_tags(cfg.model_name, mv.version, {"gate_passed": "true", "gate_summary": "all checks passed"})
    registry.promote(cfg.model_name, mv.version, {"passed": True, "failed": []}, reason="won the gate in the test",
                     actor="on-call-tester")
    new_alerts = alerts_from_breaches([
        {"metric": "population_stability_index", "column": "region", "value": 4.04, "threshold": 0.2},
        {"metric": "js_distance", "column": "device", "value": 0.13, "threshold": 0.1},
    ], cfg.model_name)  # raised now, after the promotion: open
    lakehouse.write(alerts_to_frame(new_alerts), names["alerts"], mode="append")
    ts = [now - timedelta(minutes=m) for m in (90, 50, 20)] + [datetime.now(UTC)]  # the last after the promotion
    lakehouse.write(pd.DataFrame({
        "request_id": ["r1", "r2", "r3", "r4"], "ts": ts, "source": ["realtime", "realtime", "batch", "realtime"],
        "model_name": cfg.model_name, "model_version": str(mv.version), "customer_id": "C1", "plant_id": "P1",
        "prediction": [0.1, 0.5, 0.7, 0.9],
    }), cfg.table("inference_log"))
    append_request_log([{"request_id": f"q{i}", "ts": t, "model_name": cfg.model_name, "path": "/invocations",
                         "status_code": code, "latency_ms": ms, "records": int(code == 200),
                         "model_versions": str(mv.version) if code == 200 else None,
                         "error": None if code == 200 else "unknown customer_id 'X'"}
                        for i, (t, code, ms) in enumerate(zip(ts + [ts[-1]], (200, 200, 200, 200, 422),
                                                              (10.0, 20.0, 30.0, 400.0, 1.0)))], cfg)
    for week, psi in enumerate(({"region": 0.05, "device": 0.02}, {"region": 4.04, "device": 0.09})):
        lakehouse.write(drift_to_arrow(drift_frame(psi, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(weeks=week))),
                        names["drift"], mode="overwrite")
    lakehouse.write(pd.DataFrame({
        "window_start": pd.date_range("2026-01-01", periods=3, freq="7D", tz="UTC"),
        "auc": [0.81, 0.79, 0.62], "n_labeled": [50, 60, 70],
    }), names["quality"])
    return {"version": int(mv.version), "run_id": run.info.run_id, "old_alert": old_alert[0].alert_id,
            "new_alerts": [a.alert_id for a in new_alerts]}


class _Router(BaseHTTPRequestHandler):
    """A real HTTP server answering like utils.deploy's router: /health and /routes."""

    routes: ClassVar[dict[str, dict]] = {"versions": {"champion": "1", "challenger": "2"}, "weights": {"champion": 90, "challenger": 10}}

    def log_message(self, format, *args):
        return

    def do_GET(self):
        body, code = (b'{"status": "ok"}', 200) if self.path == "/health" else \
            (json.dumps(self.routes).encode(), 200) if self.path == "/routes" else (b"{}", 404)
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def router_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Router)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- an empty project


def test_empty_state_renders_and_says_what_is_missing(fresh_state: Path, tmp_path: Path) -> None:
    cfg = get_config()
    down = f"http://127.0.0.1:{free_port()}"
    out = dashboard.build_dashboard(tmp_path / "out" / "dashboard.html", endpoint_urls=[down])
    page = out.read_text()
    assert out.exists() and page.startswith("<!DOCTYPE html>")
    for sid in SECTIONS:
        section(page, sid)
    assert dashboard.section_errors(out) == []
    assert 'class="section-error"' not in page
    models = section(page, "models")
    assert cfg.model_name in models and "03_develop" in models and "05_deploy" in models
    deployments = section(page, "deployments")
    assert "inference_log" in deployments and "does not exist" in deployments
    assert "DOWN" in deployments and down in deployments  # a down endpoint is shown, not an error
    assert "06_monitor" in section(page, "monitoring")
    assert "06_monitor" in section(page, "alerts")
    assert "01_explore" in section(page, "freshness")
    assert "No " in section(page, "lineage") and "champion" in section(page, "lineage")
    status = section(page, "status")
    assert 'data-level="bad"' in status and "Action needed" in status
    assert '<div class="value">none</div>' in status  # no champion
    assert "1 DOWN" in status
    assert "<img" not in page  # nothing to plot
    assert "http://" not in page.replace(down, "")  # self-contained: nothing fetched from the network
    assert "<link" not in page and "src=\"http" not in page


def test_empty_inference_log_is_reported_not_an_error(fresh_state: Path, tmp_path: Path) -> None:
    from utils.scoring import inference_log_schema

    lakehouse.write(inference_log_schema().empty_table(), get_config().table("inference_log"))
    page = dashboard.build_dashboard(tmp_path / "d.html").read_text()
    deployments = section(page, "deployments")
    assert "is empty" in deployments and "05_deploy" in deployments
    assert 'class="section-error"' not in page


def test_bad_endpoint_url_is_refused_with_the_fix(fresh_state: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an http"):
        dashboard.build_dashboard(tmp_path / "d.html", endpoint_urls=["127.0.0.1:5000"])


def test_unreadable_table_becomes_a_section_error_and_the_page_still_renders(fresh_state: Path, tmp_path: Path) -> None:
    drift = monitoring_tables(get_config())["drift"]
    lakehouse.write(drift_to_arrow(drift_frame({"region": 0.5}, datetime(2026, 1, 1, tzinfo=UTC))), drift)
    folder = Path(urlparse(lakehouse.table_location(drift)).path)
    for data_file in folder.glob("*.parquet"):
        data_file.unlink()  # the log names files that are gone: every read of the data fails
    for log in (folder / "_delta_log").glob("*.json"):
        log.write_text("this is not a delta log\n")  # and its history cannot be read either
    out = dashboard.build_dashboard(tmp_path / "d.html")
    page = out.read_text()
    assert "monitoring" in dashboard.section_errors(out)
    assert "could not be built" in section(page, "monitoring")
    assert "unreadable" in section(page, "freshness")  # the table's row says so; the section itself is fine
    assert 'data-level="bad"' in section(page, "status")
    for sid in SECTIONS:
        section(page, sid)


# ---------------------------------------------------------------- a small real state


def test_real_state_shows_the_recorded_values(fresh_state: Path, tmp_path: Path, router_url: str) -> None:
    cfg = get_config()
    now = datetime.now(UTC)
    facts = make_small_state(now)
    down = f"http://127.0.0.1:{free_port()}"
    out = dashboard.build_dashboard(tmp_path / "d.html", endpoint_urls=[router_url, down])
    page = out.read_text()
    assert dashboard.section_errors(out) == []

    status = section(page, "status")
    assert f'<div class="value">v{facts["version"]}</div>' in status
    assert '<div class="value">2</div>' in status  # the two alerts raised after the promotion are open
    assert "1 DOWN" in status and 'data-level="bad"' in status

    models = section(page, "models")
    assert f'data-alias="champion" data-version="{facts["version"]}"' in models
    assert "on-call-tester" in models and "won the gate in the test" in models
    assert 'id="model-versions"' in models and "all checks passed" in models

    deployments = section(page, "deployments")
    assert router_url in deployments and "router" in deployments
    assert "champion (v1): 90%" in deployments and "challenger (v2): 10%" in deployments
    assert down in deployments
    rows = re.findall(r'<tr class="(up|down)">', deployments)
    assert sorted(rows) == ["down", "up"]
    assert "<td>predictions</td><td>4</td>" in deployments
    p50 = np.percentile([10.0, 20.0, 30.0, 400.0], 50)  # answered requests only: the refused one is not timed
    assert f"{p50:.1f} / " in deployments
    assert "0.00% of 5 requests (0 failed)" in deployments  # a 4xx is not a failure
    assert "1 of 5 (20.0%): invalid requests turned away with a reason" in deployments
    # three predictions were made before the promotion, one after it
    assert "served by the champion</td><td>100% of 4 predictions in the window; 100% of 1 since v1 became champion" \
        in deployments
    assert 'id="fig-traffic"' in deployments and 'id="fig-latency"' in deployments

    alerts = section(page, "alerts")
    open_table = re.search(r'<table id="alerts-table">(.*?)</table>', alerts, re.DOTALL).group(1)
    assert open_table.count("<tr class=\"open") == 2 and "region" in open_table and "device" in open_table
    closed = re.search(r'<table id="closed-alerts-table">(.*?)</table>', alerts, re.DOTALL).group(1)
    assert "tenure_days" in closed and "addressed by a later promotion" in closed

    monitoring = section(page, "monitoring")
    assert 'id="fig-drift"' in monitoring and "over time" in monitoring  # two passes: a line per column
    assert 'id="fig-quality"' in monitoring and "0.620" in monitoring
    assert "1 column(s) above PSI 0.2" in monitoring

    lineage = section(page, "lineage")
    assert facts["run_id"] in lineage
    row = re.search(rf"<tr><td>{re.escape(cfg.table('training_set'))}</td>(.*?)</tr>", lineage).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[0] == "0" and cells[2] == "1" and cells[3] == "1"  # trained on v0, now at v1, 1 version since

    freshness = section(page, "freshness")
    for name in (cfg.table("training_set"), cfg.table("inference_log"), cfg.table("monitoring_alerts"),
                 monitoring_tables(cfg)["drift"], monitoring_tables(cfg)["quality"]):
        assert f"<td>{name}</td>" in freshness
    assert re.search(rf"<td>{re.escape(cfg.table('inference_log'))}</td><td>inference</td>", freshness)
    assert "stalest table" in status

    for img in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        import base64

        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"


def test_markup_in_what_the_page_reads_is_escaped_not_run(fresh_state: Path, tmp_path: Path) -> None:
    """A column name in an alert (and so its message), or an endpoint URL, holding ``<script>`` shows as text."""
    cfg = get_config()
    hostile = "<script>alert('owned')</script>"
    raised = alerts_from_breaches([{"metric": "population_stability_index", "column": f"region{hostile}",
                                    "value": 4.0, "threshold": 0.2}], cfg.model_name)
    lakehouse.write(alerts_to_frame(raised), monitoring_tables(cfg)["alerts"])
    down = f"http://127.0.0.1:{free_port()}/{hostile}"
    out = dashboard.build_dashboard(tmp_path / "d.html", endpoint_urls=[down])
    page = out.read_text()
    assert dashboard.section_errors(out) == []
    assert "<script>alert(" not in page and page.count("<script>") == 2  # the page's own two scripts only
    escaped = "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"
    alerts = section(page, "alerts")
    assert f"<td>region{escaped}</td>" in alerts  # the alert's column
    assert f"population_stability_index of region{escaped} is 4" in alerts  # and its message
    assert escaped in section(page, "deployments")  # the endpoint's URL


def test_main_writes_the_page(fresh_state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports" / "dashboard.html"
    assert dashboard.main(["--out", str(out)]) == 0
    assert out.exists() and str(out) in capsys.readouterr().out


# ---------------------------------------------------------------- pieces


def test_inference_summary_handles_missing_columns() -> None:
    only_ts = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01 10:00", "2026-01-01 11:00"], utc=True)})
    summary = dashboard.inference_summary(only_ts)
    assert summary["rows"] == 2 and "latency_ms" not in summary and "error_rate" not in summary
    assert dashboard.inference_summary(pd.DataFrame())["rows"] == 0
    with_errors = pd.DataFrame({"status_code": [200, 200, 500, 422], "latency_ms": [1.0, 2.0, 3.0, 4.0]})
    summary = dashboard.inference_summary(with_errors)
    assert summary["error_rate"] == 0.5
    assert summary["latency_ms"]["p50"] == 2.5


def test_request_summary_times_answered_requests_and_counts_refusals() -> None:
    log = pd.DataFrame({"status_code": [200, 200, 200, 422, 503], "latency_ms": [1.0, 2.0, 3.0, 50.0, 90.0]})
    summary = dashboard.request_summary(log)
    assert summary["requests"] == 5 and summary["latency_ms"]["p50"] == 2.0
    assert summary["error_rate"] == 0.2 and summary["server_errors"] == 1  # only 5xx are failures
    assert summary["refused_rate"] == 0.2 and summary["client_errors"] == 1  # a 4xx is a refusal with a reason
    assert dashboard.request_summary(log.iloc[:0]) == {"requests": 0}


def test_probe_endpoint_down_and_up(router_url: str) -> None:
    down = dashboard.probe_endpoint(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    assert not down.up and "refused" in down.detail.lower()
    up = dashboard.probe_endpoint(router_url + "/")
    assert up.up and up.kind == "router" and up.weights == {"champion": 90, "challenger": 10}


@pytest.mark.parametrize(("short", "layer"), [
    ("bronze_orders", "source"), ("silver_plants", "source"), ("quarantine", "source"),
    ("customer_features", "feature"), ("training_set", "feature"), ("inference_log", "inference"),
    ("monitored_predictions_drift_metrics", "monitoring"), ("monitoring_alerts", "monitoring"), ("demo_orders", "other"),
])
def test_table_layer(short: str, layer: str) -> None:
    assert dashboard.table_layer(get_config().table(short))[0] == layer


@pytest.mark.parametrize(("short", "writers"), [
    ("silver_clickstream", ["01_explore", "06_monitor"]),  # 06 lands new data through ingestion
    ("plant_features", ["01_explore", "06_monitor"]),
    ("training_set", ["02_evaluate", "03_develop", "05_deploy", "06_monitor"]),
    ("inference_log", ["05_deploy"]),
    ("monitoring_alerts", ["06_monitor"]),
    ("demo_orders", []),
])
def test_written_by_credits_every_notebook_that_writes_the_table(short: str, writers: list[str]) -> None:
    credited = dashboard.table_layer(get_config().table(short))[1]
    assert [w.rsplit("/", 1)[-1].removesuffix(".ipynb") for w in credited.split(", ") if w] == writers


def test_champion_share_flags_traffic_still_going_to_an_older_version() -> None:
    now = datetime.now(UTC)
    promoted = pd.Timestamp(now - timedelta(hours=1))
    log = pd.DataFrame({"ts": [now - timedelta(hours=2), now - timedelta(minutes=10), now],
                        "model_version": ["1", "1", "1"]})
    text = dashboard_data.champion_share(log, {"version": 2, "at": promoted}, now)
    assert text.startswith("0% of 3 predictions in the window; 0% of 2 since v2") and "still serves an older version" in text
    text = dashboard_data.champion_share(log, {"version": 1, "at": promoted}, now)
    assert "100% of 2 since v1" in text and "older" not in text


def _clean_demo_sections(cfg, now: datetime) -> dict[str, dashboard.Section]:
    """The banner's inputs after `make demo`: a champion, no endpoint running, no open alert, fresh tables."""
    return {
        "models": dashboard.Section("models", "m", facts={cfg.champion_alias: {"version": "3", "at": now}}),
        "deployments": dashboard.Section("deployments", "d", facts={"endpoints_up": 0, "endpoints_down": 0}),
        "freshness": dashboard.Section("freshness", "f", facts={"stalest": {"table": "a.b.c", "at": now, "hours": 0.1}}),
        "alerts": dashboard.Section("alerts", "a", facts={"open": 0, "critical": 0}),
        "monitoring": dashboard.Section("monitoring", "q", facts={"latest_auc": 0.71, "quality_measured_at": now}),
    }


def test_a_clean_demo_reads_all_clear() -> None:
    """After `make demo`: a champion, no endpoint left running (05 stops its own), no open alert, fresh tables."""
    now = datetime.now(UTC)
    cfg = get_config()
    sections = _clean_demo_sections(cfg, now)
    status = dashboard._banner(cfg, sections, now)
    assert status.facts["level"] == "ok" and "All clear" in status.body and "none running" in status.body
    sections["alerts"].facts = {"open": 2, "critical": 1}
    assert dashboard._banner(cfg, sections, now).facts["level"] == "bad"  # the banner still reacts


def test_drift_on_the_chart_is_said_in_the_banner() -> None:
    """Red bars under an "All clear" headline read as a contradiction: the banner names the drift and what became of it."""
    now = datetime.now(UTC)
    cfg = get_config()
    sections = _clean_demo_sections(cfg, now)
    sections["alerts"].facts["raised"] = 5
    sections["monitoring"].facts["drifted"] = 5
    status = dashboard._banner(cfg, sections, now)
    assert status.facts["level"] == "ok" and "5 columns" in status.body
    assert "its alerts closed when a new champion was promoted" in status.body
    sections["alerts"].facts = {"open": 0, "critical": 0}  # drift, yet no alert was ever raised: look at it
    status = dashboard._banner(cfg, sections, now)
    assert status.facts["level"] == "warn" and "no alert was raised for it" in status.body
    sections["monitoring"].facts["drifted"] = 0
    assert "data drift" not in dashboard._banner(cfg, sections, now).body


def test_the_banner_judges_model_quality_against_the_champion_it_measured() -> None:
    now = datetime.now(UTC)
    cfg = get_config()
    floor = cfg.thresholds.gate_min_auc
    sections = {
        "models": dashboard.Section("models", "m", facts={cfg.champion_alias: {"version": "4", "at": now}}),
        "deployments": dashboard.Section("deployments", "d", facts={"endpoints_up": 0, "endpoints_down": 0}),
        "freshness": dashboard.Section("freshness", "f", facts={"stalest": {"table": "a.b.c", "at": now, "hours": 0.1}}),
        "alerts": dashboard.Section("alerts", "a", facts={"open": 0, "critical": 0}),
        "monitoring": dashboard.Section("monitoring", "q"),
    }

    def level() -> str:
        return dashboard._banner(cfg, sections, now).facts["level"]

    assert level() == "warn"  # monitoring never ran: not "All clear"
    sections["monitoring"].facts = {"latest_auc": floor - 0.05, "quality_measured_at": now - timedelta(hours=1)}
    assert level() == "ok"  # under the floor, but measured before v4 became champion (the retrain happened)
    assert "before v4 became" in dashboard._banner(cfg, sections, now).body
    sections["monitoring"].facts = {"latest_auc": floor - 0.05, "quality_measured_at": now + timedelta(hours=1)}
    assert level() == "bad"  # measured after v4 became champion: the current champion is under the floor
    sections["monitoring"].facts = {"latest_auc": floor + 0.05, "quality_measured_at": now}
    assert level() == "ok"


def test_traffic_chart_of_one_hour_spans_hours_not_years() -> None:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    log = pd.DataFrame({"ts": pd.date_range("2026-11-30 10:05", periods=40, freq="1min", tz="UTC"),
                        "model_version": ["1"] * 30 + ["2"] * 10})
    fig = dashboard_figures.traffic_figure(log)
    try:
        lo, hi = fig.axes[0].get_xlim()
        assert (hi - lo) * 24 <= 3.0, (mdates.num2date(lo), mdates.num2date(hi))  # date units are days
    finally:
        plt.close(fig)


def test_the_jvms_own_notes_go_to_a_log_not_the_terminal(monkeypatch, capfd, tmp_path):
    """What the JVM writes to the stderr it inherits at start (``WARNING: Using incubator modules``) lands in a log."""
    import os

    from utils import dashboard, platform

    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(platform, "get_spark", lambda: os.write(2, b"WARNING: Using incubator modules: jdk.incubator.vector\n"))
    lines: list[str] = []
    dashboard._start_spark_quietly(lines.append)
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "incubator" not in err and "after" in err, "stderr is put back once the JVM has started"
    assert "incubator" in (tmp_path / "logs" / "dashboard-jvm.log").read_text()
    assert "dashboard-jvm.log" in lines[0]
