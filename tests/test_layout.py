"""The repository's shape: folders, notebook names and contract, stripped notebooks, README paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from utils.project import NAME as PROJECT

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Tags with which some runner would leave a cell out: "Run All" in JupyterLab honours none of them.
SKIP_TAGS = {"nbval-skip", "skip-execution", "skip", "remove-cell", "remove_cell"}
INSTALL_CELL = ("import sys\nfrom pathlib import Path\n\n"
                "sys.path.insert(0, str(Path.cwd().parent))  # the repository root, so `utils` imports wherever the notebooks were put\n"
                "from utils.platform import install_on_databricks\n\ninstall_on_databricks()")
STAGES = ["00_setup", "01_explore", "02_evaluate", "03_develop", "04_package", "05_deploy", "06_monitor"]


def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_expected_top_level_layout() -> None:
    for name in ("notebooks", "utils", "data", "tests", "environment.yml", "README.md", "pyproject.toml",
                 "Makefile", ".ci/run", "databricks.yml", "requirements.lock", "data/raw/README.md"):
        assert (ROOT / name).exists(), name


def test_notebooks_are_numbered_lifecycle_stages() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == sorted(names)
    assert all(re.fullmatch(r"\d\d_[a-z_]+", n) for n in names), names
    assert set(names) <= set(STAGES) and names[:2] == STAGES[:2]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped(path: Path) -> None:
    for cell in _nb(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name}: run `make strip`"
        assert "application/vnd.databricks.v1+cell" not in cell.get("metadata", {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_contract(path: Path) -> None:
    cells = _nb(path)["cells"]
    first = "".join(cells[0]["source"])
    assert first.startswith(f"# {path.stem[:2]} · ")
    for field in ("**You will learn:**", "**Reads:**", "**Writes:**", "**Parameters:**", "**Runs on:**"):
        assert field in first, f"{path.name} header lacks {field}"
    # Names change with MLOPS_CATALOG / MLOPS_SCHEMA: a header names tables without the default catalog.schema.
    assert not re.search(rf"\b{PROJECT}(_prod)?\.mlops\.", first), f"{path.name} header hard-codes {PROJECT}.mlops.*"
    tags = [c.get("metadata", {}).get("tags", []) for c in cells]
    assert sum("parameters" in t for t in tags) == 1, "exactly one papermill parameters cell"
    assert not [t for t in tags if set(t) & SKIP_TAGS], "every cell runs in Run All: no skip tags"
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert "".join(cells[first_code]["source"]) == INSTALL_CELL, \
        "the first code cell installs the project on Databricks and does nothing locally"
    assert "`%pip install`" in "".join(cells[first_code - 1]["source"]), "a sentence before it says what it does where"
    md = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert any(m.startswith("## Checks") for m in md) and any(m.startswith("## Summary") for m in md)
    checks_at = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("## Checks"))
    assert "assert " in "".join(cells[checks_at + 1]["source"]), "the Checks cell must assert"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_mentions_existing_paths() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    for stage in (p.stem for p in NOTEBOOKS):
        assert f"`{stage}`" in readme, f"README lifecycle map lacks {stage}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_what_exists(doc: Path) -> None:
    """Paths, links, `make` targets and `python -m` modules a reader is told about are real."""
    text = doc.read_text(encoding="utf-8")
    for ref in sorted(set(re.findall(r"`((?:notebooks|utils|tests|bench|data|docs|resources)/[\w./-]+)`", text))):
        assert (ROOT / ref).exists(), f"{doc.name} refers to missing {ref}"
    for link in sorted(set(re.findall(r"\]\(([\w./-]+\.(?:md|png))\)", text))):
        assert (doc.parent / link).exists(), f"{doc.name} links to missing {link}"
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    for target in sorted(set(re.findall(r"`make ([a-z][\w-]*)", text))):
        assert target in targets, f"{doc.name} names `make {target}`, which the Makefile lacks"
    for module in sorted(set(re.findall(r"python -m ((?:utils|tests|bench)(?:\.\w+)+)", text))):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"{doc.name} runs missing module {module}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
