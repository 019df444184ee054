"""The local feature store's model packaging: a model logged with its feature spec, as Databricks lays it out.

``log_model`` stores ``feature_spec.yaml`` (``utils.local.feature_spec``: tables, Delta versions, keys,
features, renames, defaults, timestamp keys) inside the MLflow model, which is a pyfunc that looks its
features up in the online store (``utils.local.online_store``) when served, as a Databricks
feature-store model does in Model Serving. Layout: ``data/feature_store/{feature_spec.yaml, raw_model/}``,
and the few ``utils`` modules the lookup needs in ``code/`` (:data:`_BUNDLED_MODULES`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from utils.local import online_store as online
from utils.local.feature_spec import MODEL_DATA_DIR, SPEC_FILE, FeatureSpec
from utils.platform.runtime import REPO_ROOT

# What the served model imports (the pyfunc loader, the spec and their imports), relative to ``utils``.
_BUNDLED_MODULES = ("__init__.py", "parameters.py", "config.py", "project.py", "platform/environment.py",
                    "local/__init__.py", "local/feature_spec.py", "local/online_store.py", "local/online_values.py")


def _bundle_code(target: Path) -> Path:
    """A copy of the few ``utils`` modules the served model needs, to ship inside it (of ``utils.platform``, the facts)."""
    pkg = target / "utils"
    pkg.mkdir(parents=True)
    for module in _BUNDLED_MODULES:
        (pkg / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / "utils" / module, pkg / module)
    (pkg / "platform" / "__init__.py").write_text('"""Only the facts: the picks of utils/platform/__init__.py would bring in every backend."""\n')
    return pkg


def _requirements(raw_model_path: Path, extra: Sequence[str] | None) -> list[str]:
    """The raw model's pip requirements, plus pandas, pyyaml and ``extra`` unless already named."""
    req_file = raw_model_path / "requirements.txt"
    reqs = [
        line.strip()
        for line in (req_file.read_text().splitlines() if req_file.exists() else [])
        if line.strip() and not line.startswith("#")
    ]
    for pkg in ["pandas", "pyyaml", *(extra or [])]:
        if not any(r.split("=")[0].split(">")[0].split("<")[0].strip().lower() == pkg.lower() for r in reqs):
            reqs.append(pkg)
    return reqs


def _scratch_dir() -> str:
    from utils.platform.runtime import tmp_dir

    path = tmp_dir()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def downloaded_spec(model_uri: str) -> tuple[Path, FeatureSpec]:
    """The model at ``model_uri`` downloaded to a scratch folder (kept: a scoring UDF loads from it), and its spec.

    Raises:
        ValueError: the model was not logged with the feature client's ``log_model`` (it has no spec).
    """
    import mlflow

    local = Path(tempfile.mkdtemp(prefix="fs-model-", dir=_scratch_dir()))
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(local)))
    spec_path = root / "data" / MODEL_DATA_DIR / SPEC_FILE
    if not spec_path.exists():
        raise ValueError(f"model {model_uri!r} was not logged with feature_client().log_model: no {SPEC_FILE}")
    return root, FeatureSpec.load(spec_path)


def raw_model_path(root: Path) -> Path:
    """Where the flavor's own model is inside a feature-store model downloaded to ``root``."""
    return root / "data" / MODEL_DATA_DIR / "raw_model"


def _save_raw_model(model: Any, flavor: ModuleType, raw_path: Path, kwargs: Mapping[str, Any]) -> None:
    """Save ``model`` with ``flavor`` to ``raw_path``; raise ``ValueError`` if the flavor has no pyfunc."""
    if flavor.__name__ == "mlflow.pyfunc":
        flavor.save_model(str(raw_path), python_model=model, **kwargs)
    else:
        flavor.save_model(model, str(raw_path), **kwargs)
    if not (raw_path / "MLmodel").exists() or "python_function" not in (raw_path / "MLmodel").read_text():
        raise ValueError(f"log_model does not support {flavor.__name__}: it has no python_function flavor")


def log_feature_model(*, model: Any, artifact_path: str, flavor: ModuleType, spec: FeatureSpec,
                      registered_model_name: str | None, registration: Mapping[str, Any],
                      extra_pip_requirements: Sequence[str] | None, signature: Any,
                      flavor_kwargs: Mapping[str, Any]) -> Any:
    """Log ``model`` as a pyfunc with ``spec``, the online store's path and the bundled code; MLflow's ``ModelInfo``.

    ``registration`` holds ``await_registration_for`` when given (MLflow's default otherwise). With an
    active run, the spec is also logged as ``{artifact_path}_feature_spec.yaml`` and each table's version as
    a ``feature_table.<name>`` tag.
    """
    import mlflow
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="fs-log-", dir=_scratch_dir()) as tmp:
        data_path = Path(tmp) / MODEL_DATA_DIR
        raw_path = data_path / "raw_model"
        data_path.mkdir()
        _save_raw_model(model, flavor, raw_path, flavor_kwargs)
        spec.save(data_path / SPEC_FILE)
        (data_path / online.SERVING_FILE).write_text(
            json.dumps({"online_store": str(online.SqliteOnlineStore().db_path())})
        )
        code = _bundle_code(Path(tmp) / "code")
        with warnings.catch_warnings():  # an output schema alone makes MLflow ask for an input example; the
            # served model's input is a request (keys and context), of which log time has none to give
            warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name=artifact_path,
                loader_module="utils.local.online_store",
                data_path=str(data_path),
                code_paths=[str(code)],
                pip_requirements=_requirements(raw_path, extra_pip_requirements),
                registered_model_name=registered_model_name,
                signature=signature,
                metadata={"feature_store": {"tables": spec.tables, "spec": f"data/{MODEL_DATA_DIR}/{SPEC_FILE}"}},
                **registration,
            )
    if mlflow.active_run() is not None:
        mlflow.log_dict(spec.to_dict(), f"{artifact_path}_{SPEC_FILE}")
        mlflow.set_tags({f"feature_table.{t}": str(v) for t, v in spec.tables.items()})
    return info
