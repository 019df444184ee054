"""``make ui`` (``python -m utils.ui``): announced only once the MLflow server answers, clear about a taken port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from utils import ui
from utils.serving import free_port

REPO = Path(__file__).resolve().parents[2]


class _Health(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail_first`` requests, then 200; counts requests."""

    fail_first = 0
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        self.send_response(503 if type(self).seen <= type(self).fail_first else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_wait_ready_returns_only_after_a_200(monkeypatch):
    handler = type("Health", (_Health,), {"fail_first": 3, "seen": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ui.wait_ready(f"http://127.0.0.1:{server.server_port}/health", timeout=20, interval=0.05)
        assert handler.seen == 4  # three 503s did not count as ready
    finally:
        server.shutdown()
        server.server_close()


def test_wait_ready_fails_clearly_when_nothing_answers_or_the_server_exits():
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(ui.UIError, match=r"did not answer .*/health with 200 within 1 s .*make ui UI_TIMEOUT="):
        ui.wait_ready(url, timeout=1, interval=0.1)
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(ui.UIError, match="exited with status 3"):
        ui.wait_ready(url, dead, timeout=30)


def test_a_taken_port_says_so_and_how_to_pick_another(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert ui.main(["--port", str(port), "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert f"make ui UI_PORT={port + 1}" in err
    assert not (tmp_path / "mlflow").exists()  # nothing was started


def test_store_paths_are_the_ones_make_ui_always_served(tmp_path):
    backend, artifacts = ui.store_paths(tmp_path)
    assert backend == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert artifacts == tmp_path.resolve() / "mlflow" / "artifacts"
    cmd = ui.ui_command(5123, tmp_path)
    assert cmd[1:4] == ["-m", "mlflow", "ui"] and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--backend-store-uri") + 1] == backend


def test_the_ui_is_announced_once_it_answers_and_ctrl_c_stops_it(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "utils.ui", "--port", str(port), "--state-dir", str(tmp_path / "state"),
                             "--timeout", "120"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)  # its own process group: the test sends it Ctrl-C's SIGINT
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 150
        while not lines and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines, f"no ready line (exit {proc.poll()}); server log:\n{(tmp_path / 'server.log').read_text()[-2000:]}"
        assert lines[0] == f"MLflow UI ready at http://127.0.0.1:{port} (Ctrl-C stops it)\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:  # no retry: ready means ready
            assert answer.status == 200
        assert (tmp_path / "state" / "mlflow" / "mlflow.db").is_file()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        reader.join(timeout=5)
        assert lines == [lines[0]]  # one line, nothing else on stdout
        ui.check_port_free(port)  # the server went with it
        server_log = (tmp_path / "server.log").read_text()
        assert "utils/ui.py" not in server_log, server_log[-2000:]  # no traceback of its own while stopping
        assert "Traceback" not in server_log and "KeyboardInterrupt" not in server_log, server_log[-3000:]  # nor its workers'
        assert "starlette.middleware.wsgi is deprecated" not in server_log, server_log[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
