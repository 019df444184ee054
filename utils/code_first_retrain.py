"""Code-first promotion: retrain from the ``utils`` wheel alone, on the inputs a training run recorded.

``retrain_with_wheel`` runs where ``utils.platform.code_first_runner()`` says: locally a subprocess that can
import ``utils`` only from the unpacked wheel; on Databricks a one-time job run (``jobs.submit``) whose
``python_wheel_task`` runs the wheel's :data:`ENTRY_POINT` (:func:`retrain_main`) on serverless compute, with
the notebook's credentials, Spark and Unity Catalog.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from utils.config import Config, get_config
from utils.packaging import (
    DISTRIBUTION,
    RESULT_MARKER,
    PackagingError,
    package_dir,
    result_line,
    run_command,
    unpack_wheel,
    wheel_metadata,
)
from utils.platform import REPO_ROOT, state_dir


@dataclass
class RetrainSpec:
    """What a code-first retrain needs from the original run: recipe, seed and recorded inputs."""

    run_id: str
    family: str
    params: dict[str, Any]
    seed: int
    inputs: dict[str, int]
    rows: tuple[int, int] | None = None  # (train, test) rows the run logged, checked after the split
    test_fraction: float = 0.2  # the share of newest rows held out, as the run split them


def retrain_spec(run_id: str) -> RetrainSpec:
    """The family, parameters, seed and input table versions an MLflow training run recorded."""
    import mlflow

    from utils.training import DEFAULT_PARAMS, input_versions

    run = mlflow.get_run(run_id)
    logged = run.data.params
    family = logged.get("family")
    if family not in DEFAULT_PARAMS:
        raise ValueError(f"run {run_id} has no known 'family' param ({family!r}): pass a run made by utils.training.train_and_log")
    params = {k: type(v)(logged[k]) for k, v in DEFAULT_PARAMS[family].items() if k in logged}
    inputs = input_versions(run_id)
    if not inputs:
        raise ValueError(f"run {run_id} recorded no input tables: train with train_and_log(input_tables=...)")
    rows = (int(logged["train_rows"]), int(logged["test_rows"])) if {"train_rows", "test_rows"} <= set(logged) else None
    return RetrainSpec(run_id, family, params, int(logged.get("seed", 42)), inputs, rows,
                       float(logged.get("test_fraction", 0.2)))


def retrain(spec: RetrainSpec, run_name: str = "code-first retrain") -> dict[str, Any]:
    """Retrain ``spec`` from its recorded training-set version (same split and seed) and log it as a run."""
    from mlflow import MlflowClient

    from utils.plantly_features import load_training_frame, training_set_table
    from utils.platform import configure_mlflow
    from utils.training import time_split, train_and_log

    configure_mlflow()
    table = training_set_table()
    if table not in spec.inputs:
        raise ValueError(f"run {spec.run_id} did not record {table}: its inputs are {sorted(spec.inputs)}")
    train, test = time_split(load_training_frame(spec.inputs[table]), test_fraction=spec.test_fraction)
    if spec.rows is not None and (len(train), len(test)) != tuple(spec.rows):
        raise ValueError(f"the split gives {len(train)} train / {len(test)} test rows but run {spec.run_id} used "
                         f"{spec.rows[0]} / {spec.rows[1]}: it was trained with another test_fraction or training set")
    result = train_and_log(train, test, spec.family, spec.params, seed=spec.seed, input_tables=spec.inputs,
                           run_name=run_name, log_model=False)
    MlflowClient().set_tag(result.run_id, "code_first.source_run", spec.run_id)
    return {"run_id": result.run_id, "metrics": result.metrics}


ENTRY_POINT = "mlops-retrain"  # [project.scripts] in pyproject.toml: the job's python_wheel_task runs it


def retrain_main(argv: list[str] | None = None) -> None:
    """Entry point of code-first retraining (the wheel's ``mlops-retrain`` script, the local subprocess).

    ``argv`` (default ``sys.argv[1:]``): the :class:`RetrainSpec` as JSON, then optionally a JSON object of
    config fields (``{"catalog": ..., "schema": ...}``) that become ``MLOPS_<FIELD>`` variables unless
    already set, so a job run reads the tables and experiment of the notebook that started it. Prints
    one line, ``RESULT_MARKER`` + JSON ``{"run_id", "metrics", "utils_file", "from_wheel"}``, where
    ``from_wheel`` says ``utils`` was imported from the installed or unpacked project wheel.
    """
    import importlib.metadata

    import utils

    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit(f"usage: {ENTRY_POINT} '<RetrainSpec as JSON>' ['<config fields as JSON>']")
    for key, value in (json.loads(args[1]) if len(args) > 1 else {}).items():
        os.environ.setdefault(f"MLOPS_{key.upper()}", str(value))
    given = json.loads(args[0])
    spec = RetrainSpec(**{**given, "rows": tuple(given["rows"]) if given.get("rows") else None})
    out = retrain(spec)
    utils_file = Path(utils.__file__).resolve()
    try:
        shipped = Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file("utils/__init__.py"))).resolve()
    except importlib.metadata.PackageNotFoundError:
        shipped = None
    out["utils_file"] = str(utils_file)
    out["from_wheel"] = shipped == utils_file
    print(RESULT_MARKER + json.dumps(out), flush=True)


# With -I Python ignores PYTHONPATH, the working folder and the user site; the editable install's
# finder (which maps `utils` to the repository) is removed too, so only the wheel can provide `utils`.
_BOOTSTRAP = (
    "import sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]; "
    "sys.path.insert(0, {path!r}); "
    "from utils.code_first_retrain import {entry}; {entry}()"
)


def target_env() -> dict[str, str]:
    """Environment for a 'target environment' subprocess: same state dir, jars, tracking and registry, no PYTHON* vars."""
    from utils.local.jvm import jars_dir
    from utils.platform import raw_data_dir, registry_uri, tracking_uri

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"MLOPS_STATE_DIR": str(state_dir()), "MLOPS_RAW_DIR": str(raw_data_dir()),
                "MLFLOW_TRACKING_URI": tracking_uri(), "MLFLOW_REGISTRY_URI": registry_uri(),
                "MLOPS_JARS_DIR": str(jars_dir())})  # the wheel's utils has no .jars of its own
    return env


def _config_fields(cfg: Config | None = None) -> dict[str, Any]:
    """The config's plain fields (names, aliases, seed; not the thresholds), for ``retrain_main``'s second argument."""
    cfg = cfg or get_config()
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "thresholds"}


def retrain_with_wheel(wheel: Path, spec: RetrainSpec, workdir: Path | None = None, client: Any = None,
                       timeout_s: float = 3600.0) -> dict[str, Any]:
    """Code-first: retrain ``spec`` with the training code of ``wheel`` only, where ``utils.platform.code_first_runner()`` says.

    ``"subprocess"`` (local): :func:`retrain_in_subprocess` (``workdir`` holds the unpacked wheel).
    ``"job"`` (Databricks): :func:`retrain_in_job` (``client`` a ``WorkspaceClient``, default the runtime's;
    ``timeout_s`` bounds the wait). Returns ``{"run_id", "metrics", "utils_file", "from_wheel"}`` (the job
    path adds ``job_run_id`` and ``run_page_url``). Raises PackagingError when the retrain fails.
    """
    from utils.platform import code_first_runner

    if code_first_runner() == "job":
        return retrain_in_job(wheel, spec, client=client, timeout_s=timeout_s)
    return retrain_in_subprocess(wheel, spec, workdir)


def retrain_in_subprocess(wheel: Path, spec: RetrainSpec, workdir: Path | None = None) -> dict[str, Any]:
    """Code-first, locally: retrain ``spec`` in a subprocess whose only ``utils`` is the unpacked ``wheel``.

    Returns the new run id, its metrics, the ``utils.__file__`` the subprocess imported and ``from_wheel``.
    Raises PackagingError when the subprocess fails or imported ``utils`` from anywhere but the wheel.
    """
    workdir = Path(workdir or package_dir() / "code-first")
    site = unpack_wheel(wheel, workdir / "site")
    cmd = [sys.executable, "-I", "-c", _BOOTSTRAP.format(path=str(site), entry="retrain_main"), json.dumps(asdict(spec)),
           json.dumps(_config_fields())]
    proc = run_command(cmd, "the code-first retrain",
                       "read the traceback above; the wheel must contain every module training needs",
                       cwd=workdir, env=target_env())
    out = result_line(proc.stdout)
    if not Path(out["utils_file"]).is_relative_to(site):
        raise PackagingError(f"the retrain imported utils from {out['utils_file']}, not from the wheel in {site}")
    return out


# ---------------------------------------------------------------- code-first on Databricks: a one-time job run

RETRAIN_TASK_KEY = "code_first_retrain"
SERVERLESS_ENVIRONMENT_VERSION = "4"  # Python 3.12, as the bundle's serverless target (var.environment_version)


def databricks_requirements(path: Path = REPO_ROOT / "requirements-databricks.txt") -> list[str]:
    """The pinned packages of ``requirements-databricks.txt`` (``name==version`` lines, no comments or options)."""
    if not path.exists():
        raise PackagingError(f"{path} not found: run `make requirements-databricks` to compile it")
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith(("#", "-"))]


def wheel_volume_path(wheel: Path) -> str:
    """Where the wheel is uploaded for a job run: ``<files_dir("landing")>/packages/<wheel name>``.

    On Databricks the Unity Catalog volume ``/Volumes/<catalog>/<schema>/landing/packages/...`` (the
    bundle creates the ``landing`` volume; serverless tasks install libraries from volumes).
    """
    from utils.platform import files_dir

    return f"{files_dir('landing').as_posix()}/packages/{Path(wheel).name}"


def _sdk_error_line(exc: Exception) -> str:
    code = getattr(exc, "error_code", None) or type(exc).__name__
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{code}: {first[:300]}"


def _workspace_call(what: str, fix: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; a workspace refusal becomes a one-line PackagingError naming ``what`` failed and ``fix``."""
    from databricks.sdk.errors import DatabricksError

    try:
        return call(*args, **kwargs)
    except DatabricksError as exc:
        code = getattr(exc, "error_code", "")
        if code == "PERMISSION_DENIED" or type(exc).__name__ == "PermissionDenied":
            fix = f"you lack the permission it needs: {fix}"
        raise PackagingError(f"{what} was refused ({_sdk_error_line(exc)}): {fix}") from None


def retrain_job_submission(wheel: Path, spec: RetrainSpec, remote_wheel: str, cfg: Config | None = None) -> dict[str, Any]:
    """The keyword arguments of ``WorkspaceClient().jobs.submit`` for a code-first retrain of ``spec``.

    One ``python_wheel_task`` (package = the wheel's distribution name, entry point :data:`ENTRY_POINT`,
    parameters ``[spec as JSON, config fields as JSON]``) on serverless compute: a job environment of
    version :data:`SERVERLESS_ENVIRONMENT_VERSION` whose dependencies are ``requirements-databricks.txt``'s
    pins and the wheel at ``remote_wheel``.
    """
    from databricks.sdk.service import compute, jobs

    cfg = cfg or get_config()
    environment = jobs.JobEnvironment(environment_key="default", spec=compute.Environment(
        environment_version=SERVERLESS_ENVIRONMENT_VERSION, dependencies=[*databricks_requirements(), remote_wheel]))
    task = jobs.SubmitTask(
        task_key=RETRAIN_TASK_KEY,
        environment_key="default",
        python_wheel_task=jobs.PythonWheelTask(
            package_name=wheel_metadata(wheel)["name"], entry_point=ENTRY_POINT,
            parameters=[json.dumps(asdict(spec)), json.dumps(_config_fields(cfg))]),
    )
    return {"run_name": f"{cfg.project} code-first retrain of run {spec.run_id}", "tasks": [task],
            "environments": [environment]}


def retrain_in_job(wheel: Path, spec: RetrainSpec, client: Any = None, timeout_s: float = 3600.0,
                   cfg: Config | None = None) -> dict[str, Any]:
    """Code-first on Databricks: upload ``wheel`` to a volume, run it once as a job (``jobs.submit``), wait, read its result.

    The task runs the wheel's :data:`ENTRY_POINT` (:func:`retrain_main`) with the notebook's catalog,
    schema and experiment, on serverless compute (:func:`retrain_job_submission`); its result line is
    read from ``jobs.get_run_output`` of the task run. ``client`` is a ``WorkspaceClient`` (default the
    runtime's, ``utils.platform.workspace_client()``). Returns ``{"run_id", "metrics", "utils_file",
    "from_wheel", "job_run_id", "run_page_url"}``.

    Raises:
        PackagingError: one line naming what failed and what to do: the upload or submit refused
            (permissions, a missing volume), the run not TERMINATED with SUCCESS within ``timeout_s``
            (with the run's page URL and its error), or no result line in the task's output.
    """
    import datetime as dt

    from databricks.sdk.errors import OperationFailed

    from utils.platform import workspace_client

    client = client or workspace_client()
    remote = wheel_volume_path(wheel)
    volume = "/".join(remote.split("/")[:5])
    with open(wheel, "rb") as fh:
        _workspace_call(f"uploading {Path(wheel).name} to {remote}",
                        f"the volume {volume} must exist and you need WRITE VOLUME on it (the bundle creates it; "
                        "notebook 00 runs ensure_dirs)", client.files.upload, remote, fh, overwrite=True)
    submission = retrain_job_submission(wheel, spec, remote, cfg)
    waiter = _workspace_call("submitting the code-first retrain job run",
                             "serverless jobs must be enabled in the workspace and you need to be allowed to run jobs",
                             client.jobs.submit, **submission)
    job_run_id = waiter.run_id
    try:
        run = waiter.result(timeout=dt.timedelta(seconds=timeout_s))
    except TimeoutError:
        run = client.jobs.get_run(job_run_id)
        raise PackagingError(f"the code-first retrain job run {job_run_id} did not finish within {timeout_s:.0f}s: "
                             f"follow it at {run.run_page_url}") from None
    except OperationFailed as exc:
        run = client.jobs.get_run(job_run_id)
        raise PackagingError(f"the code-first retrain job run {job_run_id} failed ({exc}): see {run.run_page_url}") from None
    task_run = next((t for t in run.tasks or [] if t.task_key == RETRAIN_TASK_KEY), None)
    output = (_workspace_call(f"reading the output of job run {job_run_id}", f"open {run.run_page_url}",
                              client.jobs.get_run_output, task_run.run_id) if task_run and task_run.run_id else None)
    result = run.state.result_state.value if run.state and run.state.result_state else "no result"
    if result != "SUCCESS":
        error = (output.error if output else None) or (run.state.state_message if run.state else "") or "no error message"
        raise PackagingError(f"the code-first retrain job run {job_run_id} ended {result}: "
                             f"{error.strip().splitlines()[0][:400]}; see {run.run_page_url}")
    try:
        out = result_line(output.logs or "" if output else "")
    except PackagingError:
        raise PackagingError(f"the code-first retrain job run {job_run_id} printed no result line"
                             f"{' (its output was truncated)' if output and output.logs_truncated else ''}: "
                             f"see {run.run_page_url}") from None
    if not out.get("from_wheel"):
        raise PackagingError(f"the job run imported utils from {out.get('utils_file')}, not from the "
                             f"{DISTRIBUTION} wheel: see {run.run_page_url}")
    return {**out, "job_run_id": job_run_id, "run_page_url": run.run_page_url}
