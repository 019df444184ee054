"""What makes registering a model version run the deployment job's gate on Databricks: the deployment triggers.

:class:`JobTrigger` links the MLflow 3 deployment job (``utils.deployment_job``, the bundle's ``deployment`` job)
to the registered model, and waits for the verdict its evaluation task records; :class:`InlineTrigger`, for a
notebook run by hand, runs that same evaluation task in the notebook, through the wheel's entry point as the job
does (:func:`run_evaluation_task`). ``utils.platform.deployment_trigger`` picks one; ``utils.deployment_job``
re-exports them. The verdict is read back from MLflow (``utils.verdict``).

Imports only base modules (``utils.platform.runtime``, ``utils.verdict``, ``utils.wheel_tasks``), inside functions;
nothing happens at import time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from utils.verdict import GateResult

ENDED = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
"""A job run's life-cycle states once it has ended (``jobs.RunLifeCycleState``)."""


class DeploymentJobFailed(RuntimeError):
    """The deployment job's run for a version ended without a gate verdict; the message names the run's URL and state."""


def linked_job(model_name: str) -> str:
    """The id of the deployment job linked to registered model ``model_name``; ``""`` when none is (or no such model).

    Unity Catalog keeps the link on the model (``RegisteredModel.deployment_job_id``); a local MLflow
    registry has none.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from utils.platform.runtime import registry_uri

    try:
        model = MlflowClient(registry_uri=registry_uri()).get_registered_model(model_name)
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise
        return ""
    return str(getattr(model, "deployment_job_id", None) or "")


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


def run_evaluation_task(model_name: str, version: str | int) -> GateResult:
    """Run the deployment job's evaluation task on ``version`` here, as the job runs it; return the verdict it recorded.

    The task is the wheel's deployment-job entry point (``evaluation --model-name ... --model-version ...``),
    resolved with ``importlib.metadata`` and called in this process (``utils.wheel_tasks.run_deployment_task``); its
    verdict is then read back from MLflow (``utils.verdict.recorded_verdict``). Raises ``DeploymentJobFailed`` when
    the task recorded none (its reason is printed above, on stderr), and what the task raises otherwise.
    """
    from utils.verdict import recorded_verdict
    from utils.wheel_tasks import run_deployment_task

    status = run_deployment_task("evaluation", model_name, version)
    result = recorded_verdict(model_name, version)
    if result is None:
        raise DeploymentJobFailed(f"the deployment job's evaluation task exited with status {status} on version "
                                  f"{version} of {model_name} without a gate verdict (its reason is printed above)")
    return result


class JobTrigger:
    """Registration fires the deployment job linked to the model: what ``utils.platform.deployment_trigger`` yields
    on Databricks when the bundle passed the job's id.

    Opening links job ``job_id`` to the registered model (``MlflowClient.update_registered_model(name,
    deployment_job_id=...)``, creating the model first when it does not exist yet); Unity Catalog then starts
    a run of the job for every new version. :meth:`verdict` waits for the job's evaluation task to record it.
    """

    via = "deployment job"

    def __init__(self, model_name: str, job_id: str) -> None:
        self.model_name = model_name
        self.job_id = str(job_id)
        self._judged: list[dict[str, Any]] = []

    @property
    def how(self) -> str:
        return (f"registration starts deployment job {self.job_id} (linked to {self.model_name}); its evaluation "
                "task runs the gate, its approval task waits for the tag approval = approved")

    def __enter__(self) -> JobTrigger:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from utils.platform.runtime import registry_uri

        client = MlflowClient(registry_uri=registry_uri())
        try:
            client.update_registered_model(self.model_name, deployment_job_id=self.job_id)
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise
            client.create_registered_model(self.model_name, deployment_job_id=self.job_id)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def verdict(self, version: str | int, timeout: float = 1800.0, interval_s: float = 5.0) -> GateResult:
        """The evaluation task's result on ``version`` (a job run starts compute first: up to ``timeout`` s).

        Every ``interval_s`` seconds reads the version's recorded verdict and the job's run for it (``jobs.list_runs``,
        the run whose job parameter ``model_version`` is ``version``). Raises ``DeploymentJobFailed`` (one line: the
        run's URL and state) when that run ended without a verdict, ``TimeoutError`` when none came in ``timeout`` s.
        """
        from utils.platform.runtime import workspace_client
        from utils.verdict import recorded_verdict

        client = workspace_client()
        deadline = time.monotonic() + timeout
        while (result := recorded_verdict(self.model_name, version)) is None:
            run = self._run_for(client, version)
            if run is not None and run.state and str(getattr(run.state.life_cycle_state, "value", "")) in ENDED:
                if (result := recorded_verdict(self.model_name, version)) is not None:  # written as the run ended
                    break
                outcome = getattr(run.state.result_state, "value", None) or run.state.life_cycle_state.value
                why = " ".join((run.state.state_message or "no message").split())
                raise DeploymentJobFailed(f"deployment job {self.job_id} run {run.run_id} for version {version} of "
                                          f"{self.model_name} ended {outcome} without a gate verdict ({why}): "
                                          f"see {run.run_page_url}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no gate verdict on version {version} of {self.model_name} after {timeout:.0f} s: "
                                   f"deployment job {self.job_id} " + ("has not finished its run for it" if run else
                                   "started no run for it (is it still linked to the model?)"))
            time.sleep(interval_s)
        return self._noted(version, result)

    def _run_for(self, client: Any, version: str | int) -> Any:
        """The newest of the job's latest 20 runs (one page) started for ``version`` of the model (``jobs.BaseRun``), or None."""
        import itertools

        for run in itertools.islice(client.jobs.list_runs(job_id=int(self.job_id), limit=20), 20):
            params = {p.name: p.value if p.value is not None else p.default for p in run.job_parameters or []}
            if params.get("model_version") == str(version) and params.get("model_name") in (None, self.model_name):
                return run
        return None

    def _noted(self, version: str | int, result: GateResult) -> GateResult:
        self._judged.append({"model": self.model_name, "version": str(version), "via": self.via,
                             "status": "passed" if result.passed else "refused",
                             "summary": result.summary().splitlines()[0]})
        return result

    def events(self) -> Any:
        """The versions this trigger saw judged, oldest first (pandas: model, version, via, status, summary)."""
        import pandas as pd

        return pd.DataFrame(self._judged, columns=["model", "version", "via", "status", "summary"])


class InlineTrigger(JobTrigger):
    """No deployment job id given (a notebook run by hand on Databricks): the evaluation task runs in the notebook
    (the job's own entry point, called in this process),
    unless an earlier run linked a job to the model; registration then starts that job, and its verdict is awaited."""

    via = "notebook"

    def __init__(self, model_name: str) -> None:
        super().__init__(model_name, "")

    @property
    def how(self) -> str:
        if self.job_id:
            return (f"deployment job {self.job_id} is linked to {self.model_name} (by an earlier run), so registration "
                    "starts it and its evaluation task runs the gate; this notebook waits for the verdict")
        return ("no deployment job is linked (the bundle's jobs pass deployment_job_id), so the deployment job's "
                "evaluation task runs here, in this notebook, right after registration")

    def __enter__(self) -> InlineTrigger:
        self.job_id = linked_job(self.model_name)
        if self.job_id:
            self.via = JobTrigger.via
        return self

    def verdict(self, version: str | int, timeout: float = 1800.0, interval_s: float = 5.0) -> GateResult:
        """The linked job's verdict on ``version`` (see :meth:`JobTrigger.verdict`), else the evaluation task's, run now
        through the wheel's entry point (:func:`run_evaluation_task`)."""
        if self.job_id:
            return super().verdict(version, timeout, interval_s)
        return self._noted(version, run_evaluation_task(self.model_name, version))
