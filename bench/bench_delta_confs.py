"""Benchmark: small-table Delta operations in local Spark with Delta's cluster-sized defaults vs the project's settings.

Local sessions (``utils.platform.get_spark``) set two SQL confs that Delta sizes for clusters:

* ``spark.databricks.delta.snapshotPartitions`` (Delta default 50): partitions a table's state is rebuilt in;
* ``spark.sql.sources.parallelPartitionDiscovery.parallelism`` (Spark default 10,000): tasks ``VACUUM`` lists
  files with.

Both are runtime SQL confs, so one session measures both settings side by side: each run creates a fresh
table (no cached snapshot), appends three small batches, then times ``DESCRIBE DETAIL``, ``OPTIMIZE`` and
``VACUUM ... DRY RUN`` (retention 0), alternating the two settings run by run.

    .venv/bin/python bench/bench_delta_confs.py            # 3 runs each, appended to bench/results.md
    .venv/bin/python bench/bench_delta_confs.py --no-record
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from common import fmt, markdown_table, record

DEFAULTS = {"spark.databricks.delta.snapshotPartitions": "50",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "10000"}
OPERATIONS = ("3 appends", "DESCRIBE DETAIL", "OPTIMIZE", "VACUUM DRY RUN")


def one_run(spark, confs: dict[str, str]) -> dict[str, float]:
    """Seconds per operation on a fresh six-row table under ``confs``."""
    for key, value in confs.items():
        spark.conf.set(key, value)
    name = f"spark_catalog.bench.t_{uuid.uuid4().hex[:8]}"
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    out: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(3):
        spark.createDataFrame([(2 * i, "a"), (2 * i + 1, "b")], "id long, label string") \
            .write.format("delta").mode("append").saveAsTable(name)
    out["3 appends"] = time.perf_counter() - start
    for label, sql in (("DESCRIBE DETAIL", f"DESCRIBE DETAIL {name}"), ("OPTIMIZE", f"OPTIMIZE {name}"),
                       ("VACUUM DRY RUN", f"VACUUM {name} RETAIN 0 HOURS DRY RUN")):
        start = time.perf_counter()
        spark.sql(sql).collect()
        out[label] = time.perf_counter() - start
    spark.sql(f"DROP TABLE {name}")
    return out


def main() -> None:
    """Run both settings ``--runs`` times, alternating, and print (and record) the medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each setting (after one warm-up of each)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results.md")
    args = ap.parse_args()

    from utils.platform import get_spark

    spark = get_spark("bench-delta-confs")
    spark.sql("CREATE SCHEMA IF NOT EXISTS spark_catalog.bench")
    project = {key: spark.conf.get(key) for key in DEFAULTS}
    settings = {"Delta/Spark defaults": DEFAULTS, "project settings": project}
    times: dict[str, list[dict[str, float]]] = {label: [] for label in settings}
    for label, confs in settings.items():  # warm-up: JIT, class loading
        one_run(spark, confs)
    for _ in range(args.runs):
        for label, confs in settings.items():
            times[label].append(one_run(spark, confs))
    for key, value in project.items():
        spark.conf.set(key, value)
    medians = {label: {op: statistics.median(r[op] for r in runs) for op in OPERATIONS} for label, runs in times.items()}
    rows = [[op, fmt(medians["Delta/Spark defaults"][op]), fmt(medians["project settings"][op]),
             f"{medians['Delta/Spark defaults'][op] / medians['project settings'][op]:.1f}x"] for op in OPERATIONS]
    table = markdown_table(["operation (six-row table)", "defaults s", "project s", "defaults / project"], rows)
    body = (f"Median of {args.runs} runs of each setting, alternating in one local session (`local[*]`), after one "
            f"warm-up each. Defaults: {', '.join(f'`{k}={v}`' for k, v in DEFAULTS.items())}; project: "
            f"{', '.join(f'`{k}={v}`' for k, v in project.items())}.\n\n{table}")
    if args.no_record:
        print(body)
    else:
        record("Small Delta tables: Delta's cluster defaults vs the local session's settings", body,
               "bench/bench_delta_confs.py")


if __name__ == "__main__":
    main()
