"""The one config object: every name derives from a few roots, environment overrides apply."""

from __future__ import annotations

import pytest

from utils.config import Config, get_config


def test_defaults_build_three_level_names() -> None:
    cfg = Config()
    assert cfg.table("silver_orders") == "plantly.mlops.silver_orders"
    assert cfg.model_name == "plantly.mlops.plantly_recommender"


def test_environment_renames_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CATALOG", "acme")
    monkeypatch.setenv("MLOPS_SCHEMA", "recs")
    monkeypatch.setenv("MLOPS_MODEL_BASE_NAME", "acme_model")
    cfg = get_config()
    assert cfg.table("x") == "acme.recs.x"
    assert cfg.model_name == "acme.recs.acme_model"


def test_thresholds_override_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_THRESHOLD_PSI", "0.3")
    monkeypatch.setenv("MLOPS_SEED", "7")
    cfg = get_config()
    assert cfg.thresholds.psi == pytest.approx(0.3)
    assert cfg.seed == 7


def test_explicit_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CATALOG", "acme")
    assert get_config(catalog="other").catalog == "other"
