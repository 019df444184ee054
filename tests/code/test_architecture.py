"""The package's shape: no import cycles, and the local stand-ins are a room of their own.

``utils/local`` holds what exists only so the notebooks run off Databricks (the JVM install, the
catalog alias, the feature-store and online-store twins, local model endpoints, the webhook inbox).
A team that runs only on Databricks deletes it: no lifecycle module may need it at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

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


COMPOSITION_ROOT = "utils.platform"
"""The one module that picks implementations by platform. Its imports inside functions are the picks
(made when called); they do not count as dependencies. At import time it may import leaf modules only."""


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, top in _imports(path):
            if module == COMPOSITION_ROOT and not top:
                continue
            # a module's own package __init__ runs first anyway, and utils/__init__ imports nothing
            if target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_utils_has_no_import_cycles() -> None:
    """Function-level imports count too: a cycle hidden in a function is still a tangle."""
    assert _cycles(_graph()) == []


def test_the_platform_imports_only_leaf_modules_at_import_time() -> None:
    """What the platform picks may use its paths, so it must not depend on them when it is imported."""
    eager = {t for t, top in _imports(MODULES[COMPOSITION_ROOT]) if top}
    assert eager <= {"utils.parameters"} and not any(_imports(MODULES[t]) for t in eager), eager


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def test_only_the_platform_asks_where_it_runs() -> None:
    """One code path: every other module gets the platform's pick (a client, a backend, a path), never branches."""
    asking = {module: _calls(path, "is_databricks") for module, path in MODULES.items() if module != COMPOSITION_ROOT}
    assert {m: lines for m, lines in asking.items() if lines} == {}
    assert _calls(MODULES[COMPOSITION_ROOT], "is_databricks"), "the check finds calls where there are some"


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
