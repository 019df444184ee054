"""What the 360° page (``utils.dashboard``) reads from the registry and the project's Delta tables.

Every function here returns plain data (pandas frames, dicts, strings), never HTML:
``utils.dashboard`` turns it into the view the page's Jinja2 template renders.
Times are UTC ``pandas.Timestamp``; a missing time is ``None``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from utils.config import Config, get_config
from utils.platform import registry_uri, tracking_uri

STALE_AFTER_HOURS = 24.0  # a table not written for longer is flagged stale
RECENT_HOURS = 24.0  # the window of "recent" inference traffic
MAX_VERSIONS = 25  # newest model versions listed
DRIFT_PASSES = 8  # past monitoring passes (Delta versions of the drift table) plotted

WRITERS = {
    "sources": ("notebooks/01_explore.ipynb", "notebooks/06_monitor.ipynb"),  # 06 lands new data through the same steps
    "training_set": ("notebooks/02_evaluate.ipynb", "notebooks/03_develop.ipynb", "notebooks/05_deploy.ipynb",
                     "notebooks/06_monitor.ipynb"),  # each rebuilds it before training or scoring
    "deploy": ("notebooks/05_deploy.ipynb",),
    "monitor": ("notebooks/06_monitor.ipynb",),
}
"""Every notebook that writes each kind of table (the freshness table's ``written_by``), in lifecycle order."""


# ---------------------------------------------------------------- times


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_utc(value: Any) -> pd.Timestamp | None:
    """``value`` (string, datetime, epoch-less Timestamp) as a UTC Timestamp; None when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def age(ts: pd.Timestamp | None, now: datetime) -> str:
    """``ts`` as a short age (``5 min ago``, ``3.2 h ago``, ``4.1 days ago``); ``never`` for None."""
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


def when(ts: pd.Timestamp | None, now: datetime) -> str:
    """``ts`` as ``YYYY-MM-DD HH:MM UTC (age)``; ``—`` for None."""
    return "—" if ts is None else f"{ts:%Y-%m-%d %H:%M} UTC ({age(ts, now)})"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell's text: floats to ``digits`` decimals, ``—`` for a missing value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


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
    """True if the registered model ``name`` exists; other registry errors are raised (``MlflowException``)."""
    from mlflow.exceptions import MlflowException

    try:
        _mlflow_client().get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return False
        raise
    return True


def model_versions(name: str, limit: int = MAX_VERSIONS) -> pd.DataFrame:
    """The newest ``limit`` versions of ``name``: version, aliases, status, created, run_id, gate_passed, gate_summary."""
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
            "created": to_utc(pd.Timestamp(int(mv.creation_timestamp), unit="ms")) if mv.creation_timestamp else None,
            "run_id": mv.run_id or "",
            "gate_passed": mv.tags.get("gate_passed", ""),
            "gate_summary": mv.tags.get("gate_summary", ""),
        })
    return pd.DataFrame(rows, columns=["version", "aliases", "status", "created", "run_id", "gate_passed", "gate_summary"])


def last_move(audit: pd.DataFrame, alias: str, version: int) -> pd.Series | None:
    """The audit trail's latest row moving ``alias`` to ``version``; None when none is recorded."""
    moves = audit[(audit["alias"] == alias) & (audit["version"] == int(version))]
    return None if moves.empty else moves.iloc[-1]


# ---------------------------------------------------------------- inference and request logs


def read_recent(name: str, ts_col: str, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Rows of table ``name`` whose ``ts_col`` is at or after ``since`` (all rows when None), as pandas."""
    from pyspark.sql import functions as F

    from utils import lakehouse

    sdf = lakehouse.read(name)  # filtered in Spark: the inference log can be large
    if since is not None and ts_col in sdf.columns:
        sdf = sdf.where(F.col(ts_col) >= F.lit(since.to_pydatetime()))
    return lakehouse.to_pandas(sdf)


def _percentiles(values: pd.Series) -> dict[str, float]:
    q = values.astype(float).quantile([0.5, 0.95, 0.99])
    return {"p50": float(q.loc[0.5]), "p95": float(q.loc[0.95]), "p99": float(q.loc[0.99])}


def inference_summary(log: pd.DataFrame) -> dict[str, Any]:
    """Volume, sources, served versions, latency percentiles and error rate of inference-log rows.

    Keys: ``rows`` always; ``first``/``last`` (Timestamps), ``by_<source|model_version|arm>`` (value -> count),
    ``latency_ms`` (``p50``/``p95``/``p99``) and ``error_rate`` only where ``log`` has the columns they need.
    """
    out: dict[str, Any] = {"rows": len(log)}
    if "ts" in log and len(log):
        ts = pd.to_datetime(log["ts"], utc=True)
        out["first"], out["last"] = ts.min(), ts.max()
    for col in ("source", "model_version", "arm"):
        if col in log and len(log):
            out[f"by_{col}"] = log[col].fillna("(none)").astype(str).value_counts().to_dict()
    latency = next((c for c in ("latency_ms", "latency") if c in log), None)
    if latency and log[latency].notna().any():
        out["latency_ms"] = _percentiles(log[latency])
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
    Keys: ``requests``; for a non-empty log also ``latency_ms`` (when any request was answered), ``error_rate``,
    ``refused_rate``, ``client_errors``, ``server_errors``.
    """
    out: dict[str, Any] = {"requests": len(requests)}
    if requests.empty:
        return out
    status = pd.to_numeric(requests["status_code"], errors="coerce").fillna(500)
    ok = requests.loc[status < 400, "latency_ms"].dropna()
    if len(ok):
        out["latency_ms"] = _percentiles(ok)
    out["error_rate"] = float((status >= 500).mean())
    out["refused_rate"] = float(((status >= 400) & (status < 500)).mean())
    out["client_errors"] = int(((status >= 400) & (status < 500)).sum())
    out["server_errors"] = int((status >= 500).sum())
    return out


def recent_requests(cfg: Config, since: pd.Timestamp | None) -> pd.DataFrame | None:
    """Request-log rows from ``since`` on (all when None); None when the endpoint never logged a request."""
    from utils import lakehouse

    name = cfg.table("request_log")
    if not lakehouse.exists(name):
        return None
    return read_recent(name, "ts", since)


def champion_share(log: pd.DataFrame, champion: dict[str, Any], now: datetime) -> str:
    """How much of ``log`` the champion served, overall and since it became champion (one sentence).

    ``champion``: ``{"version": ..., "at": Timestamp or None}``; ``log`` needs a ``model_version`` column.
    """
    version, since = str(champion["version"]), champion.get("at")
    served = log["model_version"].astype(str) == version
    text = f"{100 * served.mean():.0f}% of {len(log):,} predictions in the window"
    if since is None or "ts" not in log:
        return text
    after = pd.to_datetime(log["ts"], utc=True) >= since
    if not after.any():
        return f"{text}; none since v{version} became champion {when(since, now)}"
    share = float(served[after].mean())
    text = f"{text}; {100 * share:.0f}% of {int(after.sum()):,} since v{version} became champion"
    return text + (" — the endpoint still serves an older version: reload or redeploy it" if share == 0 else "")


# ---------------------------------------------------------------- freshness


def table_layer(name: str, cfg: Config | None = None) -> tuple[str, str]:
    """The lifecycle layer of table ``name`` (source, feature, inference, monitoring, other) and every notebook writing it.

    The writers are comma-separated notebook paths in lifecycle order (:data:`WRITERS`), "" for a table no
    notebook writes: a source table is written by 01 and again by 06 when new data lands.
    """
    from utils.config import monitoring_tables

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
    """Last commit of every table in the project's schema.

    Columns: table, layer, version, last_commit, operation, age_hours, written_by; a table whose history cannot
    be read is a row whose ``operation`` says ``unreadable: ...``, not an error.
    """
    from utils import lakehouse

    cfg = cfg or get_config()
    now = now or now_utc()
    rows = []
    for name in lakehouse.list_tables(cfg.catalog, cfg.schema):
        layer, producer = table_layer(name, cfg)
        try:
            last = lakehouse.history(name).iloc[0]
        except Exception as exc:  # noqa: BLE001 - one unreadable table is a row, not a crash
            rows.append({"table": name, "layer": layer, "version": None, "last_commit": None,
                         "operation": f"unreadable: {type(exc).__name__}: {exc}", "age_hours": None, "written_by": producer})
            continue
        at = to_utc(last["timestamp"])
        rows.append({"table": name, "layer": layer, "version": int(last["version"]), "last_commit": at,
                     "operation": str(last["operation"]), "age_hours": (pd.Timestamp(now) - at).total_seconds() / 3600,
                     "written_by": producer})
    return pd.DataFrame(rows, columns=["table", "layer", "version", "last_commit", "operation", "age_hours", "written_by"])


# ---------------------------------------------------------------- monitoring, alerts, lineage


def _window_end(value: Any) -> pd.Timestamp | None:
    if isinstance(value, dict):
        return to_utc(value.get("end"))
    return None


def drift_over_time(name: str, passes: int = DRIFT_PASSES) -> pd.DataFrame:
    """Drift rows of the last ``passes`` monitoring passes (Delta versions of the drift table).

    The drift table's columns plus ``at`` (the window's end, else the commit time) and ``table_version``;
    baseline drift only when the table has it; empty when no pass wrote a row.
    """
    from utils import lakehouse

    hist = lakehouse.history(name).head(passes)
    frames = []
    for _, commit in hist.iterrows():
        frame = lakehouse.read_pandas(name, version=int(commit["version"]))
        if frame.empty:
            continue
        ends = frame["window"].map(_window_end) if "window" in frame else pd.Series([None] * len(frame))
        frame = frame.assign(at=[e if e is not None else to_utc(commit["timestamp"]) for e in ends],
                             table_version=int(commit["version"]))
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    if "drift_type" in frame and (frame["drift_type"] == "BASELINE").any():
        frame = frame[frame["drift_type"] == "BASELINE"]
    return frame.drop_duplicates(["column_name", "at"], keep="first")  # newest table version first


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


def champion_lineage(run_id: str) -> pd.DataFrame:
    """The Delta tables and versions the run ``run_id`` trained on, with each table's current version.

    Columns: table, trained_on_version, version_written, current_version, versions_since, note (why a value is
    missing: the table is gone, the version was vacuumed, the name is not three-level).
    """
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
            row["version_written"] = to_utc(at.iloc[0]) if len(at) else None
            if not len(at):
                row["note"] = "version no longer in the table history (vacuumed?)"
            elif lakehouse.vacuumed(table, int(version)):
                row["note"] = "its files were vacuumed: this version cannot be reproduced"
        rows.append(row)
    return pd.DataFrame(rows, columns=["table", "trained_on_version", "version_written", "current_version",
                                       "versions_since", "note"])
