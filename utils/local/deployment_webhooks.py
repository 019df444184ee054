"""The local twin of a Databricks deployment job: a receiver of MLflow registry webhooks that runs the gate.

MLflow's server POSTs ``{"entity": "model_version", "action": "created", "data": {"name", "version", ...}}``
to every webhook subscribed to ``model_version.created``, signed the Standard Webhooks way: header
``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">`` with the webhook's
secret, plus ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` (Unix seconds). Source:
https://mlflow.org/docs/latest/ml/webhooks/ ("Security: HMAC signature verification").

:class:`DeploymentWebhookReceiver` verifies the signature and the timestamp (within ``tolerance_s``),
answers at once (202: queued, 200: ignored or a repeated delivery), and runs the task, by default the
deployment job's evaluation task (run as its ``python_wheel_task``: the wheel's entry point, ``utils.wheel_tasks``;
verdict read back with the MLflow client), for each new version on one worker thread, in arrival order.
Answering before the gate runs keeps MLflow from timing out and retrying a slow gate; deliveries are
deduplicated by id. A version registered while no receiver listened (MLflow retried, then gave up) is
found by :meth:`catch_up`: every version of the model without a gate verdict is queued.

Refusals are JSON (``utils.http_server``): 401 for a missing or wrong signature or a stale timestamp,
400 for a body that is not a webhook payload, 404/405 for another path or method, 413 over ``max_bytes``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

PATH = "/mlflow/webhooks"
EVENT = "model_version.created"
SIGNATURE_HEADER = "x-mlflow-signature"
DELIVERY_ID_HEADER = "x-mlflow-delivery-id"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
SIGNATURE_VERSION = "v1"
ERROR_TAG = "deployment_job_error"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``<delivery_id>.<timestamp>.<body>`` with ``secret``, as MLflow signs."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


@dataclass
class Delivery:
    """One version the receiver was asked to judge: by a webhook delivery, or by :meth:`catch_up`."""

    delivery_id: str
    model: str
    version: str
    via: str  # "webhook" or "catch-up"
    received_at: str
    status: str = "queued"  # queued, running, passed, refused, error, skipped
    summary: str = ""
    seconds: float | None = None


class DeploymentWebhookReceiver:
    """Receives ``model_version.created`` webhooks for ``model_name`` and runs ``task(name, version)`` on each.

    ``task`` returns an object with ``passed`` and ``summary()`` (a ``utils.gate.GateResult``); it defaults
    to the deployment job's evaluation task (:func:`evaluation_task`: its wheel entry point, then its recorded verdict). A task that raises is recorded (status ``error``, and the
    tag ``deployment_job_error`` on the version) and the receiver goes on. Use as a context manager.
    """

    def __init__(self, secret: str, model_name: str | None = None,
                 task: Callable[[str, str], Any] | None = None, host: str = "127.0.0.1", port: int = 0,
                 tolerance_s: float = 300.0, max_bytes: int = 1_000_000) -> None:
        from utils.http_server import BackgroundServer

        if not secret:
            raise ValueError("secret is empty: the receiver accepts only deliveries signed with the webhook's secret")
        self.secret = secret
        self.model_name = model_name
        self.task = task
        self.tolerance_s = tolerance_s
        self.max_bytes = max_bytes
        self._deliveries: list[Delivery] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._server = BackgroundServer(self._app, host, port, name="deployment-webhooks")

    # ------------------------------------------------------------ HTTP

    def _verify(self, headers: Any, body: bytes) -> str:
        """The delivery id of a correctly signed, fresh delivery; raises ``PermissionError`` otherwise."""
        delivery_id, timestamp, signature = (headers.get(h, "") for h in
                                             (DELIVERY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
        if not (delivery_id and timestamp and signature):
            raise PermissionError(f"unsigned delivery: {SIGNATURE_HEADER}, {DELIVERY_ID_HEADER} and "
                                  f"{TIMESTAMP_HEADER} are required")
        try:
            age = abs(time.time() - int(timestamp))
        except ValueError:
            raise PermissionError(f"{TIMESTAMP_HEADER} is not Unix seconds: {timestamp[:40]!r}") from None
        if age > self.tolerance_s:
            raise PermissionError(f"delivery timestamp is {age:.0f} s away from now (limit {self.tolerance_s:.0f} s)")
        expected = sign(self.secret, delivery_id, timestamp, body)
        if not any(hmac.compare_digest(expected, given.strip()) for given in signature.split(" ")):
            raise PermissionError("signature does not match: is the webhook's secret the receiver's?")
        return delivery_id

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI application: verify, parse and queue a webhook POSTed to ``PATH``; refuse anything else."""
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        from utils.http_server import BodyError, json_error, read_body

        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.method != "POST":
            response = json_error(405, f"method {request.method} is not allowed: POST to {PATH}", headers={"Allow": "POST"})
        elif request.url.path != PATH:
            response = json_error(404, f"no such path {request.url.path!r}: webhooks go to {PATH}")
        else:
            try:
                body = await read_body(request, self.max_bytes)
                delivery_id = self._verify(request.headers, body)
                response = JSONResponse(*self._accept(delivery_id, body))
            except BodyError as exc:
                response = json_error(exc.status, str(exc), close=exc.close)
            except PermissionError as exc:
                response = json_error(401, str(exc))
            except ValueError as exc:
                response = json_error(400, str(exc))
        await response(scope, receive, send)

    def _accept(self, delivery_id: str, body: bytes) -> tuple[dict[str, Any], int]:
        """(answer, status) for a verified delivery; raises ``ValueError`` for a body that is not a payload."""
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"invalid JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise ValueError('not an MLflow webhook payload: expected {"entity", "action", "data": {...}}')
        event = f"{payload.get('entity')}.{payload.get('action')}"
        if event != EVENT:
            return {"ignored": f"event {event} (this receiver acts on {EVENT})"}, 200
        name, version = payload["data"].get("name"), payload["data"].get("version")
        if not isinstance(name, str) or not name or version in (None, ""):
            raise ValueError("model_version.created payload without data.name and data.version")
        if self.model_name is not None and name != self.model_name:
            return {"ignored": f"model {name} (this receiver acts on {self.model_name})"}, 200
        with self._lock:
            if delivery_id in self._seen:
                return {"duplicate": delivery_id}, 200
            self._seen.add(delivery_id)
        self._enqueue(Delivery(delivery_id, name, str(version), "webhook", _now()))
        return {"queued": {"model": name, "version": str(version)}}, 202

    # ------------------------------------------------------------ the job

    def _enqueue(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)
        self._queue.put(delivery)

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            self._judge(delivery)

    def _set(self, delivery: Delivery, **changes: Any) -> None:
        with self._done:
            for key, value in changes.items():
                setattr(delivery, key, value)
            self._done.notify_all()

    def _judge(self, delivery: Delivery) -> None:
        from utils.verdict import registry_client

        client = registry_client()
        if "gate_checked_at" in (client.get_model_version(delivery.model, str(delivery.version)).tags or {}):
            self._set(delivery, status="skipped", summary="already judged by the gate")
            return
        task = self.task or evaluation_task
        self._set(delivery, status="running")
        started = time.perf_counter()
        try:
            result = task(delivery.model, delivery.version)
            status, summary = ("passed" if result.passed else "refused"), result.summary().splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - any failure of the job is recorded on the version, not raised
            message = f"{type(exc).__name__}: {exc}"
            try:
                client.set_model_version_tag(delivery.model, str(delivery.version), ERROR_TAG, message[:900])
            except Exception as tag_error:  # noqa: BLE001 - e.g. the server stopped under an interrupted notebook
                message += f" (not recorded on the version: {type(tag_error).__name__})"
            self._set(delivery, status="error", summary=message, seconds=round(time.perf_counter() - started, 2))
            return
        self._set(delivery, status=status, summary=summary, seconds=round(time.perf_counter() - started, 2))

    def catch_up(self) -> list[str]:
        """Queue every version of ``model_name`` that has no gate verdict (registered while nothing listened).

        A version whose job failed (tag ``deployment_job_error``) is not queued again: remove the tag to retry it.

        Returns the versions queued. Raises ``ValueError`` when the receiver was built without ``model_name``.
        """
        from utils.verdict import registry_client

        if self.model_name is None:
            raise ValueError("catch_up needs the receiver's model_name")
        versions = _versions(registry_client(), self.model_name)  # none yet: an empty list
        with self._lock:
            queued = {(d.model, d.version) for d in self._deliveries if d.status in ("queued", "running")}
        pending = sorted((str(mv.version) for mv in versions
                          if not {"gate_checked_at", ERROR_TAG} & set(mv.tags or {})
                          and (self.model_name, str(mv.version)) not in queued),
                         key=int)
        for version in pending:
            self._enqueue(Delivery(f"catch-up-{version}", self.model_name, version, "catch-up", _now()))
        return pending

    # ------------------------------------------------------------ reading and lifecycle

    def deliveries(self) -> list[dict[str, Any]]:
        """Every version the receiver was asked to judge, oldest first, as dicts (see :class:`Delivery`)."""
        with self._lock:
            return [asdict(d) for d in self._deliveries]

    def wait(self, version: str | int, timeout: float = 600.0) -> dict[str, Any]:
        """Wait until ``version`` of ``model_name`` has been judged; return its delivery record.

        Raises ``TimeoutError`` when no delivery for it arrived or finished within ``timeout`` seconds.
        """
        version = str(version)
        deadline = time.monotonic() + timeout

        def finished() -> Delivery | None:
            for d in reversed(self._deliveries):
                if d.version == version and (self.model_name is None or d.model == self.model_name):
                    return d if d.status not in ("queued", "running") else None
            return None

        with self._done:
            while (found := finished()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    arrived = any(d.version == version for d in self._deliveries)
                    raise TimeoutError(
                        f"version {version}: {'the gate is still running' if arrived else 'no webhook delivery arrived'} "
                        f"after {timeout:.0f} s (the MLflow server's log says whether it called {self.url})")
                self._done.wait(min(left, 1.0))
            return asdict(found)

    @property
    def url(self) -> str:
        """The URL MLflow's webhook posts to."""
        return f"{self._server.url}{PATH}"

    def start(self) -> DeploymentWebhookReceiver:
        """Serve, and start the worker (idempotent)."""
        self._server.start()
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="deployment-job", daemon=True)
            self._worker.start()
        return self

    def stop(self, timeout: float = 600.0, finish_queue: bool = True) -> None:
        """Stop listening, let the worker finish what is queued (up to ``timeout`` s), then stop it.

        With ``finish_queue`` False only the version being judged is finished; the queued ones are marked
        ``skipped`` (``catch_up`` finds them next time).
        """
        self._server.stop()
        if not finish_queue:
            while True:
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    self._set(left, status="skipped", summary="the receiver stopped first; caught up next time")
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
            self._worker = None

    def __enter__(self) -> DeploymentWebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions(client: Any, name: str) -> list[Any]:
    page = client.search_model_versions(f"name='{name}'")
    found = list(page)
    while page.token:
        page = client.search_model_versions(f"name='{name}'", page_token=page.token)
        found.extend(page)
    return found


def evaluation_task(model_name: str, version: str | int) -> Any:
    """The deployment job's evaluation task on ``version`` through the wheel's entry point, in this process
    (``utils.wheel_tasks.run_deployment_task``); returns the verdict it recorded (``utils.verdict.recorded_verdict``).
    Raises ``RuntimeError`` naming the exit status when it recorded none (the reason is on stderr)."""
    from utils.verdict import recorded_verdict
    from utils.wheel_tasks import run_deployment_task

    status = run_deployment_task("evaluation", model_name, version)
    result = recorded_verdict(model_name, version)
    if result is None:
        raise RuntimeError(f"the evaluation task exited with status {status} without a gate verdict "
                           "(its reason is on stderr)")
    return result


WEBHOOK_NAME = "deployment-job"


class WebhookTrigger:
    """Registration fires the gate through MLflow's own webhook: what ``utils.platform.deployment_trigger`` yields locally.

    While open, the registry is the local MLflow server (``MLFLOW_REGISTRY_URI`` and ``mlflow``'s registry
    URI point at it), so ``utils.registry.register`` goes through its REST handlers and fires the model's webhook
    (:attr:`webhook_name`; created, or updated with this receiver's URL and a fresh secret), which the
    receiver answers by running ``task`` (default: the deployment job's evaluation task, :func:`evaluation_task`). Versions left without a verdict are caught up on
    opening. On closing, the webhook is disabled, the URIs are put back, the receiver finishes its queue
    and the server stops (unless it was given as ``server``, a running ``LocalRegistryServer`` to share).
    One trigger per model at a time (a file lock beside the store); a second one is refused, naming the first.
    """

    via = "webhook"

    def __init__(self, model_name: str, state: Any = None, task: Callable[[str, str], Any] | None = None,
                 server: Any = None) -> None:
        self.model_name = model_name
        self.state = state
        self.task = task
        self.server: Any = server  # a running LocalRegistryServer to use (and leave running), else one of its own
        self._own_server = server is None
        self.receiver: DeploymentWebhookReceiver | None = None
        self.webhook: Any = None
        self._previous: tuple[str | None, str] | None = None
        self._lock_handle: Any = None

    @property
    def how(self) -> str:
        return (f"registration goes through the MLflow server at {self.server.url}; its webhook {self.webhook.name} "
                f"({EVENT}) calls the deployment job's receiver at {self.receiver.url}, which runs the gate")

    def _webhook_client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)

    @property
    def webhook_name(self) -> str:
        """``deployment-job-<12 hex digits of the model name's SHA-1>``: MLflow keeps webhook names under 64 characters."""
        import hashlib

        return f"{WEBHOOK_NAME}-{hashlib.sha1(self.model_name.encode()).hexdigest()[:12]}"

    def _lock(self) -> None:
        """Hold this model's trigger lock (a file lock beside the store), or refuse: two triggers would re-point
        one webhook at each other's receivers, and the first would wait for a delivery that never comes."""
        import fcntl
        import os

        path = self.server.mlflow_dir / f"{self.webhook_name}.lock"
        handle = open(path, "a+")  # noqa: SIM115 - held open while the trigger is
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RuntimeError(f"another deployment trigger for {self.model_name} is open ({holder}, lock {path}): "
                               "let it finish (or stop that notebook), then run this again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_handle = handle

    def _check_webhooks_readable(self) -> None:
        """Fail at once, saying why, when the store holds webhooks the server cannot decrypt (its key was replaced):
        MLflow's client would retry the server's 500 answers for minutes."""
        import requests

        answer = requests.get(f"{self.server.url}/api/2.0/mlflow/webhooks", params={"max_results": 1000}, timeout=60)
        if answer.status_code >= 500:
            from utils.local.registry_server import KEY_FILE

            db = self.server.mlflow_dir / "mlflow.db"
            raise RuntimeError(
                f"the MLflow server cannot read the webhooks stored in {db} (HTTP {answer.status_code}): their secrets "
                f"were encrypted with another {self.server.mlflow_dir / KEY_FILE}. Restore that key, or delete the "
                f"stored webhooks (they are recreated): sqlite3 {db} 'DELETE FROM webhook_events; DELETE FROM webhooks'")

    def _point_webhook(self, secret: str) -> Any:
        client = self._webhook_client()
        name = self.webhook_name
        token = None
        while True:
            page = client.list_webhooks(page_token=token)
            for hook in page:
                if hook.name == name:
                    return client.update_webhook(hook.webhook_id, url=self.receiver.url, secret=secret,
                                                 events=[EVENT], status="ACTIVE")
            token = page.token
            if not token:
                break
        return client.create_webhook(name=name, url=self.receiver.url, events=[EVENT], secret=secret,
                                     description=f"runs the validation gate on each new version of {self.model_name}"[:1000])

    def __enter__(self) -> WebhookTrigger:
        import os
        import secrets

        import mlflow

        from utils.local.registry_server import LocalRegistryServer

        if self.server is None:
            self.server = LocalRegistryServer(self.state).start()
        try:
            self._lock()
            self._check_webhooks_readable()
            secret = secrets.token_urlsafe(32)
            self.receiver = DeploymentWebhookReceiver(secret, self.model_name, self.task).start()
            self.webhook = self._point_webhook(secret)
            self._previous = (os.environ.get("MLFLOW_REGISTRY_URI"), mlflow.get_registry_uri())
            os.environ["MLFLOW_REGISTRY_URI"] = self.server.url
            mlflow.set_registry_uri(self.server.url)
            self.receiver.catch_up()
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise
        return self

    def __exit__(self, exc_type: Any = None, *exc: object) -> None:
        """Disable the webhook, put the URIs back, stop the receiver and the server: each step even if one before failed.

        Leaving on an exception (a Ctrl-C included) does not wait for queued versions (``catch_up`` judges them
        next time); a normal exit lets the receiver finish its queue first.
        """
        import os

        import mlflow

        try:
            if self.webhook is not None and self.server is not None and exc_type is None:
                self._webhook_client().update_webhook(self.webhook.webhook_id, status="DISABLED")
        finally:
            try:
                if self._previous is not None:
                    env, uri = self._previous
                    if env is None:
                        os.environ.pop("MLFLOW_REGISTRY_URI", None)
                    else:
                        os.environ["MLFLOW_REGISTRY_URI"] = env
                    mlflow.set_registry_uri(uri)
                    self._previous = None
                if self.receiver is not None:
                    self.receiver.stop(timeout=600.0 if exc_type is None else 5.0, finish_queue=exc_type is None)
            finally:
                if self.server is not None and self._own_server:
                    self.server.stop()
                    self.server = None
                if self._lock_handle is not None:
                    self._lock_handle.close()  # releases the lock
                    self._lock_handle = None

    def verdict(self, version: str | int, timeout: float = 600.0) -> Any:
        """The gate's result on ``version`` once the receiver has judged it (``utils.gate.GateResult``).

        Raises ``RuntimeError`` when the job failed on it (the reason is also the version's tag
        ``deployment_job_error``), ``TimeoutError`` when no verdict came within ``timeout`` seconds.
        """
        from utils.verdict import recorded_verdict

        record = self.receiver.wait(version, timeout)
        if record["status"] == "error":
            raise RuntimeError(f"the deployment job failed on version {version} of {self.model_name}: {record['summary']}")
        return recorded_verdict(self.model_name, version)

    def events(self) -> Any:
        """What the receiver judged, oldest first: a pandas frame (delivery_id, model, version, via, status, ...)."""
        import pandas as pd

        return pd.DataFrame(self.receiver.deliveries(), columns=list(Delivery.__dataclass_fields__))
