"""The dashboard page in a real browser: headless Chromium renders it, screenshots it, and reports script errors.

Needs Debian's ``chromium`` (``apt-get install chromium``, ``/usr/bin/chromium``) or the browser named by
``MLOPS_CHROMIUM``; without one these tests are skipped, never faked.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.support import own_schema
from utils import dashboard, lakehouse
from utils.config import get_config, monitoring_tables
from utils.drift import DRIFT_COLUMNS, drift_to_arrow
from utils.serving import free_port

# Debian's chromium; MLOPS_CHROMIUM may name another Chromium-family browser (e.g. a CI image's google-chrome).
CHROMIUM = Path(os.environ.get("MLOPS_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 2400
HEADINGS = {
    "deployments": "Deployments", "alerts": "Alerts", "monitoring": "Monitoring", "models": "Models",
    "lineage": "Lineage", "freshness": "Data freshness",
}


@pytest.fixture()
def browser() -> Path:
    """The Chromium executable; the test is skipped (before any set-up work) when there is none."""
    if not CHROMIUM.exists():
        pytest.skip(f"chromium is not installed ({CHROMIUM} not found): apt-get install chromium, "
                    "or set MLOPS_CHROMIUM to a Chromium-family browser")
    return CHROMIUM


def chromium(browser: Path, page: Path, workdir: Path, screenshot: Path | None = None) -> str:
    """The DOM of ``page`` after Chromium loaded it and ran its scripts (and a screenshot, if asked)."""
    args = [str(browser), *FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}",
            f"--window-size={WIDTH},{HEIGHT}", "--dump-dom"]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    proc = subprocess.run([*args, page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def root_attributes(dom: str) -> dict[str, str]:
    """The attributes of ``<div id="dashboard">`` as the browser left them."""
    tag = re.search(r'<div id="dashboard"([^>]*)>', dom)
    assert tag, "the rendered DOM has no #dashboard element"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(1)))


@pytest.fixture()
def state_with_tables(browser: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh schema holding an inference log and monitoring tables (no model yet), MLflow pointed at its own store."""
    with own_schema(tmp_path / "state", monkeypatch) as state:
        write_tables()
        yield state


def write_tables() -> None:
    """An inference log (two versions served), two monitoring passes of drift, and quality per window."""
    cfg, names = get_config(), monitoring_tables(get_config())
    now = datetime.now(UTC)
    lakehouse.write(pd.DataFrame({
        "request_id": [f"r{i}" for i in range(6)], "ts": [now - timedelta(minutes=15 * i) for i in range(6)],
        "source": "realtime", "model_name": cfg.model_name, "model_version": ["1", "1", "2", "1", "2", "1"],
        "prediction": 0.5, "latency_ms": [12.0, 15.0, 18.0, 22.0, 40.0, 95.0],
    }), cfg.table("inference_log"))
    for week, shift in enumerate((0.02, 0.4)):
        rows = []
        for i, col in enumerate(("region", "device", "tenure_days")):
            row = dict.fromkeys(DRIFT_COLUMNS)
            start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(weeks=week)
            row.update(column_name=col, role="feature", drift_type="BASELINE",
                       window={"start": start, "end": start + timedelta(days=7)},
                       population_stability_index=shift * (i + 1), js_distance=shift / 2)
            rows.append(row)
        lakehouse.write(drift_to_arrow(pd.DataFrame(rows)), names["drift"], mode="overwrite")
    lakehouse.write(pd.DataFrame({"window_start": pd.date_range("2026-01-01", periods=4, freq="7D", tz="UTC"),
                                  "auc": [0.82, 0.8, 0.77, 0.6], "n_labeled": [40, 40, 40, 40]}), names["quality"])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_dashboard_renders_in_chromium_without_script_errors(browser: Path, state_with_tables: Path,
                                                             tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    page = dashboard.build_dashboard(tmp_path / "dashboard.html", endpoint_urls=[down])
    shot = tmp_path / "dashboard.png"
    dom = chromium(browser, page, tmp_path, screenshot=shot)

    attrs = root_attributes(dom)
    assert attrs.get("data-ready") == "1", "the page's ready script did not run"
    assert "data-script-errors" not in attrs and "<pre class=\"script-error\">" not in dom, "the page raised script errors"
    for sid, heading in HEADINGS.items():
        match = re.search(rf'<section id="{sid}"[^>]*><h2>([^<]*)</h2>', dom)
        assert match and match.group(1).startswith(heading), f"section {sid!r} or its heading is missing"
    assert re.search(r'<section id="status"[^>]*><div class="banner (ok|warn|bad)"', dom)
    figures = re.findall(r'<figure id="(fig-[a-z]+)"><img', dom)
    assert set(figures) == {"fig-drift", "fig-quality", "fig-traffic", "fig-latency"}
    assert attrs.get("data-figures-loaded") == str(len(figures)), "an embedded figure did not decode in the browser"
    assert "DOWN" in dom and "Models" in dom and "03_develop" in dom  # the missing model is said, not an error

    assert shot.exists() and png_size(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 30_000, "the screenshot is nearly empty"
    from PIL import Image

    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 200, "the screenshot has almost no distinct colours: nothing was drawn"


def test_script_errors_on_the_page_are_caught(browser: Path, tmp_path: Path) -> None:
    """The error recorder works, so the test above can fail: a page with a broken script is flagged."""
    cfg, now = get_config(), datetime.now(UTC)
    broken = dashboard.Section("alerts", "Alerts", body="<script>thisFunctionDoesNotExist();</script>")
    page = tmp_path / "broken.html"
    page.write_text(dashboard.render([broken], cfg, now), encoding="utf-8")
    dom = chromium(browser, page, tmp_path)
    attrs = root_attributes(dom)
    assert attrs.get("data-script-errors") == "1"
    assert re.search(r"<pre class=\"script-error\">script error: [^<]*thisFunctionDoesNotExist", dom)
    assert attrs.get("data-ready") == "1"


def test_table_cells_keep_their_words_whole(browser: Path, tmp_path: Path) -> None:
    """A narrow column wraps between words, never inside one ("REA DY", "prom ote" at 1,400 px before)."""
    cfg, now = get_config(), datetime.now(UTC)
    columns = ["version", "status", "aliases", "created", "run", "family", "roc_auc", "gate", "action", "actor", "reason"]
    row = ["12", "READY", "champion", "2026-12-07 04:00", "3f2a9c1e", "gboost", "0.8123", "passed", "promote",
           "ada.lovelace@example.com", "the challenger passed every check of the validation gate on the held-out rows " * 3]
    table = ("<table id='words'><thead><tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr></thead><tbody>"
             + "<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" * 1 + "</tbody></table>")
    # counts the cells holding one word whose text the browser laid out on more than one line
    probe = ("<script>(function(){var n=0;document.querySelectorAll('#words td, #words th').forEach(function(c){"
             "if(c.textContent.trim().indexOf(' ')<0){var r=document.createRange();r.selectNodeContents(c);"
             "if(r.getClientRects().length>1){n++;}}});"
             "document.getElementById('dashboard').setAttribute('data-broken-words',String(n));})();</script>")
    page = tmp_path / "words.html"
    page.write_text(dashboard.render([dashboard.Section("models", "Models", body=table + probe)], cfg, now),
                    encoding="utf-8")
    attrs = root_attributes(chromium(browser, page, tmp_path))
    assert attrs.get("data-broken-words") == "0", attrs
