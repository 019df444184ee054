"""Security: no credentials anywhere in the repository, local servers on loopback only, secrets from the environment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.code.test_notebook_hygiene import SECRET

ROOT = Path(__file__).resolve().parents[2]
# Token shapes of the services a team using this template talks to, plus private keys.
CREDENTIAL = re.compile(SECRET.pattern + r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|https://hooks\.slack\.com/services/T[A-Z0-9]+/")
ALL_INTERFACES = re.compile(r"""["']0\.0\.0\.0["']|--host\s+0\.0\.0\.0|host\s*=\s*["']["']""")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / p for p in out.decode().split("\0") if p]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".whl", ".gz"}]


def test_no_credentials_in_any_tracked_file() -> None:
    found = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="ignore")
        for m in CREDENTIAL.finditer(text):
            line = text[: m.start()].count("\n") + 1
            if path.name in ("test_security.py", "test_notebook_hygiene.py"):
                continue  # the patterns and their self-tests
            found.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)[:30]}")
    assert not found, "credentials committed:\n" + "\n".join(found)


def test_the_scan_would_catch_a_token() -> None:
    for leaked in ('DATABRICKS_TOKEN = "dapi0123456789abcdef0123456789ab"', "-----BEGIN RSA PRIVATE KEY-----",
                   "https://hooks.slack.com/services/T0123ABCD/B000/xyz"):
        assert CREDENTIAL.search(leaked), leaked


def test_local_servers_bind_to_loopback_only() -> None:
    offenders = []
    for path in _tracked_text_files():
        if path.suffix not in {".py", ".yml", ".yaml", ".sh", ".ipynb"} and path.name != "Makefile":
            continue
        if path.name == "test_security.py":
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="ignore").splitlines(), 1):
            if ALL_INTERFACES.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:80]}")
    assert not offenders, "servers listening on every interface:\n" + "\n".join(offenders)


def test_router_and_model_endpoint_default_to_loopback() -> None:
    import inspect

    from utils.deploy import Router
    from utils.local.endpoints import LocalEndpoint

    assert Router("m").host == "127.0.0.1"
    assert inspect.signature(LocalEndpoint).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("name", ["DATABRICKS_TOKEN", "MLOPS_ALERT_WEBHOOK_URL"])
def test_secrets_are_read_from_the_environment_not_from_code(name: str) -> None:
    """No module assigns a literal to a secret; they are read with os.environ or Databricks secret scopes."""
    for path in (ROOT / "utils").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(rf"{name}\s*=\s*['\"]", text), f"{path.name} hard-codes {name}"


def test_secrets_come_from_the_environment_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from utils.platform import MissingSecret, get_secret

    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)
    with pytest.raises(MissingSecret, match="export MLOPS_ALERT_WEBHOOK_URL"):
        get_secret("alert_webhook_url")
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    assert get_secret("alert_webhook_url") == "http://127.0.0.1:9/hook"
