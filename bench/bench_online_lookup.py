"""Benchmark: online feature lookup latency from the local SQLite online store.

Publishes a feature table of ``--rows`` keys (``--features`` float features) to a fresh SQLite
online store, then times ``utils.local.online_store.lookup`` for one key and for a batch of ``--batch``
keys (``--iterations`` each, a tenth of them unknown keys), and an ``OnlineFeatureLookup`` (the serving
path: a model's feature spec plus key-only records to a pandas frame) for the same batch size.
Prints p50 / p99 / mean in milliseconds.

    .venv/bin/python bench/bench_online_lookup.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from common import percentiles, timed


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="keys in the online table")
    p.add_argument("--features", type=int, default=10, help="float features per key")
    p.add_argument("--batch", type=int, default=50, help="keys per batch lookup")
    p.add_argument("--iterations", type=int, default=2_000, help="timed lookups per case")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    return p.parse_args()


def main() -> None:
    """Publish, time the lookups, print the latency table."""
    import numpy as np
    import pandas as pd

    from utils.local import online_store as online
    from utils.local.feature_spec import FeatureSpec, LookupSpec
    from utils.local.online_publish import publish

    args = parse_args()
    rng = np.random.default_rng(0)
    store = online.SqliteOnlineStore(Path(tempfile.mkdtemp(prefix="bench-online-")) / "online.db")
    name = "bench.online.customer_features"
    frame = pd.DataFrame({"customer_id": np.arange(args.rows, dtype="int64")})
    features = [f"f{i}" for i in range(args.features)]
    for f in features:
        frame[f] = rng.normal(size=args.rows)
    start = time.perf_counter()
    publish(frame, name, ["customer_id"], store=store)
    publish_s = time.perf_counter() - start

    def keys(n: int) -> list[dict[str, int]]:
        ids = rng.integers(0, int(args.rows * 1.1), n)  # ~10% unknown keys
        return [{"customer_id": int(i)} for i in ids]

    singles = [keys(1)[0] for _ in range(args.iterations + 50)]
    batches = [keys(args.batch) for _ in range(args.iterations + 50)]
    it_single, it_batch, it_fetch = iter(singles), iter(batches), iter(batches)
    spec = FeatureSpec(
        lookups=[LookupSpec(name, ["customer_id"], features, primary_keys=["customer_id"])],
        source_columns=["customer_id"], labels=[], exclude_columns=["customer_id"], output_columns=features,
        data_types={f: "double" for f in features},
    )
    lookup = online.OnlineFeatureLookup(spec, store)
    results = {
        "rows": args.rows,
        "features": args.features,
        "batch": args.batch,
        "iterations": args.iterations,
        "publish_s": publish_s,
        "lookup_1_key": percentiles(timed(lambda: online.lookup(name, next(it_single), store=store), args.iterations, warmup=50)),
        f"lookup_{args.batch}_keys": percentiles(
            timed(lambda: online.lookup(name, next(it_batch), store=store), args.iterations, warmup=50)),
        f"fetch_features_{args.batch}_records": percentiles(timed(lambda: lookup(next(it_fetch)), args.iterations, warmup=50)),
    }
    print(f"published {args.rows:,} keys x {args.features} features in {publish_s:.2f}s")
    print(f"{'case':<28}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for case, stats in results.items():
        if isinstance(stats, dict):
            print(f"{case:<28}{stats['p50_ms']:>10.3f}{stats['p99_ms']:>10.3f}{stats['mean_ms']:>10.3f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
