"""The local engine: one Spark Connect server per state folder, shared by every notebook, test and job.

Databricks serverless and Free Edition notebooks are Spark Connect clients of a warm engine they do not
own; locally the same holds. The first :func:`connect` for a state folder starts
``org.apache.spark.sql.connect.service.SparkConnectServer`` (shipped in pyspark's jars) on 127.0.0.1
with Delta Lake's jars, the catalog alias and the folder's warehouse; every later client (a second
notebook, a test, a job) reuses it. Callbacks (``foreachBatch``) and Python UDFs run in the server's
Python workers, not in the client's process, as on serverless; ``sparkContext`` and RDDs are refused.

Files, under ``<state>/engine/``: ``server.json`` (pid, port, token, warehouse), ``server.log`` (everything
the JVM prints) and ``lock`` (held while one process starts the server, so a second one waits for it).
``python -m utils.local.engine stop|status`` stops it or says whether it runs (``make stop``).
This module imports only :mod:`utils.local.jvm` and :mod:`utils.local.catalog` from ``utils``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from utils.local import jvm

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
HOST = "127.0.0.1"
TOKEN_KEY = "spark.mlops.engine.id"  # not "token": Spark redacts such keys
START_TIMEOUT_S = float(os.environ.get("MLOPS_ENGINE_START_TIMEOUT", "240"))
_STARTED: set[Path] = set()
"""State folders whose server this process started (:func:`stop_started`)."""

__all__ = ["EngineError", "connect", "explain_lost_engine", "make_default", "server_conf", "start", "status", "stop", "stop_started"]


class EngineError(RuntimeError):
    """The local engine could not be started or reached; the message is one line saying what to do."""


def engine_dir(state: Path) -> Path:
    """``<state>/engine``: the server's record, log and start lock."""
    return state / "engine"


def _record_path(state: Path) -> Path:
    return engine_dir(state) / "server.json"


def log_path(state: Path) -> Path:
    """The server's log (the JVM's stdout and stderr)."""
    return engine_dir(state) / "server.log"


def server_conf(warehouse: Path, tmp: Path, catalogs: list[str]) -> dict[str, str]:
    """The server's Spark settings: Delta Lake (:func:`utils.local.jvm.spark_conf`), the warehouse, sizes for 2 cores.

    Partition counts come from ``MLOPS_SHUFFLE_PARTITIONS`` (default 4), the driver heap from
    ``MLOPS_DRIVER_MEMORY`` (default 4g). Raises :class:`utils.local.jvm.MissingJars` when the jars are missing.
    """
    parts = os.environ.get("MLOPS_SHUFFLE_PARTITIONS", "4")
    log4j = jvm.REPO_ROOT / "conf" / "spark" / "log4j2.properties"
    java_opts = f"-Djava.io.tmpdir={tmp} -Dlog4j2.configurationFile={log4j}"
    conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": parts,
        "spark.default.parallelism": parts,
        # Delta's VACUUM lists files with this many tasks (default 10,000: a minute for a six-file table on 2 cores,
        # bench/bench_delta_confs.py); Delta rebuilds a table's state in this many partitions (default 50).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": parts,
        "spark.databricks.delta.snapshotPartitions": parts,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.local.dir": str(tmp),
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.driver.bindAddress": HOST,
        "spark.driver.host": HOST,
        "spark.driver.memory": os.environ.get("MLOPS_DRIVER_MEMORY", "4g"),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.catalogImplementation": "in-memory",
        "spark.pyspark.python": sys.executable,
        "spark.connect.grpc.binding.address": HOST,
        # A notebook's createDataFrame of a few hundred thousand rows is one message.
        "spark.connect.grpc.maxInboundMessageSize": str(512 * 2**20),
    }
    conf.update(jvm.spark_conf(catalogs=catalogs))
    return conf


def _read_record(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads(_record_path(state).read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a recycled pid is not our server
        return SERVER_CLASS.encode() in cmdline.read_bytes()
    return True


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=timeout):
        return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def status(state: Path) -> dict[str, Any] | None:
    """The running server's record (``pid``, ``port``, ``url``, ``token``, ``warehouse``, ``started``) for
    ``state``, or None when none runs there."""
    record = _read_record(state)
    if record and _alive(int(record["pid"])):
        return record
    return None


@contextlib.contextmanager
def _start_lock(state: Path, say: Callable[[str], None]) -> Iterator[None]:
    engine_dir(state).mkdir(parents=True, exist_ok=True)
    with open(engine_dir(state) / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("Waiting for the local Spark engine another process is starting ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _server_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    env["MLOPS_STATE_DIR"] = str(state)  # what callbacks in the server's Python workers read and write
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("SPARK_LOCAL_IP", HOST)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["SPARK_CONF_DIR"] = str(jvm.REPO_ROOT / "conf" / "spark")
    bindir = str(Path(sys.executable).parent)  # executables the workers start by name live next to the interpreter
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def _wanted_port(say: Callable[[str], None]) -> int:
    wanted = os.environ.get("MLOPS_ENGINE_PORT")
    if wanted:
        if not _port_open(int(wanted)):
            return int(wanted)
        port = _free_port()
        say(f"MLOPS_ENGINE_PORT {wanted} is taken by another program: the local Spark engine uses {port} instead.")
        return port
    return _free_port()


def start(state: Path, conf: Mapping[str, str], master: str = "local[*]",
          say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start a Spark Connect server for ``state`` (or return the running one's record) and wait until it answers.

    ``conf`` is :func:`server_conf`'s; ``master`` is Spark's (``local[*]`` or a ``spark://`` cluster).
    Concurrent callers start one server: the others wait on the lock and reuse it. The record's ``new`` is
    True when this call started it. Raises :class:`EngineError` (the log's last lines included) when the
    server exits or does not answer within ``MLOPS_ENGINE_START_TIMEOUT`` seconds (default 240).
    """
    with _start_lock(state, say):
        return _start_locked(state, conf, master, say)


def _start_locked(state: Path, conf: Mapping[str, str], master: str, say: Callable[[str], None]) -> dict[str, Any]:
    record = _read_record(state)
    if record and _alive(int(record["pid"])):
        return {**record, "new": False}
    if record:
        say(f"The local Spark engine (pid {record['pid']}) had stopped; starting a new one "
            f"(its log: {log_path(state)}).")
    port = _wanted_port(say)
    token = uuid.uuid4().hex
    submit = Path(jvm.pyspark_home()) / "bin" / "spark-submit"
    args = [str(submit), "--class", SERVER_CLASS, "--master", master, "--name", "mlops-engine"]
    for key, value in {**conf, "spark.connect.grpc.binding.port": str(port), TOKEN_KEY: token}.items():
        args += ["--conf", f"{key}={value}"]
    args.append("spark-internal")
    log = log_path(state)
    started = time.time()
    with open(log, "ab") as out:
        out.write(f"\n--- starting {time.strftime('%Y-%m-%d %H:%M:%S')} on port {port}\n".encode())
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=engine_dir(state), env=_server_env(state), start_new_session=True)
    say(f"Starting the local Spark engine (Spark Connect on {HOST}:{port}, log {log}) ...")
    record = {"pid": proc.pid, "port": port, "url": f"sc://{HOST}:{port}", "token": token,
              "warehouse": conf.get("spark.sql.warehouse.dir", ""), "master": master,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    next_note = started + 15
    while not _port_open(port):
        if proc.poll() is not None:
            raise EngineError(f"the local Spark engine exited while starting (code {proc.returncode}); "
                              f"last lines of {log}:\n{_tail(log)}")
        if time.time() - started > START_TIMEOUT_S:
            _terminate(proc.pid)
            raise EngineError(f"the local Spark engine did not answer within {START_TIMEOUT_S:.0f} s "
                              f"(MLOPS_ENGINE_START_TIMEOUT); last lines of {log}:\n{_tail(log)}")
        if time.time() > next_note:
            say(f"  ... still starting ({time.time() - started:.0f} s)")
            next_note += 15
        time.sleep(0.2)
    tmp = _record_path(state).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(_record_path(state))
    _STARTED.add(state)
    say(f"Local Spark engine ready in {time.time() - started:.0f} s (pid {proc.pid}); `make stop` stops it.")
    return {**record, "new": True}


def _tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _terminate(pid: int, timeout_s: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop(state: Path) -> bool:
    """Stop the server of ``state`` (its Python workers too); True if one was running."""
    record = _read_record(state)
    _record_path(state).unlink(missing_ok=True)
    if not record or not _alive(int(record["pid"])):
        return False
    _terminate(int(record["pid"]))
    return True


def _bypass_proxies() -> None:
    """gRPC honours ``http_proxy``; the engine is on loopback, never behind a proxy (``no_grpc_proxy``)."""
    hosts = [h for h in os.environ.get("no_grpc_proxy", "").split(",") if h]
    if HOST not in hosts:
        os.environ["no_grpc_proxy"] = ",".join([*hosts, HOST, "localhost"])


def make_default(session: Any, url: str) -> None:
    """Make ``session`` the one ``SparkSession.builder.getOrCreate()`` and ``getActiveSession()`` return in this
    process (pyspark keeps the first session it made otherwise), and ``url`` the ``SPARK_REMOTE`` of child processes."""
    from pyspark.sql.connect.session import SparkSession

    os.environ["SPARK_REMOTE"] = url
    SparkSession._default_session = session
    SparkSession._active_session.session = session


def explain_lost_engine(state: Path) -> None:
    """In a notebook kernel, a cell that fails because the engine has gone shows one line saying so and how to go on,
    not a gRPC traceback; any other error shows as usual. Idempotent; does nothing outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_mlops_engine_hint", None) == state:
        return
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException

    def handler(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
        if status(state) is not None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return
        print(f"The local Spark engine has stopped (its log: {log_path(state)}). Run `spark = get_spark()` "
              "to start a new one, then this cell again; committed Delta tables are intact.", file=sys.stderr)

    shell.set_custom_exc((SparkConnectGrpcException,), handler)
    shell._mlops_engine_hint = state


def stop_started(keep: Path | None = None) -> list[Path]:
    """Stop the servers this process started (a test's or a test session's end), except ``keep``'s; returns their
    state folders."""
    kept = {keep.resolve()} if keep is not None else set()
    stopping = sorted(state for state in _STARTED if state.resolve() not in kept)
    stopped = [state for state in stopping if stop(state)]
    _STARTED.difference_update(stopping)
    return stopped


def connect(state: Path, conf: Mapping[str, str], master: str = "local[*]",
            say: Callable[[str], None] = print) -> Any:
    """A Spark Connect session on the server of ``state``, started first if none runs.

    A new server first registers the Delta tables already under the warehouse (:func:`utils.local.catalog.register_tables`).
    Checks that the server on the recorded port is the one this folder started (its token), so a server of
    another project on a reused port is never used. Sets ``SPARK_REMOTE``, so ``SparkSession.builder.getOrCreate()``
    returns a session on the same engine, as on serverless. Raises :class:`EngineError`.
    """
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.client.retries import DefaultPolicy

    from utils.local import catalog

    with _start_lock(state, say):
        record = _start_locked(state, conf, master, say)
        _bypass_proxies()
        session = SparkSession.builder.remote(record["url"]).create()  # getOrCreate would hand back another engine's
        # A few quick retries, not the ten minutes meant for remote clusters: a lost local engine is said at once.
        session.client.set_retry_policies([DefaultPolicy(max_retries=4, max_backoff=2000)])
        make_default(session, record["url"])
        if session.conf.get(TOKEN_KEY, None) != record["token"]:
            raise EngineError(f"the Spark Connect server on port {record['port']} is not this state folder's "
                              f"engine ({state}): run `make stop`, then try again")
        if record["new"]:  # tables an earlier server left on disk join the new server's (shared) catalog
            catalog.register_tables(session, Path(conf["spark.sql.warehouse.dir"]))
    return session


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("stop", "status"):
        print("usage: python -m utils.local.engine stop|status STATE_DIR", file=sys.stderr)
        return 2
    state = Path(argv[1]).resolve()
    if argv[0] == "stop":
        print("local Spark engine stopped" if stop(state) else "no local Spark engine was running", f"({state})")
        return 0
    record = status(state)
    print(f"running: pid {record['pid']}, {record['url']}, since {record['started']}" if record
          else f"not running ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
