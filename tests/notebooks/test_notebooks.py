"""The notebook suite: every lifecycle notebook runs as JupyterLab's "Run All" does, and its saved outputs read clean.

Each notebook is executed with papermill, which honours no skip tag: every cell, in order, in a fresh kernel,
the Databricks-only first cell included. The executed copies (and their HTML) are kept under the state folder's
``executed/``, where the second test reads them: a stderr stream in a cell looks like a failure to a reader,
so none may appear unless this file names it and says why.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from utils.runner import lifecycle_notebooks, render_html, run_notebook, stderr_outputs

NOTEBOOKS = lifecycle_notebooks()
ROWS = int(os.environ.get("MLOPS_ROWS", "6000"))
SEED = int(os.environ.get("MLOPS_SEED", "42"))

# stderr a reader may see, by notebook stem: a regular expression and the reason it is expected.
EXPECTED_STDERR: dict[str, list[tuple[str, str]]] = {}


@pytest.fixture(scope="module")
def executed_dir(isolated_state: Path) -> Path:
    """Where the executed notebooks and their HTML renderings go: ``<state folder>/executed``."""
    return isolated_state / "executed"


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_every_cell_in_order(path: Path, executed_dir: Path) -> None:
    out = run_notebook(path, executed_dir, {"rows": ROWS, "seed": SEED}, timeout_s=900)
    render_html(out)
    source = _code_cells(json.loads(path.read_text(encoding="utf-8")))
    executed = _code_cells(json.loads(out.read_text(encoding="utf-8")))
    assert [_text(c) for c in executed] == [_text(c) for c in source], f"{path.name}: a cell was skipped or reordered"
    counts = [c["execution_count"] for c in executed]
    assert None not in counts and counts == sorted(counts), f"{path.name}: not every cell ran, in order: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_shows_no_unexpected_stderr(path: Path, executed_dir: Path) -> None:
    out = executed_dir / path.name
    if not out.exists():
        pytest.fail(f"{out} is missing: test_notebook_runs_every_cell_in_order[{path.stem}] writes it")
    allowed = EXPECTED_STDERR.get(path.stem, [])
    unexpected = [(n, text) for n, text in stderr_outputs(json.loads(out.read_text(encoding="utf-8")))
                  if not any(re.search(pattern, text) for pattern, _ in allowed)]
    shown = "\n".join(f"code cell {n}: {text[:300]!r}" for n, text in unexpected)
    assert not unexpected, f"{path.name}: {len(unexpected)} stderr output(s) a reader would take for a failure:\n{shown}"
