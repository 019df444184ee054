"""A Spark standalone cluster on this machine: one master and N workers from the installed pyspark, on 127.0.0.1.

The same code that runs in ``local[*]`` mode runs on a real cluster when ``SPARK_MASTER`` names it:
``utils.platform.get_spark()`` reads it, and nothing else changes. This script starts and stops
such a cluster with the Spark that ships inside the ``pyspark`` wheel (no separate download):
the master and every worker are JVMs launched through ``bin/spark-class`` (the wheel has no
``sbin/start-master.sh``), each in its own process group, bound to 127.0.0.1 only.

    .venv/bin/python bench/spark_cluster.py start      # spark://127.0.0.1:7077, 2 workers x 1 core x 1g
    SPARK_MASTER=spark://127.0.0.1:7077 .venv/bin/python your_job.py
    .venv/bin/python bench/spark_cluster.py status
    .venv/bin/python bench/spark_cluster.py stop

State lives in ``.lakehouse-cluster/`` (``--dir`` or ``MLOPS_CLUSTER_DIR`` move it): ``cluster.json``
(URLs and process ids), ``logs/`` (one log per daemon), ``work/`` (executor folders and their logs)
and ``tmp/``. ``start`` waits until the master's web UI (``http://127.0.0.1:<webui>/json/``) reports
every worker ALIVE; if anything fails on the way, everything it started is stopped again. ``stop``
ends the recorded process groups and then any process still running inside the cluster's folder
(executors and their Python workers), so no JVM outlives the cluster.

A master port that is taken is refused with the reason (``--port 0`` picks a free one); a default
web UI port that is taken is replaced by a free one. Importable: :func:`start_cluster`,
:func:`stop_cluster`, :func:`cluster_status`, :func:`running_cluster`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

HOST = "127.0.0.1"
DEFAULT_PORT = 7077
DEFAULT_WEBUI_PORT = 8080
STATE_FILE = "cluster.json"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

# Popen handles of the daemons this process started, so stop_cluster() can reap them (no zombies).
_CHILDREN: dict[int, subprocess.Popen] = {}


class ClusterError(RuntimeError):
    """The cluster cannot be started, reached or stopped as asked; the message says why and what to do."""


# ---------------------------------------------------------------- locations


def default_cluster_dir() -> Path:
    """``MLOPS_CLUSTER_DIR`` or ``<repo>/.lakehouse-cluster``: pid/state file, logs, work and tmp folders."""
    return Path(os.environ.get("MLOPS_CLUSTER_DIR", REPO_ROOT / ".lakehouse-cluster")).resolve()


def spark_home() -> Path:
    """The Spark distribution inside the installed ``pyspark`` package (jars, ``bin/spark-class``)."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").exists() or not (home / "jars").is_dir():
        raise ClusterError(f"{home} has no bin/spark-class or jars/: reinstall pyspark (`make install`)")
    return home


def _prepare_dir(cluster_dir: Path) -> None:
    for sub in ("logs", "work", "tmp"):
        path = cluster_dir / sub
        if sub != "logs" and path.exists():
            shutil.rmtree(path, ignore_errors=True)  # a fresh cluster starts with empty work and tmp folders
        path.mkdir(parents=True, exist_ok=True)
    # Keep the folder out of git even where .gitignore does not list it.
    (cluster_dir / ".gitignore").write_text("*\n")


# ---------------------------------------------------------------- ports


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something listens on ``host:port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_holder(port: int) -> str:
    """Best effort (Linux): ``pid N (command)`` of the process listening on ``port``, else ''."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {proc.name} ({cmd[:120]})"
        except OSError:
            continue
    return ""


def _check_port(port: int, what: str, flag: str) -> None:
    if port_in_use(port):
        holder = _port_holder(port)
        raise ClusterError(
            f"cannot start the Spark {what}: port {port} on {HOST} is already in use"
            f"{' by ' + holder if holder else ''}. Stop that program, pass {flag} N for another port, "
            f"or {flag} 0 to pick a free one."
        )


# ---------------------------------------------------------------- processes


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():  # a zombie is dead for our purposes
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    return True


def _is_our_daemon(pid: int, cluster_dir: Path) -> bool:
    """True if ``pid`` is a Spark master/worker started for ``cluster_dir`` (guards against reused pids)."""
    if pid in _CHILDREN:
        return _CHILDREN[pid].poll() is None
    if not Path("/proc").is_dir():
        return _alive(pid)
    cmd = _cmdline(pid)
    return "org.apache.spark.deploy." in cmd and str(cluster_dir) in cmd


def cluster_processes(cluster_dir: Path | None = None) -> list[int]:
    """Pids of live Spark processes belonging to the cluster in ``cluster_dir`` (Linux ``/proc``; [] elsewhere).

    A Spark JVM (``org.apache.spark``) or PySpark worker (``pyspark``) belongs to it when its command line
    names the folder (master and workers: ``--work-dir``, ``-Djava.io.tmpdir``) or it runs inside the
    folder (executors and their Python workers run in ``work/``). Other programs, such as a shell whose
    current folder is inside it, are never matched.
    """
    cluster_dir = Path(cluster_dir or default_cluster_dir()).resolve()
    root, me = str(cluster_dir), os.getpid()
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        cmd = _cmdline(pid)
        if "org.apache.spark" not in cmd and "pyspark" not in cmd:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if (cwd == root or cwd.startswith(root + os.sep) or root + os.sep in cmd) and _alive(pid):
            found.append(pid)
    return sorted(found)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _terminate(pgids: list[int], cluster_dir: Path, timeout: float) -> list[int]:
    """SIGTERM the process groups and any process of the cluster folder, then SIGKILL what is left."""
    stragglers = cluster_processes(cluster_dir)
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    for pid in stragglers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        left = [p for p in pgids if _alive(p)] + cluster_processes(cluster_dir)
        if not left:
            break
        time.sleep(0.2)
    for pgid in pgids:
        _signal_group(pgid, signal.SIGKILL)
    for pid in cluster_processes(cluster_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for child in [c for p, c in _CHILDREN.items() if p in pgids]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
    _reap()
    return sorted(set(pgids) | set(stragglers))


def _daemon_env(cluster_dir: Path, home: Path, daemon_memory: str) -> dict[str, str]:
    """Environment of the master and the workers (executors inherit it from their worker)."""
    env = dict(os.environ)
    tmp = cluster_dir / "tmp"
    bindir = str(Path(sys.executable).parent)
    log4j = REPO_ROOT / "conf" / "spark" / "log4j2.properties"
    env.update({
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_MASTER_HOST": HOST,
        "SPARK_PUBLIC_DNS": HOST,
        "SPARK_CONF_DIR": str(REPO_ROOT / "conf" / "spark"),  # quiet log4j2 settings
        "SPARK_LOG_DIR": str(cluster_dir / "logs"),
        "SPARK_PID_DIR": str(cluster_dir),
        "SPARK_WORKER_DIR": str(cluster_dir / "work"),
        "SPARK_LOCAL_DIRS": str(tmp),
        "SPARK_DAEMON_MEMORY": daemon_memory,
        # The daemons only pass messages: C1-compiled, serial-GC JVMs start in about half the time on 2 cores.
        # No silent move to the next port (a clash is an error we report), no REST submission server
        # (it would hold port 6066, so a second cluster could not start).
        "SPARK_DAEMON_JAVA_OPTS": " ".join([
            "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", f"-Djava.io.tmpdir={tmp}", "-Dspark.port.maxRetries=0",
            "-Dspark.master.rest.enabled=false", f"-Dlog4j2.configurationFile={log4j}",
        ]),
        # executors run Python workers with the project's interpreter, which has utils/ installed
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
    })
    env.setdefault("OMP_NUM_THREADS", "1")  # one OpenMP thread per Python worker: no core oversubscription
    env.pop("SPARK_MASTER", None)
    for inherited in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):  # from a caller that is a Spark Connect client
        env.pop(inherited, None)
    return env


def _die_with_parent_hook() -> Any:
    """A pre-exec hook (Linux) that makes the child get SIGTERM when the thread that started it ends, even by SIGKILL.

    ``prctl`` is looked up here, before the fork, so the child only calls a function pointer (no locks taken).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _launch(role: str, args: list[str], env: dict[str, str], cluster_dir: Path, home: Path,
            tied: bool = False) -> dict[str, Any]:
    log = cluster_dir / "logs" / f"{role}.log"
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [str(home / "bin" / "spark-class"), *args], env=env, cwd=cluster_dir,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent_hook() if tied else None,  # noqa: PLW1509 - only a prctl call, see the hook
        )
    _CHILDREN[child.pid] = child
    return {"role": role, "pid": child.pid, "log": str(log)}


def _tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def master_json(webui_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The master's state as its web UI reports it (``/json/``): workers, their state, cores, apps."""
    with urllib.request.urlopen(f"{webui_url}/json/", timeout=timeout) as resp:
        return json.loads(resp.read())


def _alive_workers(state: dict[str, Any]) -> int:
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


# ---------------------------------------------------------------- state file


def _read_state(cluster_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((cluster_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(cluster_dir: Path, state: dict[str, Any]) -> None:
    tmp = cluster_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(cluster_dir / STATE_FILE)


def _recorded_pids(state: dict[str, Any] | None) -> list[int]:
    return [int(p["pid"]) for p in (state or {}).get("processes", [])]


# ---------------------------------------------------------------- start / stop / status


def start_cluster(
    port: int = DEFAULT_PORT,
    workers: int = 2,
    cores_per_worker: int = 1,
    memory: str = "1g",
    *,
    webui_port: int | None = None,
    cluster_dir: Path | str | None = None,
    daemon_memory: str = "512m",
    timeout: float = 120.0,
    tied_to_caller: bool = False,
) -> str:
    """Start a master and ``workers`` workers on 127.0.0.1; returns the master URL once all are ALIVE.

    ``port=0`` picks a free master port; a taken ``port`` is refused (``ClusterError``). ``webui_port``
    None means 8080, or a free port if 8080 is taken. Each worker offers ``cores_per_worker`` cores and
    ``memory`` to executors. On any failure, whatever was started is stopped before the error is raised.
    ``tied_to_caller`` (tests; Linux): the master and workers end when this process ends, however it ends,
    so a killed test run leaves no JVM behind (their executors follow their worker).
    """
    from utils.platform import EnvironmentProblem, java_version

    if workers < 1 or cores_per_worker < 1:
        raise ClusterError(f"need at least one worker with one core, got workers={workers} cores={cores_per_worker}")
    if not re.fullmatch(r"\d+[kmgt]?", str(memory).lower()):
        raise ClusterError(f"worker memory {memory!r} is not a size such as 512m or 1g")
    try:
        java_version()
    except EnvironmentProblem as exc:
        raise ClusterError(str(exc)) from None
    cluster_dir = Path(cluster_dir or default_cluster_dir()).resolve()
    cluster_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_state(cluster_dir)
    if previous and any(_is_our_daemon(p, cluster_dir) for p in _recorded_pids(previous)):
        raise ClusterError(f"a cluster from {cluster_dir} is already running at {previous['master_url']}: "
                           "use it, or stop it first (bench/spark_cluster.py stop)")
    leftovers = cluster_processes(cluster_dir)
    if leftovers:  # e.g. a previous run killed with SIGKILL
        _terminate([], cluster_dir, timeout=15)

    port = free_port() if port == 0 else int(port)
    _check_port(port, "master", "--port")
    if webui_port is None:
        webui_port = DEFAULT_WEBUI_PORT if not port_in_use(DEFAULT_WEBUI_PORT) else free_port()
    elif webui_port == 0:
        webui_port = free_port()
    else:
        _check_port(webui_port, "master web UI", "--webui-port")

    home = spark_home()
    _prepare_dir(cluster_dir)
    env = _daemon_env(cluster_dir, home, daemon_memory)
    master_url, webui_url = f"spark://{HOST}:{port}", f"http://{HOST}:{webui_port}"
    state: dict[str, Any] = {
        "master_url": master_url, "webui_url": webui_url, "port": port, "webui_port": webui_port,
        "workers": workers, "cores_per_worker": cores_per_worker, "memory": memory, "spark_home": str(home),
        "python": sys.executable, "cluster_dir": str(cluster_dir),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "processes": [],
    }
    try:
        state["processes"].append(_launch(
            "master", [MASTER_CLASS, "--host", HOST, "--port", str(port), "--webui-port", str(webui_port)],
            env, cluster_dir, home, tied_to_caller))
        _write_state(cluster_dir, state)
        _wait(state, lambda s: s.get("status") == "ALIVE", "the master to come up", timeout)
        for i in range(1, workers + 1):
            state["processes"].append(_launch(
                f"worker-{i}",
                [WORKER_CLASS, master_url, "--host", HOST, "--port", "0", "--webui-port", "0",
                 "--cores", str(cores_per_worker), "--memory", str(memory),
                 "--work-dir", str(cluster_dir / "work")],
                env, cluster_dir, home, tied_to_caller))
        _write_state(cluster_dir, state)
        _wait(state, lambda s: _alive_workers(s) >= workers, f"{workers} ALIVE workers", timeout)
        reported = master_json(webui_url).get("url")
        if reported != master_url:
            raise ClusterError(f"the master reports {reported}, expected {master_url}")
    except BaseException:
        _terminate(_recorded_pids(state), cluster_dir, timeout=15)
        (cluster_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    return master_url


def _wait(state: dict[str, Any], ready: Any, what: str, timeout: float) -> None:
    """Poll the master's JSON until ``ready(json)``; raise with the daemons' logs if one dies or time runs out."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc in state["processes"]:
            if not _alive(proc["pid"]):
                raise ClusterError(f"the Spark {proc['role']} (pid {proc['pid']}) exited while waiting for {what}; "
                                   f"its log ({proc['log']}):\n{_tail(proc['log'])}")
        try:
            if ready(master_json(state["webui_url"], timeout=2)):
                return
        except (OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.5)
    logs = "\n".join(f"--- {p['role']} ({p['log']}):\n{_tail(p['log'])}" for p in state["processes"])
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what} ({last_error or 'not ready'}); logs:\n{logs}")


def stop_cluster(cluster_dir: Path | str | None = None, timeout: float = 30.0) -> list[int]:
    """Stop the cluster of ``cluster_dir`` (and every process left in its folder); returns the pids signalled."""
    cluster_dir = Path(cluster_dir or default_cluster_dir()).resolve()
    state = _read_state(cluster_dir)
    pgids = [p for p in _recorded_pids(state) if _is_our_daemon(p, cluster_dir)]
    stopped = _terminate(pgids, cluster_dir, timeout) if pgids or cluster_processes(cluster_dir) else []
    (cluster_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def cluster_status(cluster_dir: Path | str | None = None) -> dict[str, Any]:
    """What runs: the recorded URLs, each daemon's pid and liveness, and the master's view of workers and apps."""
    cluster_dir = Path(cluster_dir or default_cluster_dir()).resolve()
    state = _read_state(cluster_dir)
    if state is None:
        return {"running": False, "cluster_dir": str(cluster_dir), "processes": [], "leftovers": cluster_processes(cluster_dir)}
    procs = [{**p, "alive": _is_our_daemon(int(p["pid"]), cluster_dir)} for p in state["processes"]]
    out = {**state, "processes": procs, "running": any(p["alive"] for p in procs)}
    try:
        view = master_json(state["webui_url"])
        out["master"] = {"status": view.get("status"), "alive_workers": _alive_workers(view),
                         "cores": view.get("cores"), "cores_used": view.get("coresused"),
                         "active_apps": [a.get("name") for a in view.get("activeapps", [])]}
    except (OSError, ValueError) as exc:
        out["master"] = {"error": str(exc)}
    return out


@contextlib.contextmanager
def running_cluster(**kwargs: Any) -> Iterator[str]:
    """``with running_cluster(port=0, cluster_dir=d) as url:`` a cluster that is stopped however the block ends."""
    cluster_dir = kwargs.get("cluster_dir")
    try:
        yield start_cluster(**kwargs)
    finally:
        stop_cluster(cluster_dir)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``start`` / ``stop`` / ``status``; exit code 0 on success, 1 with a one-paragraph reason otherwise."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=None, help="cluster folder (default .lakehouse-cluster or MLOPS_CLUSTER_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="start a master and workers, wait until all are ALIVE")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help="master port (0: a free one)")
    s.add_argument("--webui-port", type=int, default=None, help="master web UI port (default 8080, or a free one)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--cores", type=int, default=1, help="cores per worker")
    s.add_argument("--memory", default="1g", help="memory per worker for executors")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the workers")
    sub.add_parser("stop", help="stop the cluster and every process left in its folder")
    sub.add_parser("status", help="show the cluster (exit code 1 when it is not running)")
    args = p.parse_args(argv)
    try:
        if args.command == "start":
            url = start_cluster(args.port, args.workers, args.cores, args.memory, webui_port=args.webui_port,
                                cluster_dir=args.dir, timeout=args.timeout)
            state = _read_state(Path(args.dir or default_cluster_dir()).resolve()) or {}
            print(f"Spark master: {url} (web UI {state.get('webui_url')}), {args.workers} workers x "
                  f"{args.cores} core(s) x {args.memory}")
            print(f"Use it with:  export SPARK_MASTER={url}")
            where = f" --dir {args.dir}" if args.dir else ""
            print(f"Stop it with: .venv/bin/python bench/spark_cluster.py{where} stop")
        elif args.command == "stop":
            stopped = stop_cluster(args.dir)
            print(f"stopped {len(stopped)} process group(s)/process(es)" if stopped else "no cluster was running")
        else:
            status = cluster_status(args.dir)
            print(json.dumps(status, indent=2))
            return 0 if status["running"] else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
