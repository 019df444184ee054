"""Local model endpoints: served models in the router's process, and ``mlflow models serve`` processes.

The local stand-ins of a Databricks Model Serving endpoint's *served entities*. ``LocalBackend`` gives a
router (``utils.deploy.Router``) one in-memory ``ServedModel`` per model version, loaded once, so the
endpoint is one process answering keys-only requests with no second HTTP hop, as
``utils.serving.ModelServingBackend`` gives it one served entity per version on Databricks.

``LocalEndpoint`` runs MLflow's own scoring server (``mlflow models serve --env-manager local``) for one
model as a child process on 127.0.0.1, waits until it answers ``/health``, and always stops it again
(``stop()``, ``with``, ``stop_all()`` and an ``atexit`` hook), so a failing notebook cell leaves no server
behind: notebook 04 serves the packaged model with it, and the endpoint benchmark compares against it.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.http_server import EndpointError, free_port, port_open
from utils.runtime import REPO_ROOT, registry_uri, state_dir, tracking_uri

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


class ServedModel:
    """One model version served inside the endpoint's process: loaded once, scored in memory.

    The local stand-in of a Model Serving *served entity*: ``models:/<name>/<version>`` is loaded when
    the endpoint config first names it and stays loaded while it is served, so a request costs one
    ``predict`` and no second HTTP hop. A version logged with ``FeatureEngineeringClient.log_model``
    (it carries ``data/feature_store/feature_spec.yaml``) is served as Model Serving serves it, with
    automatic feature lookup: its raw model behind an online lookup of its own feature spec
    (``utils.local.online_store.serving_model``), so it takes the lookup keys and the request context
    (:meth:`predict_records`); any other version is loaded with ``mlflow.pyfunc.load_model`` and takes
    its model inputs (:meth:`predict_frame`). Loading adds the model's bundled ``code_paths`` to
    ``sys.path`` (MLflow's behaviour); this class puts ``sys.path`` back afterwards, so processes
    started later from this one import the project, not a model's copy of it.
    """

    def __init__(self, model_name: str, version: str | int) -> None:
        self.model_name = model_name
        self.version = str(version)
        self.model_uri = f"models:/{model_name}/{self.version}"
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_s: float | None = None

    def load(self) -> ServedModel:
        """Load the model now (idempotent); returns ``self``.

        Raises:
            EndpointError: the version cannot be loaded (missing, or its flavour fails), with MLflow's reason.
        """
        with self._lock:
            if self._model is None:
                from mlflow import MlflowClient

                t0 = time.perf_counter()
                saved_path = list(sys.path)
                try:  # this platform's registry, whatever MLflow's global URIs point at in this process
                    client = MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())
                    source = client.get_model_version_download_uri(self.model_name, self.version)
                    self._model = _load_served(source)
                except Exception as exc:  # any load failure is the endpoint's to explain
                    raise EndpointError(f"could not load {self.model_uri} to serve it: {type(exc).__name__}: {exc}") from exc
                finally:
                    sys.path[:] = saved_path
                self.load_s = time.perf_counter() - t0
        return self

    @property
    def looks_up_features(self) -> bool:
        """True when this version looks its own features up (logged with the feature client's ``log_model``)."""
        from utils.local.online_store import FeatureServingModel

        model = self._model if self._model is not None else self.load()._model
        return isinstance(model, FeatureServingModel)

    def predict_frame(self, inputs: pd.DataFrame) -> list[float]:
        """Predictions (floats, one per row of ``inputs``) of this version for its model-input frame."""
        model = self.load()._model
        out = model.predict_features(inputs) if self.looks_up_features else model.predict(inputs)
        return _floats(out)

    def predict_records(self, records: Sequence[Mapping[str, Any]],
                        ) -> tuple[dict[str, Any], list[float], dict[int, list[str]]]:
        """``(columns, predictions, misses)`` for keys-only records (dicts), looked up by the model's own feature spec.

        ``records`` hold the lookup keys and the request context; ``columns`` is them with every looked-up
        feature, column by column (``pandas.DataFrame(columns)`` is the frame; none is built here, the
        inference log builds it off the request path); ``misses`` maps a record's position to the keys the
        online store does not hold (profile tables; those records are not scored and their prediction is
        NaN). Raises ``TypeError`` for a version that does not look its features up.
        """
        model = self.load()._model
        if not self.looks_up_features:
            raise TypeError(f"{self.model_uri} was not logged with the feature client: it does not look features up")
        columns, misses = model.lookup_records(records)
        keep = [i for i in range(len(records)) if i not in misses]
        predictions = [float("nan")] * len(records)
        if keep:
            scored = _floats(model.predict_columns(columns, keep if misses else None))
            for i, p in zip(keep, scored):
                predictions[i] = p
        return columns, predictions, misses

    def feature_versions(self) -> dict[str, int | None]:
        """The Delta version each online table this version reads was published from ({} if it looks nothing up)."""
        return self.load()._model.feature_versions() if self.looks_up_features else {}

    def stop(self) -> None:
        """Release the loaded model."""
        with self._lock:
            self._model = None

    def __repr__(self) -> str:
        return f"ServedModel({self.model_uri!r}, loaded={self._model is not None})"


def _floats(out: Any) -> list[float]:
    import numpy as np

    if hasattr(out, "columns"):  # a DataFrame: the model's single output column
        out = out.iloc[:, 0]
    return [float(p) for p in np.asarray(out, dtype=float).ravel()]


def _load_served(source: str) -> Any:
    """The served form of the model at ``source``: a feature-store model's online-lookup wrapper, else its pyfunc."""
    import tempfile

    import mlflow.artifacts
    import mlflow.pyfunc

    from utils.local.online_store import serving_model
    from utils.runtime import tmp_dir

    tmp_dir().mkdir(parents=True, exist_ok=True)
    download = tempfile.mkdtemp(prefix="served-", dir=tmp_dir())
    try:  # the model is in memory once loaded: its downloaded copy goes
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=download))
        data = local / "data" / "feature_store"
        if (data / "feature_spec.yaml").exists():
            served = serving_model(data)
            served.online_lookup()  # an unpublished feature table fails the switch now, not every request later
            return served
        return mlflow.pyfunc.load_model(str(local))
    finally:
        shutil.rmtree(download, ignore_errors=True)


class LocalBackend:
    """The local endpoint's served entities: one in-memory ``ServedModel`` per model version.

    ``apply`` loads every version the new endpoint config names before the router switches to it (a
    version that cannot load fails the switch and leaves the old config serving); loaded versions stay
    loaded, so switching back (a rollback) is instant, as a served entity kept at 0% traffic is on
    Databricks.
    """

    def __init__(self, model_name: str, timeout_s: float = 300.0) -> None:
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.served: dict[str, ServedModel] = {}

    def apply(self, weights_by_version: Mapping[str, int]) -> dict[str, ServedModel]:
        """Load every version not served yet; returns version -> served model (all versions loaded so far)."""
        for version in weights_by_version:
            if str(version) not in self.served:
                self.served[str(version)] = ServedModel(self.model_name, version).load()
        return dict(self.served)

    def stop(self) -> None:
        """Release every served model."""
        served, self.served = list(self.served.values()), {}
        for model in served:
            model.stop()
