"""A writer killed mid-write leaves the table readable at its last committed version, nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_killed_writer_leaves_last_committed_version(isolated_state: Path, tmp_path: Path) -> None:
    from utils import lakehouse

    name = "plantly.reliability.killed_writer"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, name], stdout=subprocess.PIPE, text=True, env=env)
    try:
        committed = 0
        deadline = time.monotonic() + 180
        while committed < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line:
                committed = int(line) + 1
        assert committed >= 3, "the writer did not commit three batches in time"
        time.sleep(0.05)  # let it get into the next write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    version = lakehouse.current_version(name)
    frame = lakehouse.read_pandas(name)
    batches = frame.groupby("batch").size()
    assert (batches == BATCH).all(), "no batch may be partly visible"
    assert len(batches) == version + 1 >= committed
    assert sorted(batches.index) == list(range(len(batches)))
    lakehouse.write(frame.head(1), name, mode="append")  # the table still takes writes
    assert lakehouse.current_version(name) == version + 1
