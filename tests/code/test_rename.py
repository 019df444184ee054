"""Template ergonomics: renaming the project in the config renames every table the pipeline creates."""

from __future__ import annotations

import pytest

from tests.support import LATE_JOINER


def test_config_rename_moves_every_table(late_joiner, monkeypatch: pytest.MonkeyPatch) -> None:
    from utils.catchup import ensure_silver
    from utils.config import get_config

    for key, value in LATE_JOINER.items():
        monkeypatch.setenv(key, value)
    cfg = get_config()
    assert late_joiner["built"] == (True, True), "the first calls built silver and the feature tables"
    created = late_joiner["created"]
    assert created and all(t.startswith("late.joiner.") for t in created), created
    for expected in ("silver_orders", "quarantine", "customer_features", "plant_activity_features"):
        assert f"late.joiner.{expected}" in created
    assert cfg.model_name == "late.joiner.late_recommender"
    assert ensure_silver(2000, 5, cfg) is False, "a second call finds the tables and builds nothing"
