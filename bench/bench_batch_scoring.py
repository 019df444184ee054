"""Benchmark: batch scoring rows/s, in-process ``predict`` against ``utils.scoring.spark_udf_scores`` on Spark.

Builds an isolated lifecycle state (``catch_up("05")``: data, features, a registered champion),
then a scoring frame of ``--rows`` rows by sampling (with replacement) the training set's 15 model
inputs (``utils.scoring.model_inputs``), plus a ``row_id``. The frame is written once as Parquet,
read by Spark, repartitioned into ``--partitions`` and cached (counted): none of that is timed.
Then, on the same rows, ``--repeats`` times in turn:

* ``in-process predict``: the champion's pyfunc, loaded once (untimed), ``model.predict`` on the
  whole pandas frame in this process: the physical limit of one Python process;
* ``spark_udf_scores``: ``mlflow.pyfunc.spark_udf`` (what Databricks users write);
* ``Spark floor``: the same write of the cached input without scoring (what Spark costs by itself).

Each Spark case is forced to full evaluation by writing every column, the prediction included,
to Spark's ``noop`` sink. The CPU seconds of this process, the PySpark Python workers and the Spark
JVM are read from ``/proc`` (via ``psutil``): they show that the model really ran in the workers
(the run fails otherwise), how many of the cores Spark actually got, and how much CPU each scorer
spends per row compared with in-process ``predict``. Reported: the median, rows/s, and each
scorer's rows/s as a multiple of in-process ``predict``. Afterwards the three scorers' predictions
on the first ``--check-rows`` rows must agree within 1e-9. On a shared machine the ratio follows
the number of free cores: the single-threaded ``predict`` needs one, the Spark scorers need all.

    .venv/bin/python bench/bench_batch_scoring.py                   # 1,000,000 rows, median of 3
    .venv/bin/python bench/bench_batch_scoring.py --rows 50000 --repeats 1 --no-record
    .venv/bin/python bench/bench_batch_scoring.py --arrow-batch 50000   # try another Arrow batch size
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, machine_description, markdown_table, record
from state import add_state_args, champion, cleanup, isolate

SCRIPT = "bench/bench_batch_scoring.py"
TOLERANCE = 1e-9
IN_PROCESS = "in-process `model.predict` (pandas, 1 process)"
UDF = "`spark_udf_scores` (mlflow.pyfunc.spark_udf)"
FLOOR = "Spark floor: the same write, no scoring"
SHORT = {IN_PROCESS: "in-process", UDF: "`spark_udf_scores`", FLOOR: "floor"}


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows scored by every scorer")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per scorer (the median is reported)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the cached Spark input")
    p.add_argument("--arrow-batch", type=int,
                   help="spark.sql.execution.arrow.maxRecordsPerBatch (default: Spark's, 10,000)")
    p.add_argument("--check-rows", type=int, default=2_000, help="rows whose predictions must agree")
    add_state_args(p)
    return p.parse_args()


def child_cpu_s() -> tuple[float, float]:
    """CPU seconds so far of the processes below this one: (Python: the PySpark daemon and workers, dead ones
    included; Java: the Spark JVM)."""
    import psutil

    python = java = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            name = proc.name().lower()
            t = proc.cpu_times()
            if "python" in name:
                python += t.user + t.system + t.children_user + t.children_system
            elif "java" in name:
                java += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return python, java


def build_input(rows: int, seed: int, folder: Path):
    """``rows`` model-input rows sampled from the training set (+ ``row_id``), as pandas and as a Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from utils import lakehouse
    from utils.plantly_features import training_set_table
    from utils.scoring import model_inputs

    base = model_inputs(lakehouse.read_pandas(training_set_table())).reset_index(drop=True)
    pick = np.random.default_rng(seed).integers(0, len(base), rows)
    frame = base.iloc[pick].reset_index(drop=True)
    frame.insert(0, "row_id", np.arange(rows, dtype="int64"))
    path = folder / "scoring-input.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100_000)
    return frame, path, len(base)


def timed_run(call: Callable[[], object]) -> tuple[float, float, float]:
    """Wall seconds of ``call`` and the CPU seconds it used: Python (this process + PySpark workers) and JVM."""
    py0, java0 = child_cpu_s()
    own0 = time.process_time()
    start = time.perf_counter()
    call()
    wall = time.perf_counter() - start
    own = time.process_time() - own0
    py1, java1 = child_cpu_s()
    return wall, own + py1 - py0, java1 - java0


def main() -> None:
    """Build the input, time the scorers in turn, check they agree, print and record the table."""
    args = parse_args()
    state = isolate(args, "bench-batch-")
    machine = machine_description()
    try:
        results, checks, info = run(args, state)
    finally:
        from utils.platform import stop_spark

        stop_spark()
        cleanup(args, state)

    base_rps = results[IN_PROCESS]["rps"]
    rows = []
    for name, r in results.items():
        ratio = "1.00 (reference)" if name == IN_PROCESS else f"{r['rps'] / base_rps:.2f}×"
        cpu = r["py_cpu_s"] + r["jvm_cpu_s"]
        rows.append([name, fmt(args.rows), f"{r['median_s']:.2f}", fmt(round(r["rps"])), ratio,
                     f"{r['py_cpu_s']:.1f}", f"{r['jvm_cpu_s']:.1f}", f"{cpu / r['median_s']:.2f}"])
    table = markdown_table(["scorer", "rows", "median s", "rows/s", "× in-process predict", "Python CPU s",
                            "JVM CPU s", "cores busy"], rows, "lrrrrrrr")
    udf = results[UDF]["rps"] / base_rps
    own = results[IN_PROCESS]["py_cpu_s"]
    per_cpu = own / (results[UDF]["py_cpu_s"] + results[UDF]["jvm_cpu_s"])
    body = (f"Champion v{info['version']} (gradient boosting, {args.data_rows:,} generated impressions); "
            f"{args.rows:,} rows sampled from the {info['base_rows']:,}-row training set's 15 model inputs; "
            f"Spark `local[*]` on {info['cores']} cores, input cached in {args.partitions} partitions, Arrow batches of "
            f"{info['arrow_batch']:,} rows, OMP_NUM_THREADS=1. Median of {args.repeats} runs, the scorers taking "
            f"turns; Spark cases write every column (prediction included) to the `noop` sink. CPU seconds (median) "
            f"from /proc: Python = this process plus the PySpark daemon and workers, JVM = the Spark driver JVM; "
            f"cores busy = their sum / wall time. Individual runs (s): "
            + "; ".join(f"{SHORT[k]} {', '.join(f'{t:.1f}' for t in r['runs'])}" for k, r in results.items())
            + f". Predictions of both scorers on {checks['rows']:,} rows agree within "
            f"{checks['max_diff']:.1e}.\n\n{table}\n\n"
            f"`spark_udf` reaches {udf:.2f}× in-process `predict` (target ≥ 0.70×). Per CPU second (in-process CPU / "
            f"Spark CPU, Python + JVM) it does {per_cpu:.2f}× the work of in-process `predict`, so with every core free "
            f"it could reach about {info['cores'] * per_cpu:.2f}× on {info['cores']} cores.")
    print(table)
    if not args.no_record:
        record("Batch scoring throughput: Spark scorers vs in-process `predict`", body, SCRIPT, machine)


def run(args: argparse.Namespace, state: Path) -> tuple[dict[str, dict], dict[str, float], dict[str, object]]:
    """The timed part: returns per-scorer results, the agreement check and facts about the setup."""
    import mlflow.pyfunc
    import numpy as np
    from tqdm import tqdm

    from utils.plantly_features import FEATURES
    from utils.platform import get_spark
    from utils.scoring import PREDICTION_COL, spark_udf_scores

    model_info = champion(args, online=False)
    spark = get_spark()
    if args.arrow_batch:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
    arrow_batch = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch"))

    t0 = time.perf_counter()
    frame, path, base_rows = build_input(args.rows, args.seed, state)
    df = spark.read.parquet(str(path)).repartition(args.partitions).cache()
    assert df.count() == args.rows
    inputs = frame[FEATURES]
    print(f"input: {args.rows:,} rows built and cached in {time.perf_counter() - t0:.1f} s "
          f"({args.partitions} partitions)", flush=True)

    from utils.training import scoring_model_uri

    model = mlflow.pyfunc.load_model(scoring_model_uri(model_info.uri))  # once, untimed: the recommender inside
    udf_scored = spark_udf_scores(df, model_info.uri)  # builds the UDF (downloads the model), untimed
    holder: dict[str, np.ndarray] = {}

    def in_process() -> None:
        holder["pred"] = np.asarray(model.predict(inputs), dtype=float)

    def noop(scored):
        return lambda: scored.write.format("noop").mode("overwrite").save()

    cases: dict[str, Callable[[], object]] = {
        IN_PROCESS: in_process,
        UDF: noop(udf_scored),
        FLOOR: noop(df),
    }
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
    for _ in tqdm(range(args.repeats), desc="repeats (each scorer in turn)", file=sys.stderr):
        for name, call in cases.items():
            runs[name].append(timed_run(call))
            wall, py, java = runs[name][-1]
            tqdm.write(f"  {name}: {wall:.2f} s, CPU s: Python {py:.1f}, JVM {java:.1f}", file=sys.stderr)

    results = {}
    for name, samples in runs.items():
        walls = [w for w, _, _ in samples]
        median = statistics.median(walls)
        results[name] = {"median_s": median, "rps": args.rows / median, "runs": walls,
                         "py_cpu_s": statistics.median(p for _, p, _ in samples),
                         "jvm_cpu_s": statistics.median(j for _, _, j in samples)}

    # both scorers agree on the first --check-rows rows
    n = min(args.check_rows, args.rows)
    expected = holder["pred"][:n]
    max_diff = 0.0
    for scored in (udf_scored,):
        got = (scored.filter(scored.row_id < n).select("row_id", PREDICTION_COL).toPandas()
               .sort_values("row_id"))
        if len(got) != n or not (got["row_id"].to_numpy() == np.arange(n)).all():
            raise AssertionError(f"expected predictions for rows 0..{n - 1}, got {len(got)} rows")
        diff = float(np.max(np.abs(got[PREDICTION_COL].to_numpy() - expected)))
        max_diff = max(max_diff, diff)
    if max_diff > TOLERANCE:
        raise AssertionError(f"the scorers disagree by {max_diff} (> {TOLERANCE}) on the first {n} rows")
    floor = results[FLOOR]["py_cpu_s"]
    for name in (UDF,):  # the model ran: the workers spent at least half the in-process CPU on it
        if results[name]["py_cpu_s"] - floor < 0.5 * results[IN_PROCESS]["py_cpu_s"]:
            raise AssertionError(f"{name} used {results[name]['py_cpu_s']:.2f} Python CPU s against "
                                 f"{results[IN_PROCESS]['py_cpu_s']:.2f} in-process: was the model skipped?")
    info = {"version": model_info.version, "base_rows": base_rows, "arrow_batch": arrow_batch,
            "cores": os.cpu_count() or 1}
    df.unpersist()
    return results, {"rows": n, "max_diff": max_diff}, info


if __name__ == "__main__":
    main()
