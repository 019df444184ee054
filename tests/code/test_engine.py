"""The local engine behaves as serverless does: one warm Spark Connect server per state folder, shared by every
client, refusing ``sparkContext`` and RDDs, running UDFs in its own Python workers; bad situations get one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from utils.local import engine
from utils.platform import EnvironmentProblem, get_spark, state_dir

REPO = Path(__file__).resolve().parents[2]


def test_the_engine_refuses_what_serverless_refuses(spark) -> None:
    from pyspark.errors import PySparkAttributeError, PySparkNotImplementedError

    session = get_spark()
    with pytest.raises(PySparkAttributeError, match="sparkContext"):
        session.sparkContext  # noqa: B018 - the attribute access is the refusal
    with pytest.raises((PySparkAttributeError, PySparkNotImplementedError), match="rdd"):
        session.range(3).rdd  # noqa: B018


def test_udfs_run_in_the_servers_python_workers_not_in_this_process(spark) -> None:
    from pyspark.sql.functions import udf

    calls: list[int] = []  # state of the notebook's process: a UDF only ever changes its own copy

    @udf("string")
    def where(i: int) -> str:
        import os as _os

        calls.append(i)
        return f"{_os.getpid()}|{_os.getppid()}|{len(calls)}"

    pid, parent, seen = get_spark().range(1).select(where("id")).first()[0].split("|")
    assert int(pid) != os.getpid()
    assert int(parent) != os.getpid()  # a worker of the server, not a child of this process
    assert seen == "1" and calls == []


def test_a_foreign_server_on_the_recorded_port_is_never_used(spark, tmp_path: Path) -> None:
    record = engine.status(state_dir())
    other = tmp_path / "other-state"
    engine.engine_dir(other).mkdir(parents=True)
    forged = {**record, "token": "someone-else"}  # a live server on that port, started by another folder
    (engine.engine_dir(other) / "server.json").write_text(json.dumps(forged))
    conf = engine.server_conf(other / "tables", other / "tmp", ["workspace"])
    with pytest.raises(engine.EngineError, match="not this state folder's engine"):
        engine.connect(other, conf, say=lambda _: None)
    get_spark()  # this process's own session is still the session's engine


def test_a_taken_port_is_replaced_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setenv("MLOPS_ENGINE_PORT", str(busy))
        lines: list[str] = []
        port = engine._wanted_port(lines.append)
    assert port != busy
    assert "is taken by another program" in lines[0] and str(port) in lines[0]


def test_a_lost_engine_is_one_line_in_a_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException

    shell = InteractiveShell.instance()
    try:
        engine.explain_lost_engine(tmp_path)  # no engine runs for this folder: as after a crash
        shell.user_ns["SparkConnectGrpcException"] = SparkConnectGrpcException
        shell.run_cell("raise SparkConnectGrpcException('<_MultiThreadedRendezvous of RPC ... StatusCode.UNAVAILABLE>')")
        err = capsys.readouterr().err
    finally:
        InteractiveShell.clear_instance()
    assert err.count("\n") == 1 and "The local Spark engine has stopped" in err and "get_spark()" in err
    assert "Rendezvous" not in err


def _client(state: Path, out: list[str]) -> None:
    code = ("import json\nfrom pathlib import Path\nfrom utils.platform import get_spark, state_dir\n"
            "from utils.local import engine\n"
            "s = get_spark()\nassert s.range(5).count() == 5\n"
            "print(json.dumps(engine.status(state_dir())['pid']))\n")
    env = {**os.environ, "MLOPS_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}
    env.pop("SPARK_REMOTE", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    out.append(proc.stdout if proc.returncode == 0 else f"FAILED {proc.stderr[-1500:]}")


def _servers_of(state: Path) -> list[int]:
    """Pids of the Spark Connect servers whose command line names ``state``."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if engine.SERVER_CLASS.encode() in cmdline and str(state).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_two_clients_started_at_once_share_one_server(tmp_path: Path) -> None:
    """Two kernels opened together (JupyterLab, two notebooks) start one engine: the second waits for the first."""
    state = tmp_path / "state"
    outputs: list[str] = []
    threads = [threading.Thread(target=_client, args=(state, outputs)) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not [o for o in outputs if o.startswith("FAILED")], outputs
        pids = {json.loads(o.strip().splitlines()[-1]) for o in outputs}
        assert len(pids) == 1, f"two servers started: {outputs}"
        assert len(_servers_of(state)) == 1
        assert sum("Starting the local Spark engine" in o for o in outputs) == 1
    finally:
        engine.stop(state)
    assert engine.status(state) is None


def test_missing_java_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="Java"):
        get_spark()
    assert engine.status(tmp_path / "state") is None
