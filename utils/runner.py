"""Run the lifecycle notebooks headless, in order, as `make demo` does.

``python -m utils.runner --rows 20000 --output executed`` executes every ``notebooks/NN_*.ipynb``
with papermill (parameters injected into each notebook's ``parameters`` cell), writes the executed
copies with outputs to ``--output`` and an HTML rendering next to them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from utils.parameters import ParameterError, cast_param
from utils.platform import REPO_ROOT


def lifecycle_notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_stage.ipynb``) in run order."""
    folder = folder or REPO_ROOT / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def local_cells_only(nb: dict) -> dict:
    """The notebook without its Databricks-only cells (tagged ``nbval-skip``, e.g. ``%pip`` + restart)."""
    cells = [c for c in nb["cells"] if "nbval-skip" not in c.get("metadata", {}).get("tags", [])]
    return {**nb, "cells": cells}


def run_notebook(path: Path, output_dir: Path, parameters: dict[str, object], timeout_s: int = 1800) -> Path:
    """Execute one notebook with papermill; returns the executed copy's path."""
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / path.name
    source = output_dir / f".{path.stem}.input.ipynb"
    source.write_text(json.dumps(local_cells_only(json.loads(path.read_text()))), encoding="utf-8")
    papermill.execute_notebook(
        str(source),
        str(out),
        parameters=parameters,
        cwd=str(path.parent),
        kernel_name="python3",
        execution_timeout=timeout_s,
        progress_bar=False,
        report_mode=False,
    )
    source.unlink(missing_ok=True)
    return out


def render_html(executed: Path) -> Path:
    """HTML rendering of an executed notebook, so results can be read without Jupyter."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def declared_parameters(notebooks: list[Path]) -> dict[str, tuple[type, Any]]:
    """Parameter name -> (declared type, default) over the notebooks' ``parameters`` cells (papermill reads them).

    Raises ``ValueError`` when a default is not a literal or two notebooks declare one name with different types.
    """
    import papermill

    declared: dict[str, tuple[type, Any]] = {}
    for nb in notebooks:
        for name, spec in papermill.inspect_notebook(str(nb)).items():
            try:
                default = ast.literal_eval(spec["default"])
            except (ValueError, SyntaxError):
                raise ValueError(f"{nb.name}: parameter {name!r} defaults to {spec['default']!r}, not a literal: "
                                 "a parameters cell declares each parameter's type by a literal default") from None
            if name in declared and declared[name][0] is not type(default):
                raise ValueError(f"{nb.name}: parameter {name!r} is declared {type(default).__name__}, "
                                 f"elsewhere {declared[name][0].__name__}: declare it alike in every notebook")
            declared.setdefault(name, (type(default), default))
    return declared


def resolve_parameters(flags: dict[str, str | None], declared: dict[str, tuple[type, Any]],
                       environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The value of each command-line parameter (``flags``: name -> text given, or None), checked against ``MLOPS_<NAME>``.

    Every ``MLOPS_<NAME>`` of a declared parameter must parse as its declared type, else ``ParameterError``
    (naming the parameter, the variable and the value) before any notebook runs. A flag wins over the
    default; a variable set alongside a flag must agree with it (a disagreement is refused rather than one
    silently ignored); without a flag the variable, then the notebook's default, gives the value.
    Returns name -> value for the names in ``flags``.
    """
    environ = dict(os.environ if environ is None else environ)
    problems, from_env = [], {}
    for name, (kind, _) in declared.items():
        variable = f"MLOPS_{name.upper()}"
        if variable in environ:
            try:
                from_env[name] = cast_param(name, environ[variable], kind, f"the environment variable {variable}")
            except ParameterError as exc:
                problems.append(str(exc))
    values = {}
    for name, text in flags.items():
        kind, default = declared.get(name, (str, None))
        variable = f"MLOPS_{name.upper()}"
        if text is None:
            values[name] = from_env.get(name, default)
            continue
        try:
            values[name] = cast_param(name, text, kind, f"--{name}")
        except ParameterError as exc:
            problems.append(str(exc))
            continue
        if name in from_env and from_env[name] != values[name]:
            problems.append(f"parameter {name!r}: --{name} {text} and {variable}={environ[variable]} disagree: "
                            f"unset {variable} or pass the same value (with make: make demo {name.upper()}=...)")
    if problems:
        raise ParameterError("; ".join(problems))
    return values


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns a process exit code (2 for a bad parameter)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", help="impressions to generate (default: MLOPS_ROWS, else the notebooks' 20000)")
    ap.add_argument("--seed", help="random seed (default: MLOPS_SEED, else the notebooks' 42)")
    ap.add_argument("--output", type=Path, default=REPO_ROOT / "executed")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes to run (e.g. 00 01)")
    ap.add_argument("--timings", type=Path, help="also write {notebook: seconds} as JSON here")
    args = ap.parse_args(argv)
    try:
        declared = declared_parameters(lifecycle_notebooks())
        params = resolve_parameters({"rows": args.rows, "seed": args.seed}, declared)
    except (ParameterError, ValueError) as exc:
        print(f"bad parameter: {exc}", file=sys.stderr)
        return 2
    # get_param() prefers MLOPS_<NAME> to the injected parameter: set it to the value resolved here.
    os.environ["MLOPS_ROWS"] = str(params["rows"])
    os.environ["MLOPS_SEED"] = str(params["seed"])
    notebooks = lifecycle_notebooks()
    if args.only:
        notebooks = [p for p in notebooks if any(p.name.startswith(o) for o in args.only)]
    timings: list[tuple[str, float]] = []
    for nb in notebooks:
        start = time.perf_counter()
        print(f"running {nb.name} ...", flush=True)
        try:
            out = run_notebook(nb, args.output, params)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(f"FAILED {nb.name}: {exc}", file=sys.stderr)
            print(f"the partially executed copy is in {args.output / nb.name}", file=sys.stderr)
            return 1
        render_html(out)
        timings.append((nb.name, time.perf_counter() - start))
        print(f"  done in {timings[-1][1]:.1f} s -> {out}", flush=True)
    total = sum(t for _, t in timings)
    print(f"{len(timings)} notebooks in {total:.1f} s")
    if args.timings:
        args.timings.write_text(json.dumps(dict(timings), indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
