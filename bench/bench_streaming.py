"""Benchmark: streaming scoring latency, from a file landing in the landing folder to its predictions in the inference log.

Builds an isolated lifecycle state (``catch_up("05")``: data, features, a registered champion,
the online store), then scores landed JSON events with ``utils.scoring.StreamScorer`` (validate,
join the feature tables' latest rows, predict, merge into the inference log) in three ways:

* ``continuous``: a Structured Streaming query that stays up, read as notebook 05 reads
  (JSON, permissive, ``maxFilesPerTrigger=1``) but with a ``processingTime`` trigger of
  ``--trigger-s`` (``start_stream(..., processing_time=...)``). After one untimed warm-up
  file (model load, first Delta commit), ``--files`` files of ``--events-per-file`` events are landed
  one at a time (``land_events``: write, then rename), each after the previous one is logged;
* ``continuous, burst``: the same query, ``--files`` more files landed at once (throughput);
* ``availableNow``: what notebook 05 and a scheduled job do: land a file, call ``start_stream``
  without a processing time (start, score what is new, stop), ``--available-now-files`` times.

A file's latency runs from the moment it is visible in the landing folder to the moment its last
event is seen in the inference log: this process polls the log every ``POLL_S`` seconds, since the
``foreachBatch`` callback runs in the engine's Python process (Spark Connect) and cannot tell this
one, so a commit is seen up to one poll and one query late. Afterwards the inference log is read and every landed
event must be in it exactly once; its ``ts`` column (when the row was scored) splits the latency
into "landed → scored" and "scored → seen in the log".

    .venv/bin/python bench/bench_streaming.py                       # 20 files, 10 events each
    .venv/bin/python bench/bench_streaming.py --files 3 --available-now-files 2 --no-record
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, machine_description, markdown_table, record
from state import add_state_args, champion, cleanup, isolate

SCRIPT = "bench/bench_streaming.py"
EVENT_COLUMNS = ["event_id", "customer_id", "plant_id", "event_ts", "page", "position", "price"]
POLL_S = 0.1


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=20, help="files landed one at a time (and again as a burst)")
    p.add_argument("--events-per-file", type=int, default=10)
    p.add_argument("--trigger-s", type=float, default=1.0, help="processingTime trigger of the continuous query")
    p.add_argument("--available-now-files", type=int, default=10, help="availableNow runs, one landed file each")
    p.add_argument("--timeout-s", type=float, default=300.0, help="give up waiting for a file after this long")
    add_state_args(p)
    return p.parse_args()


@dataclass
class CommitWatcher:
    """Notes when each event's prediction is first seen in the inference log, polling it from this process."""

    table: str
    committed: dict[str, float] = field(default_factory=dict)

    def wait_for(self, event_ids: list[str], timeout_s: float, query: Any = None) -> float:
        """Block until every event in ``event_ids`` is in the log; returns when the last one was first seen."""
        from pyspark.sql import functions as F

        from utils.platform import get_spark

        deadline = time.time() + timeout_s
        while missing := [e for e in event_ids if e not in self.committed]:
            if query is not None and not query.isActive:
                raise RuntimeError(f"the streaming query stopped: {query.exception()}")
            if time.time() > deadline:
                raise TimeoutError(f"{len(missing)} events not logged after {timeout_s:g} s, e.g. {missing[:3]}")
            seen = (get_spark().table(self.table).where((F.col("source") == "streaming") & F.col("event_id").isin(missing))
                    .select("event_id").collect())
            now = time.time()
            for row in seen:
                self.committed.setdefault(row["event_id"], now)
            if len(seen) < len(missing):
                time.sleep(POLL_S)
        return max(self.committed[e] for e in event_ids)


def event_files(n_files: int, per_file: int, seed: int, tag: str) -> list[Any]:
    """``n_files`` frames of ``per_file`` real clickstream events each, with fresh, unique event ids."""
    from utils import lakehouse
    from utils.config import get_config

    clicks = lakehouse.read_pandas(get_config().table("silver_clickstream"), columns=EVENT_COLUMNS)
    sample = clicks.sample(n=n_files * per_file, replace=len(clicks) < n_files * per_file,
                           random_state=seed).reset_index(drop=True)
    sample["event_id"] = [f"{tag}-{i:06d}" for i in range(len(sample))]
    sample["event_ts"] = sample["event_ts"].astype(str)
    return [sample.iloc[i * per_file:(i + 1) * per_file].reset_index(drop=True) for i in range(n_files)]


def summary(latencies_s: list[float], events: int, wall_s: float) -> dict[str, float]:
    """p50 / p99 / max seconds of ``latencies_s`` and events per second over ``wall_s``."""
    ordered = sorted(latencies_s)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"files": len(ordered), "events": events, "p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1],
            "eps": events / wall_s}


def main() -> None:
    """Run the three modes, verify the inference log, print and record the table."""
    args = parse_args()
    state = isolate(args, "bench-stream-")
    machine = machine_description()
    try:
        results, notes = run(args, state)
    finally:
        from utils.platform import stop_spark

        stop_spark()
        cleanup(args, state)

    rows = [[mode, fmt(r["files"]), fmt(r["events"]), f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['max']:.2f}",
             f"{r['eps']:.1f}"] for mode, r in results.items()]
    table = markdown_table(["mode", "files", "events", "p50 s", "p99 s", "max s", "events/s"], rows, "lrrrrrr")
    body = (f"Champion v{notes['version']} ({args.data_rows:,} generated impressions); {args.events_per_file} real "
            f"clickstream events per JSON file, landed with `land_events` (write, then rename); `maxFilesPerTrigger=1` "
            f"as in notebook 05. Latency: file visible in the landing folder → its events seen in the inference log "
            f"(polled every {POLL_S:g} s). One-at-a-time files are landed after the previous one is logged; the burst lands "
            f"{args.files} files at once and its events/s is over the whole burst. "
            f"{notes['text']}\n\n{table}")
    print(table)
    print(notes["text"])
    if not args.no_record:
        record("Streaming scoring latency: landed file → inference log", body, SCRIPT, machine)


def run(args: argparse.Namespace, state: Path) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """The timed part: returns one summary per mode and notes for the text."""
    from tqdm import tqdm

    from utils.config import get_config
    from utils.scoring import StreamScorer, inference_log_table, land_events, read_inference_log, start_stream

    model = champion(args, online=True)
    cfg = get_config()
    tag = uuid.uuid4().hex[:8]
    n_cont = 1 + 2 * args.files  # warm-up, one at a time, burst
    files = event_files(n_cont + args.available_now_files, args.events_per_file, args.seed, tag)
    warm, singles = files[0], files[1:1 + args.files]
    burst, avail = files[1 + args.files:n_cont], files[n_cont:]
    results: dict[str, dict[str, float]] = {}
    landed: dict[str, float] = {}

    def land(frame: Any, folder: Path, name: str) -> float:
        land_events(frame, folder, name=name)
        t = time.time()  # the file is visible from here (land_events renames it into place)
        for e in frame["event_id"]:
            landed[str(e)] = t
        return t

    # ---- continuous: one query, processingTime trigger
    scorer = StreamScorer(model.name, model.version, model.uri, cfg)
    watch = CommitWatcher(inference_log_table(cfg))
    folder = state / "landing" / f"bench-{tag}"
    query = start_stream(scorer, folder, state / "checkpoints" / f"bench-{tag}",
                         processing_time=f"{args.trigger_s:g} seconds")
    try:
        t = land(warm, folder, "warmup.json")
        cold = watch.wait_for(list(warm["event_id"]), args.timeout_s, query) - t
        latencies, first = [], None
        for i, frame in enumerate(tqdm(singles, desc="continuous, one file at a time", file=sys.stderr)):
            t = land(frame, folder, f"single-{i:04d}.json")
            first = first or t
            done = watch.wait_for(list(frame["event_id"]), args.timeout_s, query)
            latencies.append(done - t)
        results[f"continuous (processingTime {args.trigger_s:g} s), one file at a time"] = summary(
            latencies, sum(len(f) for f in singles), done - first)

        start = time.time()
        times = [land(frame, folder, f"burst-{i:04d}.json") for i, frame in enumerate(burst)]
        ids = [str(e) for f in burst for e in f["event_id"]]
        for frame in tqdm(burst, desc="continuous, burst", file=sys.stderr):  # files are read in landing order
            watch.wait_for(list(frame["event_id"]), args.timeout_s, query)
        done = max(watch.committed[e] for e in ids)
        burst_lat = [max(watch.committed[str(e)] for e in f["event_id"]) - t for f, t in zip(burst, times)]
        results[f"continuous (processingTime {args.trigger_s:g} s), burst of {len(burst)} files"] = summary(
            burst_lat, len(ids), done - start)
        progress = [p for p in query.recentProgress if p.numInputRows]
    finally:
        query.stop()
    durations = {k: statistics.median(p.durationMs.get(k, 0) for p in progress) / 1000
                 for k in ("triggerExecution", "addBatch", "latestOffset", "getBatch", "queryPlanning",
                           "walCommit", "commitOffsets")} if progress else {}

    # ---- availableNow: start_stream per landed file (start, score, stop)
    if avail:
        plain = StreamScorer(model.name, model.version, model.uri, cfg)
        folder2, checkpoint2 = state / "landing" / f"bench-{tag}-available", state / "checkpoints" / f"bench-{tag}-av"
        latencies = []
        start = time.time()
        for i, frame in enumerate(tqdm(avail, desc="availableNow, one file each", file=sys.stderr)):
            t = land(frame, folder2, f"available-{i:04d}.json")
            start_stream(plain, folder2, checkpoint2)
            latencies.append(watch.wait_for(list(frame["event_id"]), args.timeout_s) - t)
        results["`start_stream` (availableNow), one run per file"] = summary(
            latencies, sum(len(f) for f in avail), time.time() - start)

    # ---- every landed event is in the inference log exactly once
    log = read_inference_log(cfg)
    log = log[(log["source"] == "streaming") & log["event_id"].str.startswith(tag)]
    if len(log) != len(landed) or not log["event_id"].is_unique or set(log["event_id"]) != set(landed):
        raise AssertionError(f"{len(landed)} events landed, {len(log)} rows in the inference log "
                             f"({log['event_id'].nunique()} distinct)")
    scored_at = {e: ts.timestamp() for e, ts in zip(log["event_id"], log["ts"])}
    all_committed = watch.committed
    warm_ids = set(warm["event_id"])
    timed = [e for e in landed if e not in warm_ids]
    to_scored = statistics.median(scored_at[e] - landed[e] for e in timed)
    to_commit = statistics.median(all_committed[e] - scored_at[e] for e in timed)
    text = (f"First (warm-up) file, cold model and first Delta commit: {cold:.1f} s, not counted. "
            f"Median over all counted events: landed → scored {to_scored:.2f} s, scored → seen in the log {to_commit:.2f} s. ")
    if durations:
        text += ("Continuous query, median per micro-batch with data: trigger " +
                 f"{durations['triggerExecution']:.2f} s, of which `foreachBatch` {durations['addBatch']:.2f} s, "
                 f"listing new files {durations['latestOffset']:.2f} s, planning {durations['queryPlanning']:.2f} s, "
                 f"offset log + commit {durations['walCommit'] + durations['commitOffsets']:.2f} s.")
    return results, {"version": model.version, "text": text}


if __name__ == "__main__":
    main()
