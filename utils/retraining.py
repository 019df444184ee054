"""The closed loop: new data arrives → monitor → alert → retrain → gate → promote only if it wins.

Every step is recorded: metric and alert tables in Delta, a ``monitor`` MLflow run with the
breaches, the retraining run with its pinned inputs, and the registry's audit trail. Monitoring itself
(:func:`utils.monitoring.monitor`) writes the metric tables; locally the notebook calls :func:`close_the_loop`, which retrains, gates and promotes in the notebook. On
Databricks the monitor starts the bundle's retraining job instead (``jobs.run_now`` with the alerts as
its ``reason`` parameter); that job runs :func:`retrain_task` alone (a ``python_wheel_task`` of the project's
wheel calling the entry point ``mlops-retraining-job retrain``, :func:`cli`): train on the latest training set
and register the version, which starts the deployment job linked to the model (gate, approval, deployment).
It neither lands data again nor reruns the monitor.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from utils.config import Config, get_config

if TYPE_CHECKING:
    from utils.monitoring import MonitorResult


def land_new_data(scenario: str, rows: int, seed: int, cfg: Config | None = None) -> dict[str, Any]:
    """Land a scenario's raw feed and run it through ingestion and the feature tables, as production would."""
    from utils.datagen import land_raw_files
    from utils.ingest import ingest
    from utils.plantly_features import build_feature_tables
    from utils.plantly_shop import GeneratorSpec, window_bounds
    from utils.platform import feature_client

    spec = GeneratorSpec(rows=rows, seed=seed, scenario=scenario)
    land_raw_files(spec)
    counts = ingest(cfg=cfg)
    versions = build_feature_tables(feature_client(), cfg)
    _, current_start, end = window_bounds(spec)
    return {"scenario": scenario, "counts": counts, "feature_versions": versions,
            "current_start": current_start, "end": end}


def retrain_and_gate(seed: int, reason: str, family: str | None = None, cfg: Config | None = None, *,
                     run_name: str = "retrain", test_fraction: float = 0.1, trigger: str = "monitoring") -> dict[str, Any]:
    """Train with the develop pipeline, register, gate against the champion, promote only if it passes: the one
    path a version made outside the notebooks takes (06's retrain here, the catch-up's first champion).

    ``family`` None (the default) picks the model family on the new training rows (``training.select_family``,
    never on the test rows): a fixed gradient boosting over-fits a few thousand impressions and failed the
    gate's minimum AUC there, so a small demo's loop never closed. A deployment job linked to the model gates
    the registration (``utils.deployment_job.gate_registered``). ``reason`` and ``trigger`` become the version's
    tags and its description. Returns ``{"run_id", "version", "gate_passed", "gate_summary", "promoted", "metrics", "at"}``.
    """
    from utils import registry
    from utils.deployment_job import gate_registered
    from utils.training import develop

    cfg = cfg or get_config()
    result, model_uri, test = develop(family=family, seed=seed, run_name=run_name, cfg=cfg, test_fraction=test_fraction)
    version = registry.register(model_uri, name=cfg.model_name, description=f"{result.family} recommender ({trigger}): {reason}",
                                tags={"trigger": trigger, "reason": reason[:500]})
    verdict = gate_registered(cfg.model_name, version.version, test)
    promoted = False
    if verdict.passed:
        registry.promote(cfg.model_name, version.version, verdict.to_dict(), reason=f"passed the gate: {reason}"[:500])
        promoted = True
    return {"run_id": result.run_id, "version": str(version.version), "gate_passed": verdict.passed,
            "gate_summary": verdict.summary(), "promoted": promoted, "metrics": result.metrics,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


class RetrainJobError(RuntimeError):
    """The retraining job could not be started; the message (one line) says what is missing and what to do."""


def start_retraining_job(job_id: str | int, reason: str, client: Any = None) -> dict[str, Any]:
    """Start Databricks job ``job_id`` (the bundle's ``retrain``) with ``jobs.run_now``; returns what was started.

    ``client`` is a ``databricks.sdk.WorkspaceClient`` (default the runtime's,
    ``utils.platform.workspace_client()``). The job's parameters carry the alerts' summary (``reason``, at
    most 500 characters, recorded on the version it registers) and the caller's catalog, schema, endpoint,
    experiment and Lakebase switch, so the job retrains where and as the monitor ran (a run by hand uses its
    own schema).
    Returns ``{"job_id", "job_run_id", "reason", "gate_summary"}``.

    Raises:
        RetrainJobError: ``job_id`` is not a number, the workspace has no such job, or the caller may
            not run it (PERMISSION_DENIED); the message names the job and the fix, not an SDK traceback.
    """
    from databricks.sdk.errors import DatabricksError

    from utils.platform import lakebase_enabled, workspace_client

    try:
        job = int(str(job_id).strip())
    except ValueError:
        raise RetrainJobError(f"retrain_job_id {job_id!r} is not a job id (a number): pass the id of the retraining "
                              "job, as the bundle does with ${resources.jobs.retrain.id}") from None
    client = client or workspace_client()
    try:
        cfg = get_config()  # the caller's names: a run by hand uses its own schema, not the bundle's default
        run = client.jobs.run_now(job_id=job, job_parameters={
            "reason": reason[:500], "catalog": cfg.catalog, "schema": cfg.schema, "endpoint": cfg.endpoint_name,
            "experiment_name": cfg.experiment_name, "lakebase": str(lakebase_enabled()).lower()})
    except DatabricksError as exc:
        code = getattr(exc, "error_code", "") or type(exc).__name__
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        if code == "PERMISSION_DENIED" or type(exc).__name__ == "PermissionDenied":
            fix = (f"you may not run job {job} ({code}: {first}): ask its owner for CAN MANAGE RUN on it, "
                   "or run the monitor as the job's owner")
        elif "does not exist" in first.lower() or type(exc).__name__ in ("NotFound", "ResourceDoesNotExist"):
            fix = (f"job {job} does not exist in this workspace ({code}: {first}): deploy the bundle "
                   "(databricks bundle deploy) and pass its id, ${resources.jobs.retrain.id}, as retrain_job_id")
        else:
            fix = f"starting job {job} failed ({code}: {first}): check the job in the workspace's Jobs page"
        raise RetrainJobError(f"the retraining job was not started: {fix}") from None
    return {"job_id": job, "job_run_id": run.run_id, "reason": reason,
            "gate_summary": f"retraining job {job} started (run {run.run_id}): {reason}"}


def close_the_loop(result: MonitorResult, seed: int, cfg: Config | None = None,
                   retrain_job_id: str | int | None = None, client: Any = None) -> dict[str, Any] | None:
    """Retrain when the monitor raised alerts; None (and nothing retrained) when it did not.

    Without ``retrain_job_id`` the retraining runs here (:func:`retrain_and_gate`) and the result is
    its outcome. With it (the bundle passes ``${resources.jobs.retrain.id}`` to the monitor
    task) the Databricks job is started instead (:func:`start_retraining_job`, ``jobs.run_now``;
    ``client`` a ``WorkspaceClient``, default the runtime's), and the result says which run:
    ``{"job_id", "job_run_id", "reason", "gate_summary"}``; that job gates and promotes.
    Raises RetrainJobError when the job cannot be started.
    """
    if not result.alerts:
        return None
    metrics = sorted({f"{a.metric}:{a.column}" for a in result.alerts})
    reason = f"{len(result.alerts)} alerts ({', '.join(metrics[:6])}{'…' if len(metrics) > 6 else ''})"
    if retrain_job_id not in (None, ""):
        return start_retraining_job(retrain_job_id, reason, client=client)
    return retrain_and_gate(seed, reason, cfg=cfg)


def retrain_task(reason: str, seed: int = 42, deployment_job_id: str = "", cfg: Config | None = None) -> dict[str, Any]:
    """The retraining job's one task: retrain on the latest training set and register; the deployment job judges it.

    Trains as :func:`retrain_and_gate` does (``utils.training.develop``, family chosen on the training
    rows, 10% held out) and registers the version inside ``utils.platform.deployment_trigger``, so the
    registration fires the deployment job linked to the model (``deployment_job_id``, the bundle's
    ``${resources.jobs.deployment.id}``): its evaluation task gates the version, approval and
    deployment follow there. With a linked job this task returns once the version is registered; without
    one (run by hand, or locally) it runs the evaluation task itself and waits for the verdict.
    Nothing is promoted here. Returns ``{"run_id", "version", "reason", "via", "gate_passed",
    "gate_summary", "at"}``; ``gate_passed`` and ``gate_summary`` are ``None`` when the deployment job judges.
    """
    from utils import registry
    from utils.platform import deployment_trigger
    from utils.training import develop

    cfg = cfg or get_config()
    reason = (reason or "started by hand").strip()[:500]
    result, model_uri, _ = develop(family=None, seed=seed, run_name="retrain", cfg=cfg, test_fraction=0.1)
    with deployment_trigger(cfg.model_name, deployment_job_id) as trigger:
        version = registry.register(model_uri, name=cfg.model_name, description=f"retrained after monitoring alerts: {reason}",
                                    tags={"trigger": "monitoring", "reason": reason, "run_id": result.run_id})
        verdict = None if deployment_job_id else trigger.verdict(str(version.version))
    return {"run_id": result.run_id, "version": str(version.version), "reason": reason, "via": trigger.via,
            "gate_passed": None if verdict is None else verdict.passed,
            "gate_summary": (f"version {version.version} registered: the deployment job {deployment_job_id} gates, "
                             "approves and deploys it") if verdict is None else verdict.summary(),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    """Command line of the retraining job: ``retrain --reason TEXT [--seed N] [--deployment-job-id ID]`` (default ``sys.argv[1:]``).

    ``--catalog``, ``--schema``, ``--endpoint`` and ``--experiment-name`` set the config (``MLOPS_<FIELD>``),
    as the job's parameters; ``--lakebase`` sets ``MLOPS_LAKEBASE`` (with Lakebase on, versions are logged with their
    feature lookups, as the lifecycle's). Prints the outcome; returns 0 once the version is registered (and judged,
    when no deployment job is linked), whatever the verdict: a refused version is the gate working.
    """
    import argparse
    import json
    import os

    from utils.parameters import add_job_config_options, apply_job_config

    parser = argparse.ArgumentParser(prog="retraining", description="The retraining job: train, register, hand over to the deployment job.")
    parser.add_argument("task", choices=["retrain"])
    parser.add_argument("--reason", default="")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--deployment-job-id", default="")
    parser.add_argument("--lakebase", default="", help="sets MLOPS_LAKEBASE (the job's parameter lakebase)")
    add_job_config_options(parser)
    args = parser.parse_args(argv)
    apply_job_config(args)
    if args.lakebase:
        os.environ["MLOPS_LAKEBASE"] = args.lakebase
    from utils.platform import configure_mlflow, get_spark

    get_spark()
    configure_mlflow()
    outcome = retrain_task(args.reason, seed=args.seed, deployment_job_id=args.deployment_job_id.strip())
    print(json.dumps(outcome, indent=1, default=str))
    return 0


def cli() -> None:
    """The wheel's ``mlops-retraining-job`` entry point: :func:`main` on ``sys.argv``; a failure raises ``SystemExit``.

    A ``python_wheel_task`` calls the entry point and ignores what it returns, so a failed task must raise.
    """
    status = main()
    if status:
        raise SystemExit(status)
