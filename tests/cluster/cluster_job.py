"""Driver of the standalone-cluster test: batch scoring, a point-in-time training set and drift, on any master.

The computations are plain project code (``utils.scoring``, ``utils.features``, ``utils.drift``);
which Spark runs them is decided by ``utils.platform.get_spark()`` alone. The test runs this file as a
subprocess with ``SPARK_MASTER=spark://...`` (one Python process holds one SparkContext, and the test
session's is local) and calls :func:`compute` in-process on its local session, then compares.

    SPARK_MASTER=spark://127.0.0.1:7077 .venv/bin/python tests/cluster/cluster_job.py SPEC_DIR OUT_DIR [EXECUTORS]

``SPEC_DIR`` holds ``spec.json`` (the model URI and the feature-table names) and the inputs as parquet
(``scoring``, ``spine``, ``baseline``, ``current``). ``OUT_DIR`` receives ``udf.parquet``
(``event_id``, ``prediction``), ``training_set.parquet``, ``drift.json`` and
``run.json`` (the master, the executors that ran tasks and their Python interpreter).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PARTITIONS = 4  # inputs are spread over several partitions, so both executors get work
DRIFT_NUMERIC = ["x", "y"]
DRIFT_CATEGORICAL = ["c"]


def lookups(tables: dict[str, str]) -> list[Any]:
    """The feature lookups of the training set: point in time (plain, renamed with a lookback, defaults) and exact."""
    from databricks.feature_engineering import FeatureLookup

    return [
        FeatureLookup(table_name=tables["customers"], lookup_key="customer_id", feature_names=["spend", "visits"],
                      timestamp_lookup_key="event_ts"),
        FeatureLookup(table_name=tables["customers"], lookup_key="customer_id", feature_names=["spend", "segment"],
                      rename_outputs={"spend": "spend_3d", "segment": "segment_3d"}, timestamp_lookup_key="event_ts",
                      lookback_window=dt.timedelta(days=3), default_values={"spend_3d": -1.0}),
        FeatureLookup(table_name=tables["plants"], lookup_key="plant_id", feature_names=["price", "care"],
                      default_values={"care": "unknown"}),
    ]


def compute(spark: Any, spec_dir: Path, seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Every result as pandas (or records for drift), computed on ``spark``'s master; step times go to ``seconds``."""
    import mlflow

    from utils.drift import drift_metrics
    from utils.platform import feature_client, tracking_uri
    from utils.scoring import spark_udf_scores

    spec = json.loads((spec_dir / "spec.json").read_text())
    mlflow.set_tracking_uri(tracking_uri())

    def frame(name: str) -> Any:
        return spark.createDataFrame(pd.read_parquet(spec_dir / f"{name}.parquet")).repartition(PARTITIONS)

    seconds = seconds if seconds is not None else {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        seconds[step] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    scoring = frame("scoring")
    out: dict[str, Any] = {}
    scored = spark_udf_scores(scoring, spec["model_uri"]).select("event_id", "prediction").toPandas()
    out["udf"] = scored.sort_values("event_id").reset_index(drop=True)
    lap("udf")

    training_set = feature_client().create_training_set(
        df=frame("spine"), feature_lookups=lookups(spec["tables"]), label="label", exclude_columns=["region"])
    out["training_set"] = training_set.load_df().toPandas().sort_values("rid").reset_index(drop=True)
    lap("training_set")

    drift = drift_metrics(frame("baseline"), frame("current"), numeric=DRIFT_NUMERIC, categorical=DRIFT_CATEGORICAL)
    out["drift"] = sorted((plain(r) for r in drift.to_dict(orient="records")), key=lambda r: r["column_name"])
    lap("drift")
    return out


def plain(value: Any) -> Any:
    """A JSON-ready copy of a drift value: numpy scalars as Python, timestamps as ISO strings, NaN as None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def write_results(results: dict[str, Any], out_dir: Path, run: dict[str, Any] | None = None) -> None:
    """``results`` as parquet (frames) and JSON (drift, run facts) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("udf", "training_set"):
        frame = results[name].copy()
        frame.attrs = {}  # Spark Connect's toPandas leaves its plan metrics there, which parquet's metadata cannot hold
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    (out_dir / "drift.json").write_text(json.dumps(results["drift"], indent=1))
    (out_dir / "run.json").write_text(json.dumps(run or {}, indent=1))


def read_results(out_dir: Path) -> dict[str, Any]:
    """What :func:`write_results` wrote, plus ``run`` (the run facts)."""
    out: dict[str, Any] = {n: pd.read_parquet(out_dir / f"{n}.parquet") for n in ("udf", "training_set")}
    out["drift"] = json.loads((out_dir / "drift.json").read_text())
    out["run"] = json.loads((out_dir / "run.json").read_text())
    return out


def _executor_of_this_task(_: Any) -> Any:
    """(executor id, Python executable, pid) of the task: the executor JVM is found up the process tree (Linux)."""
    pid, executor = os.getpid(), None
    for _hop in range(8):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"--executor-id" in cmd:
                executor = cmd[cmd.index(b"--executor-id") + 1].decode()
                break
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    time.sleep(0.3)  # long enough that one executor cannot take every task alone
    yield executor, sys.executable


def run_facts(spark: Any, executors: int, timeout: float = 120.0) -> dict[str, Any]:
    """The master, the registered executors (waited for) and which executors and Python ran tasks."""
    sc = spark.sparkContext
    registered = lambda: sc._jsc.sc().getExecutorMemoryStatus().size() - 1
    deadline = time.monotonic() + timeout
    while executors and registered() < executors and time.monotonic() < deadline:
        time.sleep(0.5)
    tasks = sc.parallelize(range(4 * max(executors, 1)), 4 * max(executors, 1)).mapPartitions(_executor_of_this_task)
    seen = sorted(set(tasks.collect()), key=str)
    return {"master": sc.master, "registered_executors": registered(),
            "task_executors": sorted({e for e, _ in seen if e is not None}),
            "task_pythons": sorted({p for _, p in seen}), "driver_python": sys.executable}


def main(argv: list[str]) -> int:
    """Run :func:`compute` on ``SPARK_MASTER`` and write the results (and run facts) to ``OUT_DIR``."""
    from utils.platform import get_spark, stop_spark
    from utils.project import DISTRIBUTION

    spec_dir, out_dir = Path(argv[0]), Path(argv[1])
    executors = int(argv[2]) if len(argv) > 2 else 0
    started = time.perf_counter()
    spark = get_spark(f"{DISTRIBUTION}-cluster-test")
    try:
        run = run_facts(spark, executors)
        run["step_seconds"] = {"session_and_executors": round(time.perf_counter() - started, 2)}
        results = compute(spark, spec_dir, run["step_seconds"])
        run["seconds"] = round(time.perf_counter() - started, 1)
        write_results(results, out_dir, run)
    finally:
        stop_spark()
    print(json.dumps(run))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
