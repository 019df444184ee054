"""The catch-up helper: builds what is missing, skips what exists, and says which is which."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import LATE_JOINER
from utils.catchup import catch_up, set_up
from utils.datagen import raw_manifest


def test_catch_up_builds_once_and_says_what_it_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_RAW_DIR", str(tmp_path / "raw"))
    first = catch_up("01", rows=300, seed=3)
    assert first == ["ensure_raw"] and raw_manifest() is not None
    assert "built 1 of 1 steps" in repr(first) and "raw files" in repr(first) and "built in" in repr(first)
    again = catch_up("01", rows=300, seed=3)
    assert again == [] and not again
    assert "nothing to build" in repr(again) and "already there" in repr(again)


def test_set_up_gives_the_session_and_config_with_mlflow_pointed_and_upstream_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    monkeypatch.setenv("MLOPS_RAW_DIR", str(tmp_path / "raw"))
    spark, cfg = set_up("01", rows=300, seed=3)
    assert spark.range(3).count() == 3 and raw_manifest() is not None
    assert "built 1 of 1 steps" in capsys.readouterr().out
    experiment = mlflow.get_experiment(mlflow.tracking.fluent._get_experiment_id())
    assert experiment.name.endswith(cfg.experiment_name)
    with pytest.raises(ValueError, match="unknown stage '07'"):
        set_up("07", rows=300, seed=3)


def test_catch_up_refuses_an_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage '07'"):
        catch_up("07", rows=300, seed=3)


def test_06_catch_up_logs_the_champions_batch_scores_when_there_is_no_inference_log(
        late_joiner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review R3: only 05 wrote the inference log, so 06 run alone stopped on Databricks where its data-profiling
    monitor is put on that table. Its catch-up now logs what 05's batch scoring would: the champion's score of
    every training-set impression, with the model and feature-table versions."""
    import json

    from tests.support import mlflow_restored, register_constant_model
    from utils import lakehouse
    from utils.catchup import STAGES, ensure_features, ensure_inference_log
    from utils.config import get_config
    from utils.plantly_features import training_set_table
    from utils.scoring import (
        feature_table_versions,
        inference_log_schema,
        inference_log_table,
        read_inference_log,
    )

    for key, value in LATE_JOINER.items():
        monkeypatch.setenv(key, value)
    cfg = get_config()
    assert STAGES["06"][-1] is ensure_inference_log, "after the champion it scores with"
    assert ensure_features(2000, 5, cfg) is False, "the late joiner's feature tables are there"
    with mlflow_restored():
        version, = register_constant_model(cfg.model_name, tmp_path, versions=1)  # the champion 03 leaves
        lakehouse.write(inference_log_schema().empty_table(), inference_log_table(cfg))  # as a 05 stopped early leaves it
        assert ensure_inference_log(2000, 5, cfg) is True
        assert ensure_inference_log(2000, 5, cfg) is False, "a log with rows is left alone"
    log = read_inference_log(cfg)
    training = lakehouse.read_pandas(training_set_table(cfg))
    assert len(log) == len(training) > 0 and set(log.event_id) == set(training.event_id.astype(str))
    assert set(log.source) == {"batch"} and set(log.model_version) == {version} and set(log.model_name) == {cfg.model_name}
    assert log.prediction.eq(0.5).all()
    assert json.loads(log.feature_versions.iloc[0]) == feature_table_versions(cfg)


def test_05_catch_up_publishes_the_feature_tables_online_once(late_joiner, monkeypatch: pytest.MonkeyPatch) -> None:
    """05's real-time requests read features online: its set-up publishes every table missing or stale there."""
    from utils.catchup import STAGES, ensure_online
    from utils.config import get_config
    from utils.local import online_store
    from utils.online_features import online_and_offline_versions
    from utils.plantly_features import feature_table_names
    from utils.platform import feature_client

    for key, value in LATE_JOINER.items():
        monkeypatch.setenv(key, value)
    cfg = get_config()
    assert STAGES["05"][-1] is ensure_online
    assert ensure_online(2000, 5, cfg) is True
    versions = online_and_offline_versions(cfg)
    assert versions and all(online == offline for online, offline in versions.values()), versions
    assert ensure_online(2000, 5, cfg) is False, "current online copies are left alone"
    customer = feature_table_names(cfg)["customer"]
    fe = feature_client()
    fe.write_table(name=customer, df=fe.read_table(name=customer).limit(1).toPandas())  # the offline side moves on
    assert ensure_online(2000, 5, cfg) is True
    assert online_store.online_table_info(customer).source_version == online_and_offline_versions(cfg)[customer][1]
