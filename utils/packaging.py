"""Packaging: the ``utils`` wheel, what a logged model carries, model-first promotion, the fresh-environment proof.

* ``build_wheel`` builds the project's distribution (``utils.project.DISTRIBUTION``, the ``utils`` package) from
  a staged copy of the sources, so nothing is written into the repository.
* Model-first: ``promote_model_first`` copies the registered artifact itself into another environment's
  registry name (on Databricks another catalog) and points its alias at the copy.
* ``fresh_env_predict`` loads the model in a new virtual environment built only from the model's own
  ``requirements.txt`` and returns its predictions, proving the package is self-contained.
* ``generate_dockerfile`` writes a Docker build context for serving the model outside Databricks, with MLflow's
  own generator.

Code-first retraining from the wheel is ``utils.code_first_retrain``. Local state goes under ``package_dir()``
(inside ``utils.platform.state_dir()``).
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
RESULT_MARKER = "PACKAGING_RESULT "
SUBPROCESS_TIMEOUT_S = 900
BUILD_SOURCES = ("pyproject.toml", "README.md", "LICENSE")


class PackagingError(RuntimeError):
    """A packaging step (wheel build, environment, subprocess) failed; the message says how to fix it."""


def package_dir() -> Path:
    """Folder for wheels, Docker contexts and fresh environments (under the state dir)."""
    return state_dir() / "package"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_command(cmd: list[str], what: str, fix: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``cmd``; raise PackagingError with its output and ``fix`` when it fails."""
    kwargs.setdefault("timeout", SUBPROCESS_TIMEOUT_S)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise PackagingError(f"{what} did not finish within {exc.timeout}s: {fix}") from exc
    if proc.returncode != 0:
        raise PackagingError(f"{what} failed (exit {proc.returncode}): {fix}\n{_tail(proc.stderr + proc.stdout)}")
    return proc


def result_line(stdout: str) -> dict[str, Any]:
    """The JSON a subprocess printed after ``RESULT_MARKER`` (its last such line); PackagingError when none."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if not lines:
        raise PackagingError(f"the subprocess printed no result line:\n{_tail(stdout)}")
    return json.loads(lines[-1][len(RESULT_MARKER):])


def uv_executable() -> str | None:
    """The ``uv`` next to this interpreter, else on ``PATH``; None when there is none."""
    local = Path(sys.executable).parent / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def _uv_with_offline_first(cmd: list[str], what: str, fix: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a uv command from its cache only, then (if that fails) with the package index."""
    try:
        return run_command([*cmd, "--offline"], what, fix, **kwargs)
    except PackagingError:
        return run_command(cmd, what, fix, **kwargs)


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
            run_command([sys.executable, "-m", "build", "--wheel", "--outdir", str(out_dir), str(src)],
                        "building the wheel with python -m build", f"{fix}; or install uv", cwd=src)
        else:  # a Databricks runtime has neither uv nor build, but pip builds the same wheel
            run_command([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir),
                         str(src)], "building the wheel with pip wheel", fix, cwd=src)
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
        run_command([*cmd, "models", "generate-dockerfile", "--model-uri", f"{model_dir.as_posix()}/",
                     "--output-directory", str(out_dir)],
                    f"generating the Dockerfile for {model_uri}",
                    f"check that {model_dir} is an MLflow model folder (MLmodel)", env=env)
    if not (out_dir / "Dockerfile").exists():
        raise PackagingError(f"mlflow wrote no Dockerfile into {out_dir}")
    return out_dir


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
    ensure_model_schema(dst_name)
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

    package_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=package_dir()) as tmp:
        root = download_model(model_uri, Path(tmp) / "model")
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if path.name == "registered_model_meta" or "__pycache__" in rel:
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


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


def _fresh_venv(env_dir: Path, requirements_txt: Path, workdir: Path, seconds: dict[str, float]) -> Path:
    """A new venv at ``env_dir`` on this Python with ``requirements_txt`` installed; returns its interpreter.

    ``uv venv`` and ``uv pip install`` (uv's cache first, then the package index); where uv is not installed (a
    Databricks runtime) the standard library's ``venv`` and the venv's own pip. Adds ``venv`` and ``install``
    seconds to ``seconds``.
    """
    uv = uv_executable()
    t0 = time.perf_counter()
    if uv is not None:
        run_command([uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)], "creating the fresh venv",
                    "check that uv can use this Python", cwd=workdir)
    else:
        run_command([sys.executable, "-m", "venv", str(env_dir)], "creating the fresh venv (uv not found: standard venv)",
                    "this Python needs its venv and ensurepip modules, or install uv", cwd=workdir)
    python = env_dir / "bin" / "python"
    seconds["venv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fix = "check that PyPI is reachable and the pins exist"
    if uv is not None:
        _uv_with_offline_first([uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements_txt)],
                               "installing the model's requirements", fix, cwd=workdir)
    else:
        run_command([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                     str(requirements_txt)], "installing the model's requirements with pip", fix, cwd=workdir)
    seconds["install"] = time.perf_counter() - t0
    return python


def fresh_env_predict(model_uri: str, sample: pd.DataFrame, workdir: Path | None = None, keep: bool = False) -> FreshEnvResult:
    """Predict ``sample`` with ``model_uri`` in a new virtual environment built only from the model's requirements.txt.

    The model is downloaded, a venv on this Python gets its ``requirements.txt`` (:func:`_fresh_venv`), and an
    isolated interpreter (``-I``, working folder outside the repository) loads the model folder and predicts.
    ``sample``: feature rows (a pandas frame, one row per prediction). Returns one float per row and the seconds
    each step took. The environment is deleted afterwards unless ``keep``.

    Raises ValueError for an empty ``sample``; PackagingError naming the step that failed (venv, install,
    predict) and what to check.
    """
    import numpy as np

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
    python = _fresh_venv(env_dir, model_dir / "requirements.txt", workdir, seconds)
    sample_path, out_path, script = workdir / "sample.parquet", workdir / "predictions.npy", workdir / "predict.py"
    sample = sample.copy()
    sample.attrs = {}  # a frame from Spark Connect's toPandas carries plan metrics there, which parquet cannot store
    sample.to_parquet(sample_path, index=False)
    script.write_text(_PREDICT_SCRIPT)
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_", "VIRTUAL_ENV"))}
    proc = run_command([str(python), "-I", str(script), str(model_dir), str(sample_path), str(out_path)],
                       "predicting in the fresh venv", "the model needs a package its requirements.txt does not list",
                       cwd=workdir, env=env)
    seconds["predict"] = time.perf_counter() - t0
    info = result_line(proc.stdout)
    if info["python"] != want_python:
        raise PackagingError(f"the fresh venv runs Python {info['python']} but the model was logged with {want_python}")
    result = FreshEnvResult(np.load(out_path), seconds, info["python"], requirements,
                            info["utils_importable_before_load"], env_dir, info)
    if not keep:
        shutil.rmtree(env_dir, ignore_errors=True)
    return result
