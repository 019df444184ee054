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


@pytest.mark.parametrize(("variable", "raw"), [("MLOPS_SEED", "seven"), ("MLOPS_SEED", "7.5"),
                                               ("MLOPS_THRESHOLD_PSI", "high"), ("MLOPS_THRESHOLD_GATE_MIN_AUC", "nan")])
def test_bad_environment_override_is_refused_naming_field_value_and_variable(monkeypatch: pytest.MonkeyPatch,
                                                                             variable: str, raw: str) -> None:
    from utils.parameters import ParameterError

    monkeypatch.setenv(variable, raw)
    with pytest.raises(ParameterError) as err:
        get_config()
    field = variable.removeprefix("MLOPS_THRESHOLD_").removeprefix("MLOPS_").lower()
    assert f"'{field}'" in str(err.value) and repr(raw) in str(err.value) and variable in str(err.value)


def test_whole_number_and_boolean_words_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SEED", "7.0")
    monkeypatch.setenv("MLOPS_THRESHOLD_PSI", "1")
    cfg = get_config()
    assert cfg.seed == 7 and type(cfg.seed) is int
    assert cfg.thresholds.psi == 1.0 and type(cfg.thresholds.psi) is float
