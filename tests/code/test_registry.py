"""Registry helpers on the real local MLflow (SQLite) registry: aliases, promotion, rollback, audit."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature

from tests.support import table
from utils import registry
from utils.gate import gate_and_set_challenger, recorded_verdict

LABEL = "purchased"
FEATURES = {"price": "double", "age_band": "string", "invasive": "boolean"}


def sigmoid_price(price: pd.Series) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(2.5 - 0.1 * price.to_numpy(dtype=float))))


class PriceModel(mlflow.pyfunc.PythonModel):
    """Cheaper plants sell better; invasive plants, and plants whose flag is unknown, score 0.

    ``noisy`` replaces the score with noise."""

    def __init__(self, noisy: bool = False) -> None:
        self.noisy = noisy

    def predict(self, context, model_input, params=None):
        score = sigmoid_price(model_input["price"])
        if self.noisy:
            score = np.random.default_rng(len(model_input)).random(len(model_input))
        unknown_or_invasive = model_input["invasive"].astype(object).fillna(True).to_numpy(dtype=bool)
        return np.where(unknown_or_invasive, 0.0, score)


@pytest.fixture(scope="module")
def eval_df() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 300
    price = rng.uniform(5.0, 60.0, n)
    return pd.DataFrame({
        "price": price,
        "age_band": np.array(["18-34", "35-54", "55+"])[rng.integers(0, 3, n)],
        "invasive": rng.random(n) < 0.1,
        LABEL: rng.random(n) < sigmoid_price(pd.Series(price)),
    })


@pytest.fixture(scope="module")
def uris(isolated_state, eval_df) -> dict[str, str]:
    from utils.platform import configure_mlflow

    configure_mlflow("registry-tests")
    X = eval_df[list(FEATURES)]
    sig = infer_signature(X, sigmoid_price(X["price"]))
    with mlflow.start_run(run_name="registry-test-models"):
        good = mlflow.pyfunc.log_model(name="good", python_model=PriceModel(), signature=sig, pip_requirements=["mlflow"])
        bad = mlflow.pyfunc.log_model(name="bad", python_model=PriceModel(noisy=True), signature=sig,
                                      pip_requirements=["mlflow"])
    return {"good": good.model_uri, "bad": bad.model_uri}


@pytest.fixture()
def name(uris) -> str:
    """A fresh registered-model name per test (three-level, as on Unity Catalog)."""
    return table("tests", f"m_{uuid.uuid4().hex[:10]}")


def gate_kw() -> dict:
    return {"expected_features": FEATURES, "batch_size": 100}


def aliases(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


def test_register_waits_ready_and_sets_description_and_tags(uris, name):
    mv = registry.register(uris["good"], name, description="price baseline", tags={"seed": 42, "git_commit": "abc"})
    assert mv.status == "READY" and str(mv.version) == "1"
    assert mv.description == "price baseline"
    assert mv.tags["seed"] == "42" and mv.tags["git_commit"] == "abc"
    assert str(registry.latest_version(name).version) == "1"
    registry.register(uris["bad"], name)
    assert str(registry.latest_version(name).version) == "2"


@pytest.mark.parametrize("key", ["input.workspace.mlops.training_set", "git-commit", "a=b", "a/b", "a:b", "a,b"])
def test_tag_keys_unity_catalog_refuses_are_refused_before_anything_is_registered(uris, name, key):
    with pytest.raises(ValueError, match="Unity Catalog refuses"):
        registry.register(uris["good"], name, tags={key: "1"})
    assert registry.latest_version(name) is None  # nothing registered
    mv = registry.register(uris["good"], name)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        registry.set_version_tags(name, mv.version, {key: "1"})
    assert key not in registry._client().get_model_version(name, mv.version).tags


def test_input_tags_name_tables_with_keys_unity_catalog_accepts(uris, name):
    inputs = {"workspace.mlops.training_set": 3, "workspace.mlops.customer_features": 0, "workspace.mlops.new": None}
    tags = registry.input_tags(inputs)
    assert tags["input__workspace__mlops__training_set"] == "3"
    registry.check_tag_keys(tags)
    mv = registry.register(uris["good"], name, tags={"family": "gbt", **tags})
    assert registry.inputs_from_tags(mv.tags) == inputs


def test_unset_alias_and_unknown_model_give_none(uris, name):
    assert registry.get_alias_version(name, "champion") is None  # model does not exist yet
    assert registry.latest_version(name) is None
    registry.register(uris["good"], name)
    assert registry.get_alias_version(name, "champion") is None
    registry.set_alias(name, "champion", 1, reason="first model")
    assert str(registry.get_alias_version(name, "champion").version) == "1"


def test_gate_records_its_whole_verdict_beside_the_training_run(uris, name, eval_df):
    registry.register(uris["good"], name)
    registry.register(uris["bad"], name)
    registry.set_alias(name, "champion", 1, reason="initial champion")
    assert recorded_verdict(name, 2) is None  # not gated yet
    result = gate_and_set_challenger(name, 2, eval_df, LABEL, **gate_kw())
    again = recorded_verdict(name, 2)
    assert again.to_dict() == result.to_dict() and not again.passed
    assert registry.get_version(name, 2).tags["gate_passed"] == "false" and aliases(name) == {"champion": "1"}


def test_promotion_refused_when_the_gate_failed(uris, name, eval_df):
    registry.register(uris["good"], name)
    registry.register(uris["bad"], name)
    registry.set_alias(name, "champion", 1, reason="initial champion")
    failed = gate_and_set_challenger(name, 2, eval_df, LABEL, **gate_kw())
    with pytest.raises(registry.PromotionRefused, match=r"min_auc"):
        registry.promote(name, 2, failed, reason="try anyway")
    with pytest.raises(registry.PromotionRefused, match=r"result is for .+ version 2"):
        registry.promote(name, 1, failed.to_dict() | {"passed": True}, reason="wrong version's verdict")
    assert aliases(name) == {"champion": "1"}


def test_promote_then_rollback_with_audit_trail(uris, name, eval_df, monkeypatch):
    monkeypatch.setenv("MLOPS_ACTOR", "ci-bot")
    for _ in range(2):
        registry.register(uris["good"], name)
    first = gate_and_set_challenger(name, 1, eval_df, LABEL, **gate_kw())
    registry.promote(name, 1, first, reason="first champion")
    registry.promote(name, 1, first, reason="re-run of the notebook")  # idempotent: nothing moves
    with pytest.raises(registry.RollbackError, match="no previous champion"):
        registry.rollback(name, reason="nothing to go back to")

    second = gate_and_set_challenger(name, 2, eval_df, LABEL, **gate_kw())
    assert second.passed and second.champion_uri == f"models:/{name}/1"
    registry.promote(name, 2, second, reason="better on the March split")
    model = MlflowClient().get_registered_model(name)
    assert str(model.aliases["champion"]) == "2" and model.tags["previous_champion"] == "1"

    assert registry.rollback(name, reason="conversion dropped after the switch") == 1
    model = MlflowClient().get_registered_model(name)
    assert str(model.aliases["champion"]) == "1" and "previous_champion" not in model.tags
    with pytest.raises(registry.RollbackError):
        registry.rollback(name, reason="again")

    trail = registry.audit_trail(name)
    assert list(trail.columns[:8]) == ["seq", "version", "action", "alias", "actor", "at", "reason", "gate_passed"]
    assert trail[["version", "action", "alias"]].values.tolist() == [
        [1, "gate_pass", "challenger"], [1, "promote", "champion"],
        [2, "gate_pass", "challenger"], [2, "promote", "champion"], [1, "rollback", "champion"],
    ]
    assert set(trail.actor) == {"ci-bot"}
    assert trail.iloc[-1].reason == "conversion dropped after the switch"
    assert trail.iloc[-1].from_version == "2" and pd.isna(trail.iloc[-1].gate_passed)
    assert trail.iloc[3].gate_passed is True
    assert all(datetime.fromisoformat(at).tzinfo is not None for at in trail["at"])

    log = json.loads(model.tags["audit_log"])
    assert [(e["v"], e["action"]) for e in log][-2:] == [("2", "promote"), ("1", "rollback")]


def test_audit_log_on_the_model_stays_bounded(uris, name):
    registry.register(uris["good"], name)
    for i in range(registry.AUDIT_LOG_MAX + 3):
        registry.set_alias(name, "challenger", 1, reason=f"move {i} " + "x" * 300)
    model = MlflowClient().get_registered_model(name)
    log = json.loads(model.tags["audit_log"])
    assert len(log) <= registry.AUDIT_LOG_MAX
    assert len(model.tags["audit_log"]) <= registry.TAG_VALUE_LIMIT
    assert [e["n"] for e in log] == sorted(registry.audit_trail(name)["seq"])[-len(log):]  # the newest, in order
    assert len(registry.audit_trail(name)) == registry.AUDIT_LOG_MAX + 3  # full detail stays on the version


def test_set_alias_needs_a_reason_and_an_existing_version(uris, name):
    registry.register(uris["good"], name)
    with pytest.raises(ValueError, match="reason"):
        registry.set_alias(name, "champion", 1, reason=" ")
    with pytest.raises(mlflow.exceptions.MlflowException):
        registry.set_alias(name, "champion", 7, reason="no such version")
    assert aliases(name) == {}


def test_register_refuses_when_mlflow_points_elsewhere(uris, name, tmp_path):
    platform_uri = mlflow.get_tracking_uri()
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # e.g. a notebook's own setting
        os.environ["MLFLOW_TRACKING_URI"] = platform_uri  # ...while the platform still names its own store
        with pytest.raises(registry.MlflowNotConfigured, match="configure_mlflow"):
            registry.register(uris["good"], name)
    finally:
        mlflow.set_tracking_uri(platform_uri)
        if env_before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_before
    assert registry.latest_version(name) is None  # refused before anything was registered


def test_a_writer_that_read_the_model_before_another_wrote_keeps_both_in_the_model_log(uris, name, monkeypatch):
    """The model's summary log: a writer that read the model, then let another writer finish, loses no entry."""
    registry.register(uris["good"], name)
    client = registry._client()
    real = type(client).get_registered_model
    calls = {"n": 0}

    def interleaved(self, model_name):
        calls["n"] += 1
        if calls["n"] == 1:  # the first writer has read the model; the second writes its whole entry now
            model = real(self, model_name)
            monkeypatch.setattr(type(client), "get_registered_model", real)
            registry._record(name, "1", "promote", "champion", "the job's deployment task", "job", None, None)
            monkeypatch.setattr(type(client), "get_registered_model", interleaved)
            return model
        return real(self, model_name)

    monkeypatch.setattr(type(client), "get_registered_model", interleaved)
    registry._record(name, "1", "rollback", "champion", "a notebook's rollback", "ada", None, None)
    monkeypatch.setattr(type(client), "get_registered_model", real)
    log = json.loads(MlflowClient().get_registered_model(name).tags[registry.AUDIT_LOG_TAG])
    assert [e["action"] for e in log][-2:] == ["promote", "rollback"], log


def test_two_writers_that_read_the_same_counter_both_stay_in_the_audit_trail(uris, name):
    """A deployment job's task and a notebook recording at once read the same ``audit_seq``: neither entry is lost."""
    registry.register(uris["good"], name)
    client = MlflowClient()
    client.set_registered_model_tag(name, registry.AUDIT_SEQ_TAG, "4")
    registry._record(name, "1", "promote", "champion", "the job's deployment task", "job", None, None)
    client.set_registered_model_tag(name, registry.AUDIT_SEQ_TAG, "4")  # the second writer read the counter before
    registry._record(name, "1", "rollback", "champion", "a notebook's rollback", "ada", None, None)
    trail = registry.audit_trail(name)
    assert list(trail["reason"]) == ["the job's deployment task", "a notebook's rollback"] and trail["seq"].is_unique
