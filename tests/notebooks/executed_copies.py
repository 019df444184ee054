"""pytest plugin: what nbval executes is kept as executed notebooks, with outputs, counts and HTML.

``make notebooks`` runs every lifecycle notebook under ``pytest --nbval-lax`` (every code cell, in order,
in one fresh kernel per notebook; nothing is tagged to be skipped). nbval compares no outputs in lax mode
and saves none, so this plugin puts each cell's outputs and an execution count back on the notebook nbval
read and writes it, once its last cell has run, to ``<state folder>/executed/<notebook>.ipynb`` plus an
HTML rendering: the copies CI uploads and ``tests/notebooks/test_notebooks.py`` reads.
Load it with ``-p tests.notebooks.executed_copies``.

It also starts the local Spark engine for the session's state folder (``MLOPS_STATE_DIR``) before the first
notebook, so every notebook's kernel is a client of the same warm server, and stops it at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_EXECUTED: dict[str, int] = {}  # notebook path -> execution count given so far


def executed_dir() -> Path:
    """Where executed copies go: ``executed/`` under the state folder (``make notebooks`` sets one)."""
    from utils.platform import output_dir

    return output_dir("executed")


_LOCK: list[Any] = []  # the state folder's run lock, held for the whole session


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fresh-state", action="store_true", default=False,
                     help="empty the state folder (MLOPS_STATE_DIR), once its run lock is held, before the first notebook")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Take the state folder's run lock, then start the engine the kernels will share.

    Both only when the state folder is chosen, as ``make notebooks`` does. A second run on the same folder
    (another ``make test``, a ``make demo``) stops the session at once with one line naming the run holding
    it, as the runner does, rather than both failing later in each other's tables.
    """
    import os

    if os.environ.get("MLOPS_STATE_DIR"):
        from utils.platform import get_spark
        from tools.runner import StateInUseError, hold_state_lock

        from tools.runner import RUN_LOCK

        try:
            _LOCK.append(hold_state_lock())
        except StateInUseError as exc:
            raise pytest.UsageError(str(exc)) from None
        if session.config.getoption("--fresh-state"):
            import shutil

            from utils.platform import state_dir

            for child in state_dir().iterdir():
                if child.name != RUN_LOCK:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        get_spark()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the session's engine (whoever started it: the first kernel may have)."""
    from utils.local import engine
    from utils.platform import stop_spark

    stop_spark()
    engine.stop_started()
    for lock in _LOCK:
        if lock is not None:
            lock.close()
    _LOCK.clear()


def _is_nbval_cell(item: pytest.Item) -> bool:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # pragma: no cover - nbval is a dev dependency
        return False
    return isinstance(item, IPyNbCell)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """After a cell ran, copy what the kernel sent back onto the cell, numbered in run order."""
    outcome = yield
    if call.when != "call" or not _is_nbval_cell(item):
        return
    report = outcome.get_result()
    key = str(item.parent.fspath)
    if report.skipped:
        return
    count = _EXECUTED.get(key, 0) + 1
    _EXECUTED[key] = count
    item.cell.outputs = list(item.test_outputs or [])
    item.cell.execution_count = count
    for out in item.cell.outputs:
        if out.get("output_type") == "execute_result":
            out["execution_count"] = count


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a notebook's last cell, write its executed copy and HTML."""
    if not _is_nbval_cell(item) or (nextitem is not None and nextitem.parent is item.parent):
        return
    import nbformat

    from tools.runner import render_html

    folder = executed_dir()
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / Path(str(item.parent.fspath)).name
    nbformat.write(item.parent.nb, str(out))
    render_html(out)
