"""Run an entry point of the installed wheel in this process, as Databricks' launcher runs a ``python_wheel_task``.

``sys.argv = [package_name, *parameters]``, the entry point looked up in the distribution's metadata
(``importlib.metadata``), loaded and called with no arguments, its return value ignored; ``SystemExit`` gives the
exit status (:func:`run_wheel_task`). :func:`entry_point_for` finds the console script that calls a given function
(``utils.deployment_job:cli``), whatever the distribution and the script are named. The local job runner
(``utils.local.job_runner``), the local deployment job's receiver and the deployment triggers run wheel tasks
through it. Imports nothing from ``utils``; nothing happens at import time.
"""

from __future__ import annotations

import sys
from typing import Any

DEPLOYMENT_JOB = "utils.deployment_job:cli"
"""The object of the wheel's deployment-job console script (``[project.scripts]`` in pyproject.toml)."""


def _exit_status(code: object) -> int:
    """``SystemExit.code`` as an exit status: None is 0, an int itself, anything else (a message) 1."""
    if code is None or isinstance(code, int):
        return int(code or 0)
    return 1


def entry_point(package_name: str, name: str) -> Any:
    """The installed distribution ``package_name``'s entry point ``name`` (not loaded).

    Raises ``ImportError`` naming the fix when the distribution is not installed or has no such entry point.
    """
    from importlib import metadata

    try:
        found = [ep for ep in metadata.distribution(package_name).entry_points if ep.name == name]
    except metadata.PackageNotFoundError:
        raise ImportError(f"package {package_name!r} is not installed: install the project (make install)") from None
    if not found:
        raise ImportError(f"entry point {name!r} not found in {package_name!r}: declare it in [project.scripts] of "
                          "pyproject.toml and reinstall the project (make install)")
    return found[0]


def run_wheel_task(package_name: str, name: str, parameters: list[str]) -> int:
    """Call a ``python_wheel_task``'s entry point as Databricks does; returns its exit status.

    ``sys.argv`` is ``[package_name, *parameters]`` during the call; it and ``os.environ`` are put back after
    it, as the task's own process ends on Databricks. The entry point's return value is ignored, ``SystemExit``
    gives the status and any other exception propagates.
    """
    import os

    function = entry_point(package_name, name).load()
    saved_argv, saved_environ = sys.argv[:], dict(os.environ)
    sys.argv = [package_name, *parameters]
    try:
        function()
    except SystemExit as exc:
        return _exit_status(exc.code)
    finally:  # only the keys the task changed: other threads (a router, MLflow's async logging) never see it empty
        sys.argv = saved_argv
        for key in [k for k in os.environ if k not in saved_environ]:
            del os.environ[key]
        os.environ.update({k: v for k, v in saved_environ.items() if os.environ.get(k) != v})
    return 0


def entry_point_for(target: str) -> tuple[str, str]:
    """``(distribution, entry point)`` of the installed console script whose object is ``target`` (``module:function``).

    Raises ``ImportError`` naming the fix when no installed distribution declares one.
    """
    from importlib import metadata

    for ep in metadata.entry_points(group="console_scripts"):
        if ep.value.replace(" ", "") == target and ep.dist is not None:
            return ep.dist.name, ep.name
    raise ImportError(f"no installed console script calls {target}: declare it in [project.scripts] of pyproject.toml "
                      "and reinstall the project (make install)")


def run_entry_point(target: str, parameters: list[str]) -> int:
    """Run the wheel's console script calling ``target`` with ``parameters`` (:func:`run_wheel_task`); its exit status."""
    return run_wheel_task(*entry_point_for(target), parameters)


def run_deployment_task(task: str, model_name: str, version: str | int) -> int:
    """Run task ``task`` (``evaluation``, ``approval``, ``deployment``) of the deployment job on one model version, here,
    through the wheel's entry point (:data:`DEPLOYMENT_JOB`) as the job's ``python_wheel_task`` runs it; its exit status."""
    return run_entry_point(DEPLOYMENT_JOB, [task, "--model-name", model_name, "--model-version", str(version)])
