"""Progress bars for anything that runs longer than a few seconds (tqdm: a widget in notebooks, text in a terminal).

``MLOPS_PROGRESS=0`` turns them off (CI logs stay short); everything else is tqdm's own behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """False when ``MLOPS_PROGRESS`` is ``0``, ``false`` or ``no``."""
    return os.environ.get("MLOPS_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "step") -> Iterator[T]:
    """Iterate ``items`` behind a progress bar labelled ``desc`` (a plain iteration when progress is off)."""
    if not enabled():
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True) as bar:
        for item in bar:
            label = getattr(item, "__name__", item)
            if isinstance(label, str):
                bar.set_postfix_str(label[:40], refresh=False)
            yield item
