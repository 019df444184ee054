"""HTTP serving for the router and the local webhook receivers: Starlette applications on uvicorn.

The project serves HTTP with a well-kept ASGI stack instead of hand-written request parsing:
uvicorn (with its ``httptools`` protocol, the C parser of Node's llhttp) reads and frames requests,
Starlette's ``Request`` and ``JSONResponse`` read bodies and write answers. :class:`BackgroundServer`
runs one uvicorn server in a daemon thread of the current process (a notebook kernel, a test, a
benchmark), on 127.0.0.1 by default.

Three things are adapted, all through uvicorn's documented ``Config(http=<protocol class>)`` hook
(:class:`JsonHttpToolsProtocol`):

* every refusal is JSON: a request uvicorn rejects before the application sees it (a malformed request
  line, a bad ``Content-Length``) is answered ``400 {"error": "..."}`` instead of uvicorn's plain-text
  ``Invalid HTTP request received.``, after the answers to any requests before it on the connection;
* what llhttp lets through and uvicorn's pure-Python ``h11`` protocol refuses is refused the same way:
  a request head over a size limit, a request target that is not visible ASCII, a request without
  exactly one ``Host`` header (and, stricter than h11, a target holding a fragment);
* a client that announces a body, sends less and then shuts its side of the connection down
  (a half-close) still gets an answer: the application sees the body end early and refuses it with a
  400, where uvicorn alone would drop the connection without a word.

:func:`read_body` reads a request body with a byte limit, draining (not storing) an oversized body of
reasonable size so a kept-alive connection stays usable, and :func:`json_error` is the one shape of
every refusal. :func:`free_port`, :func:`port_open` and :class:`EndpointError` are the small socket
helpers and the error the local endpoints, the local MLflow server and the router share.
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


_MALFORMED = json.dumps({"error": "malformed HTTP request (request line, headers or Content-Length): "
                                  "send an HTTP/1.1 request with a JSON body"}).encode()
_TARGET = re.compile(rb"[\x21-\x22\x24-\x7e]+")  # visible ASCII but "#": RFC 9112's request-target has no fragment


class JsonHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with JSON 400s, a request-head limit, target and Host checks, and half-closes.

    httptools parses in C, so a request costs less CPU than with uvicorn's pure-Python ``h11`` protocol.
    What h11 refuses and llhttp lets through is refused here with a JSON 400: a request line plus headers
    over ``max_header_bytes`` (uvicorn's ``h11_max_incomplete_event_size`` setting; counted as the head
    arrives, so one endless header line is cut off too), a target that is not visible ASCII, an HTTP/1.1
    request without exactly one ``Host`` (RFC 9112, section 3.2). Stricter than h11: a target holding a
    fragment (``#``, which clients never send) is refused. A refusal behind a request still being answered
    on the same connection waits for that answer, then closes the connection.
    """

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_header_bytes = int(config.h11_max_incomplete_event_size or 64 * 1024)
        self._head_bytes = 0  # of the request line and headers parsed so far
        self._raw_head_bytes = 0  # received in reads that ended inside an unfinished request head
        self._in_head = True  # between two requests or inside a head (not inside a body)
        self._boundaries = 0  # heads begun or ended, to tell a read that crossed one
        self._refusal_pending = False
        self._peer_closed = False

    def data_received(self, data: bytes) -> None:
        if self._refusal_pending:  # the parser already refused this connection's input
            return
        before = self._boundaries
        super().data_received(data)
        if self._in_head and self._boundaries == before and not self._refusal_pending:
            self._raw_head_bytes += len(data)  # a read wholly inside one head: one endless line is cut off too
            if self._raw_head_bytes > self.max_header_bytes:
                self.send_400_response("request head over the limit")

    def on_message_begin(self) -> None:
        self._head_bytes = self._raw_head_bytes = 0
        self._in_head = True
        self._boundaries += 1
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._check_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._check_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _check_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_header_bytes:  # raised inside the parser: uvicorn answers 400
            raise ValueError(f"request line and headers over {self.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        if not _TARGET.fullmatch(self.url):
            raise ValueError("the request target must be visible ASCII with no fragment")
        hosts = sum(1 for name, _ in self.headers if name == b"host")
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise ValueError("an HTTP/1.1 request needs exactly one Host header")
        self._in_head = False
        self._boundaries += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = self._raw_head_bytes = 0
        self._in_head = True
        self._boundaries += 1
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused: ``400 {"error": ...}``, then close, once earlier requests are answered."""
        self._refusal_pending = True
        if self._busy():
            self.flow.pause_reading()  # on_response_complete answers once the requests before it are
            return
        self._write_refusal()

    def _busy(self) -> bool:
        return (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)

    def _write_refusal(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(_MALFORMED)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + _MALFORMED)
            self.transport.close()

    def eof_received(self) -> bool | None:
        """The client shut its sending side: keep the socket open for the answers to the requests in progress.

        A body still being read ends here (shorter than announced, so it is refused); requests already
        read are answered; then the connection closes. With no request in progress it closes now.
        """
        if not self._busy():
            return None
        self._peer_closed = True
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            cycle.more_body = False
            cycle.message_event.set()
        return True

    def on_response_complete(self) -> None:
        """As uvicorn; then, once no request is left, write a pending refusal or close a half-closed connection."""
        super().on_response_complete()
        if self._busy() or self.transport.is_closing():
            return
        if self._refusal_pending:
            self._write_refusal()
        elif self._peer_closed:
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
