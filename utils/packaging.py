"""Packaging: the ``utils`` wheel, model-first and code-first promotion, container and cluster targets.

* ``build_wheel`` builds the project's distribution (``utils.project.DISTRIBUTION``) (the ``utils`` package) from a staged copy
  of the sources, so nothing is written into the repository.
* Model-first: ``promote_model_first`` copies the registered artifact itself into another
  environment's registry name (on Databricks another catalog) and points its alias at the copy.
* Code-first: ``retrain_with_wheel`` runs the training code from the wheel alone and retrains from
  the inputs a run recorded. Where it runs is ``utils.platform.code_first_runner()``'s choice: locally
  a subprocess that can import ``utils`` only from the unpacked wheel; on Databricks a one-time job run
  (``jobs.submit``) whose ``python_wheel_task`` runs the wheel's ``mlops-retrain`` entry point on
  serverless compute, with the notebook's credentials, Spark and Unity Catalog.
* ``generate_dockerfile`` downloads the model here and calls MLflow's own generator on that folder; ``kubernetes_manifests`` describes a
  Deployment + Service for the image it builds; ``dockerfile_problems`` / ``manifest_problems``
  check both without a Docker engine or a cluster.
* ``fresh_env_predict`` loads the model in a new virtual environment built only from the model's
  own ``requirements.txt`` and returns its predictions, proving the package is self-contained.

Local state goes under ``package_dir()`` (inside ``utils.platform.state_dir()``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils import project
from utils.config import Config, get_config
from utils.platform import REPO_ROOT, state_dir

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

DISTRIBUTION = project.DISTRIBUTION  # pyproject's name
SERVING_PORT = 8080  # the port MLflow's model container listens on
READINESS_PATH = "/ping"
LIVENESS_PATH = "/health"
CONTAINER_MODEL_DIR = "/opt/ml/model"
RESULT_MARKER = "PACKAGING_RESULT "
SUBPROCESS_TIMEOUT_S = 900
BUILD_SOURCES = ("pyproject.toml", "README.md", "LICENSE")


class PackagingError(RuntimeError):
    """A packaging step (wheel build, environment, subprocess) failed; the message says how to fix it."""


def package_dir() -> Path:
    """Folder for wheels, Docker contexts, manifests and fresh environments (under the state dir)."""
    return state_dir() / "package"


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(cmd: list[str], what: str, fix: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``cmd``; raise PackagingError with its output and ``fix`` when it fails."""
    kwargs.setdefault("timeout", SUBPROCESS_TIMEOUT_S)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise PackagingError(f"{what} did not finish within {exc.timeout}s: {fix}") from exc
    if proc.returncode != 0:
        raise PackagingError(f"{what} failed (exit {proc.returncode}): {fix}\n{_tail(proc.stderr + proc.stdout)}")
    return proc


def uv_executable() -> str | None:
    """The ``uv`` next to this interpreter, else on ``PATH``; None when there is none."""
    local = Path(sys.executable).parent / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def _uv_with_offline_first(cmd: list[str], what: str, fix: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a uv command from its cache only, then (if that fails) with the package index."""
    try:
        return _run([*cmd, "--offline"], what, fix, **kwargs)
    except PackagingError:
        return _run(cmd, what, fix, **kwargs)


# ---------------------------------------------------------------- the wheel


def build_wheel(out_dir: Path | None = None, source_root: Path = REPO_ROOT) -> Path:
    """Build the project's wheel (the ``utils`` package) into ``out_dir``; returns its path.

    The build runs on a staged copy of ``pyproject.toml``, ``README.md`` and ``utils/``, so no
    ``build/`` or ``*.egg-info`` lands in the repository. Uses ``uv build`` (its cache first, so it
    works offline once warmed), else ``python -m build``, else ``pip wheel --no-deps`` (what a Databricks
    runtime has).
    """
    out_dir = Path(out_dir or package_dir() / "dist")
    if not (source_root / "pyproject.toml").exists() or not (source_root / "utils").is_dir():
        raise PackagingError(f"{source_root} has no pyproject.toml and utils/: pass the project's root folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix="wheel-src-") as tmp:
        src = Path(tmp)
        for name in BUILD_SOURCES:
            if (source_root / name).exists():
                shutil.copy2(source_root / name, src / name)
        shutil.copytree(source_root / "utils", src / "utils", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        uv = uv_executable()
        fix = "check pyproject.toml, and that the build backend (setuptools, wheel) is cached or PyPI is reachable"
        if uv:
            _uv_with_offline_first([uv, "build", "--wheel", "--quiet", "--out-dir", str(out_dir), str(src)],
                                   "building the wheel with uv", fix, cwd=src)
        elif importlib.util.find_spec("build") is not None:
            _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out_dir), str(src)],
                 "building the wheel with python -m build", f"{fix}; or install uv", cwd=src)
        else:  # a Databricks runtime has neither uv nor build, but pip builds the same wheel
            _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir), str(src)],
                 "building the wheel with pip wheel", fix, cwd=src)
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise PackagingError(f"expected one wheel in {out_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


def wheel_contents(wheel: Path) -> list[str]:
    """The file names inside a wheel, sorted."""
    with zipfile.ZipFile(wheel) as zf:
        return sorted(zf.namelist())


def wheel_metadata(wheel: Path) -> dict[str, Any]:
    """Name, version and declared requirements of a wheel (from its METADATA)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    fields: dict[str, Any] = {"requires": []}
    for line in text.splitlines():
        if not line.strip():
            break  # the description follows the headers
        key, _, value = line.partition(": ")
        if key == "Requires-Dist":
            fields["requires"].append(value)
        elif key in ("Name", "Version", "Requires-Python"):
            fields[key.lower().replace("-", "_")] = value
    return fields


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Extract ``wheel`` into a clean ``dest`` (a wheel is a zip of importable files); returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    if not (dest / "utils" / "__init__.py").exists():
        raise PackagingError(f"{wheel.name} holds no utils package: check [tool.setuptools.packages.find] in pyproject.toml")
    return dest


# ---------------------------------------------------------------- what the model carries


def download_model(model_uri: str, dest: Path | None = None) -> Path:
    """Download a model's folder (``MLmodel``, code, requirements, artifacts) into a clean ``dest``."""
    import mlflow

    dest = Path(dest or package_dir() / "model")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest)))


def model_files(model_dir: Path, under: str = "code") -> list[str]:
    """Files below ``under`` in a downloaded model folder, relative to the folder (no caches)."""
    root = Path(model_dir)
    return sorted(str(p.relative_to(root)) for p in (root / under).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def model_requirements(model_dir: Path) -> list[str]:
    """The model's ``requirements.txt`` lines (no comments or blanks)."""
    path = Path(model_dir) / "requirements.txt"
    if not path.exists():
        raise PackagingError(f"{model_dir} has no requirements.txt: log the model with pip_requirements=pinned_requirements()")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def unpinned(requirements: list[str]) -> list[str]:
    """Requirement lines that are not pinned to one exact version (``name==x.y.z``)."""
    return [r for r in requirements if not re.match(r"^[A-Za-z0-9_.\-\[\],]+==[^\s,;*]+$", r)]


def model_python_version(model_dir: Path) -> str:
    """The Python version recorded in the model's ``python_env.yaml``."""
    import yaml

    path = Path(model_dir) / "python_env.yaml"
    if not path.exists():
        raise PackagingError(f"{model_dir} has no python_env.yaml: re-log the model with a current MLflow")
    return str(yaml.safe_load(path.read_text())["python"])


# ---------------------------------------------------------------- model-first


def target_model_name(env: str = "prod", cfg: Config | None = None) -> str:
    """The registered-model name in environment ``env``: its catalog (``Config.catalog_for``), same schema and model.

    ``<project>_prod.mlops.<model>`` by default, whichever catalog the notebook runs in (a dev catalog
    promotes to ``<project>_prod`` too); ``MLOPS_PROD_CATALOG`` names another.
    """
    cfg = cfg or get_config()
    if not re.fullmatch(r"[a-z][a-z0-9_]*", env):
        raise ValueError(f"environment name {env!r} must be lower-case letters, digits and underscores (e.g. 'prod')")
    return f"{cfg.catalog_for(env)}.{cfg.schema}.{cfg.model_base_name}"


def prod_model_name(cfg: Config | None = None) -> str | None:
    """The registered model model-first promotion copies the champion to, or None (one line says why) where there is none.

    ``<prod catalog>.<schema>.<model>``, the prod catalog as :func:`utils.platform.prod_catalog` finds it: on
    Databricks the target's ``prod_catalog`` (the bundle sets it per target; dev and serverless have none), which
    must exist and differ from the catalog this runs in; locally ``<project>_prod`` unless ``MLOPS_PROD_CATALOG``
    names another.
    """
    from utils.platform import prod_catalog

    cfg = cfg or get_config()
    catalog, why_not = prod_catalog(cfg)
    if not catalog:
        print(f"model-first promotion skipped: {why_not}")
        return None
    return f"{catalog}.{cfg.schema}.{cfg.model_base_name}"


def promote_model_first(src_name: str, alias: str, dst_name: str, reason: str, actor: str | None = None) -> ModelVersion:
    """Copy the version ``src_name@alias`` (the artifact itself) to ``dst_name`` and point ``alias`` there (audited).

    On Unity Catalog ``dst_name`` lives in another catalog (e.g. ``<project>_prod``) that must exist; its
    schema is created when missing (:func:`utils.platform.ensure_model_schema`). Locally it is just another
    registered-model name in the same registry.
    """
    from mlflow import MlflowClient

    from utils import registry
    from utils.platform import ensure_model_schema, registry_uri, tracking_uri

    source = registry.get_alias_version(src_name, alias)
    if source is None:
        raise ValueError(f"{src_name} has no {alias!r} alias: register and promote a model first (notebook 03)")
    ensure_model_schema(dst_name)  # on Unity Catalog the target catalog's schema may not exist yet
    client = MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())
    with registry.registration_notes_hidden():
        copy = client.copy_model_version(f"models:/{src_name}@{alias}", dst_name)
    # The copy keeps the source's tags (gate verdict, inputs: provenance worth keeping) but the source's
    # audit entries describe alias moves in the *source* model, so they are dropped from the copy.
    for key in client.get_model_version(dst_name, copy.version).tags:
        if key.startswith(registry.AUDIT_PREFIX) and key[len(registry.AUDIT_PREFIX):].isdigit():
            client.delete_model_version_tag(dst_name, copy.version, key)
    registry.set_version_tags(dst_name, copy.version, {"copied_from": f"{src_name}/{source.version}"})
    registry.set_alias(dst_name, alias, copy.version, reason, actor, action="promote_model_first")
    return client.get_model_version(dst_name, copy.version)


def model_digest(model_uri: str) -> str:
    """SHA-256 over a model's files (paths and bytes), ignoring the registry's own name/version note.

    Equal digests mean the same artifact, wherever the registry stored the copy.
    """
    import hashlib

    with tempfile.TemporaryDirectory(dir=_ensure(package_dir())) as tmp:
        root = download_model(model_uri, Path(tmp) / "model")
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if path.name == "registered_model_meta" or "__pycache__" in rel:
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------- code-first


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


def _normal_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k.replace("/value", "").replace("/auc", ""): float(v) for k, v in metrics.items()}


def run_metrics(run_id: str) -> dict[str, float]:
    """The metrics an MLflow run logged, with evaluation suffixes stripped as ``evaluate_scores`` does."""
    import mlflow

    return _normal_metrics(mlflow.get_run(run_id).data.metrics)


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
    fields = json.loads(args[0])
    spec = RetrainSpec(**{**fields, "rows": tuple(fields["rows"]) if fields.get("rows") else None})
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
    "from utils.packaging import {entry}; {entry}()"
)


def _result_line(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if not lines:
        raise PackagingError(f"the subprocess printed no result line:\n{_tail(stdout)}")
    return json.loads(lines[-1][len(RESULT_MARKER):])


def target_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a 'target environment' subprocess: same state dir, jars, tracking and registry, no PYTHON* vars."""
    from utils.local.jvm import jars_dir
    from utils.platform import raw_data_dir, registry_uri, tracking_uri

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"MLOPS_STATE_DIR": str(state_dir()), "MLOPS_RAW_DIR": str(raw_data_dir()),
                "MLFLOW_TRACKING_URI": tracking_uri(), "MLFLOW_REGISTRY_URI": registry_uri(),
                "MLOPS_JARS_DIR": str(jars_dir())})  # the wheel's utils has no .jars of its own
    env.update(extra or {})
    return env


def _config_fields(cfg: Config | None = None) -> dict[str, Any]:
    """The config's plain fields (names, aliases, seed; not the thresholds), for ``retrain_main``'s second argument."""
    from dataclasses import fields

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
    from dataclasses import asdict

    workdir = Path(workdir or package_dir() / "code-first")
    site = unpack_wheel(wheel, workdir / "site")
    cmd = [sys.executable, "-I", "-c", _BOOTSTRAP.format(path=str(site), entry="retrain_main"), json.dumps(asdict(spec)),
           json.dumps(_config_fields())]
    proc = _run(cmd, "the code-first retrain", "read the traceback above; the wheel must contain every module training needs",
                cwd=workdir, env=target_env())
    out = _result_line(proc.stdout)
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
    from dataclasses import asdict

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
        out = _result_line(output.logs or "" if output else "")
    except PackagingError:
        raise PackagingError(f"the code-first retrain job run {job_run_id} printed no result line"
                             f"{' (its output was truncated)' if output and output.logs_truncated else ''}: "
                             f"see {run.run_page_url}") from None
    if not out.get("from_wheel"):
        raise PackagingError(f"the job run imported utils from {out.get('utils_file')}, not from the "
                             f"{DISTRIBUTION} wheel: see {run.run_page_url}")
    return {**out, "job_run_id": job_run_id, "run_page_url": run.run_page_url}


# ---------------------------------------------------------------- container and cluster


def generate_dockerfile(model_uri: str, out_dir: Path | None = None) -> Path:
    """Write the model's Docker build context with ``mlflow models generate-dockerfile``; returns the folder.

    The model is downloaded in this process (``mlflow.artifacts.download_artifacts``, with this
    process's registry credentials) and the generator runs on that local folder. The result holds the
    ``Dockerfile`` and the model under ``model_dir/``; build it with ``docker build -t <image> <folder>``.
    No Docker engine is needed to generate it. Raises PackagingError when the generator fails.
    """
    out_dir = Path(out_dir or package_dir() / "docker")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
    # The registry is read here, where the credentials are (on Databricks the notebook's); the generator
    # only copies a local folder, so its process needs none and makes no registry call.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix="docker-model-") as tmp:
        model_dir = download_model(model_uri, Path(tmp) / "model")
        # The trailing "/" makes MLflow copy the folder's contents into model_dir/ (COPY model_dir /opt/ml/model),
        # as it does for a models:/ URI, instead of nesting the folder as model_dir/model.
        _run([*cmd, "models", "generate-dockerfile", "--model-uri", f"{model_dir.as_posix()}/",
              "--output-directory", str(out_dir)],
             f"generating the Dockerfile for {model_uri}", f"check that {model_dir} is an MLflow model folder (MLmodel)",
             env=env)
    if not (out_dir / "Dockerfile").exists():
        raise PackagingError(f"mlflow wrote no Dockerfile into {out_dir}")
    return out_dir


def dockerfile_problems(context_dir: Path) -> list[str]:
    """What is wrong with a generated Docker context (empty when it would serve the model)."""
    context_dir = Path(context_dir)
    path = context_dir / "Dockerfile"
    if not path.exists():
        return [f"no Dockerfile in {context_dir}"]
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    problems = []
    if not lines or not lines[0].startswith("FROM "):
        problems.append("the first instruction is not FROM")
    copies = [ln.split()[1:] for ln in lines if ln.startswith("COPY ")]
    model_copy = [c for c in copies if len(c) == 2 and c[1] == CONTAINER_MODEL_DIR]
    if not model_copy:
        problems.append(f"no COPY of the model to {CONTAINER_MODEL_DIR}")
    elif not (context_dir / model_copy[0][0] / "MLmodel").exists():
        problems.append(f"the copied folder {model_copy[0][0]} holds no MLmodel")
    entry = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
    if not entry:
        problems.append("no ENTRYPOINT")
    else:
        try:
            argv = json.loads(entry[-1][len("ENTRYPOINT "):])
        except json.JSONDecodeError:
            argv = []
        if not argv or "_serve" not in " ".join(argv):
            problems.append("the ENTRYPOINT does not start MLflow's model server")
    return problems


def image_name(model_version: str | int, registry_prefix: str = "", cfg: Config | None = None) -> str:
    """The image tag for a model version: ``[<registry>/]<model name with - for _>:v<version>``."""
    cfg = cfg or get_config()
    prefix = registry_prefix.rstrip("/") + "/" if registry_prefix else ""
    return f"{prefix}{cfg.model_base_name.replace('_', '-').lower()}:v{model_version}"


def kubernetes_manifests(
    image: str,
    model_name: str,
    model_version: str | int,
    *,
    app_name: str | None = None,
    replicas: int = 2,
    port: int = SERVING_PORT,
    cpu: str = "500m",
    memory: str = "1Gi",
    cpu_limit: str = "2",
    memory_limit: str = "2Gi",
    workers: int = 2,
    cfg: Config | None = None,
) -> list[dict[str, Any]]:
    """A Deployment and a Service serving the model image on ``port``, with readiness and liveness probes.

    The selector uses only the stable app labels, so a new model version rolls out (zero unavailable
    replicas) under the same Deployment; the model name and version are labels/annotations on the pods.
    ``workers`` sets MLFLOW_MODELS_WORKERS (the container otherwise starts one per *node* CPU).
    """
    cfg = cfg or get_config()
    if replicas < 1 or workers < 1:
        raise ValueError(f"replicas ({replicas}) and workers ({workers}) must be at least 1")
    name = app_name or cfg.model_base_name.replace("_", "-").lower()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(f"{name!r} is not a valid Kubernetes name: lower-case letters, digits and '-', at most 63")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "model-server"}
    pod_labels = {**selector, "app.kubernetes.io/part-of": cfg.project, "app.kubernetes.io/version": f"v{model_version}"}
    annotations = {"mlflow.org/model-name": model_name, "mlflow.org/model-version": str(model_version)}

    def probe(path: str, delay: int, period: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": delay, "periodSeconds": period,
                "timeoutSeconds": 5, "failureThreshold": 3}

    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": pod_labels, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": {"containers": [{
                    "name": "model",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                    "env": [{"name": "MLFLOW_MODELS_WORKERS", "value": str(workers)}],
                    "resources": {"requests": {"cpu": cpu, "memory": memory},
                                  "limits": {"cpu": cpu_limit, "memory": memory_limit}},
                    "readinessProbe": probe(READINESS_PATH, 10, 5),
                    "livenessProbe": probe(LIVENESS_PATH, 30, 10),
                }]},
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": pod_labels, "annotations": annotations},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]},
    }
    return [deployment, service]


def write_manifests(docs: list[dict[str, Any]], path: Path | None = None) -> Path:
    """Write ``docs`` as one multi-document YAML file (for ``kubectl apply -f``); returns its path."""
    import yaml

    class _PlainDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # repeated labels stay readable, no &id001 anchors
            return True

    path = Path(path or package_dir() / "k8s" / "model-serving.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump_all(docs, Dumper=_PlainDumper, sort_keys=False))
    return path


def manifest_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What would stop a Deployment + Service pair from serving (empty when consistent)."""
    problems = []
    deployments = [d for d in docs if d and d.get("kind") == "Deployment"]
    services = [d for d in docs if d and d.get("kind") == "Service"]
    if len(deployments) != 1 or len(services) != 1:
        return [f"expected one Deployment and one Service, found {len(deployments)} and {len(services)}"]
    dep, svc = deployments[0], services[0]
    spec = dep.get("spec", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    if not selector:
        problems.append("the Deployment has no selector.matchLabels")
    if any(pod_labels.get(k) != v for k, v in selector.items()):
        problems.append(f"the Deployment selector {selector} does not match its pod labels {pod_labels}")
    svc_selector = svc.get("spec", {}).get("selector", {})
    if not svc_selector or any(pod_labels.get(k) != v for k, v in svc_selector.items()):
        problems.append(f"the Service selector {svc_selector} matches no pod labels {pod_labels}")
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    if not containers:
        return [*problems, "the Deployment has no container"]
    c = containers[0]
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    numbers = set(ports.values())
    for sp in svc.get("spec", {}).get("ports", []):
        target = sp.get("targetPort", sp.get("port"))
        if (ports.get(target) if isinstance(target, str) else target) not in numbers:
            problems.append(f"the Service targetPort {target!r} is not a container port {sorted(numbers)}")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = c.get(kind, {}).get("httpGet")
        if not probe:
            problems.append(f"the container has no HTTP {kind}")
        elif (ports.get(probe.get("port")) if isinstance(probe.get("port"), str) else probe.get("port")) not in numbers:
            problems.append(f"the {kind} port {probe.get('port')!r} is not a container port")
    if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
        problems.append("the container has no resource requests and limits")
    if not c.get("image"):
        problems.append("the container has no image")
    return problems


# ---------------------------------------------------------------- self-contained proof


@dataclass
class FreshEnvResult:
    """Predictions made in a fresh virtual environment, and how that environment was built."""

    predictions: np.ndarray
    seconds: dict[str, float]
    python: str
    requirements: list[str]
    utils_importable_before_load: bool
    env_dir: Path
    details: dict[str, Any] = field(default_factory=dict)


_PREDICT_SCRIPT = """\
import importlib.util, json, sys
import mlflow, numpy as np, pandas as pd
model_dir, sample, out = sys.argv[1:4]
before = importlib.util.find_spec("utils") is not None
model = mlflow.pyfunc.load_model(model_dir)
np.save(out, np.asarray(model.predict(pd.read_parquet(sample)), dtype=float))
print(MARKER + json.dumps({"python": sys.version.split()[0], "executable": sys.executable,
                          "mlflow": mlflow.__version__, "utils_importable_before_load": before}))
""".replace("MARKER", repr(RESULT_MARKER))


def fresh_env_predict(model_uri: str, sample: pd.DataFrame, workdir: Path | None = None, keep: bool = False) -> FreshEnvResult:
    """Predict ``sample`` with ``model_uri`` in a new virtual environment built only from the model's requirements.txt.

    The model is downloaded, a venv is created with ``uv venv`` on this Python, ``uv pip install -r
    requirements.txt`` fills it (from uv's cache when possible, else the package index), and an
    isolated interpreter (``-I``, working folder outside the repository) loads the model folder and
    predicts. Where uv is not installed (a Databricks runtime) the standard library's ``venv`` and the
    venv's own pip do the same, from the package index. The environment is deleted afterwards unless ``keep``.

    Raises PackagingError naming the step that failed (venv, install, predict) and what to check.
    """
    import numpy as np

    uv = uv_executable()
    if sample.empty:
        raise ValueError("the sample to predict is empty: pass a few feature rows")
    workdir = Path(workdir or package_dir() / "fresh-env")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    model_dir = download_model(model_uri, workdir / "model")
    requirements = model_requirements(model_dir)
    want_python = model_python_version(model_dir)
    seconds["download"] = time.perf_counter() - t0
    env_dir = workdir / "venv"
    t0 = time.perf_counter()
    if uv is not None:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)], "creating the fresh venv",
             "check that uv can use this Python", cwd=workdir)
    else:
        _run([sys.executable, "-m", "venv", str(env_dir)], "creating the fresh venv (uv not found: standard venv)",
             "this Python needs its venv and ensurepip modules, or install uv", cwd=workdir)
    python = env_dir / "bin" / "python"
    seconds["venv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reqs = str(model_dir / "requirements.txt")
    if uv is not None:
        _uv_with_offline_first([uv, "pip", "install", "--quiet", "--python", str(python), "-r", reqs],
                               "installing the model's requirements", "check that PyPI is reachable and the pins exist",
                               cwd=workdir)
    else:
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", reqs],
             "installing the model's requirements with pip", "check that PyPI is reachable and the pins exist",
             cwd=workdir)
    seconds["install"] = time.perf_counter() - t0
    sample_path, out_path, script = workdir / "sample.parquet", workdir / "predictions.npy", workdir / "predict.py"
    sample = sample.copy()
    sample.attrs = {}  # a frame from Spark Connect's toPandas carries plan metrics there, which parquet cannot store
    sample.to_parquet(sample_path, index=False)
    script.write_text(_PREDICT_SCRIPT)
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "VIRTUAL_ENV"))}
    proc = _run([str(python), "-I", str(script), str(model_dir), str(sample_path), str(out_path)],
                "predicting in the fresh venv", "the model needs a package its requirements.txt does not list",
                cwd=workdir, env=env)
    seconds["predict"] = time.perf_counter() - t0
    info = _result_line(proc.stdout)
    if info["python"] != want_python:
        raise PackagingError(f"the fresh venv runs Python {info['python']} but the model was logged with {want_python}")
    predictions = np.load(out_path)
    result = FreshEnvResult(predictions, seconds, info["python"], requirements, info["utils_importable_before_load"],
                            env_dir, info)
    if not keep:
        shutil.rmtree(env_dir, ignore_errors=True)
    return result
