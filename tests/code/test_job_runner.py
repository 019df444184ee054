"""The local job runner runs a task as Lakeflow Jobs does, so a task that breaks there breaks here (review R1).

A ``spark_python_task`` is executed by ``exec(compile(...))`` with no ``__file__`` and the repository root
off ``sys.path``; a ``python_wheel_task`` calls the installed wheel's entry point with ``sys.argv`` set and
its return value ignored. The bundle's own tasks run through it in ``test_retraining_job.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from utils import wheel_tasks
from utils.local import job_runner
from utils.platform import REPO_ROOT
from utils.project import DISTRIBUTION

FINDS_ITSELF = '''
if __name__ == "__main__":  # the deployment and retraining jobs' scripts began so before they were wheel tasks
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(_here))
'''


def test_a_script_task_runs_with_no___file___and_the_repository_off_sys_path(tmp_path: Path) -> None:
    script = tmp_path / "task.py"
    script.write_text("import sys\n"
                      "seen = {'names': sorted(k for k in globals() if k.startswith('__') and k != '__builtins__'),\n"
                      "        'argv': list(sys.argv), 'path': list(sys.path)}\n"
                      "sys.modules['_job_runner_seen'] = seen\n")
    argv, path = sys.argv[:], sys.path[:]
    assert job_runner.run_script_task(script, ["retrain", "--seed", "5"]) == 0
    seen: Any = sys.modules.pop("_job_runner_seen")
    assert seen["names"] == ["__name__"], "the namespace Databricks gives a script: __name__ only, no __file__"
    assert seen["argv"] == [str(script), "retrain", "--seed", "5"]
    assert REPO_ROOT not in {Path(os.path.abspath(p or os.curdir)) for p in seen["path"]}
    assert (sys.argv, sys.path) == (argv, path), "restored after the task"


def test_a_script_that_finds_itself_by___file___fails_as_on_databricks(tmp_path: Path) -> None:
    """The old job scripts' first lines: a NameError on Databricks, and now here too (a subprocess hid it)."""
    script = tmp_path / "deployment_job.py"
    script.write_text(FINDS_ITSELF)
    with pytest.raises(NameError, match="__file__"):
        job_runner.run_script_task(script, ["evaluation"])


@pytest.mark.parametrize(("body", "status"), [("pass", 0), ("import sys; sys.exit(0)", 0),
                                              ("import sys; sys.exit(3)", 3), ("raise SystemExit('refused')", 1)])
def test_a_script_task_exit_status(tmp_path: Path, body: str, status: int) -> None:
    script = tmp_path / "task.py"
    script.write_text(body + "\n")
    assert job_runner.run_script_task(script, []) == status


def test_a_wheel_task_gets_its_parameters_as_sys_argv_and_its_return_value_is_ignored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def entry() -> int:
        seen.append(list(sys.argv))
        return 1  # a console script would exit 1; Databricks' wheel launcher ignores it

    monkeypatch.setattr(wheel_tasks, "entry_point", lambda package, name: SimpleNamespace(load=lambda: entry))
    argv = sys.argv[:]
    assert job_runner.run_wheel_task(DISTRIBUTION, "some-job", ["a", "--b", "c"]) == 0
    assert seen == [[DISTRIBUTION, "a", "--b", "c"]] and sys.argv == argv


def test_a_missing_entry_point_names_the_fix() -> None:
    with pytest.raises(ImportError, match=r"\[project.scripts\]"):
        job_runner.entry_point(DISTRIBUTION, "no-such-job")


def test_a_refused_deployment_task_fails_its_job_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval task refuses an unapproved version: the wheel task must fail, so deployment does not run."""
    from utils import deployment_job, platform

    def approval(model_name: str, model_version: str) -> None:
        raise deployment_job.ApprovalPending(f"version {model_version} of {model_name} is not approved")

    monkeypatch.setitem(deployment_job.TASKS, "approval", approval)
    monkeypatch.setattr(platform, "get_spark", lambda: None)
    monkeypatch.setattr(platform, "configure_mlflow", lambda: "")
    with pytest.raises(job_runner.TaskFailed, match="exit status 1"):
        job_runner.run_task("deployment", "approval", {"model_name": "main.ml.recommender", "model_version": "3"})


def test_task_parameters_resolve_job_parameters_and_bundle_references() -> None:
    job, _ = job_runner.bundle_jobs()["retrain"]
    (task,) = job["tasks"]
    args = job_runner.task_parameters(job, task, {"reason": "2 alerts"},
                                      references={"resources.jobs.deployment.id": "7"})
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert args[0] == "retrain" and options["--reason"] == "2 alerts" and options["--seed"] == "42"
    assert options["--deployment-job-id"] == "7"
    assert options["--catalog"] == "", "a deploy-time value not given locally: the local config applies"


def test_a_wheel_task_leaves_no_environment_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Databricks a task's process ends with it: the MLOPS_<FIELD> its parameters set do not outlive it here."""
    import os

    from utils import deployment_job, platform

    monkeypatch.setitem(deployment_job.TASKS, "approval", lambda model_name, model_version: None)
    monkeypatch.setattr(platform, "get_spark", lambda: None)
    monkeypatch.setattr(platform, "configure_mlflow", lambda: "")
    before = dict(os.environ)
    job_runner.run_task("deployment", "approval", {"model_name": "elsewhere.ml.recommender", "model_version": "3"})
    assert dict(os.environ) == before


def test_a_wheel_task_puts_back_only_what_it_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a live notebook (the evaluation task by hand), the environment is never emptied, even for a moment:
    the router's threads and MLflow's async logging read it meanwhile."""
    import os

    from utils import deployment_job, platform

    def task(model_name: str, model_version: str) -> None:
        os.environ["MLOPS_TASK_ONLY"] = "1"
        os.environ["MLOPS_SEED"] = "7"

    def never(self: object) -> None:
        raise AssertionError("os.environ was cleared")

    monkeypatch.setitem(deployment_job.TASKS, "approval", task)
    monkeypatch.setattr(platform, "get_spark", lambda: None)
    monkeypatch.setattr(platform, "configure_mlflow", lambda: "")
    monkeypatch.setenv("MLOPS_SEED", "42")
    monkeypatch.setattr(type(os.environ), "clear", never)
    job_runner.run_task("deployment", "approval", {"model_name": "elsewhere.ml.recommender", "model_version": "3"})
    assert os.environ["MLOPS_SEED"] == "42" and "MLOPS_TASK_ONLY" not in os.environ
