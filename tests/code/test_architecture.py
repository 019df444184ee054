"""The package's shape: layers without import cycles, and the local stand-ins are a room of their own.

Bottom to top, counting every import (inside functions too):

0. the base (:data:`BASE`): config, parameters, the facts of where the code runs (:data:`FACTS`:
   ``utils.platform.runtime`` and ``utils.platform.environment``), small helpers (HTTP, the gate's verdict as
   data, wheel entry points, the Delta helpers, the example's columns) and the local engine; they import only
   one another;
1. the stand-ins, ``utils/local``: what exists only so the notebooks run off Databricks (the JVM install, the
   catalog alias, the feature-store and online-store twins, local model endpoints, the webhook inbox, the local
   deployment job); they import only the base and one another. A team that runs only on Databricks deletes the
   folder: no lifecycle module may need it at import time;
2. ``utils.platform`` (the package's ``__init__``): the picks of a backend, Databricks' adapter
   (:data:`ADAPTERS`, which import only the base) or a stand-in;
3. the lifecycle modules, which import anything below them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.measure_house import (
    cycles as _cycles,  # one cycle finder, tested in test_house
)
from utils.platform import REPO_ROOT

UTILS = REPO_ROOT / "utils"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(UTILS.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(utils module imported, at module level?) for every import in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from utils import x` imports module utils.x when there is one; else names of utils.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("utils"):
                found.append((name, id(node) in top))
    return found


PLATFORM = "utils.platform"
"""The one module that picks implementations by platform (its imports inside functions are the picks)."""
FACTS = {"utils.platform.runtime", "utils.platform.environment"}
"""The rest of the ``utils.platform`` package: the facts of where the code runs, which every layer may ask for
(``utils.platform.environment`` is the lower half of ``utils.platform.runtime``)."""
BASE = FACTS | {
    "utils.config", "utils.parameters", "utils.project", "utils.progress", "utils.http_server", "utils.lakehouse",
    "utils.ui", "utils.verdict", "utils.wheel_tasks", "utils.plantly_columns", "utils.lakehouse_errors", "utils.lakehouse_types",
    "utils.local.engine", "utils.local.jvm", "utils.local.catalog",
}
"""The bottom layer: what the stand-ins and the platform's adapters may import (and it imports only itself)."""
ADAPTERS = {"utils.serving", "utils.deployment_triggers", "utils.data_profiling", "utils.lakebase"}
"""What ``utils.platform`` builds on Databricks: Databricks' services behind the platform's picks."""


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _top in _imports(path):
            # a module's own package __init__ runs first anyway (utils.platform's eagerly imports only its runtime)
            if target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def test_utils_has_no_import_cycles() -> None:
    """Every import counts, inside functions too, the platform's picks included: a cycle hidden in a function is
    still a tangle."""
    assert _cycles(_graph()) == []


def test_utils_never_imports_the_developer_commands() -> None:
    """``tools`` (``make demo``'s runner, the Databricks smoke run) drives the lifecycle from outside: a notebook, a job
    or the wheel on Databricks imports ``utils`` alone, so ``utils`` importing ``tools`` would break there."""
    importers = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0]
        if any(name == "tools" or name.startswith("tools.") for name in names):
            importers[module] = path
    assert importers == {}


def _outside(modules: set[str], allowed: set[str]) -> dict[str, list[str]]:
    graph = _graph()
    return {m: sorted(graph[m] - allowed) for m in sorted(modules) if graph[m] - allowed}


def test_the_base_imports_only_the_base() -> None:
    assert BASE <= set(MODULES) | {"utils.project"}
    assert _outside(BASE & set(MODULES), BASE) == {}


def test_the_local_stand_ins_import_only_the_base_and_one_another() -> None:
    """Never ``utils.platform`` nor a lifecycle module: a stand-in runs lifecycle code the way Databricks runs it
    (the deployment job's task through its wheel entry point) and reads the rest back from MLflow."""
    local = {m for m in MODULES if m.startswith("utils.local")}
    assert _outside(local, BASE | local) == {}


def test_the_platform_picks_adapters_and_stand_ins_built_on_the_base() -> None:
    """At import time the platform needs only the base; its picks import Databricks' adapters or the stand-ins,
    and the adapters import only the base, so nothing the platform picks can need the platform back."""
    eager = {t for t, top in _imports(MODULES[PLATFORM]) if top}
    assert eager <= BASE, eager
    local = {m for m in MODULES if m.startswith("utils.local")}
    assert _outside({PLATFORM}, BASE | ADAPTERS | local) == {}
    assert _outside(ADAPTERS, BASE) == {}


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def test_only_the_platform_asks_where_it_runs() -> None:
    """One code path: only the ``utils.platform`` package asks; every other module gets its pick (a client, a
    backend, a path), never branches. The package is its picks and the facts, nothing else."""
    package = {m for m in MODULES if m == PLATFORM or m.startswith(PLATFORM + ".")}
    assert package == FACTS | {PLATFORM}
    asking = {module: _calls(path, "is_databricks") for module, path in MODULES.items() if module not in package}
    assert {m: lines for m, lines in asking.items() if lines} == {}
    for module in package:
        assert _calls(MODULES[module], "is_databricks"), f"the check finds the calls in {module}"


def test_lifecycle_modules_do_not_need_the_local_stand_ins_to_import() -> None:
    """Only calls that run off Databricks reach into ``utils.local`` (a lazy import inside them)."""
    eager = {
        module: sorted(t for t, top in _imports(path) if top and t.startswith("utils.local"))
        for module, path in MODULES.items()
        if not module.startswith("utils.local")
    }
    assert {m: t for m, t in eager.items() if t} == {}


def test_the_local_stand_ins_live_in_utils_local() -> None:
    """What has no Databricks counterpart to run on it is in the local room, nowhere else."""
    local = {m for m in MODULES if m.startswith("utils.local.")}
    assert {"utils.local.jvm", "utils.local.catalog", "utils.local.feature_store", "utils.local.feature_spec",
            "utils.local.online_store", "utils.local.endpoints", "utils.local.webhook_inbox"} <= local
    for module, path in MODULES.items():
        if module.startswith("utils.local"):
            continue
        source = path.read_text(encoding="utf-8")
        for marker in ("class LocalFeatureEngineeringClient", "class SqliteOnlineStore", "class LocalEndpoint",
                       "class LocalWebhookInbox"):
            assert marker not in source, f"{module} defines {marker.split()[1]}: it belongs in utils/local"


def test_the_served_model_bundle_holds_every_module_its_files_import(tmp_path: Path) -> None:
    """A logged feature model ships ``_BUNDLED_MODULES`` as its code; where the project is not installed (a
    serving container) a module they import and the bundle lacks fails the model's load. ``utils.platform``
    ships as an empty ``__init__`` (its picks would bring in every backend), so none may import its names."""
    from utils.local.feature_models import _BUNDLED_MODULES, _bundle_code

    bundled = {_module_name(UTILS / m) for m in _BUNDLED_MODULES}
    assert PLATFORM not in bundled
    missing = {m: sorted({t for t, _top in _imports(MODULES[m])} - bundled) for m in sorted(bundled)}
    assert {m: t for m, t in missing.items() if t} == {}
    code = _bundle_code(tmp_path / "code")
    assert [d for d in [code, *code.rglob("*")] if d.is_dir() and not (d / "__init__.py").is_file()] == []
