"""HTTP serving for the router and the local webhook receivers: Starlette applications on uvicorn.

The project serves HTTP with a well-kept ASGI stack instead of hand-written request parsing:
uvicorn (with its ``httptools`` protocol, the C parser of Node's llhttp) reads and frames requests,
Starlette's ``Request`` and ``JSONResponse`` read bodies and write answers. :class:`BackgroundServer` runs one uvicorn server in a
daemon thread of the current process (a notebook kernel, a test, a benchmark), on 127.0.0.1 by default.

Three things are adapted, all through uvicorn's documented ``Config(http=<protocol class>)`` hook:

* every refusal is JSON: a request uvicorn rejects before the application sees it (a malformed request
  line, a bad ``Content-Length``, a header block over the size limit) is answered
  ``400 {"error": "..."}`` instead of uvicorn's plain-text ``Invalid HTTP request received.``;
* a client that announces a body, sends less and then shuts its side of the connection down
  (a half-close) still gets an answer: the application sees the body end early and refuses it with a
  400, where uvicorn alone would drop the connection without a word;
* what llhttp lets through and uvicorn's pure-Python ``h11`` protocol refuses is refused with the same
  JSON 400: a request line plus headers over a size limit, a request target that is not visible ASCII
  or holds a fragment, a request without exactly one ``Host`` header.

:func:`read_body` reads a request body with a byte limit, draining (not storing) an oversized body of
reasonable size so a kept-alive connection stays usable, and :func:`json_error` is the one shape of
every refusal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from uvicorn import Config, Server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DRAIN_FACTOR = 64
"""A declared body over ``DRAIN_FACTOR`` times the limit is refused without reading it (the connection closes)."""
START_TIMEOUT_S = 30.0


class BodyError(Exception):
    """A request body that cannot be served: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


def json_error(status: int, message: str, close: bool = False, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer to a refused request: ``status`` with ``{"error": message}`` (and ``Connection: close``)."""
    extra = dict(headers or {})
    if close:
        extra["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=extra)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of ``request``, at most ``limit`` bytes.

    Raises:
        BodyError: 413 for a body over ``limit`` bytes (drained first when it was declared under
            ``DRAIN_FACTOR * limit``, so the connection can serve the next request; else not read and the
            connection closed), 400 for a body that ended before its ``Content-Length`` (the client
            half-closed or disconnected).
    """
    declared = request.headers.get("content-length")
    length = int(declared) if declared is not None and declared.isdigit() else None  # the parser checked its syntax
    if length is not None and length > DRAIN_FACTOR * limit:
        raise BodyError(413, f"request body of {length} bytes is over the {limit}-byte limit", close=True)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > DRAIN_FACTOR * limit:  # a chunked body with no end in sight
                raise BodyError(413, f"request body is over the {limit}-byte limit", close=True)
    except ClientDisconnect:
        raise BodyError(400, "the client disconnected before the whole body arrived", close=True) from None
    if size > limit:
        raise BodyError(413, f"request body of {size} bytes is over the {limit}-byte limit")
    if length is not None and size < length:
        raise BodyError(400, f"the body ended after {size} of the {length} bytes Content-Length announced", close=True)
    return b"".join(chunks)


class _AnswerAfterHalfClose:
    """A client's half-close does not drop the answer to the request in progress (mixed into uvicorn's protocols)."""

    cycle: Any
    transport: Any

    def eof_received(self) -> bool | None:
        """The client shut its sending side: keep the socket open for the answer to the request in progress.

        A body still being read ends here (shorter than announced, so it is refused); a request already
        read is answered; then the connection closes. With no request in progress the connection closes now.
        """
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return None
        self._peer_closed = True
        if cycle.more_body:
            cycle.more_body = False
            cycle.message_event.set()
        return True

    def on_response_complete(self) -> None:
        """As uvicorn, then close a connection whose client has already shut its sending side."""
        super().on_response_complete()  # type: ignore[misc]
        if getattr(self, "_peer_closed", False) and not self.transport.is_closing():
            self.transport.close()


_MALFORMED = json.dumps({"error": "malformed HTTP request (request line, headers or Content-Length): "
                                  "send an HTTP/1.1 request with a JSON body"}).encode()


_TARGET = re.compile(rb"[\x21-\x22\x24-\x7e]+")  # visible ASCII but "#": the request-target of RFC 9112


class JsonHttpToolsProtocol(_AnswerAfterHalfClose, HttpToolsProtocol):
    """uvicorn's httptools protocol: JSON 400s, a header-block limit, h11's target and Host checks, half-closes.

    httptools parses in C, so a request costs less CPU than with uvicorn's pure-Python ``h11`` protocol.
    The parser has no limit of its own on the request line plus headers: past ``max_header_bytes``
    (uvicorn's ``h11_max_incomplete_event_size`` setting, which h11 enforces) the request is refused.
    """

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes = int(config.h11_max_incomplete_event_size or 64 * 1024)
        self._header_bytes = 0

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:  # raised inside the parser: uvicorn answers 400
            raise ValueError(f"request line and headers over {self.max_header_bytes} bytes")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Refuse what h11 refuses and llhttp lets through: a target that is not visible ASCII or holds a
        fragment (``#``), and a request without exactly one ``Host`` (RFC 9112, section 3.2)."""
        if not _TARGET.fullmatch(self.url):
            raise ValueError("the request target must be visible ASCII with no fragment")
        hosts = sum(1 for name, _ in self.headers if name == b"host")
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise ValueError("an HTTP/1.1 request needs exactly one Host header")
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused: ``400 {"error": ...}``, then close (as uvicorn does)."""
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"content-length: " + str(len(_MALFORMED)).encode() + b"\r\nconnection: close\r\n\r\n"
                             + _MALFORMED)
        self.transport.close()


class BackgroundServer:
    """One uvicorn server for ``app`` in a daemon thread; ``start()`` returns once it accepts connections.

    ``host``/``port`` as for uvicorn (port 0: a free port, read back into ``port``). ``reuse_port`` binds
    with ``SO_REUSEPORT`` (Linux), so several processes can serve one port and the kernel spreads new
    connections over them (uvicorn's own ``--workers`` needs an import string, not an application object).
    ``timeout_keep_alive`` (seconds) and ``h11_max_incomplete_event_size`` (bytes of request line plus
    headers) are uvicorn's settings.

    Raises:
        RuntimeError: from ``start()`` when the server does not come up within ``START_TIMEOUT_S``
            (e.g. the port is taken), with the reason.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, name: str = "http",
                 timeout_keep_alive: int = 5, h11_max_incomplete_event_size: int = 64 * 1024,
                 reuse_port: bool = False) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self.reuse_port = reuse_port
        self._config = Config(app, host=host, port=port, http=JsonHttpToolsProtocol, interface="asgi3", lifespan="off",
                              access_log=False, log_level="critical", timeout_keep_alive=timeout_keep_alive,
                              server_header=False,
                              h11_max_incomplete_event_size=h11_max_incomplete_event_size)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> BackgroundServer:
        """Start serving in a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # refusals are answered, not logged
        server = self._server = Server(self._config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread

        sockets = None
        if self.reuse_port:
            # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
            # without it a response's header and body writes wait for the client's delayed ACK (~40 ms).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sockets = [sock]

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=sockets))
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                reason = self._error or "it did not start in time"
                if not self._thread.is_alive() and self._error is None:
                    reason = f"port {self.host}:{self.port} could not be bound (in use?)"
                raise RuntimeError(f"the {self.name} server did not start: {reason}")
            time.sleep(0.005)
        sockets = [s for srv in server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, finish the requests in flight (up to ``timeout`` seconds), release the port."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():  # requests still in flight after the grace period
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if not self.running:
            raise RuntimeError(f"the {self.name} server is not running: call start() first")
        return f"http://{self.host}:{self.port}"
