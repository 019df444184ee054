"""Local model endpoints: ``mlflow models serve`` processes on this machine.

``LocalEndpoint`` runs MLflow's own scoring server (``mlflow models serve --env-manager local``) for one
model as a child process on 127.0.0.1, waits until it answers ``/health``, and always stops it again
(``stop()``, ``with``, ``stop_all()`` and an ``atexit`` hook), so a failing notebook cell leaves no server
behind: notebook 04 serves the packaged model with it, and the endpoint benchmark compares against it.
The router's in-process served models are ``utils.local.served_models``.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.http_server import EndpointError, free_port, port_open
from utils.platform.runtime import REPO_ROOT, registry_uri, state_dir, tracking_uri

if TYPE_CHECKING:
    import pandas as pd
    import requests

LOG_TAIL_LINES = 25
STOP_GRACE_S = 10.0

# The child runs the `serve` command of `mlflow models` (the same click command the `mlflow`
# executable runs) without importing the rest of MLflow's CLI (about 5 CPU-seconds of imports).
# On Linux it first asks the kernel to SIGTERM it when its parent dies (argv[1] is the parent pid,
# "0" to skip), so even a killed notebook kernel leaves no server behind; MLflow sets the same
# signal on the uvicorn process it starts.
_LAUNCHER = """\
import os, sys
parent = int(sys.argv[1])
if parent:
    import ctypes, signal
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass
    if os.getppid() != parent:
        sys.exit("parent process exited before the model server started")
from mlflow.models.cli import commands
commands(sys.argv[2:], prog_name="mlflow models")
"""


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(log is empty)"


def _last_error(log_tail: str) -> str:
    """The last ``SomeError: message`` line of a log, or ``""``."""
    for line in reversed(log_tail.splitlines()):
        head = line.split(":", 1)[0].strip()
        if ":" in line and " " not in head and head.lower().endswith(("error", "exception", "exit")):
            return line.strip()
    return ""


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy array
        return value.tolist()
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be sent as JSON")


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process remains in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


_REGISTRY: dict[int, LocalEndpoint] = {}
_REGISTRY_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _register(endpoint: LocalEndpoint) -> None:
    global _ATEXIT_REGISTERED
    with _REGISTRY_LOCK:
        _REGISTRY[id(endpoint)] = endpoint
        if not _ATEXIT_REGISTERED:
            atexit.register(stop_all)
            _ATEXIT_REGISTERED = True


def _unregister(endpoint: LocalEndpoint) -> None:
    with _REGISTRY_LOCK:
        _REGISTRY.pop(id(endpoint), None)


def running_endpoints() -> list[LocalEndpoint]:
    """Endpoints this process started and has not stopped yet."""
    with _REGISTRY_LOCK:
        return list(_REGISTRY.values())


def stop_all() -> None:
    """Stop every endpoint this process started (also runs at interpreter exit)."""
    for endpoint in running_endpoints():
        endpoint.stop()


@dataclass
class LocalEndpoint:
    """A model served by ``mlflow models serve --env-manager local`` on this machine."""

    model_uri: str
    host: str = "127.0.0.1"
    port: int | None = None
    workers: int = 1
    timeout_s: float = 120.0
    log_path: Path | None = None
    env: dict[str, str] | None = None
    request_timeout_s: float = 60.0
    startup_s: float | None = field(default=None, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _session: requests.Session | None = field(default=None, init=False, repr=False)
    _tmp: Path | None = field(default=None, init=False, repr=False)

    def start(self) -> LocalEndpoint:
        """Start the server and wait until ``/health`` answers 200; returns ``self``."""
        if self.running:
            return self
        if self._proc is not None:  # the server died on its own: clean up what is left first
            self.stop()
        if not self.model_uri or not str(self.model_uri).strip():
            raise EndpointError("model_uri is empty: pass e.g. 'models:/<name>@champion' or 'runs:/<run_id>/model'")
        if self.workers < 1:
            raise EndpointError(f"workers must be at least 1, got {self.workers}")
        pick_port, pick_log = self.port is None, self.log_path is None
        for attempt in range(3):
            if pick_port:
                self.port = free_port(self.host)
            elif port_open(self.host, self.port):  # type: ignore[arg-type]
                raise EndpointError(
                    f"port {self.port} on {self.host} is already in use: stop what listens there, "
                    "or leave port=None to pick a free one"
                )
            if pick_log:
                self.log_path = None
            try:
                return self._start_once()
            except EndpointError as exc:
                # Another process may take a picked port between free_port() and uvicorn's bind.
                if not (pick_port and attempt < 2 and "address already in use" in str(exc)):
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> LocalEndpoint:
        serving_dir = state_dir() / "serving"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_path = Path(self.log_path or serving_dir / f"endpoint-{self.port}-{stamp}.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_tmp(serving_dir / "tmp")
        self._tmp = serving_dir / "tmp" / f"{self.port}-{stamp}-{os.getpid()}"
        self._tmp.mkdir(parents=True, exist_ok=True)
        parent = os.getpid() if sys.platform.startswith("linux") and _on_main_thread() else 0
        argv = [sys.executable, "-c", _LAUNCHER, str(parent), *self._serve_args()]
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"$ {self.command}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._child_env(),
                start_new_session=True,  # own process group: stop() signals the whole tree
            )
        _register(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop the server and everything it started; safe to call more than once."""
        proc, self._proc = self._proc, None
        _unregister(self)
        if self._session is not None:
            self._session.close()
            self._session = None
        if proc is not None:
            _terminate_group(proc)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the server (also its process-group id), or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:5001``."""
        if self.port is None:
            raise EndpointError("the endpoint has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def invocations_url(self) -> str:
        """URL that scores requests (``POST``)."""
        return f"{self.url}/invocations"

    @property
    def command(self) -> str:
        """The equivalent shell command, for display."""
        return "mlflow models " + shlex.join(self._serve_args())

    def health(self) -> bool:
        """True if the server answers ``GET /health`` with 200."""
        if not self.running:
            return False
        import requests

        try:
            return self._http().get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def predict(self, records: list[dict[str, Any]] | pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Score ``records`` (a list of row dicts or a DataFrame); returns the ``predictions``."""
        import requests

        if hasattr(records, "to_json") and hasattr(records, "columns"):  # pandas DataFrame
            rows = records.to_json(orient="records", date_format="iso")
        elif isinstance(records, list) and all(isinstance(r, Mapping) for r in records):
            rows = json.dumps(records, default=_json_default)
        else:
            raise TypeError(
                f"predict() takes a list of row dicts or a pandas DataFrame, got {type(records).__name__}"
            )
        body = '{"dataframe_records": ' + rows
        if params:
            body += ', "params": ' + json.dumps(params, default=_json_default)
        body += "}"
        if self._proc is not None and self._proc.poll() is not None:
            raise EndpointError(
                f"the endpoint for {self.model_uri!r} has exited with code {self._proc.returncode}: "
                f"call start() again. Last lines of {self.log_path}:\n{_tail(self.log_path)}"  # type: ignore[arg-type]
            )
        if not self.running:
            raise EndpointError(f"the endpoint for {self.model_uri!r} is not running: call start() first")
        try:
            resp = self._http().post(
                self.invocations_url,
                data=body.encode(),
                headers={"Content-Type": "application/json"},
                timeout=self.request_timeout_s,
            )
        except requests.RequestException as exc:
            raise EndpointError(
                f"request to {self.invocations_url} failed: {exc}; server log {self.log_path}:\n"
                f"{_tail(self.log_path)}"  # type: ignore[arg-type]
            ) from exc
        if not 200 <= resp.status_code < 300:
            text = resp.text
            raise EndpointError(
                f"{self.invocations_url} answered {resp.status_code}: {_error_message(text)}",
                status=resp.status_code,
                body=text,
            )
        result = resp.json()
        if isinstance(result, dict) and set(result) == {"predictions"}:
            return result["predictions"]
        return result

    def _serve_args(self) -> list[str]:
        return [
            "serve",
            "--model-uri", str(self.model_uri),
            "--host", self.host,
            "--port", str(self.port),
            "--workers", str(self.workers),
            "--env-manager", "local",
        ]  # fmt: skip

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # `mlflow models serve` starts `uvicorn` by name: put this interpreter's bin/ first on PATH.
        bindir = str(Path(sys.executable).parent)
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
        env["PATH"] = os.pathsep.join([bindir, *path])
        # Models whose code imports `utils` load in the child even without an installed package.
        pythonpath = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(REPO_ROOT) not in pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *pythonpath])
        env["MLFLOW_TRACKING_URI"] = tracking_uri()
        env["MLFLOW_REGISTRY_URI"] = registry_uri()
        env["PYTHONUNBUFFERED"] = "1"
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        if self._tmp is not None:  # the downloaded model copy lands here and is removed by stop()
            env["TMPDIR"] = str(self._tmp)
        env.update(self.env or {})
        return env

    def _wait_ready(self, t0: float) -> None:
        assert self._proc is not None
        deadline = t0 + self.timeout_s
        delay = 0.1
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = _tail(self.log_path)  # type: ignore[arg-type]
                cause = _last_error(tail)
                raise EndpointError(
                    f"the endpoint for model {self.model_uri!r} exited with code {rc} after "
                    f"{time.monotonic() - t0:.1f} s, before it was ready"
                    + (f": {cause}" if cause else "")
                    + f"\nLast lines of {self.log_path}:\n{tail}"
                )
            if self.health():
                return
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"the endpoint for model {self.model_uri!r} was not ready after {self.timeout_s:g} s "
                    f"(raise timeout_s if the machine is busy). Last lines of {self.log_path}:\n"
                    f"{_tail(self.log_path)}"  # type: ignore[arg-type]
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _http(self) -> requests.Session:
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False  # never route 127.0.0.1 through an HTTP(S)_PROXY
        return self._session


def _sweep_stale_tmp(tmp_root: Path) -> None:
    """Remove model copies left by processes that died without stopping their endpoints."""
    for d in tmp_root.glob("*-*-*"):
        owner = d.name.rsplit("-", 1)[-1]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _on_main_thread() -> bool:
    # PR_SET_PDEATHSIG fires when the *thread* that started the child exits, so use it only from
    # the main thread, which lives as long as the process.
    return threading.current_thread() is threading.main_thread()


def _terminate_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL whatever outlives ``grace_s``."""
    pgid = proc.pid
    if proc.poll() is not None and not _group_alive(pgid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace_s
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None and not _group_alive(pgid):
            return
    proc.wait(timeout=5)


def _error_message(text: str, limit: int = 2000) -> str:
    """The ``message`` of an MLflow JSON error body, else the raw body, shortened."""
    try:
        payload = json.loads(text)
        if isinstance(payload, dict) and "message" in payload:
            text = f"{payload.get('error_code', 'ERROR')}: {payload['message']}"
    except ValueError:
        pass
    return text if len(text) <= limit else text[:limit] + " ..."


def serve(model_uri: str, **kwargs: Any) -> LocalEndpoint:
    """A started ``LocalEndpoint`` for ``model_uri`` (keyword arguments as for ``LocalEndpoint``)."""
    return LocalEndpoint(model_uri, **kwargs).start()
