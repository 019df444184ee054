"""Alerts: breach -> alert rows, log and webhook notifiers (against a real local HTTP server), dispatch."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from utils import alerts as al
from utils.config import get_config

MODEL = get_config().model_name
SCOPE = get_config().project  # the secret scope get_secret reads on Databricks
WINDOW = {"start": pd.Timestamp("2024-03-05", tz="UTC"), "end": pd.Timestamp("2024-03-06", tz="UTC")}


def _breach(metric="population_stability_index", column="price", value=0.5, threshold=0.2, direction="above", **kw):
    return {"metric": metric, "column": column, "value": value, "threshold": threshold, "direction": direction,
            "window": WINDOW, "window_cmp": None, "drift_type": "BASELINE", "role": "feature", **kw}


def _alerts(n=2):
    return al.alerts_from_breaches([_breach(column=f"f{i}") for i in range(n)], MODEL)


class _Server:
    """A real HTTP server on 127.0.0.1 that answers POSTs from a script of (status, delay_s) steps."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple[int, float]] = []
        self.default = (200, 0.0)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status, delay = outer.script.pop(0) if outer.script else outer.default
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"invalid_payload" if status < 500 else b"oops")
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/services/T000/B000/SECRETTOKEN"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


# ------------------------------------------------------------------ alert rows


def test_alerts_from_breaches_have_stable_ids_severity_and_message():
    breaches = [
        _breach(value=0.25),
        _breach(value=0.45),
        _breach(metric="ks_test.pvalue", value=1e-9, threshold=0.01, direction="below"),
        _breach(metric="auc", column="model", value=0.6, threshold=0.7, direction="below"),
    ]
    alerts = al.alerts_from_breaches(breaches, "m1")
    assert [a.severity for a in alerts] == ["warning", "critical", "warning", "critical"]
    a = alerts[0]
    assert (a.metric, a.column, a.value, a.threshold, a.model_name) == ("population_stability_index", "price", 0.25, 0.2, "m1")
    assert a.window_start == datetime(2024, 3, 5, tzinfo=UTC) and a.window_end == datetime(2024, 3, 6, tzinfo=UTC)
    assert "price" in a.message and "above the threshold 0.2" in a.message and "2024-03-05" in a.message
    again = al.alerts_from_breaches(breaches[:1], "m1")[0]
    assert again.alert_id == a.alert_id  # re-running the monitor gives the same id (idempotent MERGE)
    other_window = al.alerts_from_breaches([_breach(value=0.25, window={"start": "2024-03-06", "end": "2024-03-07"})], "m1")[0]
    assert other_window.alert_id != a.alert_id and other_window.window_start.tzinfo is not None
    assert al.alerts_from_breaches(breaches[:1], "m2")[0].alert_id != a.alert_id
    with pytest.raises(ValueError, match=r"breach #0 lacks \['value'\]"):
        al.alerts_from_breaches([{"metric": "psi", "column": "x", "threshold": 0.2}], "m1")


def test_alerts_to_frame_keeps_types_and_writes_to_delta(spark):
    import uuid

    from utils import lakehouse

    name = f"test.alerts.alerts_{uuid.uuid4().hex[:8]}"

    frame = al.alerts_to_frame(_alerts(3))
    assert list(frame.columns) == [f.name for f in fields(al.Alert)]
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]" and frame["value"].dtype == "float64"
    empty = al.alerts_to_frame([])
    assert list(empty.columns) == list(frame.columns) and len(empty) == 0
    assert empty.dtypes.astype(str).tolist() == frame.dtypes.astype(str).tolist()
    lakehouse.write(empty, name)  # a first run without alerts still creates the table
    lakehouse.write(frame, name, mode="append")
    assert spark.table(name).schema.fields[2].dataType.simpleString() == "string"
    back = lakehouse.read_pandas(name)
    assert sorted(back["alert_id"]) == sorted(frame["alert_id"]) and back["window_start"].notna().all()


# ------------------------------------------------------------------ notifiers


def test_log_notifier_writes_one_line_per_alert(caplog):
    alerts = al.alerts_from_breaches([_breach(value=0.25), _breach(column="age", value=0.9)], "m1")
    with caplog.at_level(logging.WARNING, logger="utils.alerts"):
        al.LogNotifier().send(alerts)
    lines = [r for r in caplog.records if "ALERT" in r.getMessage()]
    assert len(lines) == 2
    assert [r.levelno for r in lines] == [logging.WARNING, logging.ERROR]  # the second is critical
    assert "price" in lines[0].getMessage() and alerts[1].alert_id in lines[1].getMessage()


def test_webhook_posts_slack_payload(server):
    alerts = _alerts(2)
    hook = al.WebhookNotifier(server.url, timeout=2, retries=0)
    hook.send(alerts)
    assert len(server.requests) == 1
    req = server.requests[0]
    assert req["path"] == "/services/T000/B000/SECRETTOKEN"
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["body"]
    assert set(body) == {"text", "blocks"} and "2 monitoring alerts" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    sections = body["blocks"][1:]
    assert [b["type"] for b in sections] == ["section", "section"]
    assert alerts[0].message in sections[0]["text"]["text"] and sections[0]["text"]["type"] == "mrkdwn"
    assert [(r.ok, r.attempts, r.status) for r in hook.results] == [(True, 1, 200)]


def test_webhook_batches_to_fit_slack_block_limit(server):
    hook = al.WebhookNotifier(server.url, retries=0)
    hook.send(_alerts(60))
    sizes = [len(r["body"]["blocks"]) - 1 for r in server.requests]
    assert sizes == [49, 11] and all(len(r["body"]["blocks"]) <= al.SLACK_MAX_BLOCKS for r in server.requests)


def test_webhook_retries_after_server_error_then_succeeds(server):
    server.script = [(500, 0.0), (503, 0.0)]
    hook = al.WebhookNotifier(server.url, timeout=2, retries=3, backoff=0.01)
    hook.send(_alerts(1))
    assert len(server.requests) == 3
    assert [(r.ok, r.attempts, r.status) for r in hook.results] == [(True, 3, 200)]


def test_webhook_times_out_retries_and_raises(server):
    server.default = (200, 1.5)  # slower than the notifier's timeout
    hook = al.WebhookNotifier(server.url, timeout=0.2, retries=1, backoff=0.01)
    t0 = time.monotonic()
    with pytest.raises(al.NotificationError, match="timed out after 0.2 s") as err:
        hook.send(_alerts(2))
    assert time.monotonic() - t0 < 1.4  # it did not wait for the slow server
    assert len(server.requests) == 2  # first attempt + one retry
    assert "did not accept 2 of 2 alert(s)" in str(err.value) and err.value.results[0].attempts == 2


def test_webhook_does_not_retry_client_errors(server):
    server.default = (400, 0.0)
    hook = al.WebhookNotifier(server.url, retries=3, backoff=0.01)
    with pytest.raises(al.NotificationError, match="HTTP 400: invalid_payload.*not retried") as err:
        hook.send(_alerts(1))
    assert len(server.requests) == 1
    assert "SECRETTOKEN" not in str(err.value)  # the webhook secret is not leaked into errors
    assert hook.results[0].ok is False and hook.results[0].status == 400


def test_webhook_reports_unreachable_server():
    probe = _Server()
    url = probe.url
    probe.close()  # nothing listens on that port now
    hook = al.WebhookNotifier(url, timeout=1, retries=2, backoff=0.01)
    with pytest.raises(al.NotificationError, match="connection error") as err:
        hook.send(_alerts(1))
    assert err.value.results[0].attempts == 3


def test_webhook_rejects_bad_configuration():
    with pytest.raises(ValueError, match="http"):
        al.WebhookNotifier("ftp://example.com/hook")
    with pytest.raises(ValueError, match="timeout"):
        al.WebhookNotifier("http://127.0.0.1:1/hook", timeout=0)


# ------------------------------------------------------------------ dispatch


def test_dispatch_continues_past_a_failing_notifier(server, caplog):
    server.default = (404, 0.0)
    sent: list[list[al.Alert]] = []

    class Collect:
        name = "collect"

        def send(self, alerts):
            sent.append(alerts)

    alerts = _alerts(2)
    with caplog.at_level(logging.ERROR, logger="utils.alerts"):
        outcome = al.dispatch(alerts, [al.WebhookNotifier(server.url, retries=0), Collect(), al.LogNotifier()])
    assert outcome["webhook"]["ok"] is False and "HTTP 404" in outcome["webhook"]["error"]
    assert outcome["collect"] == {"ok": True, "sent": 2, "error": None}
    assert outcome["log"]["ok"] is True
    assert sent == [alerts]
    assert any("notifier webhook failed" in r.getMessage() for r in caplog.records)


def test_dispatch_with_no_alerts_sends_nothing(server):
    outcome = al.dispatch([], [al.WebhookNotifier(server.url), al.LogNotifier(), al.LogNotifier()])
    assert server.requests == []
    assert outcome == {n: {"ok": True, "sent": 0, "error": None} for n in ("webhook", "log", "log#2")}
    with pytest.raises(TypeError, match="send"):
        al.dispatch(_alerts(1), [object()])


def test_log_notifier_with_a_path_appends_lines_to_the_file_only(tmp_path, caplog):
    alerts = al.alerts_from_breaches([_breach(value=0.25), _breach(column="age", value=0.9)], "m1")
    path = tmp_path / "logs" / "alerts.log"
    with caplog.at_level(logging.DEBUG, logger="utils.alerts"):
        al.LogNotifier(path=path).send(alerts)
        al.LogNotifier(path=path).send(alerts[:1])
    assert not [r for r in caplog.records if "ALERT" in r.getMessage()]  # nothing on the console
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and "ALERT [warning]" in lines[0] and lines[1].endswith(f"(alert_id={alerts[1].alert_id})")


# ------------------------------------------------------------------ which notifiers run, per platform


class _Secrets:
    """``dbutils.secrets`` of a workspace holding ``stored`` ({scope: {key: value}})."""

    def __init__(self, stored: dict[str, dict[str, str]]) -> None:
        self.stored = stored

    def get(self, scope: str, key: str) -> str:
        if scope not in self.stored or key not in self.stored[scope]:
            raise RuntimeError(f"IllegalArgumentException: Secret does not exist with scope: {scope} and key: {key}")
        return self.stored[scope][key]

    def listScopes(self) -> list:  # dbutils' own spelling
        return [type("SecretScope", (), {"name": name})() for name in self.stored]


@pytest.fixture
def fresh_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(al, "_SAID", set())


def _on_databricks(monkeypatch: pytest.MonkeyPatch, stored: dict[str, dict[str, str]]) -> None:
    from utils.platform import environment

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setattr(environment, "_dbutils", lambda: type("DBUtils", (), {"secrets": _Secrets(stored)})())


def _kinds(notifiers) -> list[tuple[str, str | None]]:
    return [(n.name, getattr(n, "url", None)) for n in notifiers]


def test_locally_without_a_webhook_alerts_go_to_the_log_and_the_demo_inbox(monkeypatch, capsys, fresh_notes,
                                                                           tmp_path) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)
    notifiers = al.alert_notifiers(tmp_path / "alerts.log", demo_url="http://127.0.0.1:9/hook")
    assert _kinds(notifiers) == [("log", None), ("inbox", "http://127.0.0.1:9/hook")]
    note = capsys.readouterr().out
    assert note.count("\n") == 1 and "MLOPS_ALERT_WEBHOOK_URL" in note and "demo inbox" in note
    al.alert_notifiers(tmp_path / "alerts.log", demo_url="http://127.0.0.1:9/hook")
    assert capsys.readouterr().out == "", "said once per process"


def test_locally_a_webhook_in_the_environment_is_added(monkeypatch, capsys, fresh_notes, server) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", server.url)
    notifiers = al.alert_notifiers(demo_url=None)
    assert _kinds(notifiers) == [("log", None), ("webhook", server.url)]
    assert capsys.readouterr().out == ""
    outcome = al.dispatch(_alerts(3), notifiers)
    assert outcome["webhook"] == {"ok": True, "sent": 3, "error": None} and len(server.requests) == 1


def test_on_databricks_the_webhook_comes_from_the_secret_scope(monkeypatch, capsys, fresh_notes) -> None:
    from utils import platform

    _on_databricks(monkeypatch, {SCOPE: {"alert_webhook_url": "https://hooks.example.com/services/T1/B2/xyz"}})
    with platform.alert_inbox() as inbox:
        assert inbox.url is None and inbox.messages() == []
        notifiers = al.alert_notifiers(demo_url=inbox.url)
    assert _kinds(notifiers) == [("log", None), ("webhook", "https://hooks.example.com/services/T1/B2/xyz")]
    assert capsys.readouterr().out == ""


def test_on_databricks_a_missing_key_is_one_line_saying_what_to_put(monkeypatch, capsys, fresh_notes) -> None:
    _on_databricks(monkeypatch, {SCOPE: {}})
    assert _kinds(al.alert_notifiers()) == [("log", None)]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "the log only" in out
    assert f"databricks secrets put-secret {SCOPE} alert_webhook_url" in out and "create-scope" not in out


def test_on_databricks_a_missing_scope_is_one_line_saying_how_to_create_it(monkeypatch, capsys, fresh_notes) -> None:
    _on_databricks(monkeypatch, {"other": {}})
    assert _kinds(al.alert_notifiers()) == [("log", None)]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "Traceback" not in out
    assert f"no secret scope '{SCOPE}': databricks secrets create-scope {SCOPE}" in out


def test_a_secret_that_is_not_a_url_is_refused_without_showing_it(monkeypatch, fresh_notes) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", "T000/B000/SECRETTOKEN")
    with pytest.raises(ValueError, match="http") as refused:
        al.alert_notifiers()
    assert "SECRETTOKEN" not in str(refused.value)


def test_the_local_alert_inbox_receives_what_the_inbox_notifier_sends(monkeypatch, fresh_notes) -> None:
    from utils import platform

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)
    with platform.alert_inbox() as inbox:
        outcome = al.dispatch(_alerts(2), al.alert_notifiers(demo_url=inbox.url))
        received = inbox.messages()
    assert outcome["inbox"]["ok"] and outcome["log"]["ok"]
    assert len(received) == 1 and len(received[0]["blocks"]) == 3


def test_an_auc_alert_says_what_its_threshold_is_made_of():
    """The quality alert's floor is the champion's held-out AUC minus a tolerance, not the gate's floor: it says so."""
    from utils.config import Thresholds
    from utils.monitoring import detect_breaches

    quality = pd.DataFrame({"window_start": [WINDOW["start"]], "window_end": [WINDOW["end"]], "auc": [0.58]})
    no_drift = pd.DataFrame(columns=["column_name", "window", "ks_test", "chi_squared_test", "population_stability_index"])
    breaches = detect_breaches(no_drift, Thresholds(min_auc_drop=0.05), quality=quality, baseline_auc=0.674)
    alert, = al.alerts_from_breaches(breaches, MODEL)
    assert "below the threshold 0.624 (the champion's held-out AUC 0.674 minus 0.05) in window 2024-03-05" in alert.message
