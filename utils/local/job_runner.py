"""The local job runner: runs the bundle's Python tasks (``resources/*.yml``) the way Lakeflow Jobs runs them.

A ``spark_python_task`` is not run as ``python file.py``: Databricks reads the file and runs
``exec(compile(source, path, "exec"))`` in a fresh namespace whose ``__name__`` is ``"__main__"``, with
no ``__file__`` and the parameters as ``sys.argv[1:]``; so does :func:`run_script_task`, with the
repository root off ``sys.path``. A script that looks for itself (``__file__``) fails here as it fails there.

A ``python_wheel_task`` calls an entry point of the installed wheel as Databricks' launcher does:
``sys.argv = [package_name, *parameters]``, the entry point looked up in the distribution's metadata,
loaded and called with no arguments, its return value ignored (:func:`run_wheel_task`, ``utils.wheel_tasks``'s).
A task fails when it raises, ``SystemExit`` with a non-zero status included.

:func:`run_job` runs a whole job's tasks in their order, a line each. Notebook tasks are not run here
(``python -m tools.runner`` runs the notebooks, in the lifecycle job's order).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utils.platform.runtime import REPO_ROOT
from utils.wheel_tasks import _exit_status, entry_point, run_wheel_task  # noqa: F401 - re-exported: the wheel tasks' runner

PYTHON_TASKS = ("spark_python_task", "python_wheel_task")


class TaskFailed(RuntimeError):
    """A task ended with an exception or a non-zero exit status; the message names the task and the status."""


def bundle_jobs(root: Path = REPO_ROOT) -> dict[str, tuple[dict[str, Any], Path]]:
    """Job key -> (job spec, the YAML file defining it) of every job in the bundle's ``resources/*.yml``."""
    import yaml

    jobs: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in sorted((root / "resources").glob("*.yml")):
        for name, spec in (yaml.safe_load(path.read_text()) or {}).get("resources", {}).get("jobs", {}).items():
            jobs[name] = (spec, path)
    return jobs


def task_parameters(job: dict[str, Any], task: dict[str, Any], job_parameters: dict[str, str] | None = None,
                    references: dict[str, str] | None = None) -> list[str]:
    """The command-line parameters ``task`` of ``job`` gets, as the job's run resolves them.

    ``{{job.parameters.<name>}}`` is the job parameter's value: ``job_parameters`` over the job's defaults.
    A bundle reference (``${var.catalog}``, ``${resources.jobs.<key>.id}``) is filled at deploy time;
    here it is ``references[<reference>]``, else ``""`` (the options then fall back to the local config).
    """
    refs = references or {}
    values = {p["name"]: str(p.get("default", "")) for p in job.get("parameters", [])}
    values.update({k: str(v) for k, v in (job_parameters or {}).items()})

    def resolve(text: str) -> str:
        text = re.sub(r"\$\{([^}]+)\}", lambda m: refs.get(m.group(1), ""), text)
        return re.sub(r"\{\{\s*job\.parameters\.([A-Za-z0-9_]+)\s*\}\}", lambda m: resolve(values.get(m.group(1), "")),
                      text)

    kind = next(k for k in PYTHON_TASKS if k in task)
    return [resolve(str(a)) for a in task[kind].get("parameters", [])]


def run_script_task(python_file: Path, parameters: list[str]) -> int:
    """Run a ``spark_python_task``'s file as Databricks does; returns its exit status (0 unless it exits otherwise).

    The source is compiled and executed in a namespace holding only ``__name__ = "__main__"`` (no ``__file__``),
    ``sys.argv`` is ``[python_file, *parameters]`` and the repository root is not on ``sys.path``; both are
    restored afterwards. An exception the script raises propagates (``NameError`` for ``__file__``).
    """
    path = Path(python_file)
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(path), *parameters]
    sys.path[:] = [p for p in sys.path if Path(os.path.abspath(p or os.curdir)) != REPO_ROOT]
    try:
        exec(code, {"__name__": "__main__"})  # noqa: S102 - the point: how Databricks runs a script task
    except SystemExit as exc:
        return _exit_status(exc.code)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def run_task(job_name: str, task_key: str, job_parameters: dict[str, str] | None = None,
             references: dict[str, str] | None = None, root: Path = REPO_ROOT,
             parameters: list[str] | None = None) -> None:
    """Run task ``task_key`` of the bundle's job ``job_name`` with its resolved parameters (or ``parameters``).

    Raises ``TaskFailed`` when it exits with a non-zero status, ``KeyError`` for an unknown job or task and
    ``NotImplementedError`` for a task that is not a Python script or wheel task.
    """
    job, defined_in = bundle_jobs(root)[job_name]
    task = next((t for t in job["tasks"] if t["task_key"] == task_key), None)
    if task is None:
        raise KeyError(f"job {job_name!r} has no task {task_key!r}: its tasks are {[t['task_key'] for t in job['tasks']]}")
    args = task_parameters(job, task, job_parameters, references) if parameters is None else parameters
    if "spark_python_task" in task:
        status = run_script_task(defined_in.parent / task["spark_python_task"]["python_file"], args)
    elif "python_wheel_task" in task:
        wheel = task["python_wheel_task"]
        status = run_wheel_task(wheel["package_name"], wheel["entry_point"], args)
    else:
        raise NotImplementedError(f"task {task_key!r} of {job_name!r} is not a Python task: run notebooks with "
                                  "python -m tools.runner")
    if status:
        raise TaskFailed(f"task {task_key!r} of job {job_name!r} failed with exit status {status}")


def run_job(job_name: str, job_parameters: dict[str, str] | None = None, references: dict[str, str] | None = None,
            root: Path = REPO_ROOT, say: Callable[[str], None] = print) -> None:
    """Run every task of the bundle's job ``job_name`` as a run of it does: in order, each after those it depends on,
    a line each (``evaluation: SUCCESS in 41 s``); the first failure ends the run, its later tasks never start.

    Raises ``TaskFailed`` naming the failed task (``NotImplementedError`` for a job with notebook tasks).
    """
    job, _ = bundle_jobs(root)[job_name]
    done: set[str] = set()
    for task in job["tasks"]:
        key = task["task_key"]
        waiting = {d["task_key"] for d in task.get("depends_on", [])} - done
        if waiting:
            raise TaskFailed(f"task {key!r} of job {job_name!r} depends on {sorted(waiting)}, listed after it")
        start = time.monotonic()
        try:
            run_task(job_name, key, job_parameters, references, root)
        except TaskFailed:
            say(f"  {key}: FAILED after {time.monotonic() - start:.0f} s")
            raise
        say(f"  {key}: SUCCESS in {time.monotonic() - start:.0f} s")
        done.add(key)
