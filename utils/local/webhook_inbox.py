"""A local webhook receiver standing in for Slack (or any incoming-webhook service) in notebooks and tests.

It is a real HTTP server on 127.0.0.1 that stores every JSON body POSTed to it, so the alert path
is exercised end to end without credentials or internet.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalWebhookInbox:
    """Collects JSON webhook posts; use as a context manager (``with LocalWebhookInbox() as inbox``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_bytes: int = 1_000_000) -> None:
        self._messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > max_bytes:
                    self._reply(413 if length > max_bytes else 400, "body missing or too large")
                    return
                try:
                    body = json.loads(self.rfile.read(length))
                except json.JSONDecodeError:
                    self._reply(400, "invalid JSON")
                    return
                with inbox._lock:
                    inbox._messages.append(body)
                self._reply(200, "ok")

            def _reply(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL to post to."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/alerts"

    def start(self) -> LocalWebhookInbox:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-inbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def messages(self) -> list[dict[str, Any]]:
        """Every JSON body received so far, in order."""
        with self._lock:
            return list(self._messages)

    def __enter__(self) -> LocalWebhookInbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
