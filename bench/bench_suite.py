"""Benchmark: the whole notebook suite, as ``make demo`` runs it, at the CI size and a larger one.

For each of ``--sizes`` (default 6,000 impressions, ``make test``'s ``TEST_ROWS``, and 20,000, ``make demo``'s
``ROWS``) the suite runs in a fresh, isolated state folder ``bench/results/tmp/suite-<rows>-<time>/``
(git-ignored: ``state/`` is ``MLOPS_STATE_DIR``, ``raw/`` is ``MLOPS_RAW_DIR``, ``executed/`` the runner's
``--output``) through ``python -m tools.runner --rows N --output ...``, the runner ``make demo`` uses.
Seconds per notebook are the runner's own (``done in X s``: kernel start, papermill execution and the HTML
rendering); the last row is the runner process's wall time from outside (Python start and imports included).

``--repeat 2`` runs the suite a second time on the same state and compares the two runs: every Delta
table's row count should be unchanged (re-running must not duplicate rows) and every registered model
should have gained versions while keeping the old ones (new versions, nothing overwritten); what differs
is printed.

    .venv/bin/python bench/bench_suite.py                                   # 6,000 and 20,000 impressions (~25 min on 2 cores)
    .venv/bin/python bench/bench_suite.py --sizes 20000 --repeat 2          # idempotence of a second run
    .venv/bin/python bench/bench_suite.py --sizes 3000 --only 00_setup 01_explore --no-record   # a quick dry run
    .venv/bin/python bench/bench_suite.py --sizes 20000 --before 5eb4e3b    # before the warm engine, then now

``--before REV`` runs the suite first at commit ``REV`` (checked out in a git worktree under the work folder,
sharing this checkout's ``.venv``; its jars are set up by its own code from this checkout's Ivy cache), then at this checkout, each in a fresh state folder, one after
the other on the same machine: ``5eb4e3b`` is the last commit before the warm engine, where every notebook kernel
started its own JVM (classic Spark).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, fmt, machine_description, markdown_table, record

WORK = REPO_ROOT / "bench" / "results" / "tmp"  # git-ignored (.gitignore: bench/results/tmp/)
RUNNING = re.compile(r"^running (\S+\.ipynb) \.\.\.$")
DONE = re.compile(r"^\s+done in ([0-9.]+) s -> ")
# Variables that would point a run at shared state or override the runner's --rows / --seed.
CLEARED_ENV = ("MLOPS_ROWS", "MLOPS_SEED", "MLOPS_SCENARIO", "MLOPS_BAD_FRACTION", "MLFLOW_TRACKING_URI",
               "MLFLOW_REGISTRY_URI", "DATABRICKS_RUNTIME_VERSION")


def parse_args() -> argparse.Namespace:
    """Command-line sizes and modes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[6000, 20000], help="impressions generated (the runner's --rows)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", nargs="+", help="notebook name prefixes passed to the runner (e.g. 00_setup 01_explore)")
    p.add_argument("--repeat", type=int, choices=(1, 2), default=1,
                   help="2: run the suite twice on the same state and compare tables and registered models")
    p.add_argument("--keep", action="store_true", help="keep the state folders (removed after a successful size otherwise)")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results.md")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    p.add_argument("--before", metavar="REV", help="first run the suite at this commit (a git worktree), then here")
    return p.parse_args()


# ------------------------------------------------------------------ running the suite


def child_env(folder: Path, rows: int, seed: int) -> dict[str, str]:
    """The runner's environment: isolated state, the Makefile's one OpenMP thread, no overriding MLOPS_* values."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update({
        "MLOPS_STATE_DIR": str(folder / "state"),
        "MLOPS_RAW_DIR": str(folder / "raw"),
        # The runner only setdefault()s MLOPS_ROWS, and get_param() prefers MLOPS_<NAME> to the injected
        # parameter: set both explicitly so that the notebooks see this size and seed.
        "MLOPS_ROWS": str(rows),
        "MLOPS_SEED": str(seed),
        "PYTHONUNBUFFERED": "1",
    })
    env.setdefault("OMP_NUM_THREADS", "1")  # as the Makefile exports it
    return env


def worktree(rev: str) -> Path:
    """A checkout of ``rev`` under the work folder (``git worktree``), made once and reused; raises SystemExit
    when git does not know ``rev``."""
    sha = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=False)
    if sha.returncode != 0:
        raise SystemExit(f"--before {rev}: not a commit of this repository ({sha.stderr.strip()})")
    path = WORK / f"before-{sha.stdout.strip()[:10]}"
    if not (path / "utils").is_dir():
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha.stdout.strip()], cwd=REPO_ROOT,
                       check=True, capture_output=True)
    if not (path / ".jars" / "manifest.json").exists():  # that commit's own jar set-up, from this checkout's Ivy cache
        shutil.copytree(REPO_ROOT / ".jars" / "ivy", path / ".jars" / "ivy", copy_function=os.link, dirs_exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "MLOPS_JARS_DIR"}
        subprocess.run([sys.executable, "-m", "utils.local.jvm", "install"], cwd=path, env=env, check=True)
    return path


def run_suite(folder: Path, rows: int, seed: int, only: list[str] | None, rep: int,
              checkout: Path = REPO_ROOT, label: str = "") -> dict[str, Any]:
    """One ``python -m tools.runner`` run in ``checkout`` (``utils.runner`` in a checkout older than ``tools/``);
    returns per-notebook seconds, the wall time and the exit code."""
    output = folder / ("executed" if rep == 1 else f"executed-{rep}")
    runner = "tools.runner" if (checkout / "tools" / "runner.py").exists() else "utils.runner"
    cmd = [sys.executable, "-m", runner, "--rows", str(rows), "--seed", str(seed), "--output", str(output)]
    if only:
        cmd += ["--only", *only]
    label = label or f"{fmt(rows)} rows, run {rep}"
    log = folder / f"runner-run{rep}.log"
    print(f"[{label}] {' '.join(cmd[1:])}  (state {folder.relative_to(REPO_ROOT)}; JVM/kernel output in {log.name})", flush=True)
    seconds: dict[str, float] = {}
    current = None
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as err:
        env = child_env(folder, rows, seed)
        if checkout != REPO_ROOT:  # the other commit uses its own jar set-up, and no engine of this one
            env["MLOPS_JARS_DIR"] = str(checkout / ".jars")
            env.pop("SPARK_REMOTE", None)
        proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            print(f"[{label}] {line}", flush=True)
            if m := RUNNING.match(line):
                current = m.group(1).removesuffix(".ipynb")
            elif (m := DONE.match(line)) and current:
                seconds[current] = float(m.group(1))
                current = None
        rc = proc.wait()
    wall = time.perf_counter() - start
    if rc != 0:
        print(f"[{label}] runner failed (exit {rc}) in {current or 'setup'}; last lines of {log}:", file=sys.stderr)
        print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
    elif not seconds:
        raise SystemExit(f"the runner printed no 'running X ... / done in S s' lines: has tools/runner.py's output changed? See {log}")
    return {"seconds": seconds, "wall_s": wall, "rc": rc, "failed": current if rc else None}


# ------------------------------------------------------------------ state snapshots (for --repeat 2)


def snapshot(folder: Path) -> dict[str, Any]:
    """Row count of every Delta table and every registered model's versions and aliases in ``folder/state``."""
    state = folder / "state"
    os.environ["MLOPS_STATE_DIR"] = str(state)  # get_spark() serves this state's warehouse
    from utils import lakehouse
    from utils.config import get_config
    from utils.platform import get_spark

    spark = get_spark()
    tables = {name: int(spark.table(name).count()) for name in lakehouse.list_tables(get_config().catalog)}
    return {"tables": tables, "models": _models(state / "mlflow" / "mlflow.db")}


def _models(db: Path) -> dict[str, dict[str, Any]]:
    """name -> {versions: {version: run_id}, aliases: {alias: version}} from the MLflow registry at ``db``."""
    if not db.exists():
        return {}
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = {}
    for rm in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{rm.name}'")
        out[rm.name] = {
            "versions": {str(v.version): v.run_id for v in versions},
            "aliases": {a: str(v) for a, v in (rm.aliases or {}).items()},
        }
    return out


# Append-only logs of events (every prediction, request, quarantined event, alert): a second run adds its own.
EVENT_LOGS = frozenset({"inference_log", "request_log", "streaming_quarantine", "monitoring_alerts"})


def compare(first: dict[str, Any], second: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Problems (duplicated or lost rows, overwritten or missing model versions) and other differences."""
    problems, notes = [], []
    t1, t2 = first["tables"], second["tables"]
    for name in sorted(set(t1) | set(t2)):
        a, b = t1.get(name), t2.get(name)
        if a is None:
            notes.append(f"table {name}: new in the second run ({b:,} rows)")
        elif b is None:
            problems.append(f"table {name}: gone after the second run (had {a:,} rows)")
        elif b > a and name.rsplit(".", 1)[-1] in EVENT_LOGS:
            notes.append(f"event log {name}: {a:,} rows after run 1, {b:,} after run 2 ({b - a:+,}: the second run's events)")
        elif a != b:
            problems.append(f"table {name}: {a:,} rows after run 1, {b:,} after run 2 ({b - a:+,})")
    m1, m2 = first["models"], second["models"]
    for name in sorted(set(m1) | set(m2)):
        v1 = m1.get(name, {}).get("versions", {})
        v2 = m2.get(name, {}).get("versions", {})
        if name not in m2:
            problems.append(f"model {name}: gone after the second run")
            continue
        lost = sorted(set(v1) - set(v2), key=int)
        changed = sorted((v for v in set(v1) & set(v2) if v1[v] != v2[v]), key=int)
        new = sorted(set(v2) - set(v1), key=int)
        if lost:
            problems.append(f"model {name}: version(s) {', '.join(lost)} of run 1 missing after run 2")
        if changed:
            problems.append(f"model {name}: version(s) {', '.join(changed)} point at another MLflow run after run 2 (overwritten)")
        if not new:
            problems.append(f"model {name}: no new version in run 2 (versions {', '.join(sorted(v2, key=int)) or 'none'})")
        elif v1 and min(int(v) for v in new) <= max(int(v) for v in v1):
            problems.append(f"model {name}: new version numbers {', '.join(new)} do not all follow run 1's {max(v1, key=int)}")
        else:
            notes.append(f"model {name}: versions {', '.join(sorted(v1, key=int)) or 'none'} -> added {', '.join(new)}")
        a1, a2 = m1.get(name, {}).get("aliases", {}), m2.get(name, {}).get("aliases", {})
        for alias in sorted(set(a1) | set(a2)):
            if a1.get(alias) != a2.get(alias):
                notes.append(f"model {name}: alias @{alias} {a1.get(alias, '-')} -> {a2.get(alias, '-')}")
    return problems, notes


# ------------------------------------------------------------------ main


def main() -> None:
    """Run the suite at every size (twice with --repeat 2), print and record the table."""
    args = parse_args()
    machine = machine_description()
    WORK.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    runs: dict[tuple[int, int], dict[str, Any]] = {}
    checks: dict[int, tuple[list[str], list[str]]] = {}
    snaps_by_size: dict[int, dict[str, Any]] = {}
    failed = False
    for rows in args.sizes:
        folder = WORK / f"suite-{rows}-{stamp}"
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "state").mkdir(parents=True)
        (folder / "raw").mkdir()
        snaps = []
        if args.before:
            before_folder = WORK / f"suite-{rows}-{stamp}-before"
            shutil.rmtree(before_folder, ignore_errors=True)
            (before_folder / "state").mkdir(parents=True)
            (before_folder / "raw").mkdir()
            result = run_suite(before_folder, rows, args.seed, args.only, 1, checkout=worktree(args.before),
                               label=f"{fmt(rows)} rows, before ({args.before})")
            runs[(rows, 0)] = result
            if result["rc"] != 0:
                print(f"state kept for inspection: {before_folder}", file=sys.stderr)
                failed = True
                break
            shutil.rmtree(before_folder, ignore_errors=True)
        for rep in range(1, args.repeat + 1):
            result = run_suite(folder, rows, args.seed, args.only, rep)
            runs[(rows, rep)] = result
            if result["rc"] != 0:
                failed = True
                break
            print(f"[{fmt(rows)} rows, run {rep}] {len(result['seconds'])} notebooks, "
                  f"{sum(result['seconds'].values()):.1f} s by the runner, {result['wall_s']:.1f} s wall", flush=True)
            if args.repeat > 1:
                snaps.append(snapshot(folder))
        if len(snaps) == 2:
            problems, notes = compare(*snaps)
            checks[rows] = (problems, notes)
            snaps_by_size[rows] = snaps[1]
            print(f"\nsecond run on the same state, {fmt(rows)} rows: "
                  f"{len(snaps[1]['tables'])} tables, {len(snaps[1]['models'])} registered models")
            for line in problems:
                print(f"  PROBLEM {line}")
            for line in notes:
                print(f"  note    {line}")
            print(markdown_table(["table", "rows after run 1", "rows after run 2"],
                                 [[t, _n(snaps[0]["tables"].get(t)), _n(snaps[1]["tables"].get(t))]
                                  for t in sorted(set(snaps[0]["tables"]) | set(snaps[1]["tables"]))]))
            if not problems:
                print(f"  {_verdict(snaps[1])}")
        if failed:
            print(f"state kept for inspection: {folder}", file=sys.stderr)
            break
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    done = [(rows, rep) for (rows, rep), r in runs.items() if r["rc"] == 0]
    if not done:
        raise SystemExit(1)
    names: list[str] = []
    for key in done:
        names += [n for n in runs[key]["seconds"] if n not in names]
    header = ["notebook", *[f"{fmt(rows)} rows" + (f", before ({args.before})" if rep == 0 else ", now" if args.before else
                                                   f", run {rep}" if args.repeat > 1 else "") for rows, rep in done]]
    body_rows = [[n, *[_s(runs[k]["seconds"].get(n)) for k in done]] for n in names]
    body_rows.append(["total (sum)", *[_s(sum(runs[k]["seconds"].values())) for k in done]])
    body_rows.append(["runner process, wall", *[_s(runs[k]["wall_s"]) for k in done]])
    if args.before:
        body_rows.append(["now / before, wall", *[f"{runs[k]['wall_s'] / runs[(k[0], 0)]['wall_s']:.2f}"
                                                   if k[1] and (k[0], 0) in runs else "" for k in done]])
    table = markdown_table(header, body_rows)
    scope = f"notebooks {', '.join(args.only)}" if args.only else "every notebook"
    body = (f"`python -m tools.runner --rows N` ({scope}), each size in a fresh state folder; seconds per notebook as the "
            f"runner reports them (kernel start, execution, HTML rendering); one run per size"
            + (" and a second run on the same state" if args.repeat > 1 else "")
            + (f"; first at commit {args.before} (a git worktree sharing this checkout's .venv), then at this checkout"
               if args.before else "") + ".\n\n" + table)
    for rows, (problems, notes) in checks.items():
        body += f"\n\nSecond run on the same state at {fmt(rows)} rows: " + (
            _verdict(snaps_by_size[rows]) if not problems else "; ".join(problems) + ".")
        if notes:
            body += " Also: " + "; ".join(notes) + "."
    print()
    if args.no_record or failed:
        print(body)
    else:
        record("Notebook suite (`tools.runner`)", body, "bench/bench_suite.py", machine=machine)
    if args.out:
        args.out.write_text(json.dumps({"runs": {f"{r}:{k}": v for (r, k), v in runs.items()},
                                        "checks": {str(k): {"problems": p, "notes": n} for k, (p, n) in checks.items()}},
                                       indent=2))
    if failed or any(p for p, _ in checks.values()):
        raise SystemExit(1)


def _verdict(snap: dict[str, Any]) -> str:
    """The sentence for a second run without problems."""
    models = snap["models"]
    return (f"row counts of all {len(snap['tables'])} tables equal; "
            + (f"every registered model ({', '.join(sorted(models))}) gained new versions and kept the old ones."
               if models else "no registered model yet (the notebooks run register none)."))


def _n(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _s(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


if __name__ == "__main__":
    main()
