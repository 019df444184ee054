"""requirements-databricks.txt installs what a Databricks runtime lacks and never replaces the runtime (offline)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "requirements-databricks.txt"
SOURCE = ROOT / "requirements-databricks.in"
RUNTIMES = {
    "DBR 17.3 LTS ML": ROOT / "constraints" / "dbr-17.3-lts-ml.txt",
    "serverless environment 4": ROOT / "constraints" / "serverless-env-4.txt",
}
# The runtime's own Spark and kernel, and dev tools: installing them would replace or break the runtime.
FORBIDDEN = re.compile(
    r"^(pyspark|delta-spark|py4j|databricks-connect|jupyter.*|ipykernel|ipython|pytest.*|ruff|nbval|uv|papermill)$"
)
# The only pre-installed packages the file may replace, and why. Adding one is a decision, not a side effect.
REPLACES = {
    "mlflow-skinny": "the project's MLflow (requirements.lock); the runtimes ship 3.0.1 / 2.22.0",
    "databricks-sdk": "databricks-feature-engineering 0.18 needs >= 0.149; the runtimes ship 0.49.0",
    "databricks-feature-engineering": "the signatures the project is tested against; DBR 17.3 LTS ML ships 0.12.1",
    "protobuf": "databricks-sdk >= 0.149 refuses 5.29.0-5.29.4; a patch release of the runtime's 5.29 line",
}
# Imported by utils but provided by the runtime itself (not pip), or used only by the local runner.
NOT_FROM_PIP = {"pyspark", "delta", "IPython", "papermill", "nbconvert"}


def _compiler() -> ModuleType:
    """``constraints/compile_requirements.py``, the script that writes the file: its parsers are reused here."""
    spec = importlib.util.spec_from_file_location("compile_requirements", ROOT / "constraints" / "compile_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_COMPILER = _compiler()
_pins = _COMPILER.pinned


def _source_requirements() -> list[Requirement]:
    return _COMPILER.requirements(SOURCE)


@cache
def _module_owners() -> dict[str, str]:
    """Importable module (``numpy``, ``databricks.sdk``) -> the distribution installed here that provides it."""
    owners = {module: canonicalize_name(dists[0]) for module, dists in metadata.packages_distributions().items()}
    for name in metadata.packages_distributions().get("databricks", []):  # a namespace shared by several
        for file in metadata.distribution(name).files or []:
            if len(file.parts) > 2 and file.parts[0] == "databricks" and file.parts[-1].endswith(".py"):
                owners[f"databricks.{file.parts[1]}"] = canonicalize_name(name)
    return owners


def _third_party_imports() -> set[str]:
    """Top-level third-party modules utils imports (two levels for the ``databricks`` namespace)."""
    found = set()
    for path in (ROOT / "utils").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"utils", "__future__"}:
                    found.add(".".join(name.split(".")[:2]) if top == "databricks" else top)
    return found


def test_no_forbidden_package_is_installed_on_databricks() -> None:
    pins = _pins(COMPILED)
    assert len(pins) > 10, "requirements-databricks.txt is empty: run `make requirements-databricks`"
    assert sorted(name for name in pins if FORBIDDEN.match(name)) == []
    assert sorted(canonicalize_name(r.name) for r in _source_requirements() if FORBIDDEN.match(canonicalize_name(r.name))) == []


def test_compiled_for_python_312_from_the_source_file() -> None:
    header = "".join(COMPILED.read_text().splitlines(keepends=True)[:3])
    assert "make requirements-databricks" in header and "--python-version 3.12" in header, header
    pins = _pins(COMPILED)
    for req in _source_requirements():
        name = canonicalize_name(req.name)
        runtime_has_it = all(name in _pins(path) for path in RUNTIMES.values())
        assert name in pins or runtime_has_it, f"{name} is in the .in but not compiled in: run `make requirements-databricks`"
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), (name, str(req.specifier), pins[name])


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_installing_changes_no_preinstalled_package_but_the_declared_ones(runtime: str) -> None:
    preinstalled = _pins(RUNTIMES[runtime])
    changed = {
        name: (preinstalled[name], version)
        for name, version in _pins(COMPILED).items()
        if name in preinstalled and preinstalled[name] != version
    }
    assert set(changed) <= set(REPLACES), f"would change {runtime}'s {sorted(set(changed) - set(REPLACES))}: {changed}"


def test_declared_replacements_are_what_the_source_pins_away_from_the_runtime() -> None:
    runtime = _pins(RUNTIMES["DBR 17.3 LTS ML"])
    pinned_away = {
        canonicalize_name(r.name) for r in _source_requirements()
        if canonicalize_name(r.name) in runtime and not r.specifier.contains(runtime[canonicalize_name(r.name)])
    }
    assert pinned_away == set(REPLACES)


def test_project_versions_match_the_local_lock() -> None:
    lock, compiled = _pins(ROOT / "requirements.lock"), _pins(COMPILED)
    for name in ("mlflow", "mlflow-skinny", "databricks-sdk", "databricks-feature-engineering"):
        assert compiled[name] == lock[name], f"{name}: Databricks gets {compiled[name]}, local runs {lock[name]}"


def test_every_module_utils_imports_is_installed_or_preinstalled() -> None:
    owners, compiled = _module_owners(), _pins(COMPILED)
    for runtime, path in RUNTIMES.items():
        available = set(compiled) | set(_pins(path))
        missing = {
            module: owners.get(module)
            for module in _third_party_imports() - NOT_FROM_PIP
            if owners.get(module) not in available
        }
        assert missing == {}, f"utils imports these, and {runtime} would lack them: {missing}"


def test_constraints_files_name_their_source() -> None:
    for path in RUNTIMES.values():
        head = "".join(path.read_text().splitlines(keepends=True)[:4])
        assert "https://docs.databricks.com/" in head and "release-notes" in head, path.name
        assert len(_pins(path)) > 100, path.name
