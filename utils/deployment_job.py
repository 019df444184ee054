"""The deployment job: what runs when a model version is registered (evaluation, approval, deployment).

Databricks runs these as the tasks of an MLflow 3 *deployment job* (``resources/jobs.yml``,
``deployment``) linked to the registered model: Unity Catalog starts a run with the job
parameters ``model_name`` and ``model_version`` for every new version. Locally the same
:func:`evaluation_task` runs in the receiver of an MLflow registry webhook
(``utils.local.deployment_webhooks``), fired by the open-source MLflow server on ``model_version.created``.

The tasks take nothing but the version: the evaluation rows are rebuilt from what the version's
training run recorded (the training set's Delta version, ``input.<table>`` tags), split in time as
training split them (:func:`utils.training.time_split`), so the gate scores the rows the model never saw.

Every verdict is kept twice on the model version: tags (``gate_passed``, ``gate_failed``,
``gate_summary``, ``gate_checked_at``, written by :func:`utils.gate.gate_and_set_challenger`) and the
whole result, every check, as the JSON artifact ``gate/version-<n>.json`` of the training run
(``utils.gate.recorded_verdict`` reads it back on either platform). ``gate_checked_at`` comes last, once
``challenger`` moved, so a verdict that can be read is one whose alias move is done.

Once a job is linked, Unity Catalog runs it on *every* new version of the model, whoever registers it:
code that registers a version and wants its verdict calls :func:`gate_registered`, which waits for the
linked job's verdict instead of gating the version a second time.

The job's tasks are Python wheel tasks of the project's wheel: each calls the entry point
``mlops-deployment-job`` (:func:`cli`) with its task name and options as ``sys.argv``. Run a task by hand
with ``mlops-deployment-job evaluation --model-name NAME --model-version N``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from utils.deployment_triggers import (  # noqa: F401 - re-exported: what registration triggers on Databricks
    ENDED,
    DeploymentJobFailed,
    InlineTrigger,
    JobTrigger,
    linked_job,
)

if TYPE_CHECKING:
    from utils.gate import GateResult

APPROVAL_TAG = "approval"
"""The approval task's tag on the model version; the task passes when its value is ``approved``.

Databricks' deployment-job template names the tag after the approval task; the task here is called
``approval`` too. Tag keys follow Unity Catalog's rules (no dots)."""
APPROVED = "approved"


class ApprovalPending(RuntimeError):
    """The version has no ``approval = approved`` tag yet: the deployment job stops here until someone approves."""


def _version(model_name: str, model_version: str | int) -> Any:
    from utils import registry

    return registry.get_version(model_name, model_version)


def evaluation_rows(run_id: str) -> tuple[Any, Any]:
    """(gate frame, first event time) of the rows a run held out: its recorded training set, split in time.

    Returns the pandas frame of model inputs plus the 0/1 label (``utils.training.gate_frame``) and the
    held-out rows' earliest ``event_ts``. Raises ``ValueError`` when the run recorded no training-set
    version (it was not trained by ``utils.training.train_and_log`` with ``input_tables``).
    """
    from utils.plantly_features import load_training_frame, training_set_table
    from utils.training import gate_frame, input_versions, time_split

    inputs = input_versions(run_id)
    table = training_set_table()
    if table not in inputs:
        raise ValueError(f"run {run_id} recorded no version of {table} (inputs: {sorted(inputs) or 'none'}): "
                         "the deployment job rebuilds its evaluation rows from that record; train with "
                         "utils.training.train_and_log(..., input_tables=...)")
    _, test = time_split(load_training_frame(inputs[table]))
    return gate_frame(test), test["event_ts"].min()


def evaluation_task(model_name: str, model_version: str | int) -> GateResult:
    """Gate version ``model_version`` of ``model_name`` on its held-out rows; a pass moves ``challenger``.

    Records the verdict as version tags and as the run artifact ``gate/version-<n>.json``; returns the
    :class:`utils.gate.GateResult`. A failed gate is a result (``passed`` False), not an exception.
    Raises ``ValueError`` when the version has no training run or the run no recorded training set.
    """
    from utils import gate
    from utils.plantly_features import LABEL, feature_schema

    mv = _version(model_name, model_version)
    if not mv.run_id:
        raise ValueError(f"version {mv.version} of {model_name} names no training run: register models logged "
                         "in a run (utils.training.log_recommender) so the job can find their evaluation rows")
    eval_df, eval_start = evaluation_rows(mv.run_id)
    return gate.gate_and_set_challenger(model_name, mv.version, eval_df, LABEL, eval_start=eval_start,
                                        expected_features=feature_schema())


def approval_task(model_name: str, model_version: str | int, tag: str = APPROVAL_TAG) -> None:
    """Pass when the version carries ``<tag> = approved`` (case-insensitive), as Databricks' approval task does.

    Raises ``ApprovalPending`` naming the call that approves it; the job run then waits to be repaired.
    """
    mv = _version(model_name, model_version)
    value = (mv.tags or {}).get(tag, "")
    if value.lower() != APPROVED:
        raise ApprovalPending(
            f"version {mv.version} of {model_name} is not approved ({tag} = {value or 'unset'}): a reviewer sets "
            f"the tag (MlflowClient().set_model_version_tag({model_name!r}, {str(mv.version)!r}, {tag!r}, "
            f"{APPROVED!r}) or the model page's tag editor), then repairs the job run")


def gate_registered(model_name: str, version: str | int, held_out: Any) -> GateResult:
    """The gate's verdict on a version just registered, gated once.

    When a deployment job is linked to the model, registration already started it: its verdict is awaited
    (:meth:`JobTrigger.verdict`; the job judges on the rows the version's run recorded, ``held_out`` is not
    used). Otherwise the gate runs here (:func:`utils.gate.gate_and_set_challenger`) on ``held_out``, the
    held-out impressions ``utils.training.develop`` returns (a pandas frame): the model's inputs and the 0/1
    label, judged from its first event on, against the example's feature schema. Raises what those raise
    (``DeploymentJobFailed``, ``TimeoutError``, ``ValueError`` for a frame without the label).
    """
    job_id = linked_job(model_name)
    if job_id:
        return JobTrigger(model_name, job_id).verdict(version)
    from utils.gate import gate_and_set_challenger
    from utils.plantly_features import LABEL, feature_schema
    from utils.training import gate_frame

    return gate_and_set_challenger(model_name, version, gate_frame(held_out), LABEL,
                                   eval_start=held_out["event_ts"].min(), expected_features=feature_schema())


def deployment_task(model_name: str, model_version: str | int, endpoint_name: str | None = None) -> dict[str, Any]:
    """Promote an approved, gated version to ``champion`` and send the endpoint's traffic to it.

    The previous champion stays served at 0%, so a rollback is a traffic change, not a container build
    (review R16: the task runs in a fresh process that knows nothing the endpoint served before). Refuses
    (``utils.registry.PromotionRefused``) a version whose gate did not pass. Returns
    ``{"champion": version, "endpoint": name, "traffic": {version: 100, previous champion: 0}}``.
    """
    from utils import registry
    from utils.config import get_config
    from utils.gate import recorded_verdict
    from utils.platform import serving_backend

    cfg = get_config()
    verdict = recorded_verdict(model_name, model_version)
    if verdict is None:
        raise registry.PromotionRefused(f"version {model_version} of {model_name} has no gate verdict: run the "
                                        "evaluation task first")
    previous = registry.get_alias_version(model_name, cfg.champion_alias)
    registry.promote(model_name, str(model_version), verdict, reason="deployment job: gated and approved")
    traffic = {str(model_version): 100}
    if previous is not None and str(previous.version) != str(model_version):
        traffic[str(previous.version)] = 0
    endpoint = endpoint_name or cfg.endpoint_name
    serving_backend(model_name, endpoint).apply(traffic)
    return {"champion": str(model_version), "endpoint": endpoint, "traffic": traffic}


TASKS = {"evaluation": evaluation_task, "approval": approval_task, "deployment": deployment_task}


def _config_from_model_name(args: argparse.Namespace) -> None:
    """Where the job's ``catalog`` / ``schema`` differ from ``args.model_name``'s (``catalog.schema.model``), use the model's.

    Unity Catalog passes the job only the model's name and version; the job's ``catalog`` / ``schema`` are its
    defaults, which a version registered from another schema does not share (review R14). One line says so, and
    the job's endpoint, which serves the job's own schema, gives way to the model's schema's (the config's default).
    """
    parts = args.model_name.split(".")
    if len(parts) != 3:
        return
    for field, value in zip(("catalog", "schema"), parts[:2], strict=True):
        given = getattr(args, field, "")
        if given and given != value:
            print(f"{args.task}: {args.model_name} lives in {field} {value!r}, not the job's {given!r}: using {value!r}",
                  file=sys.stderr)
            setattr(args, field, value)
            if getattr(args, "endpoint", ""):
                print(f"{args.task}: not the job's endpoint {args.endpoint!r}, which serves its own schema", file=sys.stderr)
                args.endpoint = ""
                os.environ["MLOPS_ENDPOINT"] = ""  # also over a job cluster's MLOPS_ENDPOINT (databricks.yml)


def main(argv: list[str] | None = None) -> int:
    """Command line of one deployment-job task; returns 1 (with the reason on stderr) when the task refuses."""
    from utils.parameters import add_job_config_options, apply_job_config

    parser = argparse.ArgumentParser(prog="deployment_job", description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-version", required=True)
    add_job_config_options(parser)
    args = parser.parse_args(argv)
    _config_from_model_name(args)
    apply_job_config(args)
    from utils.platform import configure_mlflow, get_spark

    get_spark()
    configure_mlflow()
    try:
        outcome = TASKS[args.task](args.model_name, args.model_version)
    except (ApprovalPending, ValueError) as exc:
        print(f"{args.task}: {exc}", file=sys.stderr)
        return 1
    if args.task == "evaluation":
        print(outcome.summary())
        return 0 if outcome.passed else 1
    print(outcome if outcome is not None else f"{args.task}: passed")
    return 0


def cli() -> None:
    """The wheel's ``mlops-deployment-job`` entry point: :func:`main` on ``sys.argv``; a refusal raises ``SystemExit(1)``.

    A ``python_wheel_task`` calls the entry point and ignores what it returns, so a failed task must raise.
    """
    status = main()
    if status:
        raise SystemExit(status)
