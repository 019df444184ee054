"""Progress for anything that runs longer than a few seconds: one updating line in a notebook, a tqdm bar in a terminal.

In a notebook the line is a plain-text output updated in place (a Jupyter display id), so the saved notebook
and its HTML show the final state ("candidates: 5/5 models in 41 s") with no widget JavaScript to fetch.
``MLOPS_PROGRESS=0`` turns progress off (CI logs stay short).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """False when ``MLOPS_PROGRESS`` is ``0``, ``false`` or ``no``."""
    return os.environ.get("MLOPS_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


def notebook_shell() -> Any:
    """The IPython kernel's shell when running in a notebook kernel, else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def status_line(desc: str, done: int, total: int | None, unit: str, seconds: float, current: str = "") -> str:
    """One progress line: ``desc: done/total units in N s`` (and the item under way, while running)."""
    count = f"{done}/{total}" if total is not None else f"{done}"
    plural = unit if (total if total is not None else done) == 1 else f"{unit}s"
    return f"{desc}: {count} {plural} in {seconds:.0f} s" + (f" · {current}" if current else "")


def _label(item: object) -> str:
    label = getattr(item, "__name__", item)
    return label[:40] if isinstance(label, str) else ""


def _notebook_progress(items: Iterable[T], desc: str, total: int | None, unit: str) -> Iterator[T]:
    from IPython.display import Pretty, display

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    start = time.perf_counter()
    handle = display(Pretty(status_line(desc, 0, total, unit, 0.0)), display_id=True)
    done = 0
    try:
        for item in items:
            handle.update(Pretty(status_line(desc, done, total, unit, time.perf_counter() - start, _label(item))))
            yield item
            done += 1
    finally:
        handle.update(Pretty(status_line(desc, done, total, unit, time.perf_counter() - start)))


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "step") -> Iterator[T]:
    """Iterate ``items`` behind a progress line labelled ``desc`` (a plain iteration when progress is off)."""
    if not enabled():
        yield from items
        return
    if notebook_shell() is not None:
        yield from _notebook_progress(items, desc, total, unit)
        return
    from tqdm import tqdm

    with tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True) as bar:
        for item in bar:
            label = _label(item)
            if label:
                bar.set_postfix_str(label, refresh=False)
            yield item
