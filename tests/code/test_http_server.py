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
