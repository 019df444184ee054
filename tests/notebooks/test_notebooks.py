"""The notebook suite: every lifecycle notebook ran under nbval as JupyterLab's "Run All" runs it, and its outputs read clean.

``make notebooks`` runs ``pytest --nbval-lax`` over the notebooks, in order, then this file: nbval executes
every code cell in one fresh kernel per notebook (no cell is tagged to be skipped, the Databricks-only first
cell included), and the ``executed_copies`` plugin keeps what each cell printed as executed notebooks (with
HTML) under the state folder's ``executed/``. These tests read those copies: every cell ran, in order, and
no cell shows a stderr stream, which a reader takes for a failure, unless this file names it and says why.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools.runner import lifecycle_notebooks, stderr_outputs

NOTEBOOKS = lifecycle_notebooks()

# stderr a reader may see, by notebook stem: a regular expression and the reason it is expected.
_REGISTRATION_NOTES = (r"\A((Successfully registered model '[^']*'\.|Registered model '[^']*' already exists\. Creating a "
                       r"new version of this model\.\.\.|Created version '\d+' of model '[^']*'\.)\n?)+\Z",
                       "mlflow.register_model's own notes, nothing else: the cell registers a version as on Databricks")
EXPECTED_STDERR: dict[str, list[tuple[str, str]]] = {"03_develop": [_REGISTRATION_NOTES], "05_deploy": [_REGISTRATION_NOTES]}


@pytest.fixture(scope="module")
def executed_dir(isolated_state: Path) -> Path:
    """Where nbval's executed copies are: ``<state folder>/executed`` (see ``executed_copies``)."""
    from tests.notebooks.executed_copies import executed_dir

    return executed_dir()


def _executed(path: Path, executed_dir: Path) -> dict:
    out = executed_dir / path.name
    if not out.exists():
        pytest.fail(f"{out} is missing: run the notebooks first, `make notebooks` "
                    "(pytest --nbval-lax notebooks/*.ipynb tests/notebooks -p tests.notebooks.executed_copies)")
    return json.loads(out.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ran_every_cell_in_order(path: Path, executed_dir: Path) -> None:
    source = _code_cells(json.loads(path.read_text(encoding="utf-8")))
    executed = _code_cells(_executed(path, executed_dir))
    assert [_text(c) for c in executed] == [_text(c) for c in source], f"{path.name}: a cell was skipped or reordered"
    counts = [c["execution_count"] for c in executed]
    assert None not in counts and counts == list(range(1, len(counts) + 1)), \
        f"{path.name}: not every cell ran, in order: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_shows_no_unexpected_stderr(path: Path, executed_dir: Path) -> None:
    allowed = EXPECTED_STDERR.get(path.stem, [])
    unexpected = [(n, text) for n, text in stderr_outputs(_executed(path, executed_dir))
                  if not any(re.search(pattern, text) for pattern, _ in allowed)]
    shown = "\n".join(f"In [{n}]: {text[:300]!r}" for n, text in unexpected)
    assert not unexpected, f"{path.name}: {len(unexpected)} stderr output(s) a reader would take for a failure:\n{shown}"


DRAWS = re.compile(r"\.plot[.(]|plt\.(subplots|figure|plot|bar|hist)\(|shap\.(plots\.|summary_plot)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_that_draws_shows_its_figure(path: Path, executed_dir: Path) -> None:
    """A plotting cell's figure is in the executed copy (MLflow autologging once hid every later figure of 02)."""
    missing = [n for n, cell in enumerate(_code_cells(_executed(path, executed_dir)), start=1)
               if DRAWS.search(_text(cell))
               and not any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))]
    assert not missing, f"{path.name}: code cells {missing} draw a figure that the executed copy does not show"
