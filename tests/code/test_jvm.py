"""The JVM packages: resolved once at install, sessions start from local jars, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils.local import jvm
from utils.platform import REPO_ROOT


def run_python(code: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:  # a hang guard
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env}, cwd=REPO_ROOT, check=False)


def test_coordinate_is_what_delta_itself_asks_for() -> None:
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.builder)
    assert builder._options["spark.jars.packages"] == jvm.delta_coordinate()
    assert "_4.1_2.13:" in jvm.delta_coordinate()  # the Spark version is in the artifact's name


def test_installed_jars_are_local_files_with_delta_and_the_catalog_alias() -> None:
    jars = jvm.session_jars()
    names = [Path(j).name for j in jars]
    assert all(Path(j).is_file() and Path(j).is_absolute() for j in jars)
    assert any(n.startswith("io.delta_delta-spark_4.1_2.13-") for n in names), names
    assert "mlops-local-catalog.jar" in names
    conf = jvm.spark_conf(["workspace"])
    assert "spark.jars.packages" not in conf  # nothing to resolve at session start
    assert conf["spark.sql.catalog.workspace"] == jvm.ALIAS_CLASS


@pytest.mark.parametrize("artifact", [("com.fasterxml.jackson.core_jackson-core-2.13.5.jar", True, "jackson-core"),
                                      ("jackson-core-2.21.2.jar", False, "jackson-core"),
                                      ("commons-pool_commons-pool-1.6.jar", True, "commons-pool"),
                                      ("hive-exec-2.3.10-core.jar", False, "hive-exec")])
def test_artifact_names_compare_across_ivy_and_pyspark_jar_names(artifact: tuple[str, bool, str]) -> None:
    name, ivy, expected = artifact
    assert jvm._artifact(name, ivy=ivy) == expected


def test_missing_jars_give_one_line_that_says_what_to_run(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_JARS_DIR", str(tmp_path / "nothing-here"))
        with pytest.raises(jvm.MissingJars, match=r"run `make install`"):
            jvm.session_jars()
    proc = run_python("from utils.platform import get_spark\nget_spark()",
                      {"MLOPS_JARS_DIR": str(tmp_path / "nothing-here"), "MLOPS_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("utils.platform.environment.EnvironmentProblem: Delta Lake jars are not installed") and "make install" in last
    assert "ivy" not in proc.stderr.lower()  # no resolver ran


@pytest.mark.slow
def test_a_session_starts_and_writes_delta_with_the_network_blocked(tmp_path: Path) -> None:
    """Every proxy points at a closed port: any attempt to reach a package repository would fail."""
    dead = "127.0.0.1:9"
    code = (
        "from utils.platform import get_spark, stop_spark\n"
        "spark = get_spark()\n"
        "assert spark.conf.get('spark.jars.packages', None) is None\n"
        "spark.sql('CREATE SCHEMA IF NOT EXISTS offline_test.offline')\n"
        "spark.range(3).write.mode('overwrite').saveAsTable('offline_test.offline.t')\n"
        "spark.range(2, 5).createOrReplaceTempView('s')\n"
        "spark.sql('MERGE INTO offline_test.offline.t t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT *')\n"
        "print('rows', spark.table('offline_test.offline.t').count(),"
        " 'versions', spark.sql('DESCRIBE HISTORY offline_test.offline.t').count())\n"
        "stop_spark()\n"
    )
    env = {
        "MLOPS_STATE_DIR": str(tmp_path / "state"), "MLOPS_CATALOG": "offline_test",
        "HTTP_PROXY": f"http://{dead}", "HTTPS_PROXY": f"http://{dead}", "NO_PROXY": "",
        "http_proxy": f"http://{dead}", "https_proxy": f"http://{dead}", "no_proxy": "",
        "JAVA_TOOL_OPTIONS": "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9 "
                             "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9 -Dhttp.nonProxyHosts=",
    }
    proc = run_python(code, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows 5 versions 2" in proc.stdout
