"""Template ergonomics: renaming the project in the config renames every table the pipeline creates."""

from __future__ import annotations

import pytest


def test_config_rename_moves_every_table(spark, monkeypatch: pytest.MonkeyPatch) -> None:
    from utils import lakehouse
    from utils.catchup import ensure_features, ensure_silver
    from utils.config import get_config

    monkeypatch.setenv("MLOPS_CATALOG", "acme")
    monkeypatch.setenv("MLOPS_SCHEMA", "recs")
    monkeypatch.setenv("MLOPS_MODEL_BASE_NAME", "acme_recommender")
    cfg = get_config()
    before = set(lakehouse.list_tables())
    assert ensure_silver(2000, 5, cfg) is True
    assert ensure_features(2000, 5, cfg) is True
    created = sorted(set(lakehouse.list_tables()) - before)
    assert created and all(t.startswith("acme.recs.") for t in created), created
    for expected in ("silver_orders", "quarantine", "customer_features", "plant_activity_features"):
        assert f"acme.recs.{expected}" in created
    assert cfg.model_name == "acme.recs.acme_recommender"
    assert ensure_silver(2000, 5, cfg) is False, "a second call finds the tables and builds nothing"
