"""Tear down what this project made on Databricks in the current target: list it, say what bills, delete it.

``python -m utils.teardown`` lists what the notebooks, jobs and bundle made for the config's catalog and schema
(``--catalog``, ``--schema``, ``--endpoint``, ``--experiment-name`` set them as the bundle's jobs do) and what each
costs while it exists, changing nothing; ``--yes`` deletes them in :data:`ORDER`, a line each (deleted, already gone,
or refused naming the permission), past any refusal, and exits 1 if anything was refused or failed. Off Databricks
one line names `make clean`. Calls go through ``databricks-sdk``'s ``WorkspaceClient`` (the experiment: MLflow's REST API).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from utils.config import Config, get_config

ORDER = ("serving endpoint", "data-profiling monitor", "online store", "job", "model version", "registered model",
         "experiment", "volume", "schema")
"""Deletion order: what serves, reads or is linked to a thing goes before it; the schema, holding the tables, last."""

_OWNER = "ownership of the registered model, with USE CATALOG and USE SCHEMA"
PERMISSION = {  # what deleting each kind needs, named in a refusal's line
    "serving endpoint": "CAN MANAGE on the endpoint", "data-profiling monitor": "MANAGE on the table inference_log",
    "online store": "CAN MANAGE on the online store (a Lakebase database instance)",
    "job": "CAN MANAGE on the job, or being its owner", "model version": _OWNER, "registered model": _OWNER,
    "experiment": "CAN MANAGE on the experiment", "schema": "ownership of the schema or MANAGE on it, with USE CATALOG",
    "volume": "ownership of the volume or MANAGE on it, with USE CATALOG and USE SCHEMA",
}

JOBS = ("lifecycle", "retrain", "deployment")
"""The bundle's jobs (``resources/jobs.yml``): named ``<project>-<job>-<target>``, ``[dev <you>] `` first in development."""

STORAGE = "no: storage only"


@dataclass(frozen=True)
class Resource:
    """One thing this project made: its kind (of :data:`ORDER`), name, cost while it exists, and the call deleting it."""

    kind: str
    name: str
    bills: str
    delete: Callable[[], Any]


def _reason(exc: Exception) -> str:
    """``ERROR_CODE: first line of the message`` of a ``DatabricksError`` (without the SDK's config dump)."""
    text = (str(exc).split(". Config: ")[0].strip().splitlines() or [""])[0][:200]
    return f"{getattr(exc, 'error_code', None) or type(exc).__name__}: {text}"


def _gone(exc: Exception) -> bool:
    """True when ``exc`` says the object does not exist: 404 (``NotFound``), or the Jobs API's 400 "Job <id> does
    not exist." (``INVALID_PARAMETER_VALUE``, which the SDK turns into ``NotFound`` for ``jobs/get`` only)."""
    from databricks.sdk.errors import BadRequest, NotFound

    return isinstance(exc, NotFound) or (isinstance(exc, BadRequest) and "does not exist" in str(exc))


def _get(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, or None when the object is not there or its feature is not enabled in this workspace
    (``FEATURE_DISABLED`` whatever the status, or 501: then none can exist). Other errors are raised."""
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.errors import NotImplemented as NotEnabled

    try:
        return call(*args)
    except DatabricksError as exc:
        if getattr(exc, "error_code", None) == "FEATURE_DISABLED" or isinstance(exc, NotEnabled) or _gone(exc):
            return None
        raise


def _endpoint(w: Any, cfg: Config) -> list[Resource]:
    """The Model Serving endpoint ``cfg.endpoint_name``; always on unless every served entity scales to zero."""
    ep = _get(w.serving_endpoints.get, cfg.endpoint_name)
    if ep is None:
        return []
    entities = (ep.config.served_entities if ep.config else None) or []
    bills = ("yes: always on (scale to zero off), every hour it exists"
             if any(not e.scale_to_zero_enabled for e in entities) else "while it serves: scales to zero when idle")
    return [Resource("serving endpoint", ep.name, bills, lambda: w.serving_endpoints.delete(ep.name))]


def _monitor(w: Any, cfg: Config) -> list[Resource]:
    """The data-profiling monitor notebook 06 puts on ``inference_log`` (``utils.data_profiling``)."""
    from utils.scoring import inference_log_table

    table = inference_log_table(cfg)
    info = _get(w.tables.get, table)
    monitor = _get(w.data_quality.get_monitor, "table", info.table_id) if info is not None else None
    if monitor is None:
        return []
    schedule = monitor.data_profiling_config.schedule if monitor.data_profiling_config else None
    bills = "per refresh: serverless compute, " + (f"scheduled ({schedule.quartz_cron_expression})" if schedule else "none scheduled")
    return [Resource("data-profiling monitor", f"on {table}", bills,
                     lambda: w.data_quality.delete_monitor("table", info.table_id))]


def _online_store(w: Any, cfg: Config) -> list[Resource]:
    """The Lakebase online store ``cfg.online_store_name`` notebook 01 publishes to with ``MLOPS_LAKEBASE=true``."""
    store = _get(w.feature_store.get_online_store, cfg.online_store_name)
    if store is None:
        return []
    stopped = str(getattr(store.state, "value", store.state)) == "STOPPED"
    bills = STORAGE + " (stopped)" if stopped else f"yes: Lakebase capacity {store.capacity or '?'}, every hour it exists"
    return [Resource("online store", store.name, bills, lambda: w.feature_store.delete_online_store(store.name))]


def _jobs(w: Any, cfg: Config) -> list[Resource]:
    """The bundle's jobs (:data:`JOBS`) whose ``catalog`` and ``schema`` parameters are this config's."""
    named = re.compile(rf"^(\[[^\]]*\] )?{re.escape(cfg.project.replace('_', '-'))}-({'|'.join(JOBS)})-")
    found = []
    for base in w.jobs.list():
        if not named.match((base.settings.name if base.settings else None) or ""):
            continue
        settings = getattr(_get(w.jobs.get, base.job_id), "settings", None)  # None: deleted since the listing
        defaults = {p.name: p.default for p in (settings.parameters if settings else None) or []}
        if (defaults.get("catalog"), defaults.get("schema")) != (cfg.catalog, cfg.schema):
            continue
        scheduled = any(t is not None and str(getattr(t.pause_status, "value", t.pause_status)) != "PAUSED"
                        for t in (settings.schedule, settings.trigger, settings.continuous))
        bills = "per run: job compute, " + ("scheduled, so it runs by itself" if scheduled else "none while idle")
        found.append(Resource("job", f"{settings.name} ({base.job_id})", bills,
                              lambda job_id=base.job_id: w.jobs.delete(job_id)))
    return found


def _model(w: Any, cfg: Config) -> list[Resource]:
    """The registered model ``cfg.model_name`` and its versions (each first, then the model)."""
    name = cfg.model_name
    if _get(w.registered_models.get, name) is None:
        return []
    versions = sorted(int(v.version) for v in w.model_versions.list(name))
    return [Resource("model version", f"{name} version {v}", STORAGE, lambda v=v: w.model_versions.delete(name, v))
            for v in versions] + [Resource("registered model", name, STORAGE, lambda: w.registered_models.delete(name))]


def _experiment(w: Any, cfg: Config) -> list[Resource]:
    """The MLflow experiment at ``utils.platform.experiment_path(cfg.experiment_name)``, unless it is deleted already."""
    from utils.platform import experiment_path

    path = experiment_path(cfg.experiment_name)
    exp = getattr(_get(w.experiments.get_by_name, path), "experiment", None)
    if exp is None or exp.lifecycle_stage == "deleted":  # get-by-name still finds a deleted experiment
        return []
    return [Resource("experiment", path, STORAGE + " (its runs' artifacts)",
                     lambda: w.experiments.delete_experiment(exp.experiment_id))]


def _volumes(w: Any, cfg: Config) -> list[Resource]:
    """The volumes the lifecycle writes files to (``utils.platform.VOLUMES``, declared by the bundle too)."""
    from utils.platform import VOLUMES

    names = [f"{cfg.catalog}.{cfg.schema}.{v}" for v in VOLUMES]
    return [Resource("volume", n, STORAGE + " (its files)", lambda n=n: w.volumes.delete(n)) for n in names
            if _get(w.volumes.read, n) is not None]


def _schema(w: Any, cfg: Config) -> list[Resource]:
    """The schema ``catalog.schema``, deleted with everything still in it (``force``): tables, metric tables."""
    name = f"{cfg.catalog}.{cfg.schema}"
    schema = Resource("schema", name, STORAGE + " (its tables go with it)", lambda: w.schemas.delete(name, force=True))
    return [schema] if _get(w.schemas.get, name) is not None else []


FINDERS = {"the serving endpoint": _endpoint, "the data-profiling monitor": _monitor, "the online store": _online_store,
           "the jobs": _jobs, "the model": _model, "the experiment": _experiment, "the volumes": _volumes, "the schema": _schema}


def inventory(client: Any, cfg: Config | None = None) -> tuple[list[Resource], list[str]]:
    """What of this project exists for ``cfg`` (default ``get_config()``) in the workspace of ``client`` (a
    ``WorkspaceClient``), changing nothing: ``(resources in ORDER, problems)``, a line per kind the workspace refused
    or failed to list (the other kinds are still listed); an error that is not the workspace's (no network) is raised."""
    from databricks.sdk.errors import DatabricksError

    cfg = cfg or get_config()
    found: list[Resource] = []
    problems: list[str] = []
    for what, finder in FINDERS.items():
        try:
            found += finder(client, cfg)
        except DatabricksError as exc:
            problems.append(f"cannot list {what} ({_reason(exc)}): it is left out below")
    return sorted(found, key=lambda r: ORDER.index(r.kind)), problems


def delete_all(resources: Iterable[Resource]) -> int:
    """Delete ``resources`` in :data:`ORDER`, printing one line each; returns how many were refused or failed.

    Already gone (404, or the Jobs API's "does not exist") is one line, not a failure; a refusal (403) is one line
    naming the permission (:data:`PERMISSION`); the rest goes on either way. Errors not the workspace's are raised.
    """
    from databricks.sdk.errors import DatabricksError, PermissionDenied

    problems = 0
    for r in sorted(resources, key=lambda r: ORDER.index(r.kind)):
        try:
            r.delete()
            line = f"deleted: {r.kind} {r.name}"
        except DatabricksError as exc:
            problems += not _gone(exc)
            line = (f"already gone: {r.kind} {r.name}" if _gone(exc)
                    else f"refused: {r.kind} {r.name} needs {PERMISSION[r.kind]} ({_reason(exc)})"
                    if isinstance(exc, PermissionDenied) else f"failed: {r.kind} {r.name} ({_reason(exc)})")
        print(line)
    return problems


def table(resources: list[Resource]) -> str:
    """A plain text table: kind, name, and what it costs while it exists."""
    rows = [("KIND", "NAME", "BILLS WHILE IT EXISTS"), *((r.kind, r.name, r.bills) for r in resources)]
    kind, name = (max(len(row[i]) for row in rows) for i in (0, 1))
    return "\n".join(f"{k:<{kind}}  {n:<{name}}  {b}" for k, n, b in rows)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns 0, or 1 when anything could not be listed, was refused or failed."""
    from utils.parameters import add_job_config_options, apply_job_config
    from utils.platform import EnvironmentProblem, personal_schema, workspace_client

    parser = argparse.ArgumentParser(prog="python -m utils.teardown", description=__doc__.splitlines()[0])
    parser.add_argument("--yes", action="store_true", help="delete what is listed; without it nothing is changed")
    add_job_config_options(parser)
    args = parser.parse_args(argv)
    try:
        client = workspace_client()  # the platform's answer: off Databricks there is no workspace
    except EnvironmentProblem:
        print("Not on Databricks: the local equivalent is `make clean`, which deletes the local state folder.")
        return 0
    apply_job_config(args)
    if not os.environ.get("MLOPS_SCHEMA"):  # as a notebook run by hand: your own schema, mlops_<you>
        os.environ["MLOPS_SCHEMA"] = personal_schema(Config.schema) or Config.schema
    cfg = get_config()
    resources, problems = inventory(client, cfg)
    sys.stdout.write("".join(f"{line}\n" for line in problems))
    print(f"What this project made in {cfg.catalog}.{cfg.schema}:\n{table(resources)}" if resources
          else f"Nothing of this project found in {cfg.catalog}.{cfg.schema}: nothing to delete.")
    if resources and not args.yes:
        print("Nothing deleted: `python -m utils.teardown --yes` deletes these, top to bottom.")
    return 1 if problems or (args.yes and delete_all(resources)) else 0


if __name__ == "__main__":
    sys.exit(main())
