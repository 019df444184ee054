"""The platform layer: detection, parameters, Java check, Spark settings, MLflow URIs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from utils import platform
from utils.parameters import ParameterError
from utils.platform import environment, runtime


def test_is_databricks_follows_runtime_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert platform.is_databricks() is False
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    assert platform.is_databricks() is True


@pytest.mark.parametrize(
    ("raw", "declared", "expected"),
    [("123", int, 123), ("0.25", float, 0.25), ("true", bool, True), ("0", bool, False), ("off", bool, False),
     ("demand_spike", str, "demand_spike"), ("20000.0", int, 20000), (" 7 ", int, 7), ("0", float, 0.0)],
)
def test_get_param_reads_environment_cast_to_declared_type(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                           declared: type, expected: object) -> None:
    monkeypatch.setenv("MLOPS_SOMEPARAM", raw)
    value = platform.get_param("someparam", declared(), declared)
    assert value == expected and type(value) is declared


def test_environment_value_is_cast_to_the_declared_type_not_the_injected_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # papermill -p bad_fraction 0 injects the int 0; the parameters cell declares a float (0.01).
    monkeypatch.setenv("MLOPS_BAD_FRACTION", "0.05")
    value = platform.get_param("bad_fraction", 0, float)
    assert value == 0.05 and type(value) is float


@pytest.mark.parametrize(("injected", "declared", "expected"),
                         [(0, float, 0.0), ("5000", int, 5000), (5000.0, int, 5000), ("0.5", float, 0.5), (5, str, "5")])
def test_injected_value_is_cast_to_the_declared_type(monkeypatch: pytest.MonkeyPatch, injected: object,
                                                     declared: type, expected: object) -> None:
    monkeypatch.delenv("MLOPS_SOMEPARAM", raising=False)
    value = platform.get_param("someparam", injected, declared)
    assert value == expected and type(value) is declared


def test_get_param_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_ROWS_UNSET", raising=False)
    assert platform.get_param("rows_unset", 20000, int) == 20000


@pytest.mark.parametrize(("raw", "declared"), [("many", int), ("abc", int), ("2000.5", int), ("nan", float),
                                               ("ture", bool), ("2", bool), ("inf", float)])
def test_get_param_bad_environment_value_names_parameter_value_and_source(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                                          declared: type) -> None:
    monkeypatch.setenv("MLOPS_ROWS", raw)
    with pytest.raises(ParameterError) as err:
        platform.get_param("rows", declared(), declared)
    message = str(err.value)
    assert "'rows'" in message and repr(raw) in message and "MLOPS_ROWS" in message and declared.__name__ in message


@pytest.mark.parametrize(("default", "raw", "example"), [(20000, "abc", "a whole number, e.g. MLOPS_ROWS=20000"),
                                                         (0.01, "1,5", "a finite number, e.g. MLOPS_ROWS=0.01"),
                                                         (False, "ture", "true or false, e.g. MLOPS_ROWS=false")])
def test_a_bad_environment_value_gets_an_example_of_a_good_one(monkeypatch: pytest.MonkeyPatch, default: object,
                                                               raw: str, example: str) -> None:
    monkeypatch.setenv("MLOPS_ROWS", raw)
    with pytest.raises(ParameterError) as err:
        platform.get_param("rows", default, type(default))
    assert str(err.value).endswith(example) and "\n" not in str(err.value)


def test_get_param_warns_about_a_misspelled_variable(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from utils import config

    monkeypatch.setattr(config, "_WARNED", set())
    monkeypatch.setenv("MLOPS_BAD_FRACTON", "0.05")
    assert platform.get_param("bad_fraction", 0.01, float) == 0.01
    err = capsys.readouterr().err
    assert "MLOPS_BAD_FRACTON is not a variable this project reads" in err and "did you mean MLOPS_BAD_FRACTION?" in err


@pytest.mark.parametrize(("injected", "declared"), [(True, int), (False, float), (1.5, int), (None, str), ("x", float)])
def test_bad_injected_value_is_refused_naming_the_parameters_cell(monkeypatch: pytest.MonkeyPatch, injected: object,
                                                                  declared: type) -> None:
    monkeypatch.delenv("MLOPS_SOMEPARAM", raising=False)
    with pytest.raises(ParameterError, match=r"'someparam'.*parameters cell"):
        platform.get_param("someparam", injected, declared)


class _Widgets:
    """Databricks' ``dbutils.widgets`` text widgets: a default, and the value a job parameter set."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.defaults = values, {}

    def text(self, name: str, default: str) -> None:
        self.defaults[name] = default

    def get(self, name: str) -> str:
        return self.values.get(name, self.defaults[name])


@pytest.mark.parametrize(("widget", "expected"), [("0.05", 0.05), ("", 0.01), ("1", 1.0)])
def test_widget_value_is_cast_to_the_declared_type(monkeypatch: pytest.MonkeyPatch, widget: str, expected: float) -> None:
    widgets = _Widgets({"bad_fraction": widget})
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setattr(environment, "_dbutils", lambda: type("D", (), {"widgets": widgets})())
    value = platform.get_param("bad_fraction", 0.01, float)
    assert value == expected and type(value) is float
    assert widgets.defaults["bad_fraction"] == "0.01"


def test_bad_widget_value_names_the_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    widgets = _Widgets({"rows": "lots"})
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setattr(environment, "_dbutils", lambda: type("D", (), {"widgets": widgets})())
    with pytest.raises(ParameterError, match=r"'rows'.*'lots'.*widget / job parameter 'rows'.*int") as err:
        platform.get_param("rows", 20000, int)
    assert str(err.value).endswith("e.g. the widget / job parameter rows set to 20000")


def test_papermill_int_and_environment_float_give_the_declared_float(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """The issue's example, run for real: papermill -p bad_fraction 0 with MLOPS_BAD_FRACTION=0.05 exported."""
    import json

    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nb.cells = [
        nbformat.v4.new_code_cell("bad_fraction = 0.01\nrows = 20000", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from utils.platform import get_param\n\n"
                                  "bad_fraction = get_param('bad_fraction', bad_fraction, float)\n"
                                  "rows = get_param('rows', rows, int)\n"
                                  "import json; print(json.dumps([bad_fraction, type(bad_fraction).__name__, rows]))"),
    ]
    source, out = tmp_path / "params.ipynb", tmp_path / "params.out.ipynb"
    nbformat.write(nb, source)
    monkeypatch.setenv("MLOPS_BAD_FRACTION", "0.05")
    monkeypatch.delenv("MLOPS_ROWS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(platform.REPO_ROOT))
    papermill.execute_notebook(str(source), str(out), parameters={"bad_fraction": 0, "rows": "3000"},
                               kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    printed = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"]
    assert json.loads(printed) == [0.05, "float", 3000]


def test_java_version_is_17_or_newer() -> None:
    assert platform.java_version() >= 17


def test_missing_java_gives_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setenv("PATH", str(tmp_path))  # and no java on PATH either
    with pytest.raises(platform.EnvironmentProblem, match="Java not found: .*install a JDK 17"):
        platform.java_version()


def test_too_old_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "jdk" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    (fake / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(platform.EnvironmentProblem, match="Java 11 is too old"):
        platform.java_version()


def test_local_state_lives_under_state_dir(isolated_state: Path) -> None:
    assert platform.state_dir() == isolated_state.resolve()
    assert platform.lakehouse_dir().is_relative_to(isolated_state.resolve())
    assert platform.tracking_uri().startswith("sqlite:///") and str(isolated_state) in platform.tracking_uri()


def test_spark_is_local_quiet_and_uses_project_tmp(spark) -> None:
    conf = spark.conf
    assert conf.get("spark.ui.enabled") == "false"
    assert conf.get("spark.ui.showConsoleProgress") == "false"
    assert int(spark.conf.get("spark.sql.shuffle.partitions")) <= 8
    assert str(platform.tmp_dir()) == conf.get("spark.local.dir")
    assert spark.range(100).selectExpr("sum(id)").first()[0] == 4950


def test_python_udf_workers_use_this_interpreter(spark) -> None:
    import sys

    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    exe = F.udf(lambda _: __import__("sys").executable, StringType())
    assert spark.range(1).select(exe("id")).first()[0] == sys.executable


def test_configure_mlflow_uses_local_sqlite(isolated_state: Path) -> None:
    import mlflow

    exp_id = platform.configure_mlflow("platform-test")
    assert mlflow.get_tracking_uri().startswith("sqlite:///")
    assert mlflow.get_experiment(exp_id).artifact_location.startswith("file://")
    assert platform.configure_mlflow("platform-test") == exp_id  # idempotent


SDK_REPO = "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC"


def _mlflow_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """``configure_mlflow``'s calls that would reach a workspace or change MLflow for later tests, made inert."""
    from types import SimpleNamespace

    import mlflow

    monkeypatch.setattr(runtime, "ensure_dirs", lambda: None)  # its DDL on Databricks: tests/code/test_databricks_paths.py
    monkeypatch.setattr(runtime, "current_user", lambda: "ada@example.com")
    for name in ("set_tracking_uri", "set_registry_uri", "autolog", "set_experiment"):
        monkeypatch.setattr(mlflow, name, lambda *a, **k: None)
    monkeypatch.setattr(mlflow, "get_experiment_by_name", lambda name: SimpleNamespace(experiment_id="7"))


def test_on_databricks_model_files_reach_unity_catalog_through_the_files_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review R7: Free Edition's default storage refuses the temporary credentials MLflow's older upload path asks
    for; with this variable true, MLflow's UC registry uploads a version's files through the Files API instead."""
    from mlflow.utils._unity_catalog_utils import (
        is_databricks_sdk_models_artifact_repository_enabled,
    )

    _mlflow_offline(monkeypatch)
    monkeypatch.setenv(SDK_REPO, "unset below")  # recorded, so the test leaves the variable as it found it
    monkeypatch.delenv(SDK_REPO)
    platform.configure_mlflow()
    assert SDK_REPO not in os.environ, "locally there is no Unity Catalog to upload to"

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert platform.configure_mlflow() == "7"
    assert os.environ[SDK_REPO] == "true"
    # MLflow's registry client now takes the Files API path without asking the workspace (host_creds unused).
    assert is_databricks_sdk_models_artifact_repository_enabled(host_creds=None) is True

    monkeypatch.setenv(SDK_REPO, "false")  # a user's own choice wins
    platform.configure_mlflow()
    assert os.environ[SDK_REPO] == "false"


def test_importing_utils_has_no_side_effects(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import utils, utils.platform, utils.config, utils.quality, tools.runner; import os; print(os.listdir('.'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "MLOPS_STATE_DIR": str(tmp_path / "state"),
                              "PYTHONPATH": str(platform.REPO_ROOT)},  # tools is not installed: the repository's own
                         check=True)
    assert out.stdout.strip() == "[]"
    assert not (tmp_path / "state").exists()
