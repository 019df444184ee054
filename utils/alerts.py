"""Alerts: breaches become alert rows and go out through pluggable notifiers (log line, webhook).

A breach (from :func:`utils.monitoring.detect_breaches`) becomes an :class:`Alert`; the same breach
always gets the same ``alert_id`` (a hash of model, metric, column, drift type and window), so
re-running a monitor and merging into the alerts table on ``alert_id`` does not duplicate rows.

Severity: ``critical`` for a concept-drift breach (AUC drop) or a distance (PSI, JS) at twice its
threshold or more; ``warning`` otherwise (including every p-value breach).

Notifiers never drop alerts silently: :class:`WebhookNotifier` retries connection errors, timeouts,
HTTP 429 and 5xx with exponential backoff, does not retry other 4xx, records every delivery in
``results``, and raises :class:`NotificationError` naming what failed. :func:`dispatch` sends to every
notifier even when one fails, and reports each outcome.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import pandas as pd

log = logging.getLogger(__name__)

SLACK_MAX_BLOCKS = 50  # Slack's limit per message; a header block plus this many minus one alerts
_DISTANCE_METRICS = ("population_stability_index", "js_distance", "kl_divergence")


class NotificationError(RuntimeError):
    """Some alerts could not be delivered; ``results`` holds every delivery attempt's outcome."""

    def __init__(self, message: str, results: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


@dataclass(frozen=True)
class Alert:
    """One threshold breach, as a row of the alerts table."""

    alert_id: str
    created_at: datetime
    metric: str
    column: str
    value: float
    threshold: float
    window_start: datetime | None
    window_end: datetime | None
    severity: str
    message: str
    model_name: str
    drift_type: str = "BASELINE"


def _timestamp(t: Any) -> datetime | None:
    if t is None or (not isinstance(t, str) and pd.isna(t)):
        return None
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _severity(breach: Mapping[str, Any]) -> str:
    metric, value, limit = breach["metric"], float(breach["value"]), float(breach["threshold"])
    if metric == "auc":
        return "critical"
    if metric in _DISTANCE_METRICS and limit > 0 and value >= 2 * limit:
        return "critical"
    return "warning"


def _alert_id(model_name: str, metric: str, column: str, drift_type: str, start: datetime | None, end: datetime | None) -> str:
    key = "|".join([model_name, metric, column, drift_type, start.isoformat() if start else "", end.isoformat() if end else ""])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def alerts_from_breaches(breaches: Iterable[Mapping[str, Any]], model_name: str, *, now: datetime | None = None) -> list[Alert]:
    """One :class:`Alert` per breach, with a stable id, a severity and a readable message."""
    created = now or datetime.now(UTC)
    alerts = []
    for i, b in enumerate(breaches):
        missing = [k for k in ("metric", "column", "value", "threshold") if k not in b]
        if missing:
            raise ValueError(f"breach #{i} lacks {missing}; pass the output of utils.monitoring.detect_breaches")
        window = b.get("window") or {}
        start, end = _timestamp(window.get("start")), _timestamp(window.get("end"))
        drift_type = str(b.get("drift_type") or "BASELINE")
        direction = b.get("direction") or "above"
        span = f" in window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC" if start and end else ""
        against = " vs the previous window" if drift_type == "CONSECUTIVE" else ""
        basis = f" ({b['threshold_basis']})" if b.get("threshold_basis") else ""
        message = (
            f"{b['metric']} of {b['column']} is {float(b['value']):.4g}, {direction} the threshold "
            f"{float(b['threshold']):.4g}{basis}{span}{against} (model {model_name})"
        )
        alerts.append(Alert(
            alert_id=_alert_id(model_name, str(b["metric"]), str(b["column"]), drift_type, start, end),
            created_at=created, metric=str(b["metric"]), column=str(b["column"]), value=float(b["value"]),
            threshold=float(b["threshold"]), window_start=start, window_end=end, severity=_severity(b),
            message=message, model_name=model_name, drift_type=drift_type,
        ))
    return alerts


def alerts_to_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    """Alerts as a pandas frame with fixed columns and types (also when empty), for the alerts table."""
    names = [f.name for f in fields(Alert)]
    frame = pd.DataFrame([asdict(a) for a in alerts], columns=names)
    for c in ("created_at", "window_start", "window_end"):
        frame[c] = pd.to_datetime(frame[c], utc=True).astype("datetime64[us, UTC]")
    for c in ("value", "threshold"):
        frame[c] = frame[c].astype("float64")
    for c in set(names) - {"created_at", "window_start", "window_end", "value", "threshold"}:
        frame[c] = frame[c].astype("string")  # typed even when empty, so a first empty write has a schema
    return frame


# ---------------------------------------------------------------- notifiers


@runtime_checkable
class Notifier(Protocol):
    """Anything that can deliver a list of alerts; raises when it could not."""

    def send(self, alerts: list[Alert]) -> None: ...


class LogNotifier:
    """Writes one line per alert: to ``logger`` (``WARNING``, or ``ERROR`` for critical ones), or appended to ``path``.

    With ``path`` the lines go to that file only, each with its UTC time, as a service's log that an
    on-call tool tails; a notebook then shows the alerts as a table rather than as red log lines.
    """

    name = "log"

    def __init__(self, logger: logging.Logger | None = None, path: str | Path | None = None) -> None:
        self.logger = logger or log
        self.path = Path(path) if path is not None else None

    def send(self, alerts: list[Alert]) -> None:
        """Log every alert."""
        lines = [(a, f"ALERT [{a.severity}] {a.message} (alert_id={a.alert_id})") for a in alerts]
        if self.path is None:
            for a, line in lines:
                self.logger.log(logging.ERROR if a.severity == "critical" else logging.WARNING, "%s", line)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.writelines(f"{now} {line}\n" for _, line in lines)


@dataclass
class DeliveryResult:
    """Outcome of one webhook request (one batch of alerts)."""

    batch: int
    alerts: int
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


def slack_payload(alerts: Sequence[Alert], title: str | None = None) -> dict[str, Any]:
    """A Slack-compatible message: ``text`` (fallback) and ``blocks`` (a header and one section per alert)."""
    models = sorted({a.model_name for a in alerts})
    head = title or f"{len(alerts)} monitoring alert{'s' if len(alerts) != 1 else ''} for {', '.join(models)}"
    head = head[:150]  # Slack's header text limit
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": head}}]
    for a in alerts:
        icon = ":red_circle:" if a.severity == "critical" else ":warning:"
        blocks.append({
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{icon} *{a.severity}* `{a.column}`: {a.message}"[:3000]},
        })
    return {"text": head + "\n" + "\n".join(f"- [{a.severity}] {a.message}" for a in alerts), "blocks": blocks}


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") else f"{parts.scheme}://{parts.netloc}"


class WebhookNotifier:
    """POSTs alerts as Slack-compatible JSON to ``url``, with a timeout and retries.

    ``retries`` is the number of extra attempts after the first; the wait before retry ``k`` is
    ``backoff * 2 ** (k - 1)`` seconds (or the server's ``Retry-After`` on 429, up to 60 s).
    Alerts go in batches that fit Slack's block limit. The URL's path (Slack puts its secret there)
    is never logged or put in an error. ``name`` is how :func:`dispatch` reports it.
    """

    name = "webhook"

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, backoff: float = 0.5,
                 *, batch_size: int = SLACK_MAX_BLOCKS - 1, headers: Mapping[str, str] | None = None,
                 name: str = "webhook") -> None:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            shown = _redact(url) if "://" in url else f"{len(url)} characters without a scheme"  # never the secret
            raise ValueError(f"webhook url must be an http(s) URL, got {shown}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, retries and backoff >= 0")
        if not 1 <= batch_size <= SLACK_MAX_BLOCKS - 1:
            raise ValueError(f"batch_size must be within 1..{SLACK_MAX_BLOCKS - 1} (Slack allows {SLACK_MAX_BLOCKS} blocks)")
        self.url, self.timeout, self.retries, self.backoff = url, float(timeout), int(retries), float(backoff)
        self.batch_size, self.name = batch_size, name
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.results: list[DeliveryResult] = []

    def send(self, alerts: list[Alert]) -> None:
        """Deliver every alert; raise :class:`NotificationError` listing the batches that failed."""
        this_call = []
        for k in range(0, len(alerts), self.batch_size):
            batch = alerts[k:k + self.batch_size]
            result = self._deliver(k // self.batch_size, batch)
            self.results.append(result)
            this_call.append(result)
        failed = [r for r in this_call if not r.ok]
        if failed:
            lost = sum(r.alerts for r in failed)
            detail = "; ".join(f"batch {r.batch} ({r.alerts} alerts) after {r.attempts} attempt(s): {r.error}" for r in failed)
            raise NotificationError(
                f"webhook {_redact(self.url)} did not accept {lost} of {len(alerts)} alert(s): {detail}", this_call
            )

    def _deliver(self, index: int, batch: list[Alert]) -> DeliveryResult:
        import requests

        payload = slack_payload(batch)
        error, status = "not attempted", None
        for attempt in range(1, self.retries + 2):
            wait = self.backoff * 2 ** (attempt - 1)
            try:
                resp = requests.post(self.url, json=payload, headers=self.headers, timeout=self.timeout)
            except requests.Timeout:
                error, status = f"timed out after {self.timeout:g} s", None
            except requests.ConnectionError as exc:
                error, status = f"connection error: {type(exc).__name__}", None
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return DeliveryResult(index, len(batch), True, attempt, status)
                error = f"HTTP {status}: {resp.text[:200].strip()}"
                if status == 429:
                    wait = max(wait, min(_retry_after(resp.headers.get("Retry-After")), 60.0))
                elif status < 500:
                    log.error("webhook %s rejected %d alert(s): %s (not retried)", _redact(self.url), len(batch), error)
                    return DeliveryResult(index, len(batch), False, attempt, status, error + " (client error, not retried)")
            if attempt <= self.retries:
                log.warning("webhook %s attempt %d failed (%s); retrying in %.2g s", _redact(self.url), attempt, error, wait)
                time.sleep(wait)
        return DeliveryResult(index, len(batch), False, self.retries + 1, status, error)


def _retry_after(value: str | None) -> float:
    try:
        return max(float(value), 0.0) if value is not None else 0.0
    except ValueError:
        return 0.0


def dispatch(alerts: Sequence[Alert], notifiers: Iterable[Notifier]) -> dict[str, dict[str, Any]]:
    """Send ``alerts`` to every notifier; one failing does not stop the others.

    Returns ``{notifier name: {"ok", "sent", "error"}}`` (``sent``: alerts known delivered);
    failures are also logged at ERROR.
    With no alerts nothing is sent and every outcome is ``ok`` with ``sent == 0``.
    """
    outcome: dict[str, dict[str, Any]] = {}
    for notifier in notifiers:
        if not callable(getattr(notifier, "send", None)):
            raise TypeError(f"{notifier!r} is not a notifier: it needs a send(alerts) method")
        base = str(getattr(notifier, "name", type(notifier).__name__))
        name, k = base, 2
        while name in outcome:
            name, k = f"{base}#{k}", k + 1
        if not alerts:
            outcome[name] = {"ok": True, "sent": 0, "error": None}
            continue
        try:
            notifier.send(list(alerts))
        except Exception as exc:  # noqa: BLE001 - one notifier's failure must not stop the others
            log.error("notifier %s failed to deliver %d alert(s): %s", name, len(alerts), exc)
            delivered = sum(r.alerts for r in getattr(exc, "results", []) if getattr(r, "ok", False))
            outcome[name] = {"ok": False, "sent": delivered, "error": f"{type(exc).__name__}: {exc}"}
        else:
            outcome[name] = {"ok": True, "sent": len(alerts), "error": None}
    return outcome


# ---------------------------------------------------------------- which notifiers run

ALERT_WEBHOOK_SECRET_KEY = "alert_webhook_url"
"""The secret holding the team's alert webhook (a Slack incoming webhook or any Slack-compatible one)."""

_SAID: set[str] = set()


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        print(line)


def alert_notifiers(log_path: str | Path | None = None, *, demo_url: str | None = None, timeout: float = 5.0,
                    retries: int = 3) -> list[Notifier]:
    """The notifiers alerts go to: the log always, the team's webhook when one is configured, and a demo inbox.

    - :class:`LogNotifier` (to ``log_path`` if given, else the ``utils.alerts`` logger), always;
    - :class:`WebhookNotifier` named ``webhook`` to the secret ``alert_webhook_url`` when it exists:
      ``utils.platform.get_secret`` reads it from the project's Databricks secret scope there, from
      ``MLOPS_ALERT_WEBHOOK_URL`` locally;
    - :class:`WebhookNotifier` named ``inbox`` to ``demo_url`` when given (notebook 06 passes
      ``utils.platform.alert_inbox()``'s URL: a local receiver standing in for Slack; None on Databricks).

    When the secret is missing this prints one line, once per process, saying what to set (on Databricks
    also whether the scope itself is missing), and the other notifiers still run: no traceback.

    Raises:
        ValueError: the secret holds something that is not an http(s) URL (the message hides its path).
    """
    from utils.platform import MissingSecret, get_secret

    notifiers: list[Notifier] = [LogNotifier(path=log_path)]
    try:
        url = get_secret(ALERT_WEBHOOK_SECRET_KEY)
    except MissingSecret as exc:
        reason = exc.args[0] if exc.args else str(exc)
        where = "the log and the demo inbox" if demo_url else "the log only"
        _say_once(f"no alert webhook configured, so alerts go to {where}; to send them to Slack: {reason}")
    else:
        notifiers.append(WebhookNotifier(url, timeout=timeout, retries=retries))
    if demo_url:
        notifiers.append(WebhookNotifier(demo_url, timeout=timeout, retries=retries, name="inbox"))
    return notifiers
