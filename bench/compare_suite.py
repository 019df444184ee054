"""Side by side: two ``bench_suite.py --out`` results (e.g. the previous commit and this one, run back to back).

    .venv/bin/python bench/compare_suite.py before.json after.json --labels 8b331dc HEAD [--record]

Prints one row per notebook (seconds in each run and their ratio, after / before) and the runner's
wall time; ``--record`` appends the table to ``bench/results.md``. Both files must hold the same size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import markdown_table, record


def compare(before: dict, after: dict, labels: tuple[str, str]) -> str:
    """Markdown table of per-notebook seconds in ``before`` and ``after`` (``bench_suite --out`` JSON), with ratios.

    Raises ``ValueError`` when the two files hold different sizes or a run failed.
    """
    if set(before["runs"]) != set(after["runs"]):
        raise ValueError(f"the runs differ: {sorted(before['runs'])} vs {sorted(after['runs'])}")
    rows = []
    for key in sorted(before["runs"]):
        b, a = before["runs"][key], after["runs"][key]
        if b["rc"] or a["rc"]:
            raise ValueError(f"run {key} failed (exit {b['rc']} / {a['rc']}): compare only green runs")
        rows_key = key.split(":")[0]
        for nb in sorted(set(b["seconds"]) | set(a["seconds"])):
            sb, sa = b["seconds"].get(nb), a["seconds"].get(nb)
            ratio = f"{sa / sb:.2f}×" if sb and sa else "—"
            rows.append([rows_key, nb, f"{sb:.1f}" if sb else "—", f"{sa:.1f}" if sa else "—", ratio])
        rows.append([rows_key, "**runner wall time**", f"{b['wall_s']:.1f}", f"{a['wall_s']:.1f}",
                     f"{a['wall_s'] / b['wall_s']:.2f}×"])
    header = ["impressions", "notebook", f"{labels[0]} (s)", f"{labels[1]} (s)", "ratio"]
    return markdown_table(header, rows, align="llrrr")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--labels", nargs=2, default=["before", "after"])
    p.add_argument("--record", action="store_true", help="append the table to bench/results.md")
    args = p.parse_args()
    table = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()), tuple(args.labels))
    print(table)
    if args.record:
        record("Notebook suite, two commits side by side (`bench_suite.py` back to back)", table,
               "bench/compare_suite.py")


if __name__ == "__main__":
    main()
