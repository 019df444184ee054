"""The 360° view: one self-contained HTML page showing what is deployed where, whether it is healthy and how it does.

It reads only what the lifecycle already records:

* the MLflow registry: versions, the ``champion`` / ``challenger`` aliases, the audit trail and the
  gate verdict tags (``utils.registry``);
* endpoint health: the local endpoints this process runs (``utils.local.endpoints.running_endpoints()``),
  any endpoint URLs passed in (``GET /health``, else ``/ping``; a router's ``GET /routes`` gives its
  traffic split) and, on Databricks, the Model Serving endpoint ``cfg.endpoint_name``;
* Delta tables (``utils.lakehouse``): the commit history of every project table (freshness), the
  inference log (volume, served versions, latency and errors where recorded), the monitoring
  drift, quality and alert tables (``utils.config.monitoring_tables``);
* lineage: the ``input.<table>`` tags of the champion's training run (``utils.training.input_versions``).

The app is small and in layers: ``utils.dashboard_data`` and ``utils.dashboard_endpoints`` read,
``utils.dashboard_figures`` plots, ``utils.dashboard_sections`` turns what was read into one view per section,
and this module adds the status banner, renders the page from the Jinja2 templates in ``utils/templates``
(autoescaped) and writes it. The page needs no server: plots are PNGs embedded as base64, CSS and the one
small script are inline, nothing is fetched from the network. Every section has a stable ``id`` (``status``,
``models``, ``deployments``, ``freshness``, ``monitoring``, ``lineage``, ``alerts``). What is missing (a fresh
project, an endpoint that is down, an empty inference log) is said in the section, with the notebook that
produces it; the page still renders. A section that fails to read its source shows the error instead of its
content, and ``build_dashboard`` still writes the page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from utils.config import Config, get_config
from utils.dashboard_data import (
    RECENT_HOURS,
    STALE_AFTER_HOURS,
    age,
    ensure_mlflow,
    inference_summary,
    now_utc,
    request_summary,
    table_layer,
    when,
)
from utils.dashboard_endpoints import EndpointStatus, check_url, probe_endpoint
from utils.dashboard_sections import (
    NOTEBOOK,
    Section,
    alerts_section,
    deployments_section,
    environment,
    freshness_section,
    lineage_section,
    models_section,
    monitoring_section,
    render_block,
)
from utils.platform import output_dir, platform_name

__all__ = [
    "SECTION_IDS", "EndpointStatus", "Section", "build_dashboard", "collect_sections", "default_out",
    "inference_summary", "main", "probe_endpoint", "render", "request_summary", "section_errors",
    "table_layer",
]

SECTION_IDS = ("status", "models", "deployments", "freshness", "monitoring", "lineage", "alerts")
PAGE_TEMPLATE = "dashboard.html.j2"


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


def _banner_cards(cfg: Config, sections: dict[str, Section], now: datetime) -> list[tuple[str, str, str, str]]:
    """The banner's cards, each (label, value, sub-line, level ``ok`` / ``warn`` / ``bad``)."""
    models, deps, fresh, alerts = (sections[k] for k in ("models", "deployments", "freshness", "alerts"))
    champion = models.facts.get(cfg.champion_alias)
    if champion:
        since = f"set {when(champion['at'], now)}" if champion["at"] is not None else "no audited alias move"
        items = [("champion", f"v{champion['version']}", since, "ok")]
    else:
        items = [("champion", "none", f"no version of {cfg.model_name} holds {cfg.champion_alias}", "bad")]
    up, down = deps.facts.get("endpoints_up", 0), deps.facts.get("endpoints_down", 0)
    if deps.error:
        items.append(("endpoints", "unknown", "the deployments section failed", "bad"))
    elif down:
        items.append(("endpoints", f"{down} DOWN", f"{up} up, {down} down", "bad"))
    elif up:
        items.append(("endpoints", f"{up} up", "all answering /health", "ok"))
    else:
        items.append(("endpoints", "none running", ("nothing deployed here now (05 stops its endpoints); "
                      "ENDPOINTS=URL probes one"), "ok"))
    if "last_prediction" in deps.facts:
        items.append(("predictions", f"{deps.facts.get('recent_predictions', 0):,}",
                      f"last {RECENT_HOURS:.0f} h; newest {age(deps.facts['last_prediction'], now)}",
                      "ok" if deps.facts.get("recent_predictions") else "warn"))
    n_open, critical = alerts.facts.get("open", 0), alerts.facts.get("critical", 0)
    items.append(("open alerts", str(n_open), f"{critical} critical" if n_open else "none open",
                  "bad" if critical else "warn" if n_open else "ok"))
    items.append(_quality_card(cfg, sections["monitoring"], champion))
    drifted = sections["monitoring"].facts.get("drifted", 0)
    if drifted:  # the drift chart's red bars, said next to the headline with what was done about them
        items.append(("data drift", f"{drifted} column{'s' * (drifted > 1)}",
                      f"PSI over {cfg.thresholds.psi:g} in the last pass; " + (
                          "see the open alerts" if n_open else "its alerts closed when a new champion was promoted"
                          if alerts.facts.get("raised") else "no alert was raised for it"),
                      "ok" if alerts.facts.get("raised") and not n_open else "warn"))
    stalest = fresh.facts.get("stalest")
    if stalest:
        items.append(("stalest table", stalest["table"].rsplit(".", 1)[-1], f"last written {age(stalest['at'], now)}",
                      "warn" if stalest["hours"] > STALE_AFTER_HOURS else "ok"))
    else:
        items.append(("stalest table", "—", "no tables yet", "warn"))
    return items


def _banner(cfg: Config, sections: dict[str, Section], now: datetime) -> Section:
    """The status banner: the worst card's level (``bad`` too when a section failed), the cards, failed sections."""
    items = _banner_cards(cfg, sections, now)
    errors = [s.id for s in sections.values() if s.error]
    rank = {"ok": 0, "warn": 1, "bad": 2}
    level = max([lvl for *_, lvl in items] + (["bad"] if errors else []), key=rank.__getitem__, default="ok")
    s = Section("status", "Status", facts={"level": level, "errors": errors})
    s.view = {"level": level, "errors": errors,
              "cards": [{"label": label, "value": value, "sub": sub, "level": lvl} for label, value, sub, lvl in items]}
    s.body = render_block("status", s.view)
    return s


def render(sections: Sequence[Section], cfg: Config, now: datetime) -> str:
    """The whole page as HTML text: banner, navigation, then every section, self-contained.

    ``sections`` in page order, the status banner first (see :func:`collect_sections`); each one's ``body`` is
    inserted as it is, its ``error`` (escaped) instead when it has one. Raises ``jinja2.TemplateError`` only
    for a broken template.
    """
    return environment().get_template(PAGE_TEMPLATE).render(
        sections=sections, project=cfg.project, model=cfg.model_name, now=now, written=now_utc(),
        platform=platform_name())


def collect_sections(endpoint_urls: Sequence[str] = (), cfg: Config | None = None,
                     now: datetime | None = None, progress: Callable[[str], None] | None = None) -> list[Section]:
    """Every section of the page, in reading order, the status banner first.

    ``progress``, when given, is called with one line before each section is read (the command line prints
    them: reading the registry and the Delta tables can take a minute on a cold Spark session). A section
    that fails to read its source carries the ``error`` instead of raising.
    """
    cfg = cfg or get_config()
    now = now or now_utc()
    say = progress or (lambda _line: None)
    readers: dict[str, tuple[str, Callable[[dict | None], Section]]] = {
        "models": ("the model registry", lambda _c: models_section(cfg, now)),
        "deployments": ("the endpoints and the inference log", lambda c: deployments_section(cfg, endpoint_urls, now, c)),
        "freshness": ("the Delta tables' histories", lambda _c: freshness_section(cfg, now)),
        "monitoring": ("the monitoring tables", lambda _c: monitoring_section(cfg, now)),
        "lineage": ("the champion's lineage", lambda c: lineage_section(cfg, now, c)),
        "alerts": ("the alert log", lambda c: alerts_section(cfg, now, None if c is None else c["at"])),
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
    urls = [check_url(u) for u in endpoint_urls or []]
    cfg = get_config()
    ensure_mlflow()
    now = now_utc()
    page = render(collect_sections(urls, cfg, now, progress), cfg, now)
    path = Path(out) if out is not None else default_out()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


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
    """``python -m utils.dashboard [--out PATH] [--endpoint URL ...]``: write the page; 1 when Spark cannot start."""
    parser = argparse.ArgumentParser(prog="python -m utils.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out(), help=f"where to write the page (default {default_out()})")
    parser.add_argument("--endpoint", action="append", default=[], metavar="URL",
                        help="an endpoint or router base URL to probe (repeatable), e.g. http://127.0.0.1:5001")
    args = parser.parse_args(argv)
    started = now_utc()

    def progress(line: str) -> None:
        print(f"[{(now_utc() - started).total_seconds():5.1f} s] {line}", file=sys.stderr, flush=True)

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
