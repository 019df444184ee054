"""The project's workspace REST calls, through the real ``databricks-sdk`` against ``tests.databricks_workspace``.

Covered here: the current user (the audit actor and the experiment folder), the monitor starting the
retraining job (``jobs.run_now``), and code-first retraining on Databricks as a one-time job run
(``files.upload`` of the wheel, ``jobs.submit``, polling ``jobs.get_run``, ``jobs.get_run_output``).
Refusals (403 PERMISSION_DENIED, a job that does not exist) must come back as the project's one-line
errors that name what is missing and what to do. What the stand-in cannot show is a real workspace
installing the environment and running the task; the local code-first path (tests/code/test_packaging.py)
runs the same entry point for real.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tests.databricks_workspace import RunningWorkspace, StandInWorkspace, TaskResult
from utils import code_first_retrain, packaging, platform
from utils.config import Config
from utils.monitoring import MonitorResult
from utils.platform import runtime
from utils.retraining import (
    RetrainJobError,
    close_the_loop,
    start_retraining_job,
)

MODEL = Config().model_base_name  # <project>_recommender
RETRAIN_JOB = f"{Config().project.replace('_', '-')}-retrain-dev"  # the bundle's retraining job in target dev

@pytest.fixture
def running() -> Iterator[RunningWorkspace]:
    with RunningWorkspace() as ws:
        yield ws


@pytest.fixture
def on_databricks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Databricks branches of ``utils.platform``, with the notebook's catalog and schema as job parameters give them."""
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("MLOPS_CATALOG", "workshop")
    monkeypatch.setenv("MLOPS_SCHEMA", "ada")


@pytest.fixture
def runtime_auth(running: RunningWorkspace, on_databricks: None, monkeypatch: pytest.MonkeyPatch) -> StandInWorkspace:
    """``WorkspaceClient()`` with no arguments reaches the stand-in, as it reaches the workspace on Databricks."""
    for name in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_AUTH_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", running.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", running.workspace.token)
    return running.workspace


def api_calls(ws: StandInWorkspace) -> list[tuple[str, str, Any]]:
    """The REST calls (the client's own look at /.well-known/databricks-config left out)."""
    return [c for c in ws.calls if c[1].startswith("/api/")]


def calls_to(ws: StandInWorkspace, path: str) -> list[tuple[str, str, Any]]:
    return [c for c in ws.calls if c[1] == path]


# ---------------------------------------------------------------- the stand-in itself


def test_the_stand_in_wants_the_token_and_knows_its_routes(running: RunningWorkspace) -> None:
    from databricks.sdk.errors import DatabricksError

    wrong = running.client(token=running.workspace.token[::-1], retry_timeout_seconds=5)  # reversed: not the token
    with pytest.raises(DatabricksError, match="missing or wrong token"):
        wrong.current_user.me()
    with pytest.raises(DatabricksError, match="no route"):
        running.client().api_client.do("GET", "/api/2.0/nowhere")


# ---------------------------------------------------------------- who is acting


def test_the_current_user_comes_from_scim_me(runtime_auth: StandInWorkspace) -> None:
    assert platform.current_user() == "ada@example.com"
    assert platform.experiment_path(MODEL) == f"/Users/ada@example.com/workshop.ada.{MODEL}"
    assert len(calls_to(runtime_auth, "/api/2.0/preview/scim/v2/Me")) == 2


def test_the_audit_actor_on_databricks_is_the_workspace_user(runtime_auth: StandInWorkspace,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from utils import registry

    monkeypatch.delenv("MLOPS_ACTOR", raising=False)
    assert registry._actor(None) == "ada@example.com"
    assert registry._actor("grace") == "grace"


def test_off_databricks_there_is_no_workspace_user() -> None:
    assert platform.current_user() == ""
    with pytest.raises(platform.EnvironmentProblem, match="no Databricks workspace"):
        platform.workspace_client()


# ---------------------------------------------------------------- the monitor starts the retraining job


def _alerting(n: int = 2) -> MonitorResult:
    alerts = [SimpleNamespace(metric="psi", column=f"feature_{i}") for i in range(n)]
    return MonitorResult(pd.Timestamp("2026-01-01"), pd.DataFrame(), pd.DataFrame(), [], alerts, 0.8)


@pytest.mark.parametrize("lakebase", ["true", ""])
def test_alerts_start_the_retraining_job_with_run_now(running: RunningWorkspace, monkeypatch: pytest.MonkeyPatch,
                                                      lakebase: str) -> None:
    """The job retrains with the monitor's config and Lakebase switch (on: versions logged with feature lookups)."""
    monkeypatch.setenv("MLOPS_LAKEBASE", lakebase)
    ws = running.workspace
    ws.jobs[42] = {"name": RETRAIN_JOB}
    outcome = close_the_loop(_alerting(), seed=1, retrain_job_id="42", client=running.client())
    (method, path, body), = ws.writes()
    from utils.config import get_config

    cfg = get_config()
    assert (method, path, body) == ("POST", "/api/2.2/jobs/run-now", {
        "job_id": 42, "job_parameters": {"reason": "2 alerts (psi:feature_0, psi:feature_1)", "catalog": cfg.catalog,
                                         "schema": cfg.schema, "endpoint": cfg.endpoint_name,
                                         "experiment_name": cfg.experiment_name,
                                         "lakebase": "true" if lakebase else "false"}})
    assert outcome["job_id"] == 42 and outcome["job_run_id"] in ws.runs
    assert outcome["reason"] == "2 alerts (psi:feature_0, psi:feature_1)"
    assert f"run {outcome['job_run_id']}" in outcome["gate_summary"]


def test_no_alerts_start_nothing(running: RunningWorkspace) -> None:
    assert close_the_loop(_alerting(0), seed=1, retrain_job_id="42", client=running.client()) is None
    assert api_calls(running.workspace) == []


def test_the_runtime_client_is_used_when_none_is_given(runtime_auth: StandInWorkspace) -> None:
    runtime_auth.jobs[7] = {"name": RETRAIN_JOB}
    assert start_retraining_job(7, "test")["job_run_id"] in runtime_auth.runs


@pytest.mark.parametrize("refusal, expected", [
    (None, (r"job 999 does not exist in this workspace \(INVALID_PARAMETER_VALUE: Job 999 does not exist\.\): "
            r"deploy the bundle .*retrain_job_id")),
    ((404, "RESOURCE_DOES_NOT_EXIST", "Job 999 does not exist."), r"job 999 does not exist.*deploy the bundle"),
    ((403, "PERMISSION_DENIED", "User ada@example.com does not have Manage Run permissions on Job 999."),
     r"you may not run job 999 \(PERMISSION_DENIED: .*\): ask its owner for CAN MANAGE RUN"),
])
def test_a_job_that_cannot_be_started_is_one_clear_line(running: RunningWorkspace, refusal, expected: str) -> None:
    if refusal:
        running.workspace.refuse(r"/jobs/run-now$", *refusal)
    with pytest.raises(RetrainJobError, match=expected) as raised:
        close_the_loop(_alerting(), seed=1, retrain_job_id=999, client=running.client())
    assert "\n" not in str(raised.value) and raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_job_id_that_is_not_a_number_is_named(running: RunningWorkspace) -> None:
    with pytest.raises(RetrainJobError, match=r"'retrain' is not a job id.*resources.jobs.retrain.id"):
        start_retraining_job("retrain", "test", client=running.client())
    assert api_calls(running.workspace) == []


# ---------------------------------------------------------------- code-first retraining as a one-time job run


def test_the_platform_picks_the_code_first_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform.code_first_runner() == "subprocess"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert platform.code_first_runner() == "job"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaging.build_wheel(tmp_path_factory.mktemp("dist"))


SPEC = code_first_retrain.RetrainSpec("run-1", "logreg", {"C": 1.0}, 5, {"workshop.ada.training_set": 3}, (800, 200), 0.2)
RESULT = {"run_id": "run-2", "metrics": {"roc_auc": 0.71}, "utils_file": "/local_disk0/env/site-packages/utils/__init__.py",
          "from_wheel": True}


def _wheel_task_runner(wheel: Path, result: dict[str, Any] | None = RESULT) -> Any:
    """Plays the job's compute: checks the task installs the uploaded wheel and names its entry point, then 'prints'."""
    def run(task: dict[str, Any], ws: StandInWorkspace) -> TaskResult:
        wheel_task = task["python_wheel_task"]
        uploaded = ws.files[f"/Volumes/workshop/ada/landing/packages/{wheel.name}"]
        assert uploaded == wheel.read_bytes()
        with zipfile.ZipFile(io.BytesIO(uploaded)) as zf:
            points = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
            name = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert f"Name: {wheel_task['package_name']}\n" in name
        assert f"{wheel_task['entry_point']} = utils.code_first_retrain:retrain_main" in points.split("[console_scripts]")[1]
        logs = "loading the training set\n" + (packaging.RESULT_MARKER + json.dumps(result) + "\n" if result else "")
        return TaskResult("SUCCESS", logs)
    return run


def test_code_first_on_databricks_submits_the_wheel_as_a_serverless_job_run(
        running: RunningWorkspace, on_databricks: None, wheel: Path) -> None:
    ws = running.workspace
    ws.running_polls = 2
    ws.task_runner = _wheel_task_runner(wheel)
    out = code_first_retrain.retrain_with_wheel(wheel, SPEC, client=running.client())

    upload, submit = ws.writes()
    assert upload[:2] == ("PUT", f"/api/2.0/fs/files/Volumes/workshop/ada/landing/packages/{wheel.name}")
    method, path, body = submit
    assert (method, path) == ("POST", "/api/2.2/jobs/runs/submit")
    (task,) = body["tasks"]
    assert task["task_key"] == code_first_retrain.RETRAIN_TASK_KEY and task["environment_key"] == "default"
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == packaging.wheel_metadata(wheel)["name"]
    assert wheel_task["entry_point"] == code_first_retrain.ENTRY_POINT == "mlops-retrain"
    spec_arg, config_arg = (json.loads(p) for p in wheel_task["parameters"])
    assert spec_arg == {**SPEC.__dict__, "rows": list(SPEC.rows)}
    assert (config_arg["catalog"], config_arg["schema"]) == ("workshop", "ada") and "thresholds" not in config_arg
    (environment,) = body["environments"]
    assert environment["environment_key"] == "default"
    assert environment["spec"]["environment_version"] == "4"
    deps = environment["spec"]["dependencies"]
    assert deps[-1] == f"/Volumes/workshop/ada/landing/packages/{wheel.name}"
    assert deps[:-1] == code_first_retrain.databricks_requirements() and "mlflow==3.17.2" in deps
    assert not any(d.startswith(("pyspark", "delta-spark")) for d in deps), "requirements-databricks.txt never pins Spark"

    polls = calls_to(ws, "/api/2.2/jobs/runs/get")
    assert len(polls) == 3, "polled while PENDING/RUNNING, until TERMINATED"
    (job_run_id,) = ws.runs
    task_run_id = ws.runs[job_run_id]["tasks"][0]["run_id"]
    assert [c[2] for c in calls_to(ws, "/api/2.2/jobs/runs/get-output")] == [{"run_id": str(task_run_id)}]
    assert out == {**RESULT, "job_run_id": job_run_id, "run_page_url": f"{ws.host}/?o=0#job/0/run/{job_run_id}"}


def test_a_failed_job_run_is_a_packaging_error_with_its_page_and_error(
        running: RunningWorkspace, on_databricks: None, wheel: Path) -> None:
    ws = running.workspace
    ws.task_runner = lambda task, ws: TaskResult(
        "FAILED", "Traceback (most recent call last):\n  ...\n",
        error="ValueError: run run-1 did not record workshop.ada.training_set",
        error_trace="Traceback (most recent call last):\n  File ...\nValueError: run run-1 did not record ...")
    with pytest.raises(packaging.PackagingError) as raised:
        code_first_retrain.retrain_in_job(wheel, SPEC, client=running.client())
    message = str(raised.value)
    (job_run_id,) = ws.runs
    assert f"job run {job_run_id} ended FAILED: ValueError: run run-1 did not record workshop.ada.training_set" in message
    assert message.endswith(f"see {ws.host}/?o=0#job/0/run/{job_run_id}") and "\n" not in message


def test_a_job_run_without_a_result_line_is_named(running: RunningWorkspace, on_databricks: None, wheel: Path) -> None:
    running.workspace.task_runner = _wheel_task_runner(wheel, result=None)
    with pytest.raises(packaging.PackagingError, match=r"printed no result line: see http://127\.0\.0\.1:\d+/"):
        code_first_retrain.retrain_in_job(wheel, SPEC, client=running.client())


def test_a_job_run_that_did_not_import_the_wheel_is_refused(running: RunningWorkspace, on_databricks: None,
                                                           wheel: Path) -> None:
    running.workspace.task_runner = _wheel_task_runner(wheel, result={**RESULT, "from_wheel": False,
                                                                      "utils_file": "/Workspace/repo/utils/__init__.py"})
    with pytest.raises(packaging.PackagingError, match=r"imported utils from /Workspace/repo/utils/__init__\.py, not from"):
        code_first_retrain.retrain_in_job(wheel, SPEC, client=running.client())


@pytest.mark.parametrize("path, status, code, expected", [
    (r"/fs/files/", 403, "PERMISSION_DENIED", (r"uploading .*\.whl to /Volumes/workshop/ada/landing/packages/.* was "
                                               r"refused \(PERMISSION_DENIED: .*\): you lack the permission it needs: the "
                                               r"volume /Volumes/workshop/ada/landing must exist and you need WRITE VOLUME")),
    (r"/fs/files/", 404, "NOT_FOUND", r"was refused \(NOT_FOUND: .*\): the volume /Volumes/workshop/ada/landing must exist"),
    (r"/runs/submit$", 403, "PERMISSION_DENIED", (r"submitting the code-first retrain job run was refused "
                                                  r"\(PERMISSION_DENIED: .*\): you lack the permission")),
])
def test_a_refused_upload_or_submit_is_one_clear_line(running: RunningWorkspace, on_databricks: None, wheel: Path,
                                                      path: str, status: int, code: str, expected: str) -> None:
    running.workspace.refuse(path, status, code, "refused by the stand-in")
    with pytest.raises(packaging.PackagingError, match=expected) as raised:
        code_first_retrain.retrain_in_job(wheel, SPEC, client=running.client())
    assert "\n" not in str(raised.value) and raised.value.__cause__ is None
    assert not running.workspace.runs


def test_databricks_requirements_are_the_compiled_pins() -> None:
    pins = code_first_retrain.databricks_requirements()
    assert pins and all("==" in p and not p.startswith(("#", "-")) and " " not in p for p in pins)
    with pytest.raises(packaging.PackagingError, match="make requirements-databricks"):
        code_first_retrain.databricks_requirements(Path("/nonexistent/requirements.txt"))


def test_03_links_the_deployment_job_to_the_model_through_mlflows_uc_client(runtime_auth, monkeypatch):
    """On Databricks with the bundle's job id, opening the trigger links the deployment job to the model
    (MLflow's Unity Catalog client: update, or create when the model is new); without one the evaluation
    task runs in the notebook."""
    from utils.deployment_job import InlineTrigger, JobTrigger

    monkeypatch.setattr(runtime, "registry_uri", lambda: "databricks-uc")
    name = f"workshop.ada.{MODEL}"
    with platform.deployment_trigger(name, "4242") as trigger:
        assert isinstance(trigger, JobTrigger) and "deployment job 4242" in trigger.how
    assert runtime_auth.registered_models[name]["deployment_job_id"] == "4242"  # created with the link
    with platform.deployment_trigger(name, "4343"):
        pass
    assert runtime_auth.registered_models[name]["deployment_job_id"] == "4343"  # the model exists: updated
    paths = [(verb, path.rsplit("/", 1)[1]) for verb, path, _ in runtime_auth.writes("/api/2.0/mlflow/unity-catalog/")]
    assert paths == [("POST", "create"), ("PATCH", "update")]
    assert isinstance(platform.deployment_trigger(name, ""), InlineTrigger)


def test_06_puts_a_data_profiling_monitor_on_the_inference_log_then_refreshes_it(runtime_auth):
    from utils.data_profiling import ProfilingMonitorError

    runtime_auth.tables["workshop.ada.inference_log"] = "tbl-7"
    runtime_auth.schemas["workshop.ada"] = "sch-3"
    first = platform.data_profiling()
    assert first["action"] == "created" and first["profile_metrics"] == "workshop.ada.inference_log_profile_metrics"
    monitor = runtime_auth.monitors["tbl-7"]
    profiling = monitor["data_profiling_config"]
    assert monitor["object_type"] == "table" and profiling["output_schema_id"] == "sch-3"
    assert profiling["inference_log"] == {
        "problem_type": "INFERENCE_PROBLEM_TYPE_REGRESSION", "timestamp_column": "ts",
        "granularities": ["AGGREGATION_GRANULARITY_1_WEEK"], "prediction_column": "prediction",
        "model_id_column": "model_version"}
    assert profiling["baseline_table_name"] == "workshop.ada.inference_log_baseline"
    assert {"source", "arm", "age_band"} <= set(profiling["slicing_exprs"])
    assert profiling["assets_dir"] in runtime_auth.folders and profiling["assets_dir"].startswith("/Workspace/Users/ada@")
    assert platform.data_profiling()["action"] == "refreshed" and len(runtime_auth.refreshes) == 1

    runtime_auth.refuse(r"/api/data-quality/", 403, "PERMISSION_DENIED", "User does not have MANAGE on Table 'inference_log'.")
    with pytest.raises(ProfilingMonitorError, match=r"needs MANAGE on the table .*GRANT MANAGE ON TABLE workshop.ada.inference_log"):
        platform.data_profiling()
    del runtime_auth.tables["workshop.ada.inference_log"]
    runtime_auth.refusals.clear()
    with pytest.raises(ProfilingMonitorError, match=r"notebook 05 writes the inference log"):
        platform.data_profiling()
