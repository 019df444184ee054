"""``make ui``: the MLflow UI on the local state's tracking store, announced only once it answers.

``python -m utils.ui [--port 5000] [--state-dir DIR] [--timeout 60]`` starts ``mlflow ui`` on
``127.0.0.1:<port>`` with the backend store ``sqlite:///<state>/mlflow/mlflow.db`` and the artifact root
``<state>/mlflow/artifacts`` (``<state>`` is ``--state-dir``, else ``MLOPS_STATE_DIR``, else ``.lakehouse``:
the folder the notebooks log to), waits until ``/health`` answers 200, prints one line
``MLflow UI ready at http://127.0.0.1:<port> (Ctrl-C stops it)`` and stays in the foreground until Ctrl-C
(or SIGTERM), which stops the server. The server's own log goes to stderr as it comes.

Exit status: 0 after Ctrl-C; 1 when the port is taken, the server exits early or does not answer in time,
each with a message saying what to do.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
READY_TIMEOUT_S = 180.0  # a first start on a shared 2-core laptop can take a minute or more
STOP_GRACE_S = 10.0


class UIError(RuntimeError):
    """The UI could not be started or did not become ready; the message says what to do."""


def store_paths(state: Path) -> tuple[str, Path]:
    """(backend store URI, artifact root folder) of the state folder ``state``, as ``make ui`` always used."""
    mlflow = Path(state).resolve() / "mlflow"
    return f"sqlite:///{mlflow / 'mlflow.db'}", mlflow / "artifacts"


def ui_command(port: int, state: Path, host: str = HOST) -> list[str]:
    """The ``mlflow ui`` command line (this interpreter's MLflow) serving ``state``'s tracking store on ``host:port``.

    Two workers, not MLflow's default four: one person's browser needs no more, and four processes each
    importing MLflow take about 40 s to answer on two cores.
    """
    backend, artifacts = store_paths(state)
    return [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "2",
            "--backend-store-uri", backend, "--default-artifact-root", str(artifacts)]


def check_port_free(port: int, host: str = HOST) -> None:
    """Raise ``UIError`` saying how to pick another port when ``host:port`` cannot be bound (something uses it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UIError(f"port {port} on {host} is already in use ({exc.strerror}): another MLflow UI or "
                          f"server may be running there (open http://{host}:{port}, or stop it), or pick "
                          f"another port: make ui UI_PORT={port + 1}") from None


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = READY_TIMEOUT_S,
               interval: float = 0.25) -> float:
    """Poll ``url`` until it answers HTTP 200; return the seconds waited.

    Raises ``UIError`` when ``process`` (the server) exits first, or after ``timeout`` seconds without a
    200 (the message names the last answer or connection error).
    """
    start = time.monotonic()
    last = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            raise UIError(f"the MLflow server exited with status {process.returncode} before {url} answered: "
                          "its log above says why")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                if response.status == 200:
                    return time.monotonic() - start
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() - start >= timeout:
            raise UIError(f"the MLflow server did not answer {url} with 200 within {timeout:.0f} s (last: {last}): "
                          "see its log above; on a busy machine, or a first start that migrates a large database, "
                          f"wait longer: make ui UI_TIMEOUT={int(timeout * 2)}")
        time.sleep(interval)


def stop_server(process: subprocess.Popen) -> None:
    """Interrupt the server as Ctrl-C would, then terminate, then kill, each after a grace period; then end
    whatever its process group still holds (a worker the server did not wait for)."""
    for stop in (lambda: process.send_signal(signal.SIGINT), process.terminate, process.kill):
        if process.poll() is not None:
            break
        stop()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the server leads its own session (serve starts it so)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(port: int = DEFAULT_PORT, state: Path | None = None, timeout: float = READY_TIMEOUT_S,
          out: IO[str] | None = None) -> int:
    """Run the MLflow UI in the foreground until Ctrl-C (see the module docstring); return the exit status.

    ``state`` defaults to ``utils.platform.state_dir()``. Raises ``UIError`` when the port is taken, or the
    server exits or does not answer within ``timeout`` seconds (the server is stopped first).
    """
    from utils.platform.runtime import state_dir

    out = out or sys.stdout
    state = Path(state) if state is not None else state_dir()
    check_port_free(port)
    _, artifacts = store_paths(state)
    artifacts.mkdir(parents=True, exist_ok=True)  # also creates the folder of the SQLite file
    # The server's log (some of it on its stdout) goes to stderr: stdout carries the one ready line.
    # MLflow's server mounts its Flask app with starlette's WSGI middleware, which warns about its own
    # deprecation once per worker: a note for MLflow's developers, not for someone opening the UI.
    env = {**os.environ, "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated"}
    # Its own session: a terminal's Ctrl-C reaches this wrapper alone, which stops the server and its workers in
    # order (a SIGINT to the whole group makes each uvicorn and job worker print its own KeyboardInterrupt).
    process = subprocess.Popen(ui_command(port, state), stdout=sys.stderr.fileno(), env=env, start_new_session=True)
    try:
        wait_ready(f"http://{HOST}:{port}/health", process, timeout)
        print(f"MLflow UI ready at http://{HOST}:{port} (Ctrl-C stops it)", file=out, flush=True)
        status = process.wait()
        raise UIError(f"the MLflow server stopped by itself with status {status}: its log above says why")
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C or SIGTERM while the server stops must not abandon it half-way (or print a traceback).
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop_server(process)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``make ui``; prints a failure's message to stderr and returns 1."""
    parser = argparse.ArgumentParser(prog="python -m utils.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("UI_PORT") or DEFAULT_PORT),
                        help=f"port on {HOST} (default: UI_PORT, else {DEFAULT_PORT})")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state folder whose mlflow/ to serve (default: MLOPS_STATE_DIR, else .lakehouse)")
    parser.add_argument("--timeout", type=float, default=READY_TIMEOUT_S,
                        help=f"seconds to wait for the server to answer (default {READY_TIMEOUT_S:.0f})")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started with SIGINT ignored (&)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stopped by a supervisor: stop the server too
    try:
        return serve(args.port, args.state_dir, args.timeout)
    except UIError as exc:
        print(f"make ui: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
