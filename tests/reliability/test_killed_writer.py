"""A writer killed mid-write, or the engine killed under it, leaves the table at a committed version, nothing half-written.

The writer is a Spark Connect client of the local engine: killing the client does not stop a write the engine has
already begun (it may still commit), so the checks read one version as of itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import table

BATCH = 200_000

WRITER = f"""
import numpy as np, pandas as pd, sys
from utils import lakehouse
name = sys.argv[1]
i = 0
while True:
    df = pd.DataFrame({{"batch": np.full({BATCH}, i, dtype="int64"), "x": np.arange({BATCH}, dtype="float64")}})
    lakehouse.write(df, name, mode="append")
    print(i, flush=True)
    i += 1
"""


def _writer(name: str) -> subprocess.Popen:
    """A process appending whole batches to ``name`` until killed, printing each committed batch's number."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-c", WRITER, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait_for_commits(proc: subprocess.Popen, wanted: int, timeout_s: float = 180) -> int:
    """Batches ``proc`` has committed once it reports ``wanted`` of them (fails the test if it does not in time)."""
    committed = 0
    deadline = time.monotonic() + timeout_s
    while committed < wanted and time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line.isdigit():  # not the engine's start-up lines, when this writer is its first client
            committed = int(line) + 1
        elif not line and proc.poll() is not None:
            break
    assert committed >= wanted, f"the writer did not commit {wanted} batches in time"
    return committed


def test_killed_writer_leaves_last_committed_version(isolated_state: Path, tmp_path: Path) -> None:

    name = table("reliability", "killed_writer")
    proc = _writer(name)
    try:
        committed = _wait_for_commits(proc, 3)
        time.sleep(0.05)  # let it get into the next write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    _assert_whole_batches(name, committed)


def _assert_whole_batches(name: str, committed: int) -> None:
    from utils import lakehouse

    version = lakehouse.current_version(name)
    frame = lakehouse.read_pandas(name, version=version)
    batches = frame.groupby("batch").size()
    assert (batches == BATCH).all(), "no batch may be partly visible"
    assert len(batches) == version + 1 >= committed
    assert sorted(batches.index) == list(range(len(batches)))
    lakehouse.write(frame.head(1), name, mode="append")  # the table still takes writes
    assert lakehouse.current_version(name) > version


def test_engine_killed_mid_write_leaves_last_committed_version_and_restarts(isolated_state: Path, capsys) -> None:
    from utils.local import engine
    from utils.platform import get_spark, state_dir

    get_spark()
    name = table("reliability", "killed_engine")
    proc = _writer(name)
    try:
        committed = _wait_for_commits(proc, 2)
        time.sleep(0.05)
        pid = engine.status(state_dir())["pid"]
        os.killpg(pid, signal.SIGKILL)  # the server and its Python workers
        try:  # a write in flight fails; a kill between two writes is met by the next get_spark(), which restarts
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    finally:
        proc.kill()
        writer_said = proc.communicate(timeout=30)[0]
    capsys.readouterr()
    get_spark()  # a new engine (here, or already in the writer), with one line saying the old one had stopped
    assert "had stopped; starting a new one" in capsys.readouterr().out + writer_said
    _assert_whole_batches(name, committed)
