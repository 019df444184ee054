"""The local engine behaves as serverless does: one warm Spark Connect server per state folder, shared by every
client, refusing ``sparkContext`` and RDDs, running UDFs in its own Python workers; bad situations get one line."""

from __future__ import annotations

import json
import os
import socket
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


def test_a_catalog_alias_is_set_once_per_session_not_asked_for_again(spark, monkeypatch) -> None:
    """Every table operation makes sure its catalog resolves; after the first, that costs no round trip."""
    from utils.local import catalog

    session = get_spark()
    catalog.alias_catalog(session, "once_per_session")
    asked: list[str] = []
    real_get = type(session.conf).get
    monkeypatch.setattr(type(session.conf), "get", lambda conf, key, *a: asked.append(key) or real_get(conf, key, *a))
    catalog.alias_catalog(session, "once_per_session")
    catalog.alias_catalog(session, "Once_Per_Session")
    assert asked == []
    assert session.sql("SHOW SCHEMAS IN once_per_session").count() >= 1  # and the alias answers
    catalog.alias_catalog(session, "another_one")
    assert asked == ["spark.sql.catalog.another_one"]


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


def _notebook_client(state: Path, name: str, out: list[str]) -> None:
    """Run a two-cell notebook in its own Jupyter kernel, as a JupyterLab tab does: a Delta table of its own."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from utils.platform import get_spark, state_dir\nfrom utils.local import engine\n"
                                  "spark = get_spark()"),
        nbformat.v4.new_code_cell(f"spark.sql('CREATE TABLE IF NOT EXISTS default.{name} (id BIGINT) USING DELTA')\n"
                                  f"spark.range(100).write.mode('append').saveAsTable('default.{name}')\n"
                                  f"assert spark.table('default.{name}').count() == 100\n"
                                  "print('PID', engine.status(state_dir())['pid'])"),
    ])
    env = {**os.environ, "MLOPS_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}
    env.pop("SPARK_REMOTE", None)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", env=env,
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute(env=env)
    except Exception as e:  # noqa: BLE001 - the failing kernel's error is the assertion's message
        out.append(f"FAILED {type(e).__name__}: {str(e)[-1500:]}")
        return
    out.append("\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])))


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
def test_two_notebooks_run_at_once_share_one_server(tmp_path: Path) -> None:
    """Two notebooks run at once in two Jupyter kernels (two JupyterLab tabs) share one engine: the second kernel
    waits for the engine the first one starts, both write their own Delta table, and one server process runs."""
    state = tmp_path / "state"
    outputs: list[str] = []
    threads = [threading.Thread(target=_notebook_client, args=(state, f"tab_{i}", outputs)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not [o for o in outputs if o.startswith("FAILED")], outputs
        pids = {line.split()[1] for o in outputs for line in o.splitlines() if line.startswith("PID ")}
        assert len(pids) == 1 and len(outputs) == 2, f"not one shared server: {outputs}"
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
