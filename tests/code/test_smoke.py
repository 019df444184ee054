"""``python -m tools.smoke`` (``make databricks-smoke``) against the workspace stand-in, through the real ``databricks-sdk``.

The Databricks CLI is a Go binary that this test's machines cannot install, so its three bundle commands are played
by :class:`Bundle`, which does to the stand-in what they do to a workspace: ``deploy`` creates the bundle's jobs from
``resources/jobs.yml`` (named and resolved as for target dev), ``summary -o json`` answers their ids and parameters,
``destroy`` deletes them. Everything after that (starting the lifecycle run, polling it task by task, reading a failed
task's output, cancelling, the teardown's listing and deletes) is the SDK's calls to the stand-in, whose runs end one
task per poll as Lakeflow Jobs runs do. What the CLI itself does is checked once for real: missing, it is one line.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.code.test_teardown import _job
from tests.code.test_workspace_calls import running  # noqa: F401 - fixture
from tests.databricks_workspace import RunningWorkspace, StandInWorkspace, TaskResult
from tools import smoke
from utils.config import get_config
from utils.local.job_runner import bundle_jobs

LIFECYCLE = [t["task_key"] for t in bundle_jobs()["lifecycle"][0]["tasks"]]


class Bundle:
    """The CLI's ``bundle validate | deploy | summary | destroy`` for target dev, acting on the stand-in."""

    def __init__(self, ws: StandInWorkspace, refuse: str = "") -> None:
        self.ws, self.refuse, self.commands = ws, refuse, []
        self.cfg = get_config(catalog="workspace", schema="dev_ada_mlops")
        self.ids: dict[str, int] = {}

    def __call__(self, args: list[str]) -> str:
        self.commands.append(" ".join(args))
        if self.refuse and args[1] == self.refuse:
            raise smoke.SmokeError(f"`databricks {' '.join(args)}` failed (exit status 1): Error: cannot resolve variable")
        if args[1] == "deploy":
            for i, (key, (spec, _)) in enumerate(bundle_jobs().items()):
                self.ids[key] = 500 + i
                job = _job(spec, self.cfg, self.cfg.schema)
                resolved = {"endpoint": self.cfg.endpoint_name, "experiment_name": self.cfg.experiment_name,
                            "rows": "20000", "prod_catalog": ""}  # what the bundle's variables resolve to
                for p in job["parameters"]:
                    p["default"] = resolved.get(p["name"], "") if "${" in p["default"] else p["default"]
                self.ws.jobs[500 + i] = job
        if args[1] == "summary":
            return json.dumps({"resources": {"jobs": {k: {"id": str(i), **self.ws.jobs[i]} for k, i in self.ids.items()}}})
        if args[1] == "destroy":
            for i in self.ids.values():
                self.ws.jobs.pop(i, None)
        return ""


def _made_by_the_run(ws: StandInWorkspace, cfg: Any) -> None:
    """What a lifecycle run leaves outside the bundle: the endpoint, the model with a version, the experiment."""
    ws.endpoints[cfg.endpoint_name] = {"served_entities": [], "traffic_config": {"routes": []}}
    ws.registered_models[cfg.model_name] = {"name": cfg.model_name}
    ws.model_versions[cfg.model_name] = {1: ws._version(cfg.model_name, 1)}
    ws.experiments["9"] = {"experiment_id": "9", "name": f"/Users/{ws.user_name}/{cfg.catalog}.{cfg.schema}."
                                                          f"{cfg.experiment_name}", "lifecycle_stage": "active"}


def _smoke(running: RunningWorkspace, bundle: Bundle, *extra: str) -> int:  # noqa: F811
    return smoke.main(["--rows", "1500", "--poll", "0.01", *extra], cli=bundle, client=running.client())


def test_the_lifecycle_runs_task_by_task_and_everything_is_torn_down(running: RunningWorkspace,  # noqa: F811
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ws, bundle = running.workspace, Bundle(running.workspace)
    widgets: list[dict[str, str]] = []

    def task(spec: dict[str, Any], _: StandInWorkspace) -> TaskResult:
        widgets.append(spec["notebook_task"]["base_parameters"])
        if spec["task_key"] == "monitor":
            _made_by_the_run(ws, bundle.cfg)
        return TaskResult()

    ws.task_runner = task
    assert _smoke(running, bundle) == 0
    out = capsys.readouterr().out.splitlines()
    assert bundle.commands[:3] == ["bundle validate -t dev", "bundle deploy -t dev", "bundle summary -t dev -o json"]
    assert bundle.commands[-1] == "bundle destroy -t dev --auto-approve"
    assert [line.split(":")[0].strip() for line in out if line.startswith("  ")] == LIFECYCLE
    assert any(line.startswith("lifecycle run ") and "/run/" in line for line in out)
    assert all(w["rows"] == "1500" and w["catalog"] == "workspace" for w in widgets), widgets  # job parameters reach every notebook
    assert widgets[LIFECYCLE.index("monitor")]["scenario"] == "new_segment"  # and each task's own base parameters
    assert not ws.endpoints and not ws.registered_models and ws.experiments["9"]["lifecycle_stage"] == "deleted"
    assert not ws.jobs


def test_a_failed_task_is_one_line_with_its_error_and_url_and_the_run_is_cancelled(
        running: RunningWorkspace, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    ws, bundle = running.workspace, Bundle(running.workspace)
    ran: list[str] = []

    def task(spec: dict[str, Any], _: StandInWorkspace) -> TaskResult:
        ran.append(spec["task_key"])
        if spec["task_key"] == "package":
            return TaskResult("FAILED", error="EnvironmentProblem: catalog team_prod does not exist\ntraceback ...")
        return TaskResult()

    ws.task_runner = task
    ws.running_polls = 0
    assert _smoke(running, bundle) == 1
    out = capsys.readouterr().out.splitlines()
    failed = [line for line in out if line.startswith("  package:")]
    assert failed == [failed[0]] and "FAILED: EnvironmentProblem: catalog team_prod does not exist (" in failed[0]
    assert "/run/" in failed[0] and "traceback" not in "\n".join(out)
    assert ran == LIFECYCLE[:LIFECYCLE.index("package") + 1]  # 05 and 06 never started
    assert "lifecycle: FAILED" in "\n".join(out) and bundle.commands[-1].startswith("bundle destroy")  # torn down all the same


def test_a_bundle_the_cli_refuses_stops_before_any_run(running: RunningWorkspace,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bundle = Bundle(running.workspace, refuse="validate")
    assert _smoke(running, bundle) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["smoke stopped: `databricks bundle validate -t dev` failed (exit status 1): Error: cannot resolve variable"]
    assert not running.workspace.runs


def test_no_cli_is_one_line_naming_the_install_page(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `databricks` on it
    assert smoke.main(["--target", "serverless"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "Databricks CLI is not installed" in out[0] and smoke.CLI_INSTALL in out[0]


def test_the_make_target_runs_the_smoke_with_its_target_and_size() -> None:
    from utils.platform.runtime import REPO_ROOT

    make = (REPO_ROOT / "Makefile").read_text()
    assert "databricks-smoke:" in make and "-m tools.smoke --target $(TARGET) --rows $(SMOKE_ROWS)" in make


def test_the_scheduled_workflow_runs_the_smoke_only_where_workspace_secrets_exist() -> None:
    import yaml

    from utils.platform.runtime import REPO_ROOT

    flow = yaml.safe_load((REPO_ROOT / ".github/workflows/databricks-smoke.yml").read_text())
    assert flow[True]["schedule"] and "workflow_dispatch" in flow[True]  # YAML 1.1 reads the key `on` as True
    (job,) = flow["jobs"].values()
    assert {"DATABRICKS_HOST", "DATABRICKS_TOKEN"} <= set(job["env"])
    smoke_step = next(s for s in job["steps"] if "make databricks-smoke" in s.get("run", ""))
    assert smoke_step["if"] == "steps.creds.outputs.ok == 'true'"
    assert any(s.get("uses", "").startswith("databricks/setup-cli") for s in job["steps"])
