"""Measure the house: how big `utils` is, how the notebooks teach, how long the README is, what imports what.

    python -m tests.measure_house          # the table, then the budgets and whether each holds

Every figure is counted the way the project's budgets are stated (DESIGN.md §3):
- ``utils``: physical lines of every ``.py`` file (docstrings and comments included), per module and in all;
  the longest function counts nested functions inside their parent.
- Notebooks: a *lesson cell* is a code cell that is not set-up (the ``sys.path`` / install cell, the
  ``parameters`` cell, the ``get_param`` cell) and not the ``## Checks`` cell. It *calls a platform API*
  when a call's root is one of :data:`PLATFORM_ROOTS` or a variable assigned from such a call (a Spark
  DataFrame, a streaming query, an MLflow client). ``utils`` names are the names a notebook imports from
  ``utils`` and uses outside its Checks.
- README: lines, and words per sentence over its prose (code blocks, tables and headings left out).
- Import cycles: strongly connected components of the module graph, every import counted, those
  inside functions too.
"""

from __future__ import annotations

import ast
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UTILS = REPO_ROOT / "utils"
TOOLS = REPO_ROOT / "tools"
"""The developer commands (``make demo``'s runner, the smoke run): outside ``utils`` and its budget, reported beside it."""

PLATFORM_ROOTS = frozenset({"spark", "DeltaTable", "F", "mlflow", "MlflowClient", "fe", "FeatureLookup",
                            "FeatureEngineeringClient", "dbutils", "WorkspaceClient"})
"""Names whose calls are the platform's own API (Spark, Delta, MLflow, Feature Engineering, the Databricks SDK)."""

BUDGET = {"utils_lines": 9000, "module_lines": 500, "function_lines": 60, "platform_share": 0.5,
          "utils_names": 15, "readme_lines": 150, "readme_words_per_sentence": 25.0, "cycles": 0}
"""The targets of DESIGN.md §3 and the README's own limits."""

LESSON_NOTEBOOKS = ("02", "03", "04", "05", "06")


# ------------------------------------------------------------------------------------------------ utils


def module_lines(folder: Path = UTILS) -> dict[str, int]:
    """Lines per module of ``folder`` (``utils``), keyed by path relative to the repository (``utils/platform/runtime.py``)."""
    return {str(p.relative_to(REPO_ROOT)): len(p.read_text(encoding="utf-8").splitlines())
            for p in sorted(folder.rglob("*.py"))}


def longest_functions(top: int = 5) -> list[tuple[int, str]]:
    """The ``top`` longest functions of ``utils`` as ``(lines, "path:line name")``, longest first.

    A function's lines run from its ``def`` (decorators excluded) to its last line; functions nested
    in it count inside it and are not listed on their own.
    """
    found: list[tuple[int, str]] = []
    for path in sorted(UTILS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack: list[tuple[ast.AST, str]] = [(node, "") for node in tree.body]
        while stack:
            node, owner = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{owner}{node.name}"
                found.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}"))
            elif isinstance(node, ast.ClassDef):
                stack.extend((child, f"{owner}{node.name}.") for child in node.body)
    return sorted(found, reverse=True)[:top]


# ------------------------------------------------------------------------------------------------ imports


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``utils`` module → the ``utils`` modules it imports, every import counted (inside functions too).

    ``from utils import x`` counts as importing module ``utils.x`` when there is one. A module's own
    parent packages are left out: Python runs them first anyway (at import time
    ``utils.platform``'s imports only its own runtime).
    """
    modules = {_module_name(p): p for p in sorted(UTILS.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name.startswith("utils") and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, each sorted (Tarjan, 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ------------------------------------------------------------------------------------------------ notebooks


@dataclass
class NotebookCount:
    """What an attendee meets in one notebook: lesson cells, how many call the platform, the ``utils`` names."""

    name: str
    lesson_cells: int
    platform_cells: int
    utils_names: list[str]

    @property
    def platform_share(self) -> float:
        return self.platform_cells / self.lesson_cells if self.lesson_cells else 0.0


def _call_root(func: ast.AST) -> str | None:
    while isinstance(func, (ast.Attribute, ast.Call, ast.Subscript)):
        func = func.func if isinstance(func, ast.Call) else func.value
    return func.id if isinstance(func, ast.Name) else None


def _code(source: str) -> ast.Module | None:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _is_setup(cell: dict, source: str) -> bool:
    return ("parameters" in cell.get("metadata", {}).get("tags", []) or "get_param(" in source
            or "install_on_databricks" in source or "sys.path.insert" in source)


def count_notebook(path: Path) -> NotebookCount:
    """Count ``path``'s lesson cells, those that call a platform API, and the ``utils`` names it uses."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    platform_vars = set(PLATFORM_ROOTS)
    helpers: set[str] = set()
    used: set[str] = set()
    lesson = platform = 0
    in_checks = False
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            in_checks = in_checks or bool(re.match(r"\s*##\s+Checks", source))
            continue
        tree = _code(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
                helpers.update(a.asname or a.name for a in node.names)
        calls_platform = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_root(node.func) in platform_vars - helpers:
                calls_platform = True
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.With)) and _assigns_from(node, platform_vars):
                platform_vars.update(_targets(node))
        if not in_checks:
            used.update(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in helpers)
            if not _is_setup(cell, source):
                lesson += 1
                platform += calls_platform
    return NotebookCount(path.stem, lesson, platform, sorted(used))


def _assigns_from(node: ast.AST, roots: set[str]) -> bool:
    values = [item.context_expr for item in node.items] if isinstance(node, ast.With) else [node.value]
    return any(isinstance(v, ast.Call) and _call_root(v.func) in roots for v in values if v is not None)


def _targets(node: ast.AST) -> set[str]:
    if isinstance(node, ast.With):
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
    elif isinstance(node, ast.Assign):
        targets = node.targets
    else:
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


# ------------------------------------------------------------------------------------------------ README


def readme_figures(path: Path | None = None) -> tuple[int, float, int]:
    """``(lines, mean words per sentence, longest sentence in words)`` of the README's prose.

    Prose is every line outside fenced code blocks that is not a table row or a heading; a sentence
    ends at ``.``, ``!`` or ``?`` followed by a space or the end of a paragraph.
    """
    text = (path or REPO_ROOT / "README.md").read_text(encoding="utf-8")
    prose: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not line.lstrip().startswith(("|", "#")):
            prose.append(line.strip())
    # a list item starts a paragraph of its own
    paragraphs = " ".join("\n" + line if re.match(r"(-|\*|\d+\.) ", line) else line or "\n"
                          for line in prose).split("\n")
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`*(\[])", p.strip())
                 if s.strip() and re.search(r"[A-Za-z]", s)]
    words = [len(re.findall(r"\S+", re.sub(r"^(-|\*|\d+\.) ", "", s))) for s in sentences]
    return len(text.splitlines()), (statistics.mean(words) if words else 0.0), max(words, default=0)


# ------------------------------------------------------------------------------------------------ report


def measure() -> dict[str, object]:
    """Every figure of the house, as a dict (see the module docstring for how each is counted)."""
    lines = module_lines()
    notebooks = [count_notebook(p) for p in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    readme_lines, words_per_sentence, longest_sentence = readme_figures()
    return {"module_lines": lines, "utils_lines": sum(lines.values()), "tools_lines": sum(module_lines(TOOLS).values()),
            "longest_functions": longest_functions(),
            "notebooks": notebooks, "readme_lines": readme_lines, "readme_words_per_sentence": words_per_sentence,
            "readme_longest_sentence": longest_sentence, "cycles": cycles(import_graph())}


def verdicts(figures: dict[str, object]) -> dict[str, tuple[str, bool]]:
    """Each budget of :data:`BUDGET` → (what was measured against it, whether it holds)."""
    lessons = [n for n in figures["notebooks"] if n.name[:2] in LESSON_NOTEBOOKS]
    biggest = max(figures["module_lines"].items(), key=lambda kv: kv[1])
    longest = figures["longest_functions"][0]
    weakest = min(lessons, key=lambda n: n.platform_share)
    most_names = max(lessons, key=lambda n: len(n.utils_names))
    return {
        "utils_lines": (f"{figures['utils_lines']} lines", figures["utils_lines"] <= BUDGET["utils_lines"]),
        "module_lines": (f"largest {biggest[0]} {biggest[1]}", biggest[1] <= BUDGET["module_lines"]),
        "function_lines": (f"longest {longest[1]} {longest[0]}", longest[0] <= BUDGET["function_lines"]),
        "platform_share": (f"lowest {weakest.name} {weakest.platform_share:.0%}",
                           weakest.platform_share >= BUDGET["platform_share"]),
        "utils_names": (f"most {most_names.name} {len(most_names.utils_names)}",
                        len(most_names.utils_names) <= BUDGET["utils_names"]),
        "readme_lines": (f"{figures['readme_lines']} lines", figures["readme_lines"] <= BUDGET["readme_lines"]),
        "readme_words_per_sentence": (f"{figures['readme_words_per_sentence']:.1f}",
                                      figures["readme_words_per_sentence"] <= BUDGET["readme_words_per_sentence"]),
        "cycles": (f"{len(figures['cycles'])} ({', '.join(str(len(c)) + ' modules' for c in figures['cycles']) or 'none'})",
                   len(figures["cycles"]) <= BUDGET["cycles"]),
    }


def report(figures: dict[str, object]) -> str:
    """The figures as plain text: modules over budget, longest functions, notebooks, README, cycles, budgets."""
    out = [f"utils: {figures['utils_lines']} lines in {len(figures['module_lines'])} modules"]
    out.append(f"tools (developer commands, outside the utils budget): {figures['tools_lines']} lines")
    over = {m: n for m, n in figures["module_lines"].items() if n > BUDGET["module_lines"]}
    out += [f"  {n:5d}  {m}" for m, n in sorted(over.items(), key=lambda kv: -kv[1])]
    out.append("longest functions:")
    out += [f"  {n:5d}  {where}" for n, where in figures["longest_functions"]]
    out.append("notebooks: lesson cells, calling the platform, utils names")
    for nb in figures["notebooks"]:
        out.append(f"  {nb.name:12s} {nb.lesson_cells:3d} {nb.platform_cells:3d} ({nb.platform_share:4.0%}) "
                   f"{len(nb.utils_names):3d}  {' '.join(nb.utils_names)}")
    out.append(f"README: {figures['readme_lines']} lines, {figures['readme_words_per_sentence']:.1f} words per "
               f"sentence, longest {figures['readme_longest_sentence']}")
    out += [f"cycle: {' '.join(c)}" for c in figures["cycles"]] or ["cycles: none"]
    out.append("budgets:")
    for name, (measured, holds) in verdicts(figures).items():
        out.append(f"  {'holds ' if holds else 'MISSED'} {name:26s} {measured}")
    return "\n".join(out)


if __name__ == "__main__":
    print(report(measure()))
