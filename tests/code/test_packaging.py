"""Packaging: the wheel, model-first and code-first promotion, Dockerfile and Kubernetes targets, a fresh env."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import pandas_training_frames
from utils import code_first_retrain, packaging

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def frames(isolated_state: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small generated training frame (profile features joined in pandas), split in time."""
    return pandas_training_frames(rows=3000, seed=5)


@pytest.fixture(scope="module")
def model_name() -> str:
    from utils.config import get_config

    cfg = get_config()
    return f"{cfg.catalog}.{cfg.schema}.packaging_test_model"


@pytest.fixture(scope="module")
def champion(frames, model_name) -> str:
    """A packaged recommender registered under ``model_name`` with the champion alias; returns its alias URI."""
    from utils import registry
    from utils.platform import configure_mlflow
    from utils.training import log_recommender, train_and_log

    configure_mlflow("packaging-tests")
    train, test = frames
    result = train_and_log(train, test, "logreg", seed=5, run_name="packaging-test")
    uri = log_recommender(result, example=test.head(20))
    mv = registry.register(uri, name=model_name)
    registry.set_version_tags(model_name, mv.version, {"gate_reviewed": "yes"})
    registry.set_alias(model_name, "champion", mv.version, reason="packaging tests")
    return f"models:/{model_name}@champion"


@pytest.fixture(scope="module")
def wheel(isolated_state: Path) -> Path:
    return packaging.build_wheel()


@pytest.fixture(scope="module")
def sample(frames) -> pd.DataFrame:
    from utils.feature_types import features_frame

    return features_frame(frames[1].head(40))


# ---------------------------------------------------------------- the wheel


def test_wheel_holds_the_utils_package_and_lands_in_the_state_dir(wheel: Path, isolated_state: Path) -> None:
    names = packaging.wheel_contents(wheel)
    for module in ("utils/__init__.py", "utils/training.py", "utils/recommender_model.py", "utils/packaging.py"):
        assert module in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    meta = packaging.wheel_metadata(wheel)
    assert meta["name"].replace("_", "-") == packaging.DISTRIBUTION and meta["version"]
    assert any(r.startswith("mlflow") for r in meta["requires"])
    assert wheel.parent == packaging.package_dir() / "dist" and wheel.is_relative_to(isolated_state)
    assert list(wheel.parent.glob("*.whl")) == [wheel]
    assert not list(packaging.package_dir().glob("wheel-src-*")), "the staged sources must be cleaned up"


def test_build_wheel_falls_back_to_pip_where_neither_uv_nor_build_is_installed(tmp_path: Path, monkeypatch) -> None:
    """A Databricks runtime has pip but neither uv nor the build package: the same wheel comes from pip wheel."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(packaging, "uv_executable", lambda: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "build" else real_find_spec(name, *a))
    built = packaging.build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(built).namelist()
    assert built.name.startswith(packaging.DISTRIBUTION.replace("-", "_") + "-") and "utils/packaging.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mlops-retrain = utils.code_first_retrain:retrain_main" in zipfile.ZipFile(built).read(entry_points).decode()
    requires = zipfile.ZipFile(built).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: pyspark" in requires and 'extra == "spark"' in requires.split("Requires-Dist: pyspark")[1].splitlines()[0]


def test_build_wheel_names_a_folder_without_a_project(tmp_path: Path) -> None:
    with pytest.raises(packaging.PackagingError, match="pyproject.toml"):
        packaging.build_wheel(tmp_path / "out", source_root=tmp_path)


def test_unpack_refuses_a_wheel_without_utils(tmp_path: Path) -> None:
    bogus = tmp_path / "other-0.1-py3-none-any.whl"
    with zipfile.ZipFile(bogus, "w") as zf:
        zf.writestr("other/__init__.py", "")
    with pytest.raises(packaging.PackagingError, match="no utils package"):
        packaging.unpack_wheel(bogus, tmp_path / "site")


# ---------------------------------------------------------------- what the model carries


def test_model_carries_the_utils_code_and_pinned_requirements(champion: str, tmp_path: Path) -> None:
    from utils.training import pinned_requirements

    model_dir = packaging.download_model(champion, tmp_path / "model")
    code = packaging.model_files(model_dir)
    assert "code/utils/recommender_model.py" in code and "code/utils/training.py" in code
    reqs = packaging.model_requirements(model_dir)
    assert packaging.unpinned(reqs) == []
    assert sorted(reqs) == sorted(pinned_requirements())
    assert packaging.model_python_version(model_dir).count(".") == 2


@pytest.mark.parametrize("line, pinned", [
    ("mlflow==3.17.2", True), ("scikit-learn==1.7.2", True), ("pandas>=2", False), ("numpy", False),
    ("scipy==1.*", False), ("requests~=2.31", False),
])
def test_unpinned_flags_every_requirement_without_an_exact_version(line: str, pinned: bool) -> None:
    assert (packaging.unpinned([line]) == []) is pinned


def test_model_without_requirements_is_named(tmp_path: Path) -> None:
    with pytest.raises(packaging.PackagingError, match="requirements.txt"):
        packaging.model_requirements(tmp_path)


# ---------------------------------------------------------------- model-first


def test_model_first_copies_the_same_artifact_and_predicts_identically(champion, model_name, sample) -> None:
    import mlflow

    from utils import registry

    dst = model_name.replace("packaging_test_model", "packaging_test_model_prod")
    copy_mv = packaging.promote_model_first(model_name, "champion", dst, reason="model-first test")
    src_mv = registry.get_alias_version(model_name, "champion")
    assert registry.get_alias_version(dst, "champion").version == copy_mv.version
    assert copy_mv.tags["copied_from"] == f"{model_name}/{src_mv.version}"
    same = mlflow.pyfunc.load_model(champion).predict(sample).to_numpy()
    moved = mlflow.pyfunc.load_model(f"models:/{dst}@champion").predict(sample).to_numpy()
    np.testing.assert_array_equal(same, moved)
    assert packaging.model_digest(champion) == packaging.model_digest(f"models:/{dst}@champion")
    assert copy_mv.tags["gate_reviewed"] == "yes", "the copy keeps the source version's provenance tags"
    trail = registry.audit_trail(dst)
    assert list(trail["action"]) == ["promote_model_first"], "the source's audit entries must not leak into the copy"
    assert trail.iloc[-1]["reason"] == "model-first test"


def test_model_digest_changes_with_the_artifact(champion, model_name) -> None:
    from utils import registry

    run_id = registry.get_alias_version(model_name, "champion").run_id
    assert packaging.model_digest(champion) == packaging.model_digest(champion)
    assert packaging.model_digest(champion) != packaging.model_digest(f"runs:/{run_id}/classifier")


def test_model_first_without_the_alias_is_refused(champion, model_name) -> None:
    with pytest.raises(ValueError, match="no 'missing' alias"):
        packaging.promote_model_first(model_name, "missing", model_name + "_x", reason="should fail")


# ---------------------------------------------------------------- code-first


@pytest.mark.slow
def test_code_first_retrain_from_the_wheel_reproduces_the_metrics(frames, wheel, isolated_state) -> None:
    import mlflow

    from utils import lakehouse
    from utils.plantly_features import LABEL, training_set_table
    from utils.platform import configure_mlflow
    from utils.training import train_and_log

    configure_mlflow("packaging-tests")
    train, test = frames
    table = training_set_table()
    version = lakehouse.write(pd.concat([train, test], ignore_index=True), table, mode="overwrite", merge_schema=True)
    from utils.plantly_features import load_training_frame
    from utils.training import time_split

    train2, test2 = time_split(load_training_frame(version))
    original = train_and_log(train2, test2, "logreg", seed=5, input_tables={table: version},
                             run_name="code-first-source", log_model=False)
    spec = code_first_retrain.retrain_spec(original.run_id)
    assert (spec.family, spec.seed, spec.inputs, spec.rows) == ("logreg", 5, {table: version}, (len(train2), len(test2)))
    out = code_first_retrain.retrain_with_wheel(wheel, spec)
    site = (packaging.package_dir() / "code-first" / "site").resolve()
    assert Path(out["utils_file"]).is_relative_to(site), out["utils_file"]
    assert out["from_wheel"] is True, "the entry point must see utils as the project wheel's own files"
    logged = {k.split("/")[0]: v for k, v in mlflow.get_run(original.run_id).data.metrics.items()}
    for key in ("roc_auc", "f1_score", "precision_at_5pct"):
        assert out["metrics"][key] == logged[key] == original.metrics[key], key
    assert out["run_id"] != original.run_id and LABEL in test2


def test_retrain_refuses_a_split_that_differs_from_the_run(frames, isolated_state) -> None:
    from utils import lakehouse
    from utils.plantly_features import training_set_table

    table = training_set_table()
    version = lakehouse.write(pd.concat(frames, ignore_index=True), table, mode="overwrite", merge_schema=True)
    spec = code_first_retrain.RetrainSpec("r0", "logreg", {}, 5, {table: version}, rows=(1, 1))
    with pytest.raises(ValueError, match="test_fraction"):
        code_first_retrain.retrain(spec)


def test_retrain_splits_like_the_run_it_reproduces(frames, isolated_state) -> None:
    """A run that held out 10% (the retraining job) is re-split at 10%, not at the default 20%."""
    import mlflow

    from utils import lakehouse
    from utils.plantly_features import load_training_frame, training_set_table
    from utils.training import time_split, train_and_log

    table = training_set_table()
    version = lakehouse.write(pd.concat(frames, ignore_index=True), table, mode="overwrite", merge_schema=True)
    train, test = time_split(load_training_frame(version), test_fraction=0.1)
    original = train_and_log(train, test, "logreg", seed=5, input_tables={table: version}, log_model=False)
    mlflow.MlflowClient().log_param(original.run_id, "test_fraction", 0.1)
    spec = code_first_retrain.retrain_spec(original.run_id)
    assert spec.test_fraction == 0.1 and spec.rows == (len(train), len(test))
    out = code_first_retrain.retrain(spec)
    assert out["metrics"]["roc_auc"] == original.metrics["roc_auc"]


def test_retrain_spec_needs_a_training_run() -> None:
    import mlflow

    from utils.platform import configure_mlflow

    configure_mlflow("packaging-tests")
    with mlflow.start_run() as run:
        mlflow.log_param("unrelated", 1)
    with pytest.raises(ValueError, match="family"):
        code_first_retrain.retrain_spec(run.info.run_id)


# ---------------------------------------------------------------- container


def _assert_serves_the_model(context: Path) -> None:
    """The generated context: a Dockerfile that copies the model folder and starts MLflow's model server."""
    text = (context / "Dockerfile").read_text()
    assert text.splitlines()[1].startswith(f"FROM python:{sys.version_info.major}.{sys.version_info.minor}")  # the logging Python
    assert "COPY model_dir /opt/ml/model" in text
    assert "_install_pyfunc_deps" in text and "_serve" in text.split("ENTRYPOINT", 1)[1]
    model_copy = context / "model_dir"
    assert (model_copy / "MLmodel").exists() and (model_copy / "code" / "utils" / "recommender_model.py").exists()


def test_generated_dockerfile_copies_the_model_and_serves_it(champion: str, tmp_path: Path) -> None:
    context = packaging.generate_dockerfile(champion, tmp_path / "docker")
    _assert_serves_the_model(context)
    assert packaging.unpinned(packaging.model_requirements(context / "model_dir")) == []


def test_the_dockerfile_generator_gets_a_downloaded_folder_and_no_registry(champion: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The model is downloaded in this process (which has the credentials); the child only reads a local folder."""
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = packaging.run_command

    def recording_run(cmd: list[str], what: str, fix: str, **kwargs):
        uri = cmd[cmd.index("--model-uri") + 1]
        assert uri.startswith("/") and (Path(uri) / "MLmodel").is_file(), cmd  # a local folder, not models:/
        seen.append((cmd, kwargs["env"]))
        return real_run(cmd, what, fix, **kwargs)

    monkeypatch.setattr(packaging, "run_command", recording_run)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")  # a child that called the registry would fail here
    context = packaging.generate_dockerfile(champion, tmp_path / "docker")
    (cmd, env), = seen
    assert not any(k.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY", "PYTHON")) for k in env)
    assert not Path(cmd[cmd.index("--model-uri") + 1]).exists(), "the downloaded copy is cleaned up"
    _assert_serves_the_model(context)


def test_a_folder_that_is_no_model_is_a_packaging_error(tmp_path: Path) -> None:
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(packaging.PackagingError):
        packaging.generate_dockerfile(str(tmp_path / "not_a_model"), tmp_path / "docker")


# ---------------------------------------------------------------- self-contained


@pytest.mark.slow
def test_fresh_env_built_from_the_model_requirements_predicts_identically(champion: str, sample: pd.DataFrame) -> None:
    import mlflow

    started = time.perf_counter()
    result = packaging.fresh_env_predict(champion, sample)
    seconds = time.perf_counter() - started
    expected = mlflow.pyfunc.load_model(champion).predict(sample).to_numpy()
    np.testing.assert_array_equal(result.predictions, expected)
    assert result.utils_importable_before_load is False, "the fresh env must not see the repository's utils"
    assert str(result.env_dir) in result.details["executable"]
    assert not result.env_dir.exists(), "the fresh env is removed afterwards"
    print(f"fresh env: {seconds:.1f}s total, {json.dumps({k: round(v, 1) for k, v in result.seconds.items()})}")


def test_fresh_env_without_uv_uses_the_standard_venv_and_its_pip(champion: str, sample: pd.DataFrame, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A Databricks runtime has no uv: the fresh env is a standard-library venv filled by its own pip.

    The venv is created for real; the install step (minutes from the package index) is recorded and stopped.
    """
    calls: list[list[str]] = []
    real_run = packaging.run_command

    def run(cmd: list[str], what: str, fix: str, **kwargs):
        calls.append([str(c) for c in cmd])
        if "pip" in cmd[1:3]:
            raise packaging.PackagingError("stopped before the install")
        return real_run(cmd, what, fix, **kwargs)

    monkeypatch.setattr(packaging, "uv_executable", lambda: None)
    monkeypatch.setattr(packaging, "run_command", run)
    with pytest.raises(packaging.PackagingError, match="stopped before the install"):
        packaging.fresh_env_predict(champion, sample, workdir=tmp_path / "fresh")
    env_python = tmp_path / "fresh" / "venv" / "bin" / "python"
    assert calls[0] == [sys.executable, "-m", "venv", str(tmp_path / "fresh" / "venv")]
    assert calls[1][:4] == [str(env_python), "-m", "pip", "install"] and calls[1][-1].endswith("requirements.txt")
    assert subprocess.run([str(env_python), "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0


def test_a_model_pins_what_is_installed_which_locally_is_the_lock() -> None:
    """Pins come from the environment the model is trained in (on Databricks the runtime's, review R11);
    here that environment was synced from the lock, so they are the lock's pins too."""
    import re
    from importlib.metadata import version

    from utils.platform import REPO_ROOT
    from utils.training import PACKAGE_REQUIREMENTS, pinned_requirements

    pins = pinned_requirements()
    assert pins == [f"{p}=={version(p)}" for p in PACKAGE_REQUIREMENTS]
    lock = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", (REPO_ROOT / "requirements.lock").read_text(), re.MULTILINE))
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    assert [f"{p}=={lock[p]}" for p in PACKAGE_REQUIREMENTS] == pins
    with pytest.raises(ValueError, match="no-such-package is not installed"):
        pinned_requirements(("no-such-package",))


def test_a_model_pins_the_installed_version_where_it_differs_from_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Databricks the runtime's versions are not the lock's: the pins follow what is installed (review R11).

    Here installed == lock, so the test above cannot tell a pin read from the environment from one copied from
    ``requirements.lock``; a version the lock never holds can.
    """
    import importlib.metadata

    from utils.platform import REPO_ROOT
    from utils.training import PACKAGE_REQUIREMENTS, pinned_requirements

    runtime_version = "0.0.1.post999"  # no lock pins this
    assert f"=={runtime_version}" not in (REPO_ROOT / "requirements.lock").read_text()
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: runtime_version if name in PACKAGE_REQUIREMENTS else real_version(name))
    assert pinned_requirements() == [f"{p}=={runtime_version}" for p in PACKAGE_REQUIREMENTS]
