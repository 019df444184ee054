"""Benchmark: point-in-time training set in local Spark vs a naive pandas ``merge_asof``.

Builds ``--lookups`` time series feature tables of ``--features`` rows each (through the local
feature store, as real Delta tables) and a spine of ``--spine`` rows, then times

* Spark: ``create_training_set(...).load_df()`` written to Spark's ``noop`` sink (the whole join runs);
* pandas: one ``pd.merge_asof(..., by=key, direction="backward")`` per lookup on in-memory frames;

``--runs`` times each, and prints the medians side by side with their ratio. With ``--same-key`` every
lookup uses the spine's ``key_0`` (tables on one entity), so the Spark join makes one pass for all of them. The two results are
checked against each other (null counts and column sums) so the timings compare equal work.

    .venv/bin/python bench/bench_point_in_time.py            # the issue's 1,000,000 x 100,000 x 3
    .venv/bin/python bench/bench_point_in_time.py --small    # 100,000 x 10,000 x 3, a quick look
    .venv/bin/python bench/bench_point_in_time.py --same-key # the 3 lookups share one key
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

BASE = 1_700_000_000  # epoch seconds where the generated history starts
SPAN = 365 * 86_400  # one year of history


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spine", type=int, default=1_000_000, help="spine (label) rows")
    p.add_argument("--features", type=int, default=100_000, help="rows per feature table")
    p.add_argument("--lookups", type=int, default=3, help="feature tables looked up (one key each)")
    p.add_argument("--keys", type=int, default=20_000, help="distinct entities per feature table")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each implementation")
    p.add_argument("--small", action="store_true", help="100,000 spine x 10,000 feature rows")
    p.add_argument("--same-key", action="store_true", help="every lookup keyed by the spine's key_0")
    p.add_argument("--skip-pandas", action="store_true", help="time only Spark")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args()
    if args.small:
        args.spine, args.features, args.keys = 100_000, 10_000, 2_000
    return args


def make_data(args: argparse.Namespace) -> tuple[object, list[object]]:
    """A pandas spine and ``lookups`` pandas feature tables with unique (key, ts)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(42)
    tables = []
    for i in range(args.lookups):
        key = rng.integers(0, args.keys, args.features)
        ts = BASE + rng.integers(0, SPAN, args.features)
        frame = pd.DataFrame({f"key_{i}": key, "ts": pd.to_datetime(ts, unit="s")})
        frame = frame.drop_duplicates([f"key_{i}", "ts"]).reset_index(drop=True)
        frame[f"f{i}_a"] = rng.normal(size=len(frame))
        frame[f"f{i}_b"] = rng.integers(0, 1000, len(frame)).astype("int64")
        tables.append(frame)
    spine = pd.DataFrame({f"key_{i}": rng.integers(0, int(args.keys * 1.05), args.spine) for i in range(args.lookups)})
    spine["event_ts"] = pd.to_datetime(BASE + rng.integers(0, SPAN, args.spine), unit="s")
    spine["label"] = rng.integers(0, 2, args.spine)
    return spine, tables


def run_pandas(spine: object, tables: list[object], same_key: bool = False) -> tuple[float, object]:
    """Seconds for the naive pandas point-in-time join (sort + merge_asof per lookup), and its result."""
    import pandas as pd

    start = time.perf_counter()
    out = spine.sort_values("event_ts", kind="stable")
    for i, table in enumerate(tables):
        right = table.sort_values("ts", kind="stable")
        if same_key and i:
            out = pd.merge_asof(out, right, left_on="event_ts", right_on="ts", left_by="key_0", right_by=f"key_{i}",
                                direction="backward")
            out = out.drop(columns=["ts", f"key_{i}_y"]).rename(columns={f"key_{i}_x": f"key_{i}"})
        else:
            out = pd.merge_asof(out, right, left_on="event_ts", right_on="ts", by=f"key_{i}", direction="backward")
            out = out.drop(columns="ts")
    return time.perf_counter() - start, out


def run_spark(fe: object, spine_df: object, lookups: list[object]) -> tuple[float, object]:
    """Seconds for ``create_training_set(...).load_df()`` fully computed, and the DataFrame."""
    start = time.perf_counter()
    training_set = fe.create_training_set(df=spine_df, feature_lookups=lookups, label="label")
    df = training_set.load_df()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start, df


def summary(frame_sums: dict[str, tuple[int, float]], other: dict[str, tuple[int, float]]) -> bool:
    """True when null counts match and sums agree to 1e-9 relative."""
    return all(
        frame_sums[c][0] == other[c][0] and math.isclose(frame_sums[c][1], other[c][1], rel_tol=1e-9, abs_tol=1e-6)
        for c in frame_sums
    )


def main() -> None:
    """Build the tables, time both implementations, print the comparison."""
    args = parse_args()
    os.environ.setdefault("MLOPS_STATE_DIR", tempfile.mkdtemp(prefix="bench-pit-"))
    from databricks.feature_engineering import FeatureLookup
    from pyspark.sql import functions as F

    from utils.local.feature_store import LocalFeatureEngineeringClient
    from utils.platform import get_spark

    spark = get_spark("bench-point-in-time")
    cores = int(spark.conf.get("spark.default.parallelism"))  # the configured parallelism (MLOPS_SHUFFLE_PARTITIONS)
    t0 = time.perf_counter()
    spine, tables = make_data(args)
    fe = LocalFeatureEngineeringClient()
    lookups = []
    for i, table in enumerate(tables):
        name = f"bench.pit.features_{i}"
        if fe_exists(name):  # left by an earlier run in a reused MLOPS_STATE_DIR
            fe.drop_table(name=name)
        fe.create_table(name=name, primary_keys=[f"key_{i}", "ts"], timeseries_column="ts", df=table)
        key = "key_0" if args.same_key else f"key_{i}"
        lookups.append(FeatureLookup(table_name=name, lookup_key=key, timestamp_lookup_key="event_ts"))
    spine_df = spark.createDataFrame(spine).cache()
    spine_df.count()
    print(f"setup {time.perf_counter() - t0:.1f}s: spine {len(spine):,} rows, {len(tables)} feature tables of "
          f"{[len(t) for t in tables]} rows, {args.keys:,} keys each, Spark parallelism {cores} on {os.cpu_count()} cores", flush=True)

    spark_times, pandas_times = [], []
    spark_df = pandas_df = None
    for run in range(args.runs):
        seconds, spark_df = run_spark(fe, spine_df, lookups)
        spark_times.append(seconds)
        line = f"run {run + 1}: spark {seconds:.2f}s"
        if not args.skip_pandas:
            seconds, pandas_df = run_pandas(spine, tables, args.same_key)
            pandas_times.append(seconds)
            line += f"  pandas merge_asof {seconds:.2f}s"
        print(line, flush=True)

    features = [c for t in tables for c in t.columns if c.startswith("f")]
    agg = spark_df.agg(*[F.count(F.col(c)).alias(f"n_{c}") for c in features],
                       *[F.sum(F.col(c)).alias(f"s_{c}") for c in features]).first()
    spark_sums = {c: (len(spine) - agg[f"n_{c}"], float(agg[f"s_{c}"] or 0.0)) for c in features}
    result = {
        "spine_rows": len(spine),
        "feature_rows": [len(t) for t in tables],
        "lookups": len(tables),
        "keys": args.keys,
        "same_key": args.same_key,
        "spark_parallelism": cores,
        "cpu_count": os.cpu_count(),
        "runs": args.runs,
        "spark_seconds": spark_times,
        "spark_median_s": statistics.median(spark_times),
    }
    if pandas_times:
        pandas_sums = {c: (int(pandas_df[c].isna().sum()), float(pandas_df[c].sum())) for c in features}
        result.update({
            "pandas_seconds": pandas_times,
            "pandas_median_s": statistics.median(pandas_times),
            "spark_over_pandas": statistics.median(spark_times) / statistics.median(pandas_times),
            "results_agree": summary(spark_sums, pandas_sums),
        })
    print()
    print(f"{'implementation':<28}{'median s':>10}")
    spark_label = "spark union+window, 1 pass" if args.same_key else "spark union+window"
    print(f"{spark_label:<28}{result['spark_median_s']:>10.2f}")
    if pandas_times:
        print(f"{'pandas merge_asof':<28}{result['pandas_median_s']:>10.2f}")
        print(f"spark / pandas = {result['spark_over_pandas']:.2f}x; results agree: {result['results_agree']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def fe_exists(name: str) -> bool:
    """Whether a table from an earlier run is still in the (reused) state folder."""
    from utils import lakehouse

    return lakehouse.exists(name)


if __name__ == "__main__":
    main()
