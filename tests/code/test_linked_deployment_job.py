"""A deployment job linked to the model, as Unity Catalog runs it: registration starts it (review R5, R12).

The workspace stand-in (``tests.databricks_workspace``) starts the linked job's run in a thread of its own for
every version MLflow's client registers, with the job parameters ``model_name`` and ``model_version``, and
lists its runs (``jobs.list_runs``) as the service does. The versions live in the local MLflow registry; the
link (``deployment_job_id``) and the job's runs live in the stand-in. The evaluation task here gates on the
small price model of ``test_registry``; approval refuses an unapproved version as the real task does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import mlflow
import pandas as pd
import pytest

from tests.code.test_registry import FEATURES, LABEL, eval_df, gate_kw, name, uris  # noqa: F401 - fixtures
from tests.code.test_workspace_calls import on_databricks, running, runtime_auth  # noqa: F401 - fixtures
from tests.databricks_workspace import (
    StandInWorkspace,
    TaskResult,
    registrations_reported,
)
from utils import deployment_job, gate, platform, registry
from utils import verdict as recorded
from utils.deployment_job import ApprovalPending, DeploymentJobFailed, JobTrigger
from utils.local.job_runner import bundle_jobs

JOB_ID = 4242


def _option(task: dict[str, Any], option: str) -> str:
    parameters = task["python_wheel_task"]["parameters"]
    return parameters[parameters.index(option) + 1]


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions the gate ran on, in order, whoever ran it."""
    seen: list[str] = []
    run_gate = gate.run_gate

    def counted(model_uri: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(model_uri.rsplit("/", 1)[1])
        return run_gate(model_uri, *args, **kwargs)

    monkeypatch.setattr(gate, "run_gate", counted)
    return seen


@pytest.fixture
def workspace(runtime_auth: StandInWorkspace, uris: dict[str, str], eval_df: pd.DataFrame,  # noqa: F811
              monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInWorkspace]:
    """On Databricks, with the bundle's deployment job in the workspace and registrations reported to it.

    The registry's versions, tags and aliases stay in the local MLflow store (``utils.registry`` and
    ``utils.verdict`` are pointed there); the model's link to the job goes through MLflow's Unity Catalog client to the stand-in.
    """
    monkeypatch.setattr(registry, "tracking_uri", lambda: mlflow.get_tracking_uri())
    monkeypatch.setattr(registry, "registry_uri", lambda: mlflow.get_registry_uri())
    monkeypatch.setattr(recorded, "tracking_uri", lambda: mlflow.get_tracking_uri())  # where the verdict is read back
    monkeypatch.setattr(recorded, "registry_uri", lambda: mlflow.get_registry_uri())
    monkeypatch.setenv("MLOPS_SCHEMA", f"ada_{uuid.uuid4().hex[:8]}")  # a model of its own per test
    runtime_auth.jobs[JOB_ID] = bundle_jobs()["deployment"][0]

    def tasks(task: dict[str, Any], ws: StandInWorkspace) -> TaskResult:
        model, version = _option(task, "--model-name"), _option(task, "--model-version")
        if task["task_key"] == "evaluation":
            gate.gate_and_set_challenger(model, version, eval_df, LABEL, **gate_kw())
            return TaskResult()
        try:
            deployment_job.TASKS[task["task_key"]](model, version)
        except ApprovalPending as exc:
            return TaskResult("FAILED", error=f"ApprovalPending: {exc}")
        return TaskResult()

    runtime_auth.task_runner = tasks
    with registrations_reported(runtime_auth):
        yield runtime_auth
    runtime_auth.join_runs()


def _runs_for(ws: StandInWorkspace, version: str) -> list[dict[str, Any]]:
    return [r for r in ws.runs.values() if r["job_id"] == JOB_ID
            and {"name": "model_version", "value": str(version)} in r.get("job_parameters", [])]


def test_the_gate_moves_challenger_before_it_records_its_verdict(uris, name, eval_df, monkeypatch):  # noqa: F811
    """``gate_checked_at`` is what waiters look for: it is written once the alias it implies has moved."""
    from mlflow import MlflowClient

    order: list[str] = []
    set_tag, set_alias = MlflowClient.set_model_version_tag, MlflowClient.set_registered_model_alias

    def tag(self: Any, model: str, version: str, key: str, value: Any) -> Any:
        order.append(f"tag {key}")
        return set_tag(self, model, version, key, value)

    def alias(self: Any, model: str, alias_name: str, version: str) -> Any:
        order.append(f"alias {alias_name}")
        return set_alias(self, model, alias_name, version)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", tag)
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", alias)
    registry.register(uris["good"], name)
    assert gate.gate_and_set_challenger(name, 1, eval_df, LABEL, **gate_kw()).passed
    assert "alias challenger" in order and order[-1] == "tag gate_checked_at", order


def test_registration_starts_the_linked_job_and_its_verdict_comes_with_challenger_moved(
        workspace, uris, judged, monkeypatch):  # noqa: F811
    """As notebook 03 on the bundle: the challenger read right after the verdict is the version just gated.

    The alias move is slowed down, as three or four calls to Unity Catalog are: with the verdict recorded
    before the alias moved, the read came first and found no challenger.
    """
    from utils.config import get_config

    move = registry.set_alias
    monkeypatch.setattr(registry, "set_alias", lambda *a, **k: (time.sleep(0.5), move(*a, **k))[1])
    model = get_config().model_name
    with JobTrigger(model, str(JOB_ID)) as trigger:
        version = str(registry.register(uris["good"], model).version)
        verdict = trigger.verdict(version, timeout=60, interval_s=0.05)
        challenger = registry.get_alias_version(model, "challenger")
    assert verdict.passed and challenger is not None and str(challenger.version) == version
    (run,) = _runs_for(workspace, version)
    assert {"name": "model_name", "value": model} in run["job_parameters"] and run["run_type"] == "JOB_RUN"
    assert judged == [version], "the deployment job gated the version, and only it"


def test_a_failed_job_run_is_reported_at_once_with_its_url(workspace, uris):  # noqa: F811
    """A run that ended without a verdict is one line naming its URL and state, not a 30-minute wait."""
    from utils.config import get_config

    workspace.task_runner = lambda task, ws: TaskResult("FAILED", error="ModuleNotFoundError: No module named 'utils'")
    model = get_config().model_name
    with JobTrigger(model, str(JOB_ID)) as trigger:
        version = str(registry.register(uris["good"], model).version)
        started = time.monotonic()
        with pytest.raises(DeploymentJobFailed) as failed:
            trigger.verdict(version, timeout=60, interval_s=0.05)
    assert time.monotonic() - started < 10
    (run,) = _runs_for(workspace, version)
    message = str(failed.value)
    assert run["run_page_url"] in message and "FAILED" in message and "evaluation" in message and "\n" not in message
    listed = next(r for r in platform.workspace_client().jobs.list_runs(job_id=JOB_ID) if r.run_id == run["run_id"])
    assert listed.state.life_cycle_state.value == "TERMINATED" and listed.state.result_state.value == "FAILED"
    assert [t["state"]["result_state"] for t in run["tasks"]] == ["FAILED", "UPSTREAM_FAILED", "UPSTREAM_FAILED"]


def _retrain(model_uris: dict[str, str], frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> str:
    """Notebook 06's in-notebook retrain (``retrain_and_gate``), trained on nothing: it registers the price model."""
    from utils import plantly_features, retraining, training

    test = frame.assign(event_ts=pd.Timestamp("2024-01-01", tz="UTC"))
    monkeypatch.setattr(training, "develop", lambda **kw: (SimpleNamespace(run_id="r", family="price", metrics={}), model_uris["good"], test))
    monkeypatch.setattr(training, "gate_frame", lambda rows: rows.drop(columns=["event_ts"]))
    monkeypatch.setattr(plantly_features, "feature_schema", lambda: FEATURES)
    outcome = retraining.retrain_and_gate(seed=1, reason="2 alerts")
    assert outcome["gate_passed"] and outcome["promoted"]
    return outcome["version"]


def _register_inside_an_unlinked_trigger(model_uris: dict[str, str], frame: pd.DataFrame,
                                         monkeypatch: pytest.MonkeyPatch) -> str:
    """Notebook 03 run by hand (no deployment_job_id) after the bundle linked the job to the model."""
    from utils.config import get_config

    model = get_config().model_name
    with platform.deployment_trigger(model, "") as trigger:
        assert trigger.via == "deployment job" and f"deployment job {JOB_ID}" in trigger.how
        version = str(registry.register(model_uris["good"], model).version)
        assert trigger.verdict(version, interval_s=0.05).passed
    return version


@pytest.mark.parametrize("register", [_retrain, _register_inside_an_unlinked_trigger])
def test_a_registration_of_a_linked_model_is_gated_once(workspace, uris, eval_df, judged, monkeypatch,  # noqa: F811
                                                        register):
    """Notebook 06's retrain, and 03 run by hand, on a model an earlier bundle run linked: the job judges, once."""
    from utils.config import get_config

    model = get_config().model_name
    workspace.registered_models[model] = {"name": model, "deployment_job_id": str(JOB_ID)}  # linked by an earlier run
    version = register(uris, eval_df, monkeypatch)
    assert len(_runs_for(workspace, version)) == 1, "registration started the linked job"
    assert judged == [version], "gated by the deployment job only, never a second time inline"


def test_the_deployment_job_reads_catalog_and_schema_from_the_model_it_was_given(monkeypatch, capsys):
    """Unity Catalog passes the model's full name: its catalog and schema win over the job's defaults (R14)."""
    import os

    seen = {}

    def task(model_name, model_version):
        seen.update(catalog=os.environ["MLOPS_CATALOG"], schema=os.environ["MLOPS_SCHEMA"], version=model_version,
                    endpoint=os.environ.get("MLOPS_ENDPOINT", ""))
        raise ValueError("stop here")

    monkeypatch.setitem(deployment_job.TASKS, "evaluation", task)
    monkeypatch.setattr(platform, "get_spark", lambda: None)
    monkeypatch.setattr(platform, "configure_mlflow", lambda: None)
    for var in ("MLOPS_CATALOG", "MLOPS_SCHEMA"):
        monkeypatch.setenv(var, "")  # what main() sets is put back after the test
    monkeypatch.setenv("MLOPS_ENDPOINT", "team-dev-bob")  # as a classic job cluster's environment sets it
    status = deployment_job.main(["evaluation", "--model-name", "team_cat.ada_schema.recommender",
                                  "--model-version", "4", "--catalog", "workspace", "--schema", "dev_bob_mlops",
                                  "--endpoint", "team-dev-bob"])
    # the job's endpoint serves dev_bob_mlops: the model's schema gets its own (the config's default), not bob's
    assert status == 1 and seen == {"catalog": "team_cat", "schema": "ada_schema", "version": "4", "endpoint": ""}
    err = capsys.readouterr().err
    assert "lives in catalog 'team_cat', not the job's 'workspace'" in err and "stop here" in err
