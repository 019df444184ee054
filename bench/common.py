"""Shared helpers of the benchmark scripts: the machine's description, percentiles, and the results file.

Every script prints its table and appends it, with the machine it ran on and the date, to
``bench/results.md`` (``--no-record`` to only print). Ratios are measured side by side in one run.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results.md"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _memory_gb() -> float | None:
    """Physical memory in GB (Linux), or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def machine_description() -> str:
    """One line: cores, memory, OS, Python, Java (if found) and the 1-minute load average."""
    from utils.platform import EnvironmentProblem, java_version

    parts = [f"{os.cpu_count()} cores"]
    mem = _memory_gb()
    if mem:
        parts.append(f"{mem:.0f} GB")
    parts.append(f"{platform.system()} {platform.machine()}")
    parts.append(f"Python {platform.python_version()}")
    try:
        parts.append(f"Java {java_version()}")
    except EnvironmentProblem:
        pass
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f} at start")
    return ", ".join(parts)


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean of ``samples_s`` (seconds), in milliseconds."""
    if not samples_s:
        raise ValueError("no samples")
    ordered = sorted(samples_s)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "mean_ms": statistics.fmean(ordered) * 1000}


def timed(call: Callable[[], Any], iterations: int, warmup: int = 20) -> list[float]:
    """Wall-clock seconds of each of ``iterations`` calls, after ``warmup`` untimed ones."""
    for _ in range(min(warmup, iterations)):
        call()
    out = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column, ``l`` or ``r`` (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError("every row and the alignment need one entry per header column")
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def record(title: str, body: str, script: str, machine: str | None = None, path: Path = RESULTS) -> str:
    """Print a result section and append it to ``path``; returns the section's text.

    ``title`` names what was measured, ``script`` the file that measured it (e.g. ``bench/bench_x.py``),
    ``body`` the table and any sentence that reads it.
    """
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## {title} (`{script}`, {when})\n"
               f"Machine: {machine or machine_description()}.\n\n{body.strip()}\n")
    print(section)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(section)
    return section


def fmt(x: float, digits: int = 2) -> str:
    """A number with thousands separators and ``digits`` decimals (0 for integers)."""
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"
