"""Platform leaks: notebooks never branch on the platform, hold no local paths, secrets or tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

LOCAL_PATH = re.compile(r"(/home/|/Users/|/work/|/tmp/|[A-Z]:\\\\|\.lakehouse|/root/)")
SECRET = re.compile(r"(dapi[0-9a-f]{20,}|ghp_[A-Za-z0-9]{20,}|xox[abp]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|"
                    r"(?i:(token|password|secret)\s*=\s*['\"][^'\"]+['\"]))")
PLATFORM_BRANCH = re.compile(r"DATABRICKS_RUNTIME_VERSION|is_databricks\(")


def _code_cells(path: Path) -> list[tuple[list[str], str]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c.get("metadata", {}).get("tags", []), "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_local_paths_secrets_or_platform_branches(path: Path) -> None:
    for _, src in _code_cells(path):
        assert not LOCAL_PATH.search(src), f"{path.name}: local path in\n{src}"
        assert not SECRET.search(src), f"{path.name}: something like a secret in\n{src}"
        assert not PLATFORM_BRANCH.search(src), f"{path.name}: notebooks must not branch on the platform\n{src}"


# Databricks-only names and magics: a plain Jupyter kernel has no `dbutils`, and a `%pip` line would reinstall
# the lock locally; `utils.platform.install_on_databricks()` does both on Databricks only.
DATABRICKS_ONLY = re.compile(r"\bdbutils\b|^\s*[%!]pip\b|^\s*%(sql|sh|fs|run|scala|r)\b", flags=re.MULTILINE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_databricks_only_names_or_magics(path: Path) -> None:
    for _, src in _code_cells(path):
        assert not DATABRICKS_ONLY.search(src), f"{path.name}: a plain kernel cannot run\n{src}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_go_through_get_param_with_the_declared_type(path: Path) -> None:
    """Every parameter is read through get_param with the type its parameters-cell default declares."""
    import ast

    cells = _code_cells(path)
    params = next(src for tags, src in cells if "parameters" in tags)
    declared = {node.targets[0].id: type(ast.literal_eval(node.value)).__name__ for node in ast.parse(params).body}
    assert declared, f"{path.name}: the parameters cell declares nothing"
    after = "\n".join(src for _, src in cells)
    for name, kind in declared.items():
        assert f'{name} = get_param("{name}", {name}, {kind})' in after, \
            f"{path.name}: {name} is not read through get_param(..., {kind}) (its parameters cell declares {kind})"


def test_the_hygiene_checks_can_fail() -> None:
    assert LOCAL_PATH.search('open("/home/me/data.csv")')
    assert SECRET.search('token = "dapi0123456789abcdef0123456789"')
    assert PLATFORM_BRANCH.search('if "DATABRICKS_RUNTIME_VERSION" in os.environ:')
    for bad in ("dbutils.library.restartPython()", "%pip install -r ../requirements.lock", "x = 1\n%run ./other"):
        assert DATABRICKS_ONLY.search(bad), bad
    assert not DATABRICKS_ONLY.search("from utils.platform import install_on_databricks\n\ninstall_on_databricks()")


# ---------------------------------------------------------------- serverless (Spark Connect) readiness

# What Databricks serverless and Free Edition refuse: no SparkContext, no RDDs, no cache()/persist(),
# no SparkContext.addFile. The notebooks and the lifecycle code they call use none of them; only the
# local session set-up in utils/platform/runtime.py and the local stand-ins in utils/local/ may.
SERVERLESS_REFUSED = re.compile(r"\.sparkContext\b|\bSparkContext\b|\.rdd\b|\.cache\(\)|\.persist\(|\baddFile\(")
LIFECYCLE_MODULES = sorted(p for p in [*(ROOT / "utils").glob("*.py"), *(ROOT / "utils" / "platform").glob("*.py")]
                           if p != ROOT / "utils" / "platform" / "runtime.py")


def _code_lines(src: str) -> list[str]:
    return [line for line in src.splitlines() if not line.lstrip().startswith("#")]


@pytest.mark.parametrize("path", NOTEBOOKS + LIFECYCLE_MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_api_that_serverless_refuses(path: Path) -> None:
    sources = [src for _, src in _code_cells(path)] if path.suffix == ".ipynb" else [path.read_text(encoding="utf-8")]
    for src in sources:
        hits = [line.strip() for line in _code_lines(src) if SERVERLESS_REFUSED.search(line)
                and not re.search(r'^\s*("""|\'\'\'|[`"])', line) and "``" not in line]
        assert not hits, f"{path.name}: Databricks serverless refuses {hits}"


def test_the_serverless_check_can_fail() -> None:
    for bad in ("df.cache()", "df.persist(StorageLevel.DISK_ONLY)", "spark.sparkContext.addFile(p)", "df.rdd.map(f)"):
        assert SERVERLESS_REFUSED.search(bad), bad
    assert not SERVERLESS_REFUSED.search("spark.table(name).count()")
