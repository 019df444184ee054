"""Real-time serving: a managed local endpoint, and a Databricks Model Serving endpoint.

Locally, ``LocalEndpoint`` runs ``mlflow models serve --env-manager local`` as a child process on
127.0.0.1, waits until it answers ``/health``, and always stops it again (``stop()``, ``with``,
``stop_all()`` and an ``atexit`` hook), so a failing notebook cell leaves no server behind.
On Databricks, ``deploy_serving_endpoint`` creates or updates a Model Serving endpoint.

A router (``utils.deploy.Router``) forwards to a *backend*: ``LocalBackend`` (one ``LocalEndpoint``
per model version) or ``ModelServingBackend`` (one served entity per version of one Model Serving
endpoint, addressed through its own URL); ``serving_backend`` picks by platform.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.platform import (
    REPO_ROOT,
    is_databricks,
    registry_uri,
    state_dir,
    tracking_uri,
)

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


class EndpointError(RuntimeError):
    """The endpoint could not start, or a request to it failed; ``status`` is the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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

    # ------------------------------------------------------------ lifecycle

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

    # ------------------------------------------------------------ state

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

    # ------------------------------------------------------------ scoring

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

    # ------------------------------------------------------------ internals

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
        import requests

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
            try:
                if self._http().get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
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


# ---------------------------------------------------------------- Databricks Model Serving
# ---------------------------------------------------------------- serving backends (what a router forwards to)


class LocalBackend:
    """One ``LocalEndpoint`` per model version, started the first time a routing table names it."""

    def __init__(self, model_name: str, timeout_s: float = 300.0) -> None:
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.endpoints: dict[str, LocalEndpoint] = {}

    def apply(self, weights_by_version: Mapping[str, int]) -> dict[str, LocalEndpoint]:
        """Start an endpoint for every version not served yet; returns version -> endpoint."""
        for version in weights_by_version:
            if str(version) not in self.endpoints:
                uri = f"models:/{self.model_name}/{version}"
                self.endpoints[str(version)] = LocalEndpoint(uri, timeout_s=self.timeout_s).start()
        return dict(self.endpoints)

    def stop(self) -> None:
        """Stop every endpoint this backend started."""
        endpoints, self.endpoints = list(self.endpoints.values()), {}
        for ep in endpoints:
            ep.stop()


@dataclass(frozen=True)
class ModelServingUpstream:
    """One served entity of a Databricks Model Serving endpoint, addressed directly (not by traffic split)."""

    host: str
    endpoint_name: str
    served_name: str
    auth: Callable[[], dict[str, str]] = field(repr=False, compare=False)

    @property
    def invocations_url(self) -> str:
        """The served entity's own scoring URL (the router, not the endpoint, picks the version)."""
        return (f"{self.host.rstrip('/')}/serving-endpoints/{self.endpoint_name}"
                f"/served-models/{self.served_name}/invocations")

    def headers(self) -> dict[str, str]:
        """Fresh authentication headers from the workspace client (tokens are refreshed as needed)."""
        return dict(self.auth())


class ModelServingBackend:
    """The Model Serving endpoint ``endpoint_name``: one served entity per routed version, traffic by weight.

    ``apply`` creates or updates the endpoint (and waits until it is ready) so its own traffic split
    matches the router's table: callers of the endpoint URL get the same split the router applies per
    customer. Versions the previous table served stay served at 0% traffic, so rolling back to them
    is a traffic change, not a new container build. ``stop`` leaves the endpoint in place: it outlives
    the notebook and scales to zero when idle.
    """

    def __init__(self, endpoint_name: str, model_name: str, client: Any = None, workload_size: str = "Small",
                 scale_to_zero: bool = True) -> None:
        self.endpoint_name = endpoint_name
        self.model_name = model_name
        self.client = client
        self.workload_size = workload_size
        self.scale_to_zero = scale_to_zero
        self.endpoint: Any = None
        self.routed: list[str] = []

    def apply(self, weights_by_version: Mapping[str, int]) -> dict[str, ModelServingUpstream]:
        """Serve these versions with this traffic (and the previous ones at 0%); returns version -> upstream."""
        client = self.client = self.client or workspace_client()
        plan = {str(v): int(w) for v, w in weights_by_version.items()}
        plan.update({v: 0 for v in self.routed if v not in plan})
        names = {v: served_entity_name(self.model_name, v) for v in plan}
        traffic = traffic_percentages({names[v]: w for v, w in plan.items()})
        self.endpoint = deploy_serving_endpoint(
            self.endpoint_name, self.model_name, {n: v for v, n in names.items()}, traffic,
            self.workload_size, self.scale_to_zero, client=client,
        )
        self.routed = [str(v) for v in weights_by_version]
        host, auth = client.config.host, client.config.authenticate
        return {v: ModelServingUpstream(host, self.endpoint_name, n, auth) for v, n in names.items()}

    def stop(self) -> None:
        """Nothing to stop here: the endpoint keeps serving (delete it in the Serving UI or with the SDK)."""


def serving_backend(model_name: str, endpoint_name: str, timeout_s: float = 300.0) -> LocalBackend | ModelServingBackend:
    """Model Serving on Databricks, local ``mlflow models serve`` processes elsewhere."""
    if is_databricks():
        return ModelServingBackend(endpoint_name, model_name)
    return LocalBackend(model_name, timeout_s)


# ---------------------------------------------------------------- Databricks Model Serving


def workspace_client() -> Any:
    """``databricks.sdk.WorkspaceClient()``, authenticated by the runtime; only on Databricks."""
    if not is_databricks():
        raise EndpointError(
            "Model Serving endpoints exist only on Databricks: run this on a Databricks cluster, "
            "pass client=WorkspaceClient(host=..., token=...), or serve locally with utils.serving.serve(model_uri)"
        )
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient()


def served_entity_name(model_name: str, version: str | int) -> str:
    """The served-entity name of one model version: ``<model>-<version>``, e.g. ``plantly_recommender-3``."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", model_name.rsplit(".", 1)[-1])
    return f"{base}-{version}"


def traffic_percentages(weights: Mapping[str, int]) -> dict[str, int]:
    """Whole percentages proportional to ``weights`` that add up to exactly 100 (largest remainder)."""
    bad = {k: w for k, w in weights.items() if not isinstance(w, int) or isinstance(w, bool) or w < 0}
    total = sum(weights.values())
    if bad or total <= 0:
        raise ValueError(f"traffic weights must be whole numbers >= 0 with at least one > 0, got {dict(weights)}")
    exact = {k: 100 * w / total for k, w in weights.items()}
    out = {k: int(x) for k, x in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (exact[k] - out[k], weights[k]), reverse=True)
    for k in by_remainder[: 100 - sum(out.values())]:
        out[k] += 1
    return out


def resolve_versions(model_name: str, version_or_alias_entries: Mapping[str, str | int]) -> dict[str, str]:
    """Map each served-entity name to a model version number, resolving aliases in the registry."""
    from mlflow import MlflowClient

    client: MlflowClient | None = None
    versions: dict[str, str] = {}
    for served_name, ref in version_or_alias_entries.items():
        ref = str(ref).strip()
        if ref.isdigit():
            versions[served_name] = ref
            continue
        client = client or MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())
        versions[served_name] = str(client.get_model_version_by_alias(model_name, ref).version)
    return versions


def endpoint_config(
    model_name: str,
    versions: Mapping[str, str],
    traffic: Mapping[str, int],
    workload_size: str = "Small",
    scale_to_zero: bool = True,
) -> tuple[list[Any], Any]:
    """The served entities and traffic routes of a Model Serving endpoint (databricks-sdk objects)."""
    from databricks.sdk.service.serving import Route, ServedEntityInput, TrafficConfig

    if not versions:
        raise ValueError("no model versions to serve: pass e.g. {'champion': 'champion'}")
    for served_name in versions:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", served_name):
            raise ValueError(f"served entity name {served_name!r} may only hold letters, digits, '-' and '_'")
    if set(traffic) != set(versions):
        raise ValueError(
            f"traffic routes {sorted(traffic)} must name exactly the served entities {sorted(versions)}"
        )
    bad = {k: v for k, v in traffic.items() if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100}
    if bad:
        raise ValueError(f"traffic percentages must be whole numbers from 0 to 100, got {bad}")
    if sum(traffic.values()) != 100:
        raise ValueError(f"traffic percentages must add up to 100, got {sum(traffic.values())} in {dict(traffic)}")
    entities = [
        ServedEntityInput(
            name=served_name,
            entity_name=model_name,
            entity_version=str(version),
            workload_size=workload_size,
            scale_to_zero_enabled=scale_to_zero,
        )
        for served_name, version in versions.items()
    ]
    routes = TrafficConfig(
        routes=[Route(served_entity_name=n, traffic_percentage=int(traffic[n])) for n in versions]
    )
    return entities, routes


def _config_key(entities: Any, routes: Any) -> tuple[frozenset, frozenset]:
    """What decides whether an endpoint already serves a config: entities (name, model, version, size) and routes."""
    served = frozenset(
        (e.name, e.entity_name, str(e.entity_version), e.workload_size, bool(e.scale_to_zero_enabled))
        for e in entities or []
    )
    traffic = frozenset(
        (r.served_entity_name or r.served_model_name, int(r.traffic_percentage or 0))
        for r in (routes.routes if routes is not None and routes.routes else [])
    )
    return served, traffic


def deploy_serving_endpoint(
    name: str,
    model_name: str,
    version_or_alias_entries: Mapping[str, str | int],
    traffic: Mapping[str, int],
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    client: Any = None,
    timeout: timedelta = timedelta(minutes=30),
) -> Any:
    """Create or update the Databricks Model Serving endpoint ``name`` and wait until it is ready.

    ``version_or_alias_entries`` maps a served-entity name to a version or alias of ``model_name``
    (e.g. ``{"blue": "champion", "green": "challenger"}``); ``traffic`` maps the same names to
    percentages adding up to 100 (e.g. ``{"blue": 90, "green": 10}``). An endpoint that already
    serves exactly this config is left alone; one with an update in progress is waited for first.
    ``client`` is a ``databricks.sdk.WorkspaceClient`` (default: the runtime's own, on Databricks).
    """
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import (
        EndpointCoreConfigInput,
        EndpointStateConfigUpdate,
    )

    client = client or workspace_client()
    versions = resolve_versions(model_name, version_or_alias_entries)
    entities, routes = endpoint_config(model_name, versions, traffic, workload_size, scale_to_zero)
    endpoints = client.serving_endpoints
    try:
        current = endpoints.get(name)
    except NotFound:
        config = EndpointCoreConfigInput(name=name, served_entities=entities, traffic_config=routes)
        return endpoints.create_and_wait(name=name, config=config, timeout=timeout)
    if current.state is not None and current.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS:
        current = endpoints.wait_get_serving_endpoint_not_updating(name, timeout=timeout)
    live = current.config
    if live is not None and _config_key(live.served_entities, live.traffic_config) == _config_key(entities, routes):
        return current
    return endpoints.update_config_and_wait(name=name, served_entities=entities, traffic_config=routes,
                                            timeout=timeout)
