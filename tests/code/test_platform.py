"""The platform layer: detection, parameters, Java check, Spark settings, MLflow URIs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from utils import platform


def test_is_databricks_follows_runtime_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert platform.is_databricks() is False
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    assert platform.is_databricks() is True


@pytest.mark.parametrize(
    ("raw", "default", "expected"),
    [("123", 1, 123), ("0.25", 0.5, 0.25), ("true", False, True), ("0", True, False), ("demand_spike", "baseline", "demand_spike")],
)
def test_get_param_reads_environment_cast_to_default_type(monkeypatch: pytest.MonkeyPatch, raw: str, default: object, expected: object) -> None:
    monkeypatch.setenv("MLOPS_SOMEPARAM", raw)
    value = platform.get_param("someparam", default)
    assert value == expected and type(value) is type(expected)


def test_get_param_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_ROWS_UNSET", raising=False)
    assert platform.get_param("rows_unset", 20000) == 20000


def test_get_param_bad_value_names_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_ROWS", "many")
    with pytest.raises(ValueError, match="int"):
        platform.get_param("rows", 10)


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
    conf = spark.sparkContext.getConf()
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


def test_importing_utils_has_no_side_effects(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import utils, utils.platform, utils.config, utils.quality, utils.runner; import os; print(os.listdir('.'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "MLOPS_STATE_DIR": str(tmp_path / "state")}, check=True)
    assert out.stdout.strip() == "[]"
    assert not (tmp_path / "state").exists()
