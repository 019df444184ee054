"""Registration fires the gate through MLflow's own registry webhook: the open-source MLflow server, a real
``model_version.created`` delivery, and the receiver running the gate (the local twin of a deployment job).

The end-to-end tests start ``mlflow server`` once for the module; the receiver's HTTP contract (signature,
freshness, duplicates, refusals) is tested against the receiver alone with deliveries signed as MLflow signs.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
import uuid

import mlflow
import pytest
from mlflow import MlflowClient

from tests.code.test_registry import FEATURES, LABEL, PriceModel, aliases, eval_df, gate_kw, uris  # noqa: F401 - fixtures
from tests.support import table
from utils import registry
from utils.config import get_config
from utils.gate import gate_and_set_challenger, recorded_verdict
from utils.local.deployment_webhooks import (
    ERROR_TAG, PATH, DeploymentWebhookReceiver, WebhookTrigger, sign,
)

SECRET = secrets.token_urlsafe(16)  # made up per run
ENDPOINT = get_config().project.replace("_", "-") + "-tests"


def _gate(eval_frame):
    return lambda name, version: gate_and_set_challenger(name, version, eval_frame, LABEL, **gate_kw())


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _signed(body: bytes, secret: str = SECRET, delivery_id: str | None = None, at: int | None = None) -> dict[str, str]:
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()) if at is None else at)
    return {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": sign(secret, delivery_id, stamp, body)}


def _payload(name: str, version: str, entity: str = "model_version", action: str = "created") -> bytes:
    return json.dumps({"entity": entity, "action": action, "timestamp": "2026-12-01T00:00:00+00:00",
                       "data": {"name": name, "version": version, "source": "models:/m-1", "run_id": None,
                                "tags": {}, "description": None}}).encode()


def test_signature_is_computed_as_mlflow_computes_it():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = _payload(table("mlops", "m"), "3")
    assert sign("k", "id-1", "1796118476", body) == _generate_hmac_signature("k", "id-1", "1796118476", body.decode())


def test_receiver_queues_only_signed_fresh_new_deliveries_and_refuses_the_rest():
    judged: list[tuple[str, str]] = []

    class Passed:
        passed = True

        def summary(self) -> str:
            return "passed"

    def task(name: str, version: str) -> Passed:
        judged.append((name, version))
        return Passed()

    name = table("mlops", "receiver_test")
    receiver = DeploymentWebhookReceiver(SECRET, name, task)
    receiver._judge = lambda d: receiver._set(d, status="passed", summary=str(task(d.model, d.version)))
    with receiver:
        url = receiver.url
        body = _payload(name, "1")
        assert _post(url, body, {})[0] == 401  # unsigned
        assert _post(url, body, _signed(body, secret=secrets.token_urlsafe(16)))[0] == 401
        status, answer = _post(url, body, _signed(body, at=int(time.time()) - 3600))
        assert status == 401 and "away from now" in answer["error"]
        tampered = _signed(body)
        assert _post(url, body.replace(b'"1"', b'"9"'), tampered)[0] == 401  # body changed after signing
        headers = _signed(body)
        assert _post(url, body, headers) == (202, {"queued": {"model": name, "version": "1"}})
        assert _post(url, body, headers)[1] == {"duplicate": headers["X-MLflow-Delivery-Id"]}  # MLflow's retry
        other = _payload(table("mlops", "someone_else"), "1")
        assert "ignored" in _post(url, other, _signed(other))[1]
        alias_event = _payload(name, "1", action="alias_created")
        assert "ignored" in _post(url, alias_event, _signed(alias_event))[1]
        garbage = b'{"entity": "model_version"'
        status, answer = _post(url, garbage, _signed(garbage))
        assert status == 400 and "invalid JSON" in answer["error"]
        no_version = json.dumps({"entity": "model_version", "action": "created", "data": {"name": name}}).encode()
        assert _post(url, no_version, _signed(no_version))[0] == 400
        assert _post(url.replace(PATH, "/elsewhere"), body, _signed(body))[0] == 404
        assert receiver.wait("1", timeout=10)["status"] == "passed"
    assert judged == [(name, "1")]
    assert [d["via"] for d in receiver.deliveries()] == ["webhook"]


@pytest.fixture()
def name(uris) -> str:
    return table("tests", f"hooked_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def server(uris):
    """One ``mlflow server`` for the module's triggers (each start imports MLflow's whole server: 10 to 40 s)."""
    from utils.local.registry_server import LocalRegistryServer

    with LocalRegistryServer() as running:
        yield running


def test_registration_fires_mlflows_webhook_and_the_gate_runs_in_the_receiver(uris, name, eval_df):
    with WebhookTrigger(name, task=_gate(eval_df)) as trigger:  # a server of its own, started and stopped
        assert mlflow.get_registry_uri() == trigger.server.url  # registration goes through the server
        first = registry.register(uris["good"], name)
        assert trigger.verdict(first.version).passed
        registry.set_alias(name, "champion", first.version, reason="initial champion")

        bad = registry.register(uris["bad"], name, description="negative control")
        refused = trigger.verdict(bad.version)
        assert not refused.passed and {"min_auc", "no_regression"} <= {c.name for c in refused.failed()}
        assert aliases(name) == {"champion": "1", "challenger": "1"}  # the refused version moved nothing

        good = registry.register(uris["good"], name)
        assert trigger.verdict(good.version).passed
        events = trigger.events()
    assert aliases(name) == {"champion": "1", "challenger": "3"}
    assert list(events.version) == ["1", "2", "3"] and set(events.via) == {"webhook"}
    assert list(events.status) == ["passed", "refused", "passed"]
    assert all(len(d) == 36 for d in events.delivery_id)  # MLflow's delivery ids (UUIDs), not the receiver's
    tags = registry.get_version(name, 2).tags
    assert tags["gate_passed"] == "false" and "min_auc" in tags["gate_failed"]
    assert recorded_verdict(name, 2).to_dict() == refused.to_dict()


def test_a_receiver_down_loses_nothing_mlflow_retries_and_the_rest_is_caught_up(uris, name, eval_df, server):
    with WebhookTrigger(name, task=_gate(eval_df), server=server) as trigger:
        port = trigger.receiver._server.port
        trigger.receiver._server.stop()  # the receiver is down for a moment
        started = time.monotonic()
        mv = registry.register(uris["good"], name)
        assert time.monotonic() - started < 10  # registration does not wait for the webhook
        back = DeploymentWebhookReceiver(trigger.receiver.secret, name, _gate(eval_df), port=port).start()
        trigger.receiver.stop()
        trigger.receiver = back  # up again on the same address while MLflow retries (after 1 s, 2 s, 4 s)
        assert trigger.verdict(mv.version, timeout=60).passed
        assert back.deliveries()[0]["via"] == "webhook"

    # Down for longer than MLflow retries (here: no receiver, the webhook disabled): the version waits...
    registry.register(uris["good"], name)
    assert "gate_checked_at" not in registry.get_version(name, 2).tags
    # ...and is judged as soon as a receiver opens again.
    with WebhookTrigger(name, task=_gate(eval_df), server=server) as trigger:
        assert trigger.verdict(2, timeout=60).passed
        assert list(trigger.events().via) == ["catch-up"]


def test_a_failing_job_is_recorded_on_the_version_and_moves_no_alias(uris, name, server):
    def broken(model: str, version: str):
        raise KeyError("no evaluation rows")

    def no_verdict(model: str, version: str):
        return None  # a task that returns no gate result is a failure too, and the receiver goes on

    with WebhookTrigger(name, task=no_verdict, server=server) as trigger:
        mv = registry.register(uris["good"], name)
        with pytest.raises(RuntimeError, match=r"deployment job failed on version 1 .*AttributeError"):
            trigger.verdict(mv.version, timeout=60)
    MlflowClient().delete_model_version_tag(name, mv.version, ERROR_TAG)  # retry it: the catch-up below judges it

    with WebhookTrigger(name, task=broken, server=server) as trigger:
        assert list(trigger.events().via) == ["catch-up"]
        with pytest.raises(RuntimeError, match=r"deployment job failed on version 1 .*no evaluation rows"):
            trigger.verdict(mv.version, timeout=60)
    assert "no evaluation rows" in registry.get_version(name, mv.version).tags[ERROR_TAG]
    assert aliases(name) == {}


def test_a_long_model_name_gets_a_webhook_name_mlflow_accepts(uris, eval_df, server):
    long_name = table("dev_jane_doe_mlops_sandbox_for_the_workshop", get_config().model_base_name)
    with WebhookTrigger(long_name, task=_gate(eval_df), server=server) as trigger:
        assert len(trigger.webhook.name) < 64 and trigger.webhook.name.startswith("deployment-job-")
        mv = registry.register(uris["good"], long_name)
        assert trigger.verdict(mv.version, timeout=60).passed


def test_a_second_trigger_for_the_same_model_is_refused_naming_the_first(name, server):
    with WebhookTrigger(name, server=server):
        with pytest.raises(RuntimeError, match=r"another deployment trigger for .* is open \(pid \d+"):
            WebhookTrigger(name, server=server).__enter__()
        assert mlflow.get_registry_uri() == server.url, "the refused trigger changed nothing"
    with WebhookTrigger(name, server=server):  # the lock is released on exit
        pass


def test_an_interrupted_trigger_stops_its_server_and_puts_the_registry_back(uris, name):
    before = mlflow.get_registry_uri()
    with pytest.raises(KeyboardInterrupt):
        with WebhookTrigger(name, task=lambda n, v: time.sleep(3)) as trigger:
            process = trigger.server.process
            registry.register(uris["good"], name)
            raise KeyboardInterrupt  # Ctrl-C while the gate runs
    assert process.poll() is not None, "no mlflow server left running"
    assert mlflow.get_registry_uri() == before


def test_webhooks_the_server_cannot_decrypt_are_reported_at_once(name, tmp_path):
    """A replaced secrets key: the stored webhook cannot be read; the trigger says so instead of retrying for minutes."""
    import shutil

    from utils.local.registry_server import KEY_FILE, LocalRegistryServer
    from utils.platform import state_dir

    state = tmp_path / "state"
    shutil.copytree(state_dir() / "mlflow", state / "mlflow")
    with LocalRegistryServer(state) as own, WebhookTrigger(name, server=own):
        pass  # a webhook now stored, its secret encrypted with this state's key
    (state / "mlflow" / KEY_FILE).unlink()
    started = time.monotonic()
    with LocalRegistryServer(state) as own, pytest.raises(RuntimeError, match=r"cannot read the webhooks .*DELETE FROM webhooks"):
        WebhookTrigger(name, server=own).__enter__()
    assert time.monotonic() - started < 60


def test_a_port_already_in_use_is_refused_not_mistaken_for_the_server(server):
    from utils.local.registry_server import LocalRegistryServer

    with pytest.raises(RuntimeError, match=f"port {server.port} .* already in use"):
        LocalRegistryServer(port=server.port).start()


def test_approval_then_deployment_tasks_promote_only_an_approved_gated_version(uris, name, eval_df):
    """The deployment job's later tasks, run here on the local registry: approval waits for the tag, deployment
    refuses a version the gate refused and promotes (and serves) one it passed."""
    from utils.deployment_job import ApprovalPending, approval_task, deployment_task

    registry.register(uris["good"], name)
    registry.register(uris["bad"], name)
    registry.set_alias(name, "champion", 1, reason="initial champion")
    for version in ("1", "2"):
        _gate(eval_df)(name, version)
    with pytest.raises(ApprovalPending, match=r"version 2 .* not approved \(approval = unset\)"):
        approval_task(name, 2)
    registry.set_version_tags(name, 2, {"approval": "Approved"})
    approval_task(name, 2)  # case-insensitive, as Databricks' approval template
    with pytest.raises(registry.PromotionRefused):
        deployment_task(name, 2, endpoint_name=ENDPOINT)
    registry.register(uris["good"], name)
    assert _gate(eval_df)(name, 3).passed
    outcome = deployment_task(name, 3, endpoint_name=ENDPOINT)
    assert outcome == {"champion": "3", "endpoint": ENDPOINT, "traffic": {"3": 100, "1": 0}}  # rollback stays served
    assert aliases(name)["champion"] == "3"
