"""Scale-out: the same code on a real Spark standalone cluster (a master and two workers on 127.0.0.1) as in local mode.

The cluster comes from ``bench/spark_cluster.py`` (the Spark inside the installed pyspark). Its driver runs in a
subprocess (``tests/cluster/cluster_job.py`` with ``SPARK_MASTER=spark://...``), since this process already holds
the local session; the same function runs here on the local session, and every result must agree: batch scoring
(``spark_udf_scores`` with a real packaged recommender), a point-in-time training set and
``drift_metrics``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.cluster.cluster_job import compute, read_results, write_results
from tests.support import pandas_training_frames, table

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2


def _java_or_skip() -> None:
    from utils.platform import EnvironmentProblem, java_version

    try:
        java_version()
    except EnvironmentProblem as exc:
        pytest.skip(f"a Spark standalone cluster needs Java: {exc}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A master and two 1-core workers on free ports, stopped (every process of its folder) afterwards."""
    _java_or_skip()
    from bench.spark_cluster import cluster_processes, start_cluster, stop_cluster

    folder = tmp_path_factory.mktemp("spark-cluster")
    started = time.perf_counter()
    url = start_cluster(port=0, workers=WORKERS, cores_per_worker=1, memory="1g", webui_port=0,
                        cluster_dir=folder, timeout=240, tied_to_caller=True)
    info = {"url": url, "dir": folder, "start_seconds": time.perf_counter() - started}
    try:
        yield info
    finally:
        stop_cluster(folder)
        left = cluster_processes(folder)
        assert not left, f"processes of the cluster outlived stop_cluster: {left}"


def _model_uri(train: pd.DataFrame, test: pd.DataFrame) -> str:
    """The packaged recommender (logistic regression + the invasive rule), logged to the test MLflow store."""
    import mlflow

    from utils.platform import configure_mlflow
    from utils.training import (
        TrainResult,
        fit,
        log_recommender,
        pinned_requirements,
        skops_trusted_types,
    )

    configure_mlflow("cluster-tests")
    clf, threshold = fit(train, "logreg", seed=3)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(clf, name="classifier", skops_trusted_types=skops_trusted_types(clf),
                                        pip_requirements=pinned_requirements())
    result = TrainResult(run.info.run_id, "logreg", {}, {}, clf, threshold, info.model_uri)
    return log_recommender(result, example=test.head(20))


def _feature_tables(rng: np.random.Generator) -> dict[str, str]:
    """A time series customer table (nulls, several rows per key) and a plant table without time, as feature tables."""
    from utils.platform import feature_client

    base = pd.Timestamp("2024-03-01", tz="UTC")
    n = 240
    customers = pd.DataFrame({
        "customer_id": rng.integers(0, 30, n).astype("int64"),
        "ts": base + pd.to_timedelta(rng.integers(0, 20 * 24, n), unit="h"),
        "spend": np.where(rng.random(n) < 0.1, np.nan, rng.normal(50, 12, n)),
        "visits": rng.integers(0, 40, n).astype("int64"),
        "segment": rng.choice(np.array(["new", "loyal", None], dtype=object), n),
    }).drop_duplicates(["customer_id", "ts"])
    plants = pd.DataFrame({"plant_id": np.arange(0, 25, dtype="int64"), "price": rng.uniform(3, 60, 25).round(2),
                           "care": rng.choice(np.array(["easy", "hard", None], dtype=object), 25)})
    plants = plants[rng.random(25) < 0.85]  # some plants are unknown to the table
    fe, tag = feature_client(), uuid.uuid4().hex[:8]
    names = {"customers": table("cluster_test", f"customers_{tag}"), "plants": table("cluster_test", f"plants_{tag}")}
    fe.create_table(name=names["customers"], primary_keys=["customer_id", "ts"], timeseries_column="ts", df=customers)
    fe.create_table(name=names["plants"], primary_keys="plant_id", df=plants)
    return names


@pytest.fixture(scope="module")
def spec_dir(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs both sides read: model URI, feature tables, and the scoring, spine and drift frames as parquet."""
    from utils.feature_types import features_frame

    folder = tmp_path_factory.mktemp("cluster-spec")
    rng = np.random.default_rng(2024)
    train, test = pandas_training_frames(rows=2000, seed=17)
    model_uri = _model_uri(train, test)
    tables = _feature_tables(rng)
    scoring = features_frame(test.head(400)).assign(event_id=[f"E{i:04d}" for i in range(min(400, len(test)))])
    n = 300
    spine = pd.DataFrame({
        "rid": np.arange(n, dtype="int64"),
        "customer_id": rng.integers(0, 34, n).astype("int64"),  # 30..33 are unknown customers
        "region": rng.choice(["eu", "us"], n),
        "plant_id": rng.integers(0, 28, n).astype("int64"),
        "event_ts": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(rng.integers(-24, 22 * 24, n), unit="h"),
        "label": rng.integers(0, 2, n).astype("int32"),
    })
    spine.loc[rng.random(n) < 0.05, "event_ts"] = pd.NaT
    baseline = pd.DataFrame({"x": rng.normal(0, 1, 300), "y": rng.exponential(2.0, 300),
                             "c": rng.choice(["a", "b", "c", None], 300, p=[0.5, 0.3, 0.15, 0.05])})
    current = pd.DataFrame({"x": rng.normal(0.4, 1.2, 250), "y": rng.exponential(2.5, 250),
                            "c": rng.choice(["a", "b", "d", None], 250, p=[0.3, 0.3, 0.3, 0.1])})
    current.loc[:9, "y"] = np.nan
    for name, df in (("scoring", scoring), ("spine", spine), ("baseline", baseline), ("current", current)):
        df.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "spec.json").write_text(json.dumps({"model_uri": model_uri, "tables": tables}))
    return folder


@pytest.fixture(scope="module")
def local_results(spark, spec_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The computations on this session's local Spark (written and read back like the cluster's)."""
    master = spark.conf.get("spark.master")
    if not master.startswith("local"):
        pytest.skip(f"the test session's Spark runs on {master} (SPARK_MASTER is set), not local mode")
    out = tmp_path_factory.mktemp("local-results")
    write_results(compute(spark, spec_dir), out, {"master": master})
    return read_results(out)


@pytest.fixture(scope="module")
def cluster_results(cluster, spec_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same computations by a driver process on the standalone cluster."""
    out = tmp_path_factory.mktemp("cluster-results")
    env = {**os.environ, "SPARK_MASTER": cluster["url"], "OMP_NUM_THREADS": "1", "MLOPS_DRIVER_MEMORY": "1g"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "cluster" / "cluster_job.py"), str(spec_dir), str(out),
                           str(WORKERS)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"cluster job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    results = read_results(out)
    results["run"]["wall_seconds"] = time.perf_counter() - started
    return results


# ---------------------------------------------------------------- the cluster itself


def test_the_job_ran_on_both_workers_with_the_project_python(cluster, cluster_results):
    run = cluster_results["run"]
    assert run["master"] == cluster["url"] and run["master"].startswith("spark://127.0.0.1:")
    assert run["registered_executors"] == WORKERS
    if Path("/proc").is_dir():  # executor ids are read from the process tree
        assert run["task_executors"] == [str(i) for i in range(WORKERS)], run
    assert run["task_pythons"] == [sys.executable] and run["driver_python"] == sys.executable


def test_master_refuses_a_taken_port(cluster, tmp_path):
    from bench.spark_cluster import ClusterError, start_cluster

    port = int(cluster["url"].rsplit(":", 1)[1])
    with pytest.raises(ClusterError, match=f"port {port} on 127.0.0.1 is already in use"):
        start_cluster(port=port, cluster_dir=tmp_path / "second", webui_port=0)
    assert not (tmp_path / "second" / "cluster.json").exists()


# ---------------------------------------------------------------- same results as local mode


def test_batch_scoring_on_the_cluster_equals_local_mode(local_results, cluster_results):
    local, remote = local_results["udf"], cluster_results["udf"]
    assert remote["event_id"].tolist() == local["event_id"].tolist() and len(local) > 100
    np.testing.assert_allclose(remote["prediction"], local["prediction"], rtol=0, atol=1e-12)
    scores = local_results["udf"]["prediction"]
    assert scores.between(0, 1).all() and scores.nunique() > 50 and (scores == 0).any()  # real scores, invasive -> 0


def test_point_in_time_training_set_on_the_cluster_equals_local_mode(local_results, cluster_results):
    local, remote = local_results["training_set"], cluster_results["training_set"]
    assert list(remote.columns) == list(local.columns)
    assert {"spend", "visits", "spend_3d", "segment_3d", "price", "care", "label"} <= set(local.columns)
    pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-12, atol=1e-12)
    assert local["spend"].notna().sum() > 50 and (local["spend_3d"] == -1.0).sum() > 0  # matches and defaults
    assert (local["care"] == "unknown").any()


def _close(a: Any, b: Any, path: str = "") -> list[str]:
    """Differences between two JSON-like values, floats within a tight tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            return []
        return [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_drift_metrics_on_the_cluster_equal_local_mode(local_results, cluster_results):
    local, remote = local_results["drift"], cluster_results["drift"]
    assert [r["column_name"] for r in local] == ["c", "x", "y"]
    assert not _close(remote, local), _close(remote, local)[:10]
    by_col = {r["column_name"]: r for r in local}
    assert by_col["x"]["ks_test"]["statistic"] > 0 and by_col["c"]["chi_squared_test"]["statistic"] > 0
    assert by_col["y"]["percent_null_delta"] > 0  # the NaNs of the current side
