"""The 360° view: one self-contained HTML page showing what is deployed where, whether it is healthy and how it does.

It reads only what the lifecycle already records:

* the MLflow registry: versions, the ``champion`` / ``challenger`` aliases, the audit trail and the
  gate verdict tags (``utils.registry``);
* endpoint health: the local endpoints this process runs (``utils.local.endpoints.running_endpoints()``),
  any endpoint URLs passed in (``GET /health``, else ``/ping``; a router's ``GET /routes`` gives its
  traffic split) and, on Databricks, the Model Serving endpoint ``cfg.endpoint_name``;
* Delta tables (``utils.lakehouse``): the commit history of every project table (freshness), the
  inference log (volume, served versions, latency and errors where recorded), the monitoring
  drift, quality and alert tables (``utils.retraining.monitoring_tables``);
* lineage: the ``input.<table>`` tags of the champion's training run (``utils.training.input_versions``).

The page needs no server: plots are PNGs embedded as base64, CSS and the one small script are inline,
nothing is fetched from the network. Every section has a stable ``id`` (``status``, ``models``,
``deployments``, ``freshness``, ``monitoring``, ``lineage``, ``alerts``). What is missing (a fresh
project, an endpoint that is down, an empty inference log) is said in the section, with the notebook
that produces it; the page still renders. A section that fails to read its source shows the error
instead of its content, and ``build_dashboard`` still writes the page.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from utils.config import Config, get_config
from utils.platform import (
    EnvironmentProblem,
    output_dir,
    platform_name,
    registry_uri,
    tracking_uri,
    workspace_client,
)

SECTION_IDS = ("status", "models", "deployments", "freshness", "monitoring", "lineage", "alerts")
STALE_AFTER_HOURS = 24.0  # a table not written for longer is flagged stale
RECENT_HOURS = 24.0  # the window of "recent" inference traffic
PROBE_TIMEOUT_S = 2.0
MAX_VERSIONS = 25  # newest model versions listed
MAX_AUDIT_ROWS = 20
MAX_ALERT_ROWS = 50
DRIFT_PASSES = 8  # past monitoring passes (Delta versions of the drift table) plotted
DRIFT_LINES = 8  # features drawn in the drift-over-time plot

NOTEBOOK = {
    "register": "notebooks/03_develop.ipynb",
    "promote": "notebooks/05_deploy.ipynb",
    "deploy": "notebooks/05_deploy.ipynb",
    "sources": "notebooks/01_explore.ipynb",
    "training_set": "notebooks/02_evaluate.ipynb",
    "monitor": "notebooks/06_monitor.ipynb",
}

WRITERS = {
    "sources": ("notebooks/01_explore.ipynb", "notebooks/06_monitor.ipynb"),  # 06 lands new data through the same steps
    "training_set": ("notebooks/02_evaluate.ipynb", "notebooks/03_develop.ipynb", "notebooks/05_deploy.ipynb",
                     "notebooks/06_monitor.ipynb"),  # each rebuilds it before training or scoring
    "deploy": ("notebooks/05_deploy.ipynb",),
    "monitor": ("notebooks/06_monitor.ipynb",),
}
"""Every notebook that writes each kind of table (the freshness table's ``written_by``), in lifecycle order."""


# ---------------------------------------------------------------- small helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: Any) -> pd.Timestamp | None:
    """``value`` (string, datetime, epoch-less Timestamp) as a UTC Timestamp; None when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _age(ts: pd.Timestamp | None, now: datetime) -> str:
    """``ts`` as a short age (``5 min ago``, ``3.2 h ago``, ``4.1 days ago``)."""
    if ts is None:
        return "never"
    seconds = (pd.Timestamp(now) - ts).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _when(ts: pd.Timestamp | None, now: datetime) -> str:
    return "—" if ts is None else f"{ts:%Y-%m-%d %H:%M} UTC ({_age(ts, now)})"


def _esc(value: Any) -> str:
    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return ""
    return html.escape(str(value), quote=True)


def _code(text: str) -> str:
    return f"<code>{_esc(text)}</code>"


def _table(frame: pd.DataFrame, table_id: str, row_class: Callable[[pd.Series], str] | None = None) -> str:
    """An escaped HTML table of ``frame`` (cells already formatted as text)."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(f"<td>{_esc(v)}</td>" for v in row.tolist())
        rows.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _missing(text: str, fix: str | None = None) -> str:
    """A 'this is missing' note, naming what produces it."""
    tail = f" <span class=\"fix\">{fix}</span>" if fix else ""
    return f'<p class="missing">{text}{tail}</p>'


def _png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG string."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_html(fig_id: str, fig: Any, caption: str) -> str:
    return (f'<figure id="{fig_id}"><img alt="{_esc(caption)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _new_figure(width: float = 8.0, height: float = 3.0) -> tuple[Any, Any]:
    """A figure and axes from matplotlib's object API (no pyplot: the caller's backend stays as it is)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ---------------------------------------------------------------- sections


@dataclass
class Section:
    """One block of the page: its id, heading, HTML body, and the facts the status banner needs."""

    id: str
    title: str
    body: str = ""
    missing: list[str] = field(default_factory=list)
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def _guarded(section_id: str, title: str, build: Callable[[Section], None]) -> Section:
    """Run ``build`` on a fresh section; an exception becomes the section's visible error."""
    section = Section(section_id, title)
    try:
        build(section)
    except Exception as exc:  # noqa: BLE001 - one unreadable source must not take the whole page down
        section.error = f"{type(exc).__name__}: {exc}"
    return section


# ---------------------------------------------------------------- registry


def _mlflow_client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def ensure_mlflow() -> None:
    """Point MLflow at this platform's tracking server and registry unless it already does."""
    import mlflow

    if (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) != (tracking_uri(), registry_uri()):
        from utils.platform import configure_mlflow

        configure_mlflow()


def model_exists(name: str) -> bool:
    """True if the registered model ``name`` exists."""
    from mlflow.exceptions import MlflowException

    try:
        _mlflow_client().get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return False
        raise
    return True


def model_versions(name: str, limit: int = MAX_VERSIONS) -> pd.DataFrame:
    """The newest ``limit`` versions of ``name``: version, aliases, status, created, run, gate verdict."""
    client = _mlflow_client()
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name='{name}'", page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    rows = []
    for mv in sorted(found, key=lambda v: int(v.version), reverse=True)[:limit]:
        mv = client.get_model_version(name, mv.version)  # search results may omit tags and aliases
        rows.append({
            "version": int(mv.version),
            "aliases": ", ".join(sorted(mv.aliases or [])),
            "status": mv.status,
            "created": _utc(pd.Timestamp(int(mv.creation_timestamp), unit="ms")) if mv.creation_timestamp else None,
            "run_id": mv.run_id or "",
            "gate_passed": mv.tags.get("gate_passed", ""),
            "gate_summary": mv.tags.get("gate_summary", ""),
        })
    return pd.DataFrame(rows, columns=["version", "aliases", "status", "created", "run_id", "gate_passed", "gate_summary"])


def _last_move(audit: pd.DataFrame, alias: str, version: int) -> pd.Series | None:
    moves = audit[(audit["alias"] == alias) & (audit["version"] == int(version))]
    return None if moves.empty else moves.iloc[-1]


def _models_section(cfg: Config, now: datetime) -> Section:
    def build(s: Section) -> None:
        from utils import registry

        name = cfg.model_name
        s.facts["model_name"] = name
        if not model_exists(name):
            s.missing.append(f"model {name}")
            s.body = _missing(f"No registered model {_code(name)} yet.",
                              f"Run {_code(NOTEBOOK['register'])} (registers a version and gates it to "
                              f"{_code(cfg.challenger_alias)}), then {_code(NOTEBOOK['promote'])} (promotes the "
                              f"{_code(cfg.champion_alias)}).")
            return
        versions = model_versions(name)
        audit = registry.audit_trail(name)
        parts = []
        for alias in (cfg.champion_alias, cfg.challenger_alias):
            mv = registry.get_alias_version(name, alias)
            if mv is None:
                s.missing.append(f"alias {alias}")
                producer = NOTEBOOK["promote"] if alias == cfg.champion_alias else NOTEBOOK["register"]
                parts.append(_missing(f"No version holds the alias {_code(alias)}.", f"{_code(producer)} sets it."))
                continue
            move = _last_move(audit, alias, int(mv.version))
            at = _utc(move["at"]) if move is not None else None
            s.facts[alias] = {"version": int(mv.version), "at": at, "run_id": mv.run_id,
                              "actor": None if move is None else move["actor"]}
            gate = mv.tags.get("gate_passed", "")
            who = "" if move is None else f" by {_esc(move['actor'])} ({_esc(move['action'])}: {_esc(move['reason'])})"
            parts.append(
                f'<p class="alias" data-alias="{_esc(alias)}" data-version="{int(mv.version)}"><b>{_esc(alias)}</b>: '
                f"version <b>{int(mv.version)}</b>, set {_esc(_when(at, now))}{who}; gate passed: "
                f"<b>{_esc(gate or 'not recorded')}</b></p>")
        shown = versions.assign(created=versions["created"].map(lambda t: _when(t, now)),
                                run_id=versions["run_id"].str.slice(0, 12))
        parts.append(f"<h3>Versions of {_code(name)}</h3>")
        parts.append(_table(shown, "model-versions",
                            lambda r: "champion" if cfg.champion_alias in str(r["aliases"]).split(", ") else ""))
        parts.append("<h3>Who promoted what, when and why</h3>")
        if audit.empty:
            parts.append(_missing("No alias move is audited yet.", f"{_code(NOTEBOOK['register'])} and "
                                  f"{_code(NOTEBOOK['promote'])} record them."))
        else:
            recent = audit.sort_values("seq", ascending=False).head(MAX_AUDIT_ROWS)
            cols = ["at", "action", "alias", "version", "from_version", "actor", "gate_passed", "reason"]
            shown = recent[cols].astype(object).where(recent[cols].notna(), "")
            shown["at"] = recent["at"].map(lambda t: _when(_utc(t), now))
            parts.append(_table(shown, "audit-trail"))
        s.facts["versions"] = len(versions)
        s.body = "\n".join(parts)

    return _guarded("models", "Models: versions, aliases and promotions", build)


# ---------------------------------------------------------------- endpoints


@dataclass
class EndpointStatus:
    """Health of one endpoint, and its traffic split when it says."""

    name: str
    url: str
    kind: str
    up: bool
    detail: str
    model: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint URL {url!r} is not an http(s) URL: pass e.g. 'http://127.0.0.1:5001'")
    return url.rstrip("/")


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read(65536)
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""


def probe_endpoint(url: str, timeout: float = PROBE_TIMEOUT_S) -> EndpointStatus:
    """Health of the endpoint at ``url`` (``GET /health``, else ``/ping``); a router's ``/routes`` adds its split."""
    base = _check_url(url)
    reasons = []
    for path in ("/health", "/ping"):
        try:
            code, _ = _get(base + path, timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            reasons.append(f"GET {path}: {reason}")
            if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
                break  # nothing listens: the other path will not answer either
            continue
        if code == 200:
            status = EndpointStatus(base, base, "url", True, f"GET {path} answered 200")
            _add_routes(status, timeout)
            return status
        reasons.append(f"GET {path}: HTTP {code}")
    return EndpointStatus(base, base, "url", False, "; ".join(reasons))


def _add_routes(status: EndpointStatus, timeout: float) -> None:
    """Fill ``versions`` and ``weights`` from a router's ``GET /routes`` (absent on a plain model server)."""
    try:
        code, body = _get(status.url + "/routes", timeout)
        routes = json.loads(body) if code == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return
    if isinstance(routes, dict) and isinstance(routes.get("weights"), dict):
        status.kind = "router"
        status.versions = {str(k): str(v) for k, v in (routes.get("versions") or {}).items()}
        status.weights = {str(k): int(v) for k, v in routes["weights"].items()}


def _databricks_endpoint(cfg: Config, client: Any) -> EndpointStatus:
    """State and traffic split of the Model Serving endpoint ``cfg.endpoint_name`` (``client``: a WorkspaceClient)."""
    from databricks.sdk.errors import NotFound

    try:
        ep = client.serving_endpoints.get(cfg.endpoint_name)
    except NotFound:
        return EndpointStatus(cfg.endpoint_name, "", "databricks", False, "no such serving endpoint")
    ready = ep.state is not None and getattr(ep.state.ready, "value", None) == "READY"
    update = getattr(getattr(ep.state, "config_update", None), "value", "unknown")
    status = EndpointStatus(cfg.endpoint_name, ep.endpoint_url or "", "databricks", ready,
                            f"{'READY' if ready else 'NOT_READY'}, config update {update}")
    config = ep.config
    if config is not None:
        status.versions = {e.name: str(e.entity_version) for e in config.served_entities or []}
        routes = config.traffic_config.routes if config.traffic_config else []
        status.weights = {r.served_entity_name or r.served_model_name: int(r.traffic_percentage) for r in routes or []}
    return status


def endpoint_statuses(endpoint_urls: Sequence[str] = (), cfg: Config | None = None) -> list[EndpointStatus]:
    """Every endpoint this process runs, every URL given, and (on Databricks) the serving endpoint."""
    cfg = cfg or get_config()
    urls = [_check_url(u) for u in endpoint_urls]
    found = []
    try:
        client = workspace_client()
    except EnvironmentProblem:
        client = None  # no workspace, so no Model Serving endpoint to show
    if client is not None:
        found.append(_databricks_endpoint(cfg, client))
    from utils.local.endpoints import running_endpoints

    for ep in running_endpoints():
        up = ep.health()
        found.append(EndpointStatus(f"local endpoint :{ep.port}", ep.url, "local endpoint", up,
                                    "GET /health answered 200" if up else "not answering GET /health",
                                    model=ep.model_uri))
        if ep.url in urls:
            urls.remove(ep.url)
    found.extend(probe_endpoint(u) for u in urls)
    return found


# ---------------------------------------------------------------- inference log


def read_recent(name: str, ts_col: str, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Rows of table ``name`` whose ``ts_col`` is at or after ``since`` (all rows when None), as pandas."""
    from pyspark.sql import functions as F

    from utils import lakehouse

    sdf = lakehouse.read(name)  # filtered in Spark: the inference log can be large
    if since is not None and ts_col in sdf.columns:
        sdf = sdf.where(F.col(ts_col) >= F.lit(since.to_pydatetime()))
    return lakehouse.to_pandas(sdf)


def inference_summary(log: pd.DataFrame) -> dict[str, Any]:
    """Volume, sources, served versions, latency percentiles and error rate of inference-log rows (columns it lacks are reported as such)."""
    out: dict[str, Any] = {"rows": len(log)}
    if "ts" in log and len(log):
        ts = pd.to_datetime(log["ts"], utc=True)
        out["first"], out["last"] = ts.min(), ts.max()
    for col in ("source", "model_version", "arm"):
        if col in log and len(log):
            out[f"by_{col}"] = log[col].fillna("(none)").astype(str).value_counts().to_dict()
    latency = next((c for c in ("latency_ms", "latency") if c in log), None)
    if latency and log[latency].notna().any():
        q = log[latency].astype(float).quantile([0.5, 0.95, 0.99])
        out["latency_ms"] = {"p50": float(q.loc[0.5]), "p95": float(q.loc[0.95]), "p99": float(q.loc[0.99])}
    error_col = next((c for c in ("error", "status_code", "status") if c in log), None)
    if error_col and len(log):
        col = log[error_col]
        if error_col == "status_code":
            failed = pd.to_numeric(col, errors="coerce").fillna(0) >= 400
        elif error_col == "status":
            failed = ~col.astype(str).str.lower().isin({"ok", "success", "200"})
        else:
            failed = col.notna() & (col.astype(str).str.strip() != "")
        out["error_rate"] = float(failed.mean())
    return out


def request_summary(requests: pd.DataFrame) -> dict[str, Any]:
    """Latency percentiles of answered requests, and the shares failed (5xx: ``error_rate``) and refused (4xx).

    A 4xx is the endpoint doing its job (a bad request refused with a reason), so only 5xx count as errors.
    """
    out: dict[str, Any] = {"requests": len(requests)}
    if requests.empty:
        return out
    status = pd.to_numeric(requests["status_code"], errors="coerce").fillna(500)
    ok = requests.loc[status < 400, "latency_ms"].dropna().astype(float)
    if len(ok):
        q = ok.quantile([0.5, 0.95, 0.99])
        out["latency_ms"] = {"p50": float(q.loc[0.5]), "p95": float(q.loc[0.95]), "p99": float(q.loc[0.99])}
    out["error_rate"] = float((status >= 500).mean())
    out["refused_rate"] = float(((status >= 400) & (status < 500)).mean())
    out["client_errors"] = int(((status >= 400) & (status < 500)).sum())
    out["server_errors"] = int((status >= 500).sum())
    return out


def _traffic_figure(log: pd.DataFrame) -> Any:
    fig, ax = _new_figure()
    frame = log.assign(hour=pd.to_datetime(log["ts"], utc=True).dt.floor("h"))
    key = "model_version" if "model_version" in frame else None
    if key:
        counts = frame.groupby(["hour", key]).size().unstack(fill_value=0)
        for version in counts.columns:
            ax.plot(counts.index, counts[version], marker="o", label=f"version {version}")
        ax.legend(loc="upper left", fontsize=8)
    else:
        counts = frame.groupby("hour").size()
        ax.plot(counts.index, counts.to_numpy(), marker="o")
    # An hour either side of the data: matplotlib's default for a single date spans years around it.
    ax.set_xlim(counts.index.min() - pd.Timedelta(hours=1), counts.index.max() + pd.Timedelta(hours=1))
    ax.set_ylabel("predictions / hour")
    ax.set_title("Predictions per hour by model version")
    fig.autofmt_xdate()
    return fig


def _latency_figure(log: pd.DataFrame, col: str) -> Any:
    fig, ax = _new_figure(8, 2.6)
    ax.hist(log[col].dropna().astype(float), bins=30, color="#4c72b0")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title("Latency of recent requests")
    return fig


def _recent_requests(cfg: Config, since: pd.Timestamp | None) -> pd.DataFrame | None:
    """Request-log rows from ``since`` on (all when None); None when the endpoint never logged a request."""
    from utils import lakehouse

    name = cfg.table("request_log")
    if not lakehouse.exists(name):
        return None
    return read_recent(name, "ts", since)


def _champion_share(log: pd.DataFrame, champion: dict[str, Any], now: datetime) -> str:
    """How much of ``log`` the champion served, overall and since it became champion."""
    version, since = str(champion["version"]), champion.get("at")
    served = log["model_version"].astype(str) == version
    text = f"{100 * served.mean():.0f}% of {len(log):,} predictions in the window"
    if since is None or "ts" not in log:
        return text
    after = pd.to_datetime(log["ts"], utc=True) >= since
    if not after.any():
        return f"{text}; none since v{version} became champion {_when(since, now)}"
    share = float(served[after].mean())
    text = f"{text}; {100 * share:.0f}% of {int(after.sum()):,} since v{version} became champion"
    return text + (" — the endpoint still serves an older version: reload or redeploy it" if share == 0 else "")


def _deployments_section(cfg: Config, endpoint_urls: Sequence[str], now: datetime,
                         champion: dict[str, Any] | None) -> Section:
    def build(s: Section) -> None:
        from utils import lakehouse

        parts = ["<h3>Endpoints</h3>"]
        endpoints = endpoint_statuses(endpoint_urls, cfg)
        s.facts["endpoints_up"] = sum(e.up for e in endpoints)
        s.facts["endpoints_down"] = sum(not e.up for e in endpoints)
        if not endpoints:
            s.missing.append("endpoints")
            parts.append(_missing(
                "No endpoint is running in this process and no endpoint URL was given "
                f"({_code(NOTEBOOK['deploy'])} stops the endpoints it starts when it ends, so after "
                f"{_code('make demo')} none is running).",
                f"{_code(NOTEBOOK['deploy'])} starts one (utils.deploy.deploy): run it in JupyterLab up to its endpoint cells, "
                f"then pass the URL it shows with {_code('make dashboard ENDPOINTS=http://127.0.0.1:PORT')} "
                f"({_code('python -m utils.dashboard --endpoint URL')}, or build_dashboard(endpoint_urls=[...]))."))
        else:
            frame = pd.DataFrame([{
                "endpoint": e.name, "kind": e.kind, "state": "UP" if e.up else "DOWN", "url": e.url,
                "serves": e.model or ", ".join(f"{a} → v{v}" for a, v in e.versions.items()),
                "traffic": ", ".join(f"{a} {w}%" if e.kind == "databricks" else f"{a} {w}" for a, w in e.weights.items()),
                "detail": e.detail,
            } for e in endpoints])
            parts.append(_table(frame, "endpoints", lambda r: "up" if r["state"] == "UP" else "down"))
            splits = [e for e in endpoints if e.weights]
            for e in splits:
                total = sum(e.weights.values()) or 1
                share = ", ".join(f"{_esc(a)} (v{_esc(e.versions.get(a, '?'))}): {100 * w / total:.0f}%"
                                  for a, w in e.weights.items())
                parts.append(f'<p class="split">Configured traffic split of {_esc(e.name)}: {share}</p>')
        parts.append("<h3>Recent traffic (inference log)</h3>")
        name = cfg.table("inference_log")
        if not lakehouse.exists(name):
            s.missing.append("inference log")
            parts.append(_missing(f"The inference log {_code(name)} does not exist yet.",
                                  f"{_code(NOTEBOOK['deploy'])} logs every real-time, batch and streaming prediction to it."))
            s.body = "\n".join(parts)
            return
        since = pd.Timestamp(now) - pd.Timedelta(hours=RECENT_HOURS)
        log = read_recent(name, "ts", since)
        label = f"last {RECENT_HOURS:.0f} h"
        if log.empty:
            everything = read_recent(name, "ts")
            if everything.empty:
                s.missing.append("inference log rows")
                parts.append(_missing(f"The inference log {_code(name)} is empty: nothing has been scored yet.",
                                      f"{_code(NOTEBOOK['deploy'])} scores requests."))
                s.body = "\n".join(parts)
                return
            last = pd.to_datetime(everything["ts"], utc=True).max()
            log = everything[pd.to_datetime(everything["ts"], utc=True) >= last - pd.Timedelta(hours=RECENT_HOURS)]
            parts.append(f'<p class="warn">No prediction in the last {RECENT_HOURS:.0f} h: the newest was logged '
                         f"{_esc(_when(last, now))}. Below: the {RECENT_HOURS:.0f} h before it.</p>")
            label = f"{RECENT_HOURS:.0f} h before the newest prediction"
        summary = inference_summary(log)
        s.facts["recent_predictions"] = summary["rows"] if label.startswith("last") else 0
        s.facts["last_prediction"] = summary.get("last")
        rows = [("window", label), ("predictions", f"{summary['rows']:,}"),
                ("first / last", f"{_when(summary.get('first'), now)} / {_when(summary.get('last'), now)}")]
        for col in ("source", "model_version", "arm"):
            counts = summary.get(f"by_{col}")
            if counts:
                total = sum(counts.values())
                rows.append((f"by {col}", ", ".join(f"{k}: {v} ({100 * v / total:.0f}%)" for k, v in counts.items())))
        requests = _recent_requests(cfg, summary.get("first"))
        req = request_summary(requests) if requests is not None else {}
        lat = req.get("latency_ms") or summary.get("latency_ms")
        rows.append(("endpoint latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms" if lat
                     else f"not recorded (no answered request in the request log {cfg.table('request_log')})"))
        if "error_rate" in req:
            rows.append(("endpoint error rate (5xx)", f"{100 * req['error_rate']:.2f}% of {req['requests']:,} requests "
                         f"({req['server_errors']} failed)"))
            rows.append(("refused requests (4xx)", f"{req['client_errors']} of {req['requests']:,} "
                         f"({100 * req['refused_rate']:.1f}%): invalid requests turned away with a reason, not failures"))
        else:
            rows.append(("endpoint error rate", f"not recorded (the request log {cfg.table('request_log')} "
                         "has no request in the window)"))
        s.facts["error_rate"] = req.get("error_rate")
        if champion is not None and "model_version" in log and len(log):
            rows.append(("served by the champion", _champion_share(log, champion, now)))
        parts.append(_table(pd.DataFrame(rows, columns=["measure", "value"]), "traffic-summary"))
        if "ts" in log:
            parts.append(_figure_html("fig-traffic", _traffic_figure(log), f"Predictions per hour ({label})"))
        timed_rows, source = (requests, "request log") if requests is not None else (log, "inference log")
        latency_col = next((c for c in ("latency_ms", "latency") if c in timed_rows), None)
        if latency_col and timed_rows[latency_col].notna().any():
            parts.append(_figure_html("fig-latency", _latency_figure(timed_rows, latency_col),
                                      f"Latency of endpoint requests (ms, {source})"))
        s.body = "\n".join(parts)

    return _guarded("deployments", "Deployments: endpoints, served versions and traffic", build)


# ---------------------------------------------------------------- freshness


def table_layer(name: str, cfg: Config | None = None) -> tuple[str, str]:
    """The lifecycle layer of table ``name`` (source, feature, inference, monitoring, other) and every notebook writing it.

    The writers are comma-separated notebook paths in lifecycle order (:data:`WRITERS`), "" for a table no
    notebook writes: a source table is written by 01 and again by 06 when new data lands.
    """
    from utils.retraining import monitoring_tables

    cfg = cfg or get_config()
    short = name.rsplit(".", 1)[-1]
    if name in monitoring_tables(cfg).values():
        layer, writers = "monitoring", WRITERS["monitor"]
    elif name in (cfg.table("inference_log"), cfg.table("request_log"), cfg.table("streaming_quarantine")):
        layer, writers = "inference", WRITERS["deploy"]
    elif short.startswith(("bronze_", "silver_")) or short == "quarantine":
        layer, writers = "source", WRITERS["sources"]
    elif short.endswith("_features"):
        layer, writers = "feature", WRITERS["sources"]
    elif short == "training_set":
        layer, writers = "feature", WRITERS["training_set"]
    else:
        layer, writers = "other", ()
    return layer, ", ".join(writers)


def table_freshness(cfg: Config | None = None, now: datetime | None = None) -> pd.DataFrame:
    """Last commit of every table in the project's schema: table, layer, version, last_commit, operation, age_hours."""
    from utils import lakehouse

    cfg = cfg or get_config()
    now = now or _now()
    rows = []
    for name in lakehouse.list_tables(cfg.catalog, cfg.schema):
        layer, producer = table_layer(name, cfg)
        try:
            last = lakehouse.history(name).iloc[0]
        except Exception as exc:  # noqa: BLE001 - one unreadable table is a row, not a crash
            rows.append({"table": name, "layer": layer, "version": None, "last_commit": None,
                         "operation": f"unreadable: {type(exc).__name__}: {exc}", "age_hours": None, "written_by": producer})
            continue
        at = _utc(last["timestamp"])
        rows.append({"table": name, "layer": layer, "version": int(last["version"]), "last_commit": at,
                     "operation": str(last["operation"]), "age_hours": (pd.Timestamp(now) - at).total_seconds() / 3600,
                     "written_by": producer})
    return pd.DataFrame(rows, columns=["table", "layer", "version", "last_commit", "operation", "age_hours", "written_by"])


def _freshness_section(cfg: Config, now: datetime) -> Section:
    def build(s: Section) -> None:
        fresh = table_freshness(cfg, now)
        if fresh.empty:
            s.missing.append("tables")
            s.body = _missing(f"No Delta table in {_code(cfg.catalog + '.' + cfg.schema)} yet.",
                              f"{_code(NOTEBOOK['sources'])} lands the source and feature tables.")
            return
        known = fresh.dropna(subset=["age_hours"])
        pipeline = known[known["layer"] != "other"]  # a lesson's scratch table (01's demo_orders) going stale is fine
        if not known.empty:
            stalest = (pipeline if not pipeline.empty else known).sort_values("age_hours", ascending=False).iloc[0]
            s.facts["stalest"] = {"table": stalest["table"], "at": stalest["last_commit"], "hours": stalest["age_hours"]}
        s.facts["stale"] = int((known["age_hours"] > STALE_AFTER_HOURS).sum())
        s.facts["tables"] = len(fresh)
        order = {"source": 0, "feature": 1, "inference": 2, "monitoring": 3, "other": 4}
        fresh = fresh.sort_values(["layer", "table"], key=lambda c: c.map(order) if c.name == "layer" else c)
        shown = fresh.assign(
            version=fresh["version"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
            last_commit=fresh["last_commit"].map(lambda t: _when(t, now)),
            age_hours=fresh["age_hours"].map(lambda h: _fmt(h, 1)),
        )
        s.body = (f"<p>Last commit of every table in {_code(cfg.catalog + '.' + cfg.schema)} (Delta history); "
                  f"older than {STALE_AFTER_HOURS:.0f} h is marked stale. The status banner's stalest table is "
                  "taken from the pipeline's layers (source, feature, inference, monitoring), not from "
                  "<i>other</i> tables such as the lessons' scratch copies.</p>"
                  + _table(shown, "freshness-table",
                           lambda r: "stale" if r["age_hours"] not in ("—",) and float(r["age_hours"]) > STALE_AFTER_HOURS else ""))

    return _guarded("freshness", "Data freshness", build)


# ---------------------------------------------------------------- monitoring


def _window_end(value: Any) -> pd.Timestamp | None:
    if isinstance(value, dict):
        return _utc(value.get("end"))
    return None


def drift_over_time(name: str, passes: int = DRIFT_PASSES) -> pd.DataFrame:
    """Drift rows of the last ``passes`` monitoring passes (Delta versions of the drift table), with an ``at`` time."""
    from utils import lakehouse

    hist = lakehouse.history(name).head(passes)
    frames = []
    for _, commit in hist.iterrows():
        frame = lakehouse.read_pandas(name, version=int(commit["version"]))
        if frame.empty:
            continue
        ends = frame["window"].map(_window_end) if "window" in frame else pd.Series([None] * len(frame))
        frame = frame.assign(at=[e if e is not None else _utc(commit["timestamp"]) for e in ends],
                             table_version=int(commit["version"]))
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    if "drift_type" in frame and (frame["drift_type"] == "BASELINE").any():
        frame = frame[frame["drift_type"] == "BASELINE"]
    return frame.drop_duplicates(["column_name", "at"], keep="first")  # newest table version first


def _drift_figure(drift: pd.DataFrame, threshold: float) -> tuple[Any, str]:
    metric = "population_stability_index"
    frame = drift.dropna(subset=[metric])
    fig, ax = _new_figure(8, 3.4)
    if frame["at"].nunique() <= 1:
        latest = frame.sort_values(metric)
        colors = ["#c44e52" if v > threshold else "#4c72b0" for v in latest[metric]]
        ax.barh(latest["column_name"].astype(str), latest[metric], color=colors)
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_xlabel("PSI")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("Drift per column (latest monitoring pass)")
        return fig, "PSI per monitored column against the baseline (one pass so far: bars, red above the threshold)"
    last = frame.sort_values("at").groupby("column_name")[metric].last().sort_values(ascending=False)
    for col in last.index[:DRIFT_LINES]:
        series = frame[frame["column_name"] == col].sort_values("at")
        ax.plot(series["at"], series[metric], marker="o", label=str(col))
    ax.axhline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_ylabel("PSI")
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    ax.set_title("Drift per column over time")
    fig.autofmt_xdate()
    return fig, f"PSI over time of the {min(DRIFT_LINES, len(last))} most drifted columns (against the baseline)"


def _quality_figure(quality: pd.DataFrame, floor: float) -> Any:
    fig, ax = _new_figure()
    frame = quality.assign(window_start=pd.to_datetime(quality["window_start"], utc=True)).sort_values("window_start")
    ax.plot(frame["window_start"], frame["auc"], marker="o", label="AUC")
    ax.axhline(floor, color="#c44e52", linestyle="--", label=f"gate minimum {floor:g}")
    ax.set_ylabel("AUC")
    ax.set_title("Model quality per window")
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return fig


def _monitoring_section(cfg: Config, now: datetime) -> Section:
    def build(s: Section) -> None:
        from utils import lakehouse
        from utils.retraining import monitoring_tables

        names = monitoring_tables(cfg)
        parts = []
        th = cfg.thresholds
        if lakehouse.exists(names["drift"]):
            drift = drift_over_time(names["drift"])
            if drift.empty or "population_stability_index" not in drift or drift["population_stability_index"].isna().all():
                parts.append(_missing(f"The drift table {_code(names['drift'])} has no PSI values yet.",
                                      f"{_code(NOTEBOOK['monitor'])} computes them."))
            else:
                fig, caption = _drift_figure(drift, th.psi)
                parts.append(_figure_html("fig-drift", fig, caption))
                latest = drift[drift["table_version"] == drift["table_version"].max()]
                cols = [c for c in ("column_name", "role", "population_stability_index", "js_distance", "note") if c in latest]
                top = latest.sort_values("population_stability_index", ascending=False)[cols]
                s.facts["drifted"] = int((latest["population_stability_index"] > th.psi).sum())
                shown = top.assign(**{c: top[c].map(_fmt) for c in ("population_stability_index", "js_distance") if c in top})
                parts.append(f"<p>Latest pass: {s.facts['drifted']} column(s) above PSI {th.psi:g}.</p>")
                parts.append(_table(shown, "drift-table",
                                    lambda r: "breach" if r["population_stability_index"] != "—"
                                    and float(r["population_stability_index"]) > th.psi else ""))
        else:
            s.missing.append("drift metrics")
            parts.append(_missing(f"No drift metrics yet ({_code(names['drift'])} does not exist).",
                                  f"{_code(NOTEBOOK['monitor'])} writes them."))
        if lakehouse.exists(names["quality"]):
            quality = lakehouse.read_pandas(names["quality"])
            if quality.empty or "auc" not in quality or quality["auc"].isna().all():
                parts.append(_missing(f"The quality table {_code(names['quality'])} has no AUC yet "
                                      "(labels may not have arrived).", f"{_code(NOTEBOOK['monitor'])} computes it."))
            else:
                parts.append(_figure_html("fig-quality", _quality_figure(quality, th.gate_min_auc),
                                          "AUC per time window of the monitored predictions"))
                last = quality.sort_values("window_start").dropna(subset=["auc"]).iloc[-1]
                s.facts["latest_auc"] = float(last["auc"])
                s.facts["quality_measured_at"] = _utc(lakehouse.history(names["quality"]).iloc[0]["timestamp"])
                parts.append(f"<p>Latest window AUC: <b>{float(last['auc']):.3f}</b> "
                             f"({int(last.get('n_labeled', 0))} labelled predictions), against the validation "
                             f"gate's floor {th.gate_min_auc:g} (the model-quality card above). The concept-drift "
                             f"alert measures something else: the AUC over the whole current window (every week "
                             f"since the new data arrived), against the champion's held-out AUC from its training "
                             f"run minus {th.min_auc_drop:g}; its text names both figures.</p>")
        else:
            s.missing.append("quality metrics")
            parts.append(_missing(f"No model-quality metrics yet ({_code(names['quality'])} does not exist).",
                                  f"{_code(NOTEBOOK['monitor'])} writes them once labels arrive."))
        s.body = "\n".join(parts)

    return _guarded("monitoring", "Monitoring: drift and model quality", build)


# ---------------------------------------------------------------- alerts


def alert_table(cfg: Config, champion_at: pd.Timestamp | None) -> pd.DataFrame:
    """The alerts table, one row per ``alert_id``, newest first, with ``status``.

    An alert is *open* unless a later promotion of the champion addressed it (the closed loop
    retrains and promotes) or a ``status`` / ``resolved_at`` column marks it resolved.
    """
    from utils import lakehouse

    alerts = lakehouse.read_pandas(cfg.table("monitoring_alerts"))
    if alerts.empty:
        return alerts.assign(status=pd.Series(dtype="string"))
    if "created_at" in alerts:
        alerts = alerts.assign(created_at=pd.to_datetime(alerts["created_at"], utc=True)).sort_values("created_at")
    if "alert_id" in alerts:
        alerts = alerts.drop_duplicates("alert_id", keep="first")
    status = pd.Series("open", index=alerts.index)
    if champion_at is not None and "created_at" in alerts:
        status[alerts["created_at"] < champion_at] = "addressed by a later promotion"
    if "resolved_at" in alerts:
        status[alerts["resolved_at"].notna()] = "resolved"
    if "status" in alerts:
        status[alerts["status"].astype(str).str.lower().isin({"resolved", "closed", "acknowledged"})] = "resolved"
    return alerts.assign(status=status).iloc[::-1].reset_index(drop=True)


def _alerts_section(cfg: Config, now: datetime, champion_at: pd.Timestamp | None) -> Section:
    def build(s: Section) -> None:
        from utils import lakehouse
        from utils.retraining import monitoring_tables

        name = cfg.table("monitoring_alerts")
        if not lakehouse.exists(name):
            s.facts["open"] = 0
            if lakehouse.exists(monitoring_tables(cfg)["drift"]):
                s.body = f'<p class="ok">No alert has been raised: monitoring ran and {_code(name)} has no row yet.</p>'
            else:
                s.missing.append("alerts")
                s.body = _missing(f"No alerts table {_code(name)}: monitoring has not run yet.",
                                  f"{_code(NOTEBOOK['monitor'])} writes an alert for every threshold breach.")
            return
        alerts = alert_table(cfg, champion_at)
        is_open = alerts["status"] == "open"
        s.facts["open"] = int(is_open.sum())
        s.facts["critical"] = int((is_open & (alerts.get("severity", pd.Series(dtype=str)) == "critical")).sum())
        if alerts.empty:
            s.body = f'<p class="ok">The alerts table {_code(name)} is empty.</p>'
            return
        cols = [c for c in ("status", "severity", "created_at", "metric", "column", "value", "threshold", "message")
                if c in alerts]
        shown = alerts[cols].head(MAX_ALERT_ROWS).copy()
        if "created_at" in shown:
            shown["created_at"] = shown["created_at"].map(lambda t: _when(_utc(t), now))
        for c in ("value", "threshold"):
            if c in shown:
                shown[c] = shown[c].map(_fmt)

        def row_class(r: pd.Series) -> str:
            return ("open " if r["status"] == "open" else "closed ") + str(r.get("severity", ""))

        parts = [(f"<p><b>{s.facts['open']}</b> open alert(s), {s.facts['critical']} critical, of {len(alerts)} raised "
                 f"(open: raised after the {_esc(cfg.champion_alias)} was last promoted, and not resolved).</p>")]
        opened, closed = shown[shown["status"] == "open"], shown[shown["status"] != "open"]
        if not opened.empty:
            parts.append(_table(opened, "alerts-table", row_class))
        if not closed.empty:
            parts.append(f'<details id="closed-alerts"><summary>{len(closed)} earlier alert(s), addressed or resolved'
                         f"</summary>{_table(closed, 'closed-alerts-table', row_class)}</details>")
        s.body = "\n".join(parts)

    return _guarded("alerts", "Alerts", build)


# ---------------------------------------------------------------- lineage


def champion_lineage(run_id: str) -> pd.DataFrame:
    """The Delta tables and versions the run ``run_id`` trained on, with each table's current version."""
    from utils import lakehouse
    from utils.training import input_versions

    rows = []
    for table, version in sorted(input_versions(run_id).items()):
        row = {"table": table, "trained_on_version": version, "version_written": None, "current_version": None,
               "versions_since": None, "note": ""}
        try:
            exists = lakehouse.exists(table)
        except ValueError as exc:  # not a three-level name
            row["note"] = str(exc)
            rows.append(row)
            continue
        if not exists:
            row["note"] = "table no longer exists"
        else:
            hist = lakehouse.history(table)
            row["current_version"] = int(hist["version"].max())
            row["versions_since"] = row["current_version"] - int(version)
            at = hist.loc[hist["version"] == int(version), "timestamp"]
            row["version_written"] = _utc(at.iloc[0]) if len(at) else None
            if not len(at):
                row["note"] = "version no longer in the table history (vacuumed?)"
        rows.append(row)
    return pd.DataFrame(rows, columns=["table", "trained_on_version", "version_written", "current_version",
                                       "versions_since", "note"])


def _lineage_section(cfg: Config, now: datetime, champion: dict[str, Any] | None) -> Section:
    def build(s: Section) -> None:
        if champion is None:
            s.missing.append("champion")
            s.body = _missing(f"No {_code(cfg.champion_alias)} to trace.",
                              f"{_code(NOTEBOOK['register'])} trains with pinned inputs; {_code(NOTEBOOK['promote'])} promotes it.")
            return
        run_id = champion.get("run_id")
        head = f"<p>Champion version <b>{champion['version']}</b>, training run {_code(run_id or 'unknown')}.</p>"
        if not run_id:
            s.missing.append("training run")
            s.body = head + _missing("The champion version names no training run.",
                                     f"Register models logged in a run ({_code(NOTEBOOK['register'])}).")
            return
        lineage = champion_lineage(run_id)
        if lineage.empty:
            s.missing.append("input tags")
            s.body = head + _missing(f"The run recorded no {_code('input.<table>')} tags.",
                                     f"Train with utils.training.train_and_log ({_code(NOTEBOOK['register'])}), which records them.")
            return
        s.facts["inputs"] = len(lineage)
        shown = lineage.astype(object).assign(version_written=lineage["version_written"].map(lambda t: _when(t, now)))
        shown = shown.where(shown.notna(), "—")
        s.body = head + "<p>Training tables and the Delta versions it was trained on (time-travel to reproduce it):</p>" \
            + _table(shown, "lineage-table")

    return _guarded("lineage", "Lineage of the champion", build)


# ---------------------------------------------------------------- status banner and page


def _quality_card(cfg: Config, monitoring: Section, champion: dict | None) -> tuple[str, str, str, str]:
    """The banner's model-quality card: (label, value, sub-line, level).

    Never measured is a warning (06 computes it); the latest window's AUC under ``gate_min_auc`` is bad when it
    measured the current champion, and only noted when a new champion was set after the quality table was last
    written (the retraining the alert asked for already happened). The comparison is of wall-clock times (the
    table's last Delta commit against the alias move), never of the window's event times.
    """
    auc, end = monitoring.facts.get("latest_auc"), monitoring.facts.get("quality_measured_at")
    floor = cfg.thresholds.gate_min_auc
    if monitoring.error:
        return ("model quality", "unknown", "the monitoring section failed", "bad")
    if auc is None:
        return ("model quality", "not measured", f"no AUC per window yet: {NOTEBOOK['monitor']} computes it", "warn")
    if auc >= floor:
        return ("model quality", f"AUC {auc:.3f}", f"latest weekly window, at or above the gate's {floor:g}", "ok")
    set_at = None if champion is None else champion.get("at")
    if set_at is not None and end is not None and set_at >= end:
        note = (f"under the gate's {floor:g} in the last weekly window, measured before v{champion['version']} became "
                f"{cfg.champion_alias}; v{champion['version']} not measured yet")
        return ("model quality", f"AUC {auc:.3f}", note, "ok")
    return ("model quality", f"AUC {auc:.3f}", f"latest weekly window under the gate's {floor:g}: retrain or roll back", "bad")


def _banner(cfg: Config, sections: dict[str, Section], now: datetime) -> Section:
    models, deps, fresh, alerts = (sections[k] for k in ("models", "deployments", "freshness", "alerts"))
    champion = models.facts.get(cfg.champion_alias)
    items, level = [], "ok"

    def worse(new: str) -> None:
        nonlocal level
        rank = {"ok": 0, "warn": 1, "bad": 2}
        level = new if rank[new] > rank[level] else level

    if champion:
        since = f"set {_when(champion['at'], now)}" if champion["at"] is not None else "no audited alias move"
        items.append(("champion", f"v{champion['version']}", since, "ok"))
    else:
        items.append(("champion", "none", f"no version of {cfg.model_name} holds {cfg.champion_alias}", "bad"))
    up, down = deps.facts.get("endpoints_up", 0), deps.facts.get("endpoints_down", 0)
    if deps.error:
        items.append(("endpoints", "unknown", "the deployments section failed", "bad"))
    elif down:
        items.append(("endpoints", f"{down} DOWN", f"{up} up, {down} down", "bad"))
    elif up:
        items.append(("endpoints", f"{up} up", "all answering /health", "ok"))
    else:
        items.append(("endpoints", "none running", "nothing deployed here now (05 stops its endpoints); "
                      "ENDPOINTS=URL probes one", "ok"))
    if "last_prediction" in deps.facts:
        items.append(("predictions", f"{deps.facts.get('recent_predictions', 0):,}",
                      f"last {RECENT_HOURS:.0f} h; newest {_age(deps.facts['last_prediction'], now)}",
                      "ok" if deps.facts.get("recent_predictions") else "warn"))
    n_open, critical = alerts.facts.get("open", 0), alerts.facts.get("critical", 0)
    items.append(("open alerts", str(n_open), f"{critical} critical" if n_open else "none open",
                  "bad" if critical else "warn" if n_open else "ok"))
    items.append(_quality_card(cfg, sections["monitoring"], champion))
    stalest = fresh.facts.get("stalest")
    if stalest:
        items.append(("stalest table", stalest["table"].rsplit(".", 1)[-1], f"last written {_age(stalest['at'], now)}",
                      "warn" if stalest["hours"] > STALE_AFTER_HOURS else "ok"))
    else:
        items.append(("stalest table", "—", "no tables yet", "warn"))
    for _, _, _, lvl in items:
        worse(lvl)
    errors = [s.id for s in sections.values() if s.error]
    if errors:
        worse("bad")
    headline = {"ok": "All clear", "warn": "Needs attention", "bad": "Action needed"}[level]
    cards = "".join(f'<div class="card {lvl}" data-item="{_esc(label)}"><div class="label">{_esc(label)}</div>'
                    f'<div class="value">{_esc(value)}</div><div class="sub">{_esc(sub)}</div></div>'
                    for label, value, sub, lvl in items)
    note = f'<p class="error">Sections that failed to read their source: {_esc(", ".join(errors))}.</p>' if errors else ""
    s = Section("status", "Status")
    s.facts = {"level": level, "errors": errors}
    s.body = f'<div class="banner {level}" data-level="{level}"><div class="headline">{headline}</div>{cards}</div>{note}'
    return s


_CSS = """
#dashboard{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330;max-width:1200px;margin:0 auto;padding:12px}
#dashboard h1{font-size:1.5em;margin:.2em 0}
#dashboard h2{font-size:1.2em;border-bottom:2px solid #d8dde6;padding-bottom:4px;margin-top:1.6em}
#dashboard h3{font-size:1em;margin:1em 0 .4em}
#dashboard nav a{margin-right:1em}
#dashboard .meta{color:#5a6376;font-size:.9em}
#dashboard table{border-collapse:collapse;font-size:.85em;width:100%;margin:.4em 0}
#dashboard th,#dashboard td{border:1px solid #d8dde6;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
#dashboard th{background:#f1f3f7}
#dashboard tr.down td,#dashboard tr.open.critical td,#dashboard tr.breach td{background:#fde2e1}
#dashboard tr.stale td,#dashboard tr.open.warning td{background:#fff4d6}
#dashboard tr.up td,#dashboard tr.champion td{background:#e3f5e6}
#dashboard .banner{display:flex;flex-wrap:wrap;gap:8px;padding:10px;border-radius:8px;align-items:stretch}
#dashboard .banner.ok{background:#e3f5e6}#dashboard .banner.warn{background:#fff4d6}#dashboard .banner.bad{background:#fde2e1}
#dashboard .headline{font-size:1.4em;font-weight:700;min-width:170px;align-self:center}
#dashboard .card{background:#fff;border-radius:6px;padding:6px 10px;min-width:140px;border-left:6px solid #7a8599}
#dashboard .card.ok{border-left-color:#2e8b57}#dashboard .card.warn{border-left-color:#e0a100}#dashboard .card.bad{border-left-color:#c0392b}
#dashboard .card .label{font-size:.75em;text-transform:uppercase;color:#5a6376}
#dashboard .card .value{font-size:1.3em;font-weight:700}
#dashboard .card .sub{font-size:.75em;color:#5a6376}
#dashboard .missing{background:#f1f3f7;border-left:4px solid #7a8599;padding:6px 10px}
#dashboard .missing .fix{display:block;color:#5a6376;font-size:.9em}
#dashboard .warn{color:#8a6200}#dashboard .ok{color:#1e6b3a}
#dashboard .error,#dashboard .section-error{background:#fde2e1;border-left:4px solid #c0392b;padding:6px 10px;white-space:pre-wrap}
#dashboard figure{margin:.6em 0}#dashboard figure img{max-width:100%}
#dashboard summary{cursor:pointer;color:#5a6376;margin:.4em 0}
#dashboard figcaption{font-size:.85em;color:#5a6376}
#dashboard code{background:#f1f3f7;padding:0 3px;border-radius:3px}
"""

# Records script errors on the page (the browser test asserts there are none).
_ERROR_SCRIPT = """<script>
window.addEventListener('error', function (e) {
  var d = document.getElementById('dashboard'); if (!d) { return; }
  d.dataset.scriptErrors = String(Number(d.dataset.scriptErrors || 0) + 1);
  var p = document.createElement('pre'); p.className = 'script-error';
  p.textContent = 'script error: ' + (e.message || e); d.appendChild(p);
});
</script>"""

# Once everything has loaded: count the figures that decoded, show the page's age, mark it ready.
_READY_SCRIPT = """<script>
(function () {
  var d = document.getElementById('dashboard');
  function done() {
    var imgs = d.querySelectorAll('figure img'), ok = 0;
    for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
    d.dataset.figuresLoaded = String(ok);
    var made = Date.parse(d.dataset.generatedAt), age = document.getElementById('generated-age');
    if (age && !isNaN(made)) {
      var min = Math.round((Date.now() - made) / 60000);
      age.textContent = min < 1 ? '(just now)' : min < 120 ? '(' + min + ' min ago)' : '(' + Math.round(min / 60) + ' h ago)';
    }
    d.dataset.ready = '1';
  }
  if (document.readyState === 'complete') { done(); } else { window.addEventListener('load', done); }
})();
</script>"""


def render(sections: Sequence[Section], cfg: Config, now: datetime) -> str:
    """The whole page: banner, navigation, then every section, self-contained."""
    nav = " ".join(f'<a href="#{s.id}">{_esc(s.title.split(":")[0])}</a>' for s in sections if s.id != "status")
    blocks = []
    for s in sections:
        body = (f'<div class="section-error">This section could not be built: {_esc(s.error)}</div>'
                if s.error else s.body)
        heading = "" if s.id == "status" else f"<h2>{_esc(s.title)}</h2>"
        missing = f' data-missing="{_esc("; ".join(s.missing))}"' if s.missing else ""
        blocks.append(f'<section id="{s.id}"{missing}>{heading}{body}</section>')
    stamp = now.isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(cfg.project)} MLOps dashboard</title>
<style>{_CSS}</style></head>
<body><div id="dashboard" data-generated-at="{stamp}" data-model="{_esc(cfg.model_name)}">
{_ERROR_SCRIPT}
<h1>{_esc(cfg.project)} · 360° view of {_code(cfg.model_name)}</h1>
<p class="meta">State read at {now:%Y-%m-%d %H:%M:%S} UTC <span id="generated-age"></span> from the registry,
the Delta tables and the endpoints (page written at {_now():%H:%M:%S}); {platform_name()} platform.</p>
<nav>{nav}</nav>
{chr(10).join(blocks)}
{_READY_SCRIPT}
</div></body></html>
"""


def collect_sections(endpoint_urls: Sequence[str] = (), cfg: Config | None = None,
                     now: datetime | None = None, progress: Callable[[str], None] | None = None) -> list[Section]:
    """Every section of the page, in reading order, the status banner first.

    ``progress``, when given, is called with one line before each section is read (the command line prints
    them: reading the registry and the Delta tables can take a minute on a cold Spark session).
    """
    cfg = cfg or get_config()
    now = now or _now()
    say = progress or (lambda _line: None)
    readers: dict[str, tuple[str, Callable[[dict | None], Section]]] = {
        "models": ("the model registry", lambda _c: _models_section(cfg, now)),
        "deployments": ("the endpoints and the inference log", lambda c: _deployments_section(cfg, endpoint_urls, now, c)),
        "freshness": ("the Delta tables' histories", lambda _c: _freshness_section(cfg, now)),
        "monitoring": ("the monitoring tables", lambda _c: _monitoring_section(cfg, now)),
        "lineage": ("the champion's lineage", lambda c: _lineage_section(cfg, now, c)),
        "alerts": ("the alert log", lambda c: _alerts_section(cfg, now, None if c is None else c["at"])),
    }
    found: dict[str, Section] = {}
    champion = None
    for key, (what, read) in readers.items():
        say(f"reading {what} ...")
        found[key] = read(champion)
        if key == "models":
            champion = found[key].facts.get(cfg.champion_alias)
    order = ("deployments", "alerts", "monitoring", "models", "lineage", "freshness")  # what on-call reads first
    return [_banner(cfg, found, now), *(found[k] for k in order)]


def default_out() -> Path:
    """``reports/dashboard.html``, under the state folder when ``MLOPS_STATE_DIR`` chooses one."""
    return output_dir("reports") / "dashboard.html"


def build_dashboard(out: Path | None = None, endpoint_urls: list[str] | None = None,
                    progress: Callable[[str], None] | None = None) -> Path:
    """Write the dashboard page to ``out`` (default :func:`default_out`) and return its path.

    ``progress`` is passed to :func:`collect_sections`. Raises ValueError for an endpoint URL that is not http(s).
    """
    urls = [_check_url(u) for u in endpoint_urls or []]
    cfg = get_config()
    ensure_mlflow()
    now = _now()
    page = render(collect_sections(urls, cfg, now, progress), cfg, now)
    path = Path(out) if out is not None else default_out()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def show(path: Path, height: int = 1000) -> Any:
    """The page at ``path`` for a notebook cell: an isolated ``<iframe srcdoc>``, so its CSS and script stay inside."""
    from IPython.display import HTML

    page = Path(path).read_text(encoding="utf-8")
    with warnings.catch_warnings():  # IPython suggests IFrame, which cannot embed a page without a server
        warnings.filterwarnings("ignore", message="Consider using IPython.display.IFrame")
        return HTML(f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{int(height)}px;'
                    'border:1px solid #d8dde6" title="MLOps dashboard"></iframe>')


def section_errors(path: Path) -> list[str]:
    """Ids of the sections of a written page that could not be built."""
    import re

    text = Path(path).read_text(encoding="utf-8")
    return re.findall(r'<section id="([a-z]+)"[^>]*><h2>[^<]*</h2><div class="section-error">', text)


def _start_spark_quietly(progress: Callable[[str], None]) -> None:
    """Start the Spark session with the JVM's own stderr going to ``<state>/logs/dashboard-jvm.log``.

    The JVM inherits file descriptor 2 when it starts, and prints notes a reader would take for trouble
    (``WARNING: Using incubator modules``); Spark's errors still reach Python as exceptions.
    """
    import os

    from utils.platform import get_spark, state_dir

    log = state_dir() / "logs" / "dashboard-jvm.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress(f"starting Spark (the JVM's own log: {log}) ...")
    sys.stderr.flush()
    saved, target = os.dup(2), os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        get_spark()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m utils.dashboard [--out PATH] [--endpoint URL ...]``."""
    parser = argparse.ArgumentParser(prog="python -m utils.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out(), help=f"where to write the page (default {default_out()})")
    parser.add_argument("--endpoint", action="append", default=[], metavar="URL",
                        help="an endpoint or router base URL to probe (repeatable), e.g. http://127.0.0.1:5001")
    args = parser.parse_args(argv)
    started = _now()

    def progress(line: str) -> None:
        print(f"[{(_now() - started).total_seconds():5.1f} s] {line}", file=sys.stderr, flush=True)

    from utils.platform import EnvironmentProblem

    try:
        _start_spark_quietly(progress)
    except EnvironmentProblem as exc:  # no Java, no jars: one line saying what to do
        print(f"make dashboard: {exc}", file=sys.stderr)
        return 1
    try:
        path = build_dashboard(args.out, args.endpoint, progress)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"dashboard written to {path}")
    failed = section_errors(path)
    if failed:
        print(f"warning: sections that could not be built (see the page): {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
