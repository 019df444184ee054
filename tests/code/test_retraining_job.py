"""The retraining job's task: retrain, register inside the deployment trigger, hand over to the deployment job.

The pieces it joins are tested where they live (``utils.training.develop`` in notebooks 03 and 06, the
triggers in ``test_deployment_webhooks.py`` and ``test_workspace_calls.py``); here, that the task joins them
as the bundle's job expects: the job parameters reach the config, the version is registered inside the
trigger with its reason, a linked deployment job is left to judge it, and without one the verdict is awaited.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from utils import retraining
from utils.config import Config

MODEL = Config().model_base_name  # <project>_recommender


class _Trigger:
    def __init__(self, model_name: str, job_id: str) -> None:
        self.model_name, self.job_id, self.via = model_name, job_id, "deployment job" if job_id else "notebook"
        self.inside = False
        self.judged: list[str] = []

    def __enter__(self) -> _Trigger:
        self.inside = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.inside = False

    def verdict(self, version: str) -> Any:
        self.judged.append(version)
        return SimpleNamespace(passed=False, summary=lambda: f"gate FAILED for version {version}")


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from utils import platform, registry, training

    seen: dict[str, Any] = {"registered": []}

    def develop(**kwargs: Any) -> Any:
        seen["develop"] = kwargs
        return SimpleNamespace(run_id="run-1"), "runs:/run-1/model", None

    def trigger(model_name: str, job_id: str = "") -> _Trigger:
        seen["trigger"] = _Trigger(model_name, job_id)
        return seen["trigger"]

    def register(uri: str, name: str, description: str, tags: dict[str, str]) -> Any:
        assert seen["trigger"].inside, "registered outside the trigger: nothing would judge the version"
        seen["registered"].append((uri, name, description, tags))
        return SimpleNamespace(version=7)

    monkeypatch.setattr(training, "develop", develop)
    monkeypatch.setattr(platform, "deployment_trigger", trigger)
    monkeypatch.setattr(registry, "register", register)
    monkeypatch.setattr(platform, "get_spark", lambda: None)
    monkeypatch.setattr(platform, "configure_mlflow", lambda: "")
    return seen


def test_a_linked_deployment_job_judges_the_version(wired: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLOPS_CATALOG", "MLOPS_SCHEMA"):
        monkeypatch.setenv(name, "")  # main() sets them from the job parameters; monkeypatch restores them
    assert retraining.main(["retrain", "--reason", "3 alerts (psi:price)", "--seed", "5", "--deployment-job-id", "99",
                            "--catalog", "workspace", "--schema", "ada"]) == 0
    assert wired["develop"] == {"family": None, "seed": 5, "run_name": "retrain", "cfg": wired["develop"]["cfg"],
                                "test_fraction": 0.1}
    assert wired["trigger"].model_name == f"workspace.ada.{MODEL}" and wired["trigger"].job_id == "99"
    ((uri, name, description, tags),) = wired["registered"]
    assert (uri, name) == ("runs:/run-1/model", f"workspace.ada.{MODEL}")
    assert tags == {"trigger": "monitoring", "reason": "3 alerts (psi:price)", "run_id": "run-1"}
    assert "3 alerts" in description
    assert wired["trigger"].judged == [], "the deployment job judges; the retraining job does not wait for it"


def test_without_a_deployment_job_the_verdict_is_awaited(wired: dict[str, Any]) -> None:
    outcome = retraining.retrain_task("", seed=1)
    assert wired["trigger"].judged == ["7"]
    assert outcome["gate_passed"] is False and outcome["via"] == "notebook"
    assert outcome["reason"] == "started by hand" and outcome["version"] == "7"
    assert "FAILED" in outcome["gate_summary"]


def test_the_bundle_runs_the_retraining_job_through_the_wheel_entry_point(wired: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's python_wheel_task, run as Databricks runs it: the installed wheel's entry point, with the task's
    parameters resolved from resources/jobs.yml and the job parameters that start_retraining_job passes."""
    from utils.local import job_runner

    for name in ("MLOPS_CATALOG", "MLOPS_SCHEMA", "MLOPS_ENDPOINT", "MLOPS_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, "")  # main() sets them from the job parameters; monkeypatch restores them
    job_runner.run_task("retrain", "retrain", {"reason": "2 alerts (psi:price)", "catalog": "workspace",
                                                       "schema": "ada"},
                        references={"resources.jobs.deployment.id": "99"})
    assert wired["develop"]["seed"] == 42, "the job parameter's default"
    assert wired["trigger"].model_name == f"workspace.ada.{MODEL}" and wired["trigger"].job_id == "99"
    ((_, _, _, tags),) = wired["registered"]
    assert tags["reason"] == "2 alerts (psi:price)"
    assert wired["trigger"].judged == []


@pytest.mark.parametrize(("lakebase", "enabled"), [("true", True), (None, False)])
def test_the_retraining_jobs_lakebase_parameter_reaches_its_process(
        wired: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lakebase: str | None, enabled: bool) -> None:
    """With Lakebase on, the job's versions are logged with their feature lookups as the lifecycle's are: its
    ``lakebase`` parameter (the bundle's default "false" when none is given) is ``MLOPS_LAKEBASE`` when it trains."""
    import os

    from utils import platform, training
    from utils.local import job_runner

    develop = training.develop

    def develop_seeing_lakebase(**kwargs: Any) -> Any:
        wired["lakebase"] = (os.environ.get("MLOPS_LAKEBASE"), platform.lakebase_enabled())
        return develop(**kwargs)

    monkeypatch.setattr(training, "develop", develop_seeing_lakebase)
    for name in ("MLOPS_CATALOG", "MLOPS_SCHEMA", "MLOPS_ENDPOINT", "MLOPS_EXPERIMENT_NAME", "MLOPS_LAKEBASE"):
        monkeypatch.setenv(name, "")  # main() sets them from the job parameters; monkeypatch restores them
    given = {"catalog": "workspace", "schema": "ada"} | ({"lakebase": lakebase} if lakebase else {})
    job_runner.run_task("retrain", "retrain", given, references={"resources.jobs.deployment.id": "99"})
    assert wired["lakebase"] == (lakebase or "false", enabled)


@pytest.mark.parametrize(("job", "task"), [("retrain", "retrain"), ("deployment", "evaluation"),
                                           ("deployment", "approval"), ("deployment", "deployment")])
def test_each_python_task_of_the_bundle_imports_and_parses_its_options(
        job: str, task: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each task resolves to an installed entry point that imports and parses the job's options (``--help``)."""
    from utils.local import job_runner

    job_runner.run_task(job, task, parameters=["--help"])  # exits 0 after printing the usage
    usage = capsys.readouterr().out
    assert all(f"--{o}" in usage for o in ("catalog", "schema", "endpoint", "experiment-name")), usage
