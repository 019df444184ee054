"""The HTTP layer shared by the keys-only endpoint and the webhook receiver: uvicorn + Starlette, JSON refusals."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from utils.http_server import BackgroundServer
from utils.local.webhook_inbox import LocalWebhookInbox


def _raw(port: int, data: bytes, half_close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_inbox_stores_json_posts_and_refuses_the_rest_as_json():
    with LocalWebhookInbox() as inbox:
        assert requests.post(inbox.url, json={"text": "drift on price"}, timeout=10).json() == {"ok": True}
        refusals = [requests.post(inbox.url, data=b"{not json", timeout=10),
                    requests.post(inbox.url, data=b"", timeout=10),
                    requests.post(inbox.url.replace("/hooks/alerts", "/elsewhere"), json={}, timeout=10),
                    requests.get(inbox.url, timeout=10),
                    requests.post(inbox.url, data=b"x" * (inbox.max_bytes + 1), timeout=10)]
        assert [r.status_code for r in refusals] == [400, 400, 404, 405, 413]
        assert all(r.headers["content-type"] == "application/json" and r.json()["error"] for r in refusals)
        assert inbox.messages() == [{"text": "drift on price"}]


def test_a_malformed_request_gets_a_json_400_from_the_http_layer():
    with LocalWebhookInbox() as inbox:
        answer = _raw(inbox._server.port, b"GARBAGE\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
        assert "malformed HTTP request" in json.loads(body)["error"]


def test_a_body_cut_short_by_a_half_close_is_answered_not_dropped():
    with LocalWebhookInbox() as inbox:
        req = b"POST /hooks/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\": 1}"
        head, _, body = _raw(inbox._server.port, req, half_close=True).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and "ended after 8 of the 50 bytes" in json.loads(body)["error"]
        assert inbox.messages() == []


def test_a_port_in_use_is_a_clear_error():
    with LocalWebhookInbox() as inbox:
        taken = inbox._server.port
        with pytest.raises(RuntimeError, match="did not start"):
            BackgroundServer(lambda *a: None, "127.0.0.1", taken, name="second").start()


@pytest.mark.parametrize("reuse_port", [False, True])
def test_accepted_connections_have_tcp_nodelay(reuse_port):
    """Without TCP_NODELAY a response's header and body writes wait for the client's delayed ACK (~40 ms each)."""
    import time

    srv = BackgroundServer(LocalWebhookInbox()._app, reuse_port=reuse_port, name="nodelay").start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10):
            deadline = time.monotonic() + 5
            while not srv._server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.01)
            (conn,) = srv._server.server_state.connections
            sock = conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        srv.stop()


async def _echo_after(scope, receive, send):
    """A tiny ASGI app: reads the body, waits ``/slow`` 0.3 s, answers 200 with the path and the body's size."""
    import asyncio

    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["path"] == "/slow":
        await asyncio.sleep(0.3)
    data = json.dumps({"path": scope["path"], "size": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _answers(raw: bytes) -> list[tuple[int, dict]]:
    """(status, JSON body) of each response in ``raw``, in order (every response has a Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        out.append((int(head.split(b" ")[1]), json.loads(rest[:length])))
        raw = rest[length:]
    return out


@pytest.fixture
def echo_server():
    server = BackgroundServer(_echo_after, name="echo").start()
    yield server
    server.stop()


def test_one_endless_header_line_is_cut_off_at_the_head_limit(echo_server):
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MB, no end of line: far over the 64 KB limit
                sock.sendall(b"a" * 65536)
        except OSError:  # the server answered and closed while we were still sending
            pass
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in answer


def test_a_large_body_in_one_read_is_not_taken_for_a_long_head(echo_server):
    body = b"x" * 300_000
    req = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert _answers(_raw(echo_server.port, req + b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == [
        (200, {"path": "/big", "size": len(body)}), (200, {"path": "/after", "size": 0})]


def test_a_refusal_waits_for_the_answer_to_the_request_before_it(echo_server):
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        import time
        time.sleep(0.05)  # /slow is being answered
        sock.sendall(b"GET /two HTTP/1.1\r\n\r\n")  # no Host: refused, after /slow's answer
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answers = _answers(b"".join(chunks))
    assert [a[0] for a in answers] == [200, 400] and answers[0][1]["path"] == "/slow"


def test_pipelined_requests_then_a_half_close_get_every_answer(echo_server):
    two = b"".join(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" for _ in range(2))
    assert [a[0] for a in _answers(_raw(echo_server.port, two, half_close=True))] == [200, 200]
