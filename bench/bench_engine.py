"""Benchmark: a notebook-like Delta workload in a fresh process, on its own JVM (classic) vs on the warm local engine.

Each run is a new Python process, as a notebook kernel is. ``classic`` builds a local Spark session with its own
JVM (what every kernel and test did before the shared engine, with the engine's settings); ``connect`` is a
Spark Connect client of the state folder's engine (``utils.local.engine``), started once before the first run.
The workload: a 20,000-row ``createDataFrame`` + ``saveAsTable``, a SQL ``MERGE INTO``, ``DESCRIBE HISTORY``, a
``versionAsOf`` read, a ``groupBy().toPandas()`` and ten small appends. The two modes alternate run by run, so a
change in the shared machine's load hits both alike; the medians and their ratio are printed and recorded.

    .venv/bin/python bench/bench_engine.py                # 3 runs of each, appended to bench/results.md
    .venv/bin/python bench/bench_engine.py --runs 5 --no-record
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, fmt, markdown_table, record

WORKLOAD = r'''
import json, os, sys, time, uuid
t0 = time.perf_counter()
mode, state = sys.argv[1], sys.argv[2]
import pandas as pd
from utils.config import get_config
catalog = get_config().catalog
if mode == "classic":
    from pyspark.sql import SparkSession
    from utils.local import engine
    from utils.platform import lakehouse_dir, tmp_dir
    conf = engine.server_conf(lakehouse_dir(), tmp_dir(), [catalog])
    builder = SparkSession.builder.master("local[*]")
    for k, v in conf.items():
        if not k.startswith("spark.connect."):
            builder = builder.config(k, v)
    spark = builder.getOrCreate()
else:
    from utils.platform import get_spark
    spark = get_spark()
started = time.perf_counter() - t0
name = f"{catalog}.bench.t_{mode}_{uuid.uuid4().hex[:6]}"
spark.sql(f"CREATE SCHEMA IF NOT EXISTS {catalog}.bench")
rows = pd.DataFrame({"id": range(20000), "segment": [f"s{i % 7}" for i in range(20000)], "v": 1.0})
spark.createDataFrame(rows).write.mode("overwrite").saveAsTable(name)
spark.createDataFrame(rows.iloc[19990:].assign(v=2.0)).createOrReplaceTempView("updates")
spark.sql(f"MERGE INTO {name} t USING updates s ON t.id = s.id WHEN MATCHED THEN UPDATE SET *").collect()
history = spark.sql(f"DESCRIBE HISTORY {name}").count()
first = spark.read.option("versionAsOf", 0).table(name).count()
by_segment = spark.table(name).groupBy("segment").sum("v").toPandas()
for i in range(10):
    spark.createDataFrame(rows.iloc[i:i + 1].assign(id=100000 + i)).write.mode("append").saveAsTable(name)
assert history == 2 and first == 20000 and len(by_segment) == 7 and spark.table(name).count() == 20010
spark.sql(f"DROP TABLE {name}")
print(json.dumps({"start_s": started, "total_s": time.perf_counter() - t0}))
'''


def one_run(mode: str, state: Path) -> dict[str, float]:
    """Start-up and total seconds of one fresh process running the workload in ``mode``."""
    env = {**os.environ, "MLOPS_STATE_DIR": str(state), "PYTHONPATH": str(REPO_ROOT)}
    for inherited in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):  # set by this process's Connect session
        env.pop(inherited, None)  # a fresh process, as a new kernel: it finds the engine through the state folder
    proc = subprocess.run([sys.executable, "-c", WORKLOAD, mode, str(state)], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=900, check=False)
    if proc.returncode:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    """Alternate the two modes ``--runs`` times each and print (and record) the medians and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each mode")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results.md")
    args = ap.parse_args()


    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        state = Path(tmp)
        os.environ["MLOPS_STATE_DIR"] = str(state)
        from utils.platform import get_spark, stop_spark

        started = time.perf_counter()
        get_spark()  # the engine is started once, as make demo and make test do before the first notebook
        engine_start = time.perf_counter() - started
        samples: dict[str, list[dict[str, float]]] = {"classic": [], "connect": []}
        try:
            for i in range(args.runs):
                for mode in (("classic", "connect") if i % 2 == 0 else ("connect", "classic")):
                    samples[mode].append(one_run(mode, state))
                    print(f"run {i + 1} {mode}: {samples[mode][-1]['total_s']:.1f} s", flush=True)
        finally:
            stop_spark()
    med = {m: {k: statistics.median(s[k] for s in runs) for k in ("start_s", "total_s")} for m, runs in samples.items()}
    rows = [[m, fmt(med[m]["start_s"], 1), fmt(med[m]["total_s"], 1),
             ", ".join(f"{s['total_s']:.1f}" for s in samples[m])] for m in ("classic", "connect")]
    body = markdown_table(["mode (fresh process each run)", "session start, median s", "workload total, median s",
                           "every run, s"], rows)
    body += (f"\n\nThe warm engine runs the workload {med['classic']['total_s'] / med['connect']['total_s']:.2f}× "
             f"as fast as a process with its own JVM ({args.runs} runs each, alternating); starting the engine "
             f"once took {engine_start:.1f} s.")
    if args.no_record:
        print(body)
    else:
        record("One warm engine vs a JVM per process", body, "bench/bench_engine.py")


if __name__ == "__main__":
    main()
