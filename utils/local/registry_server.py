"""The open-source MLflow server on the local tracking store, so registry events fire MLflow's webhooks.

MLflow delivers registry webhooks (``model_version.created``, alias events) from its server's REST
handlers, not from a client writing to SQLite: to see registration fire a webhook locally, the
registration has to go through ``mlflow server``. :class:`LocalRegistryServer` starts that server as a
child process (its own session, one worker, MLflow's job runner off) on the same SQLite store and
artifact root the notebooks use, waits until ``/health`` answers, and stops it (and its process group)
on exit.

Two settings only a local demo needs, both MLflow's own: webhooks may call ``http://127.0.0.1``
(``MLFLOW_WEBHOOK_ALLOWED_SCHEMES``, ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS``; MLflow refuses private
addresses by default against server-side request forgery), and webhook secrets are encrypted at rest
with a key kept in the state folder (``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``, file mode 600), so a
webhook created by one server start can be delivered by the next. The server also reads the webhooks at every
event (``MLFLOW_WEBHOOK_CACHE_TTL=0``), because each trigger points the webhook at a new receiver.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HOST = "127.0.0.1"
KEY_FILE = "webhook-secrets.key"
LOG_FILE = "registry-server.log"
READY_TIMEOUT_S = 240.0  # a first start on a loaded 2-core laptop imports MLflow's whole server: about a minute


def encryption_key(mlflow_dir: Path) -> str:
    """The Fernet key encrypting webhook secrets in ``mlflow_dir``'s store; created (mode 600) on first use."""
    from cryptography.fernet import Fernet

    path = Path(mlflow_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode())
    return path.read_text().strip()


class LocalRegistryServer:
    """``mlflow server`` on the state folder's tracking store; a context manager (``with ... as server``).

    ``state`` defaults to ``utils.platform.state_dir()``; ``port`` 0 picks a free one. ``url`` is the
    server's address, to use as the registry (and tracking) URI. The server's log goes to
    ``<state>/mlflow/registry-server.log``.

    Raises:
        RuntimeError: from ``start()`` when the server exits early or does not answer ``/health`` within
            ``timeout`` seconds; the message ends with the last lines of its log.
    """

    def __init__(self, state: Path | None = None, port: int = 0, timeout: float = READY_TIMEOUT_S) -> None:
        from utils.platform.runtime import state_dir

        self.state = Path(state) if state is not None else state_dir()
        self.port = port
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    @property
    def mlflow_dir(self) -> Path:
        return self.state.resolve() / "mlflow"

    @property
    def log_path(self) -> Path:
        return self.mlflow_dir / LOG_FILE

    @property
    def url(self) -> str:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("the MLflow server is not running: call start() first")
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        """The ``mlflow server`` command line (this interpreter's MLflow)."""
        from utils.ui import store_paths

        backend, artifacts = store_paths(self.state)
        return [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(self.port), "--workers", "1",
                "--backend-store-uri", backend, "--default-artifact-root", str(artifacts)]

    def environment(self) -> dict[str, str]:
        """The server's environment: this one, plus the webhook settings of the module docstring."""
        return {**os.environ,
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": encryption_key(self.mlflow_dir),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no background job runner: nothing here uses it
                # Each trigger points the webhook at a new receiver port: read the webhooks at every event (one
                # SQLite query) instead of MLflow's 60 s cache, which would deliver to the previous receiver.
                "MLFLOW_WEBHOOK_CACHE_TTL": "0",
                "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated"}

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> LocalRegistryServer:
        """Start the server and wait until it answers (idempotent)."""
        from utils.ui import UIError, store_paths, wait_ready

        if self.process is not None and self.process.poll() is None:
            return self
        if self.port:  # a port asked for: something else answering /health there must not pass for this server
            from utils.ui import check_port_free

            try:
                check_port_free(self.port)
            except UIError as exc:
                raise RuntimeError(str(exc).replace("make ui UI_PORT=", "port=")) from None
        from utils.http_server import free_port

        self.port = self.port or free_port(HOST)
        store_paths(self.state)[1].mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it for its whole life
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(), start_new_session=True)
        finally:
            log.close()
        try:
            wait_ready(f"http://{HOST}:{self.port}/health", self.process, self.timeout)
        except UIError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\nlast lines of {self.log_path}:\n{self._log_tail()}") from None
        return self

    def stop(self) -> None:
        """Stop the server (Ctrl-C, then terminate, then kill) and whatever its process group still holds."""
        from utils.ui import stop_server

        if self.process is not None:
            stop_server(self.process)
            self.process = None

    def __enter__(self) -> LocalRegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
