"""The bundle's retraining and deployment jobs, run to the end by the local job runner on the state the notebooks left.

``make test``'s notebook stage first runs the lifecycle job's notebooks (00-06, in the job's order); this file then
runs the other two jobs of ``resources/jobs.yml`` as a run of each does: every ``python_wheel_task`` through the
installed wheel's entry point (``utils.local.job_runner.run_job``), with the parameters the job resolves from its job
parameters. Nothing is replaced: the retraining trains and registers on the notebooks' tables, the deployment job's
evaluation runs the gate, approval reads the version's tag, deployment moves ``champion`` and the endpoint's traffic.
"""

from __future__ import annotations

from typing import Any

import pytest
from mlflow import MlflowClient

from utils.config import get_config
from utils.local import job_runner


def _newest(client: MlflowClient, name: str) -> int:
    return max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def _champion(client: MlflowClient, cfg: Any) -> str:
    return str(client.get_model_version_by_alias(cfg.model_name, cfg.champion_alias).version)


def test_the_retraining_job_then_the_deployment_job_run_to_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    from utils.deployment_job import APPROVAL_TAG, APPROVED
    from utils.gate import recorded_verdict
    from utils.platform import configure_mlflow

    cfg = get_config()
    configure_mlflow()
    client = MlflowClient()
    before = _newest(client, cfg.model_name)
    champion_before = _champion(client, cfg)

    job_runner.run_job("retrain", {"reason": "the bundle's retraining job, run by the test suite", "seed": "7"})
    version = _newest(client, cfg.model_name)
    assert version == before + 1
    assert client.get_model_version(cfg.model_name, str(version)).tags["reason"].startswith("the bundle's retraining")

    parameters = {"model_name": cfg.model_name, "model_version": str(version)}
    with pytest.raises(job_runner.TaskFailed) as failed:  # unapproved (or refused by the gate): the run stops there
        job_runner.run_job("deployment", parameters)
    verdict = recorded_verdict(cfg.model_name, str(version))
    assert verdict is not None
    lines = capsys.readouterr().out
    if not verdict.passed:
        assert "'evaluation'" in str(failed.value) and "evaluation: FAILED" in lines
        assert _champion(client, cfg) == champion_before
        return
    assert "'approval'" in str(failed.value) and "evaluation: SUCCESS" in lines and "approval: FAILED" in lines
    assert _champion(client, cfg) == champion_before

    client.set_model_version_tag(cfg.model_name, str(version), APPROVAL_TAG, APPROVED)  # the reviewer approves
    for task in ("approval", "deployment"):  # the run repaired: its failed task and what follows
        job_runner.run_task("deployment", task, parameters)
    assert _champion(client, cfg) == str(version)
    out = capsys.readouterr().out
    assert f"'champion': '{version}'" in out and f"'{version}': 100" in out and f"'{champion_before}': 0" in out
