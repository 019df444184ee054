"""A local webhook receiver standing in for Slack (or any incoming-webhook service) in notebooks and tests.

It is a real HTTP server on 127.0.0.1 (uvicorn, through ``utils.http_server.BackgroundServer``, the stack the
keys-only endpoint uses) that stores every JSON body POSTed to it, so the alert path is exercised end to end
without credentials or internet. Refusals are JSON: 400 for a missing or invalid body, 413 over ``max_bytes``,
404/405 for another path or method.
"""

from __future__ import annotations

import json
import threading
from typing import Any

PATH = "/hooks/alerts"


class LocalWebhookInbox:
    """Collects JSON webhook posts; use as a context manager (``with LocalWebhookInbox() as inbox``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_bytes: int = 1_000_000) -> None:
        from utils.http_server import BackgroundServer

        self._messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.max_bytes = max_bytes
        self._server = BackgroundServer(self._app, host, port, name="webhook-inbox")

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI application: store a JSON body POSTed to ``PATH``, refuse anything else with a JSON 4xx."""
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        from utils.http_server import BodyError, json_error, read_body

        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.method != "POST":
            response = json_error(405, f"method {request.method} is not allowed: POST JSON to {PATH}",
                                  headers={"Allow": "POST"})
        elif request.url.path != PATH:
            response = json_error(404, f"no such path {request.url.path!r}: POST JSON to {PATH}")
        else:
            try:
                body = await read_body(request, self.max_bytes)
                message = json.loads(body) if body.strip() else None
                if message is None:
                    raise BodyError(400, "body missing: POST a JSON object")
            except BodyError as exc:
                response = json_error(exc.status, str(exc), close=exc.close)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                response = json_error(400, f"invalid JSON: {exc}")
            else:
                with self._lock:
                    self._messages.append(message)
                response = JSONResponse({"ok": True})
        await response(scope, receive, send)

    @property
    def url(self) -> str:
        """The URL to post to."""
        return f"{self._server.url}{PATH}"

    def start(self) -> LocalWebhookInbox:
        """Serve in a background thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.stop()

    def messages(self) -> list[dict[str, Any]]:
        """Every JSON body received so far, in order."""
        with self._lock:
            return list(self._messages)

    def __enter__(self) -> LocalWebhookInbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
