"""The sections of the 360° page (``utils.dashboard``): what each one shows, as the view its template renders.

Each ``*_section`` function reads its source through ``utils.dashboard_data`` / ``utils.dashboard_endpoints``
and fills a :class:`Section`: ``view`` (plain dicts, lists and strings), ``missing`` (what is not there yet),
``facts`` (what the status banner needs). Its HTML ``body`` is rendered by the section's macro in
``templates/dashboard_sections.html.j2``, autoescaped: table names, alert messages and every other value read
are escaped by Jinja. A section that fails to read its source carries the error instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import pandas as pd

from utils.config import Config
from utils.dashboard_data import (
    RECENT_HOURS,
    STALE_AFTER_HOURS,
    alert_table,
    champion_lineage,
    champion_share,
    drift_over_time,
    fmt,
    inference_summary,
    last_move,
    model_exists,
    model_versions,
    read_recent,
    recent_requests,
    request_summary,
    table_freshness,
    to_utc,
    when,
)
from utils.dashboard_endpoints import EndpointStatus, endpoint_statuses
from utils.dashboard_figures import (
    drift_figure,
    latency_figure,
    png_base64,
    quality_figure,
    traffic_figure,
)

MAX_AUDIT_ROWS = 20
MAX_ALERT_ROWS = 50
SECTIONS_TEMPLATE = "dashboard_sections.html.j2"  # one macro per section id

NOTEBOOK = {
    "register": "notebooks/03_develop.ipynb",
    "promote": "notebooks/05_deploy.ipynb",
    "deploy": "notebooks/05_deploy.ipynb",
    "sources": "notebooks/01_explore.ipynb",
    "training_set": "notebooks/02_evaluate.ipynb",
    "monitor": "notebooks/06_monitor.ipynb",
}
"""The notebook that produces each piece the page may find missing (the templates' ``nb``)."""


# ---------------------------------------------------------------- templates and views


@cache
def environment() -> Any:
    """The Jinja2 environment over ``utils/templates``: autoescaped, and an undefined name is an error."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("utils", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.globals["nb"] = NOTEBOOK
    return env


def render_block(section_id: str, view: dict[str, Any]) -> str:
    """The HTML body of section ``section_id``: its macro in the sections template rendering ``view``."""
    return str(getattr(environment().get_template(SECTIONS_TEMPLATE).module, section_id)(view))


def _text(value: Any) -> str:
    """A value as a table cell shows it: "" when missing."""
    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return ""
    return str(value)


def _table(frame: pd.DataFrame, row_class: Callable[[pd.Series], str] | None = None) -> dict[str, Any]:
    """``frame`` (cells already formatted) as a table view: ``columns``, and ``rows`` of ``cls`` and ``cells``."""
    rows = [{"cls": row_class(row) if row_class else "", "cells": [_text(v) for v in row.tolist()]}
            for _, row in frame.iterrows()]
    return {"columns": [_text(c) for c in frame.columns], "rows": rows}


def _figure(fig_id: str, fig: Any, caption: str) -> dict[str, str]:
    return {"id": fig_id, "png": png_base64(fig), "caption": caption}


@dataclass
class Section:
    """One block of the page: its id, heading, view, HTML body, and the facts the status banner needs.

    ``view`` is what the section's template macro renders; ``body`` is the HTML it rendered (trusted markup,
    inserted into the page as it is). ``missing`` names what is not there yet; ``error`` replaces the body.
    """

    id: str
    title: str
    body: str = ""
    missing: list[str] = field(default_factory=list)
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)


def _guarded(section_id: str, title: str, build: Callable[[Section], None]) -> Section:
    """Run ``build`` on a fresh section and render its view; an exception becomes the section's visible error."""
    section = Section(section_id, title)
    try:
        build(section)
        section.body = render_block(section_id, section.view)
    except Exception as exc:  # noqa: BLE001 - one unreadable source must not take the whole page down
        section.error = f"{type(exc).__name__}: {exc}"
    return section


# ---------------------------------------------------------------- models


def _alias_view(s: Section, cfg: Config, alias: str, audit: pd.DataFrame, now: datetime) -> dict[str, Any]:
    """Which version holds ``alias``, since when, set by whom; records the champion's facts on ``s``."""
    from utils import registry

    mv = registry.get_alias_version(cfg.model_name, alias)
    if mv is None:
        s.missing.append(f"alias {alias}")
        producer = NOTEBOOK["promote"] if alias == cfg.champion_alias else NOTEBOOK["register"]
        return {"alias": alias, "version": None, "producer": producer}
    move = last_move(audit, alias, int(mv.version))
    at = to_utc(move["at"]) if move is not None else None
    s.facts[alias] = {"version": int(mv.version), "at": at, "run_id": mv.run_id,
                      "actor": None if move is None else move["actor"]}
    view = {"alias": alias, "version": int(mv.version), "set": when(at, now), "gate": mv.tags.get("gate_passed", ""),
            "actor": None}
    if move is not None:
        view.update(actor=_text(move["actor"]), action=_text(move["action"]), reason=_text(move["reason"]))
    return view


def models_section(cfg: Config, now: datetime) -> Section:
    """The registered model: who holds each alias since when, its versions, and the audit trail of alias moves."""

    def build(s: Section) -> None:
        from utils import registry

        name = cfg.model_name
        s.facts["model_name"] = name
        s.view = {"name": name, "exists": model_exists(name), "champion": cfg.champion_alias,
                  "challenger": cfg.challenger_alias}
        if not s.view["exists"]:
            s.missing.append(f"model {name}")
            return
        versions = model_versions(name)
        audit = registry.audit_trail(name)
        s.view["aliases"] = [_alias_view(s, cfg, alias, audit, now) for alias in (cfg.champion_alias, cfg.challenger_alias)]
        shown = versions.assign(created=versions["created"].map(lambda t: when(t, now)),
                                run_id=versions["run_id"].str.slice(0, 12))
        s.view["versions"] = _table(shown, lambda r: "champion" if cfg.champion_alias in str(r["aliases"]).split(", ") else "")
        s.view["audit"] = None
        if not audit.empty:
            recent = audit.sort_values("seq", ascending=False).head(MAX_AUDIT_ROWS)
            cols = ["at", "action", "alias", "version", "from_version", "actor", "gate_passed", "reason"]
            shown = recent[cols].astype(object).where(recent[cols].notna(), "")
            shown["at"] = recent["at"].map(lambda t: when(to_utc(t), now))
            s.view["audit"] = _table(shown)
        s.facts["versions"] = len(versions)

    return _guarded("models", "Models: versions, aliases and promotions", build)


# ---------------------------------------------------------------- deployments


def _endpoints_view(s: Section, endpoints: list[EndpointStatus]) -> None:
    """The endpoints table and each router's configured traffic split."""
    s.facts["endpoints_up"] = sum(e.up for e in endpoints)
    s.facts["endpoints_down"] = sum(not e.up for e in endpoints)
    s.view.update(endpoints=None, splits=[])
    if not endpoints:
        s.missing.append("endpoints")
        return
    frame = pd.DataFrame([{
        "endpoint": e.name, "kind": e.kind, "state": "UP" if e.up else "DOWN", "url": e.url,
        "serves": e.model or ", ".join(f"{a} → v{v}" for a, v in e.versions.items()),
        "traffic": ", ".join(f"{a} {w}%" if e.kind == "databricks" else f"{a} {w}" for a, w in e.weights.items()),
        "detail": e.detail,
    } for e in endpoints])
    s.view["endpoints"] = _table(frame, lambda r: "up" if r["state"] == "UP" else "down")
    for e in endpoints:
        if e.weights:
            total = sum(e.weights.values()) or 1
            share = ", ".join(f"{a} (v{e.versions.get(a, '?')}): {100 * w / total:.0f}%" for a, w in e.weights.items())
            s.view["splits"].append({"name": e.name, "share": share})


def _traffic_rows(cfg: Config, now: datetime, label: str, summary: dict[str, Any], req: dict[str, Any],
                  log: pd.DataFrame, champion: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The traffic summary's (measure, value) rows: volume, sources, versions, latency, errors, champion share."""
    rows = [("window", label), ("predictions", f"{summary['rows']:,}"),
            ("first / last", f"{when(summary.get('first'), now)} / {when(summary.get('last'), now)}")]
    for col in ("source", "model_version", "arm"):
        counts = summary.get(f"by_{col}")
        if counts:
            total = sum(counts.values())
            rows.append((f"by {col}", ", ".join(f"{k}: {v} ({100 * v / total:.0f}%)" for k, v in counts.items())))
    requests_table = cfg.table("request_log")
    lat = req.get("latency_ms") or summary.get("latency_ms")
    rows.append(("endpoint latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms" if lat
                 else f"not recorded (no answered request in the request log {requests_table})"))
    if "error_rate" in req:
        rows.append(("endpoint error rate (5xx)", (f"{100 * req['error_rate']:.2f}% of {req['requests']:,} requests "
                     f"({req['server_errors']} failed)")))
        rows.append(("refused requests (4xx)", (f"{req['client_errors']} of {req['requests']:,} "
                     f"({100 * req['refused_rate']:.1f}%): invalid requests turned away with a reason, not failures")))
    else:
        rows.append(("endpoint error rate", f"not recorded (the request log {requests_table} has no request in the window)"))
    if champion is not None and "model_version" in log and len(log):
        rows.append(("served by the champion", champion_share(log, champion, now)))
    return rows


def _traffic_figures(log: pd.DataFrame, requests: pd.DataFrame | None, label: str) -> list[dict[str, str]]:
    """Predictions per hour, and the latency histogram (from the request log when there is one)."""
    figures = [_figure("fig-traffic", traffic_figure(log), f"Predictions per hour ({label})")] if "ts" in log else []
    timed_rows, source = (requests, "request log") if requests is not None else (log, "inference log")
    latency_col = next((c for c in ("latency_ms", "latency") if c in timed_rows), None)
    if latency_col and timed_rows[latency_col].notna().any():
        figures.append(_figure("fig-latency", latency_figure(timed_rows, latency_col),
                               f"Latency of endpoint requests (ms, {source})"))
    return figures


def _traffic_view(s: Section, cfg: Config, now: datetime, champion: dict[str, Any] | None) -> None:
    """Recent inference traffic: the last day's, else the day before the newest prediction."""
    from utils import lakehouse

    name = cfg.table("inference_log")
    s.view.update(log_name=name, log="absent", hours=f"{RECENT_HOURS:.0f}", newest_before=None)
    if not lakehouse.exists(name):
        s.missing.append("inference log")
        return
    log = read_recent(name, "ts", pd.Timestamp(now) - pd.Timedelta(hours=RECENT_HOURS))
    label = f"last {RECENT_HOURS:.0f} h"
    if log.empty:
        everything = read_recent(name, "ts")
        if everything.empty:
            s.missing.append("inference log rows")
            s.view["log"] = "empty"
            return
        last = pd.to_datetime(everything["ts"], utc=True).max()
        log = everything[pd.to_datetime(everything["ts"], utc=True) >= last - pd.Timedelta(hours=RECENT_HOURS)]
        s.view["newest_before"] = when(last, now)
        label = f"{RECENT_HOURS:.0f} h before the newest prediction"
    summary = inference_summary(log)
    s.facts["recent_predictions"] = summary["rows"] if label.startswith("last") else 0
    s.facts["last_prediction"] = summary.get("last")
    requests = recent_requests(cfg, summary.get("first"))
    req = request_summary(requests) if requests is not None else {}
    s.facts["error_rate"] = req.get("error_rate")
    rows = _traffic_rows(cfg, now, label, summary, req, log, champion)
    s.view.update(log="rows", summary=_table(pd.DataFrame(rows, columns=["measure", "value"])),
                  figures=_traffic_figures(log, requests, label))


def deployments_section(cfg: Config, endpoint_urls: Sequence[str], now: datetime,
                         champion: dict[str, Any] | None) -> Section:
    """The endpoints' health and traffic split, and the recent inference traffic.

    ``endpoint_urls``: http(s) base URLs to probe besides the endpoints this process runs; ``champion``: the models
    section's ``facts[champion_alias]`` (version, at, run_id), or None.
    """

    def build(s: Section) -> None:
        _endpoints_view(s, endpoint_statuses(endpoint_urls, cfg))
        _traffic_view(s, cfg, now, champion)

    return _guarded("deployments", "Deployments: endpoints, served versions and traffic", build)


# ---------------------------------------------------------------- freshness, monitoring, alerts, lineage


def freshness_section(cfg: Config, now: datetime) -> Section:
    """The last commit of every table in the project's schema; the stalest pipeline table goes to ``facts``."""

    def build(s: Section) -> None:
        fresh = table_freshness(cfg, now)
        s.view = {"schema": f"{cfg.catalog}.{cfg.schema}", "stale_hours": f"{STALE_AFTER_HOURS:.0f}", "table": None}
        if fresh.empty:
            s.missing.append("tables")
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
            last_commit=fresh["last_commit"].map(lambda t: when(t, now)),
            age_hours=fresh["age_hours"].map(lambda h: fmt(h, 1)),
        )
        s.view["table"] = _table(shown, lambda r: "stale" if r["age_hours"] != "—"
                                 and float(r["age_hours"]) > STALE_AFTER_HOURS else "")

    return _guarded("freshness", "Data freshness", build)


def _drift_view(s: Section, name: str, psi: float) -> None:
    """The drift figure and the latest pass's PSI per column."""
    drift = drift_over_time(name)
    if drift.empty or "population_stability_index" not in drift or drift["population_stability_index"].isna().all():
        s.view["drift_state"] = "no psi"
        return
    fig, caption = drift_figure(drift, psi)
    latest = drift[drift["table_version"] == drift["table_version"].max()]
    cols = [c for c in ("column_name", "role", "population_stability_index", "js_distance", "note") if c in latest]
    top = latest.sort_values("population_stability_index", ascending=False)[cols]
    s.facts["drifted"] = int((latest["population_stability_index"] > psi).sum())
    shown = top.assign(**{c: top[c].map(fmt) for c in ("population_stability_index", "js_distance") if c in top})
    s.view.update(drift_state="rows", drift_figure=_figure("fig-drift", fig, caption), drifted=s.facts["drifted"],
                  drift=_table(shown, lambda r: "breach" if r["population_stability_index"] != "—"
                               and float(r["population_stability_index"]) > psi else ""))


def _quality_view(s: Section, cfg: Config, name: str) -> None:
    """The AUC-per-window figure and the latest window's AUC against the gate's floor."""
    from utils import lakehouse

    quality = lakehouse.read_pandas(name)
    if quality.empty or "auc" not in quality or quality["auc"].isna().all():
        s.view["quality_state"] = "no auc"
        return
    th = cfg.thresholds
    last = quality.sort_values("window_start").dropna(subset=["auc"]).iloc[-1]
    s.facts["latest_auc"] = float(last["auc"])
    s.facts["quality_measured_at"] = to_utc(lakehouse.history(name).iloc[0]["timestamp"])
    s.view.update(quality_state="rows", auc=f"{float(last['auc']):.3f}", labelled=int(last.get("n_labeled", 0)),
                  floor=f"{th.gate_min_auc:g}", auc_drop=f"{th.min_auc_drop:g}",
                  quality_figure=_figure("fig-quality", quality_figure(quality, th.gate_min_auc),
                                         "AUC per time window of the monitored predictions"))


def monitoring_section(cfg: Config, now: datetime) -> Section:
    """Drift per column over the monitoring passes, and model quality (AUC) per window."""

    def build(s: Section) -> None:
        from utils import lakehouse
        from utils.config import monitoring_tables

        names = monitoring_tables(cfg)
        s.view = {"drift_name": names["drift"], "quality_name": names["quality"], "psi": f"{cfg.thresholds.psi:g}",
                  "drift_state": "absent", "quality_state": "absent"}
        if lakehouse.exists(names["drift"]):
            _drift_view(s, names["drift"], cfg.thresholds.psi)
        else:
            s.missing.append("drift metrics")
        if lakehouse.exists(names["quality"]):
            _quality_view(s, cfg, names["quality"])
        else:
            s.missing.append("quality metrics")

    return _guarded("monitoring", "Monitoring: drift and model quality", build)


def alerts_section(cfg: Config, now: datetime, champion_at: pd.Timestamp | None) -> Section:
    """The alerts raised, open ones first (open: raised after ``champion_at``, the last promotion, and not resolved)."""

    def build(s: Section) -> None:
        from utils import lakehouse
        from utils.config import monitoring_tables

        name = cfg.table("monitoring_alerts")
        s.view = {"name": name, "state": "no table", "champion": cfg.champion_alias}
        if not lakehouse.exists(name):
            s.facts["open"] = 0
            s.view["monitoring_ran"] = lakehouse.exists(monitoring_tables(cfg)["drift"])
            if not s.view["monitoring_ran"]:
                s.missing.append("alerts")
            return
        alerts = alert_table(cfg, champion_at)
        is_open = alerts["status"] == "open"
        s.facts["open"], s.facts["raised"] = int(is_open.sum()), len(alerts)
        s.facts["critical"] = int((is_open & (alerts.get("severity", pd.Series(dtype=str)) == "critical")).sum())
        if alerts.empty:
            s.view["state"] = "empty"
            return
        cols = [c for c in ("status", "severity", "created_at", "metric", "column", "value", "threshold", "message")
                if c in alerts]
        shown = alerts[cols].head(MAX_ALERT_ROWS).copy()
        if "created_at" in shown:
            shown["created_at"] = shown["created_at"].map(lambda t: when(to_utc(t), now))
        for c in ("value", "threshold"):
            if c in shown:
                shown[c] = shown[c].map(fmt)

        def row_class(r: pd.Series) -> str:
            return ("open " if r["status"] == "open" else "closed ") + str(r.get("severity", ""))

        opened, closed = shown[shown["status"] == "open"], shown[shown["status"] != "open"]
        s.view.update(state="rows", open=s.facts["open"], critical=s.facts["critical"], raised=len(alerts),
                      opened=None if opened.empty else _table(opened, row_class),
                      closed=None if closed.empty else _table(closed, row_class))

    return _guarded("alerts", "Alerts", build)


def lineage_section(cfg: Config, now: datetime, champion: dict[str, Any] | None) -> Section:
    """The Delta tables and versions the champion was trained on (``champion``: as for the deployments section)."""

    def build(s: Section) -> None:
        s.view = {"champion": cfg.champion_alias, "version": None, "run_id": None, "table": None}
        if champion is None:
            s.missing.append("champion")
            return
        run_id = champion.get("run_id")
        s.view.update(version=champion["version"], run_id=run_id)
        if not run_id:
            s.missing.append("training run")
            return
        lineage = champion_lineage(run_id)
        if lineage.empty:
            s.missing.append("input tags")
            return
        s.facts["inputs"] = len(lineage)
        shown = lineage.astype(object).assign(version_written=lineage["version_written"].map(lambda t: when(t, now)))
        s.view["table"] = _table(shown.where(shown.notna(), "—"))

    return _guarded("lineage", "Lineage of the champion", build)
