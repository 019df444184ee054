"""Benchmark of the synthetic data generator: seconds and rows/s per size, median of N runs.

    .venv/bin/python bench/bench_datagen.py                 # 10k, 100k, 1M impressions, 3 runs each
    .venv/bin/python bench/bench_datagen.py --sizes 20000 --repeats 5

`generate` builds the clean frames in memory; `land` also writes the four raw files with 1%
malformed records, the manifest and the SHA-256 of each file. CPU seconds are shown next to wall
seconds because the machine may be shared (wall time then includes waiting for a core).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.datagen import land_raw_files
from utils.plantly_shop import GeneratorSpec
from utils.plantly_simulation import generate
from utils.platform import tmp_dir


def _timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(rows: int, repeats: int, scratch: Path) -> dict[str, float]:
    """Median wall/CPU seconds of ``generate`` and ``land_raw_files`` for ``rows`` impressions."""
    spec = GeneratorSpec(rows=rows, seed=42)
    gen = [_timed(lambda: generate(spec)) for _ in range(repeats)]
    out = scratch / f"rows{rows}"
    land = [_timed(lambda: land_raw_files(spec, out, force=True)) for _ in range(repeats)]
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    shutil.rmtree(out)
    return {
        "gen_wall": statistics.median(w for w, _ in gen),
        "gen_cpu": statistics.median(c for _, c in gen),
        "land_wall": statistics.median(w for w, _ in land),
        "land_cpu": statistics.median(c for _, c in land),
        "mb": size_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# datagen benchmark: {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {load:.1f}, median of {args.repeats} runs")
    print()
    print("| rows | generate s | generate CPU s | generate rows/s | land s | land CPU s | land rows/s | raw MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    scratch_root = tmp_dir()
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="bench-datagen-") as scratch:
        for rows in args.sizes:
            r = bench(rows, args.repeats, Path(scratch))
            print(f"| {rows:,} | {r['gen_wall']:.2f} | {r['gen_cpu']:.2f} | {rows / r['gen_wall']:,.0f} "
                  f"| {r['land_wall']:.2f} | {r['land_cpu']:.2f} | {rows / r['land_wall']:,.0f} | {r['mb']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
