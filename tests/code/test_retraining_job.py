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
    assert wired["trigger"].model_name == "workspace.ada.plantly_recommender" and wired["trigger"].job_id == "99"
    ((uri, name, description, tags),) = wired["registered"]
    assert (uri, name) == ("runs:/run-1/model", "workspace.ada.plantly_recommender")
    assert tags == {"trigger": "monitoring", "reason": "3 alerts (psi:price)", "run_id": "run-1"}
    assert "3 alerts" in description
    assert wired["trigger"].judged == [], "the deployment job judges; the retraining job does not wait for it"


def test_without_a_deployment_job_the_verdict_is_awaited(wired: dict[str, Any]) -> None:
    outcome = retraining.retrain_task("", seed=1)
    assert wired["trigger"].judged == ["7"]
    assert outcome["gate_passed"] is False and outcome["via"] == "notebook"
    assert outcome["reason"] == "started by hand" and outcome["version"] == "7"
    assert "FAILED" in outcome["gate_summary"]


@pytest.mark.parametrize("script", ["utils/retraining.py", "utils/deployment_job.py"])
def test_the_job_scripts_run_as_files(script: str) -> None:
    """A job's script task runs the file itself: utils/ must not shadow the standard library (utils/platform.py)."""
    import subprocess
    import sys

    from utils.platform import REPO_ROOT

    proc = subprocess.run([sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--catalog" in proc.stdout and "--schema" in proc.stdout
