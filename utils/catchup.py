"""Catch-up helpers: build whatever upstream state a notebook needs, so any notebook runs alone.

A workshop attendee who joins at notebook 04 calls ``catch_up("04")`` and gets the raw data,
tables, features and models the earlier notebooks would have produced. Each step is skipped when
its output already exists, so calling it after running the earlier notebooks costs almost nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from utils.config import Config, get_config


def ensure_raw(rows: int, seed: int, scenario: str = "baseline", bad_fraction: float = 0.01) -> bool:
    """Land the raw files unless some are already there; True when it generated them."""
    from utils.datagen import land_raw_files, raw_manifest
    from utils.plantly_shop import GeneratorSpec

    if raw_manifest() is not None:
        return False
    land_raw_files(GeneratorSpec(rows=rows, seed=seed, scenario=scenario, bad_fraction=bad_fraction))
    return True


def ensure_silver(rows: int, seed: int, cfg: Config | None = None) -> bool:
    """Ingest raw → bronze → silver unless the silver tables exist; True when it ingested."""
    from utils import lakehouse
    from utils.ingest import INGEST_ORDER, ingest, quarantine_table, silver_table

    cfg = cfg or get_config()
    needed = [silver_table(s, cfg) for s in INGEST_ORDER] + [quarantine_table(cfg)]
    if all(lakehouse.exists(t) for t in needed):
        return False
    ensure_raw(rows, seed)
    ingest(cfg=cfg)
    return True


def ensure_features(rows: int, seed: int, cfg: Config | None = None) -> bool:
    """Build the feature tables unless they exist; True when it built them."""
    from utils import lakehouse
    from utils.plantly_features import build_feature_tables, feature_table_names
    from utils.platform import feature_client

    cfg = cfg or get_config()
    if all(lakehouse.exists(t) for t in feature_table_names(cfg).values()):
        return False
    ensure_silver(rows, seed, cfg)
    build_feature_tables(feature_client(), cfg)
    return True


def ensure_model(rows: int, seed: int, cfg: Config | None = None) -> bool:
    """Train, register and gate a champion unless the registry has one (``utils.retraining.retrain_and_gate``,
    the model family picked on the data); True when it trained. Raises ``RuntimeError`` when it fails the gate.
    """
    from utils import registry
    from utils.platform import configure_mlflow
    from utils.retraining import retrain_and_gate

    cfg = cfg or get_config()
    configure_mlflow()
    if registry.get_alias_version(cfg.model_name, cfg.champion_alias) is not None:
        return False
    ensure_features(rows, seed, cfg)
    outcome = retrain_and_gate(seed, "the first model, built by the catch-up helper", cfg=cfg, run_name="catch-up",
                               test_fraction=0.2, trigger="catch-up")
    if not outcome["gate_passed"]:
        raise RuntimeError(f"the catch-up model failed the validation gate:\n{outcome['gate_summary']}")
    return True


def ensure_inference_log(rows: int, seed: int, cfg: Config | None = None) -> bool:
    """Log the champion's scores of the training set to the inference log unless it has rows; True when it logged.

    Notebook 05 writes the inference log (endpoint, batch and streaming predictions) and 06 monitors it (on
    Databricks it puts a data-profiling monitor on it), so a late joiner at 06 gets what 05's batch scoring
    would have logged: one ``batch`` prediction per training-set impression, with the champion's version and
    the feature tables' versions.
    """
    import mlflow

    from utils import lakehouse, registry
    from utils.feature_types import features_frame
    from utils.plantly_features import (
        load_training_frame,
        materialize_training_set,
        training_set_table,
    )
    from utils.platform import feature_client
    from utils.scoring import inference_log_table, log_predictions
    from utils.training import scoring_model_uri

    cfg = cfg or get_config()
    if lakehouse.exists(inference_log_table(cfg)) and lakehouse.read(inference_log_table(cfg)).limit(1).count():
        return False  # an empty log (a 05 stopped before it scored) is filled like a missing one
    ensure_model(rows, seed, cfg)
    if not lakehouse.exists(training_set_table(cfg)):
        materialize_training_set(feature_client(), cfg)
    champion = registry.get_alias_version(cfg.model_name, cfg.champion_alias)
    frame = load_training_frame(cfg=cfg)
    model = mlflow.pyfunc.load_model(scoring_model_uri(f"models:/{cfg.model_name}/{champion.version}"))
    inputs = features_frame(frame)
    log_predictions(frame, model.predict(inputs), source="batch", model_version=champion.version, cfg=cfg,
                    request_id="catch-up", inputs=inputs)
    return True


def ensure_online(rows: int, seed: int, cfg: Config | None = None) -> bool:
    """Publish the feature tables missing or stale online (05's real-time requests read them there); True if any."""
    from utils.online_features import (
        ensure_online_features,
        online_and_offline_versions,
    )

    ensure_features(rows, seed, cfg)
    stale = [t for t, (online, offline) in online_and_offline_versions(cfg).items() if online is None or online < offline]
    if stale:
        ensure_online_features(cfg)
    return bool(stale)


STAGES: dict[str, list[Callable[..., bool]]] = {
    "01": [ensure_raw],
    "02": [ensure_raw, ensure_silver, ensure_features],
    "03": [ensure_raw, ensure_silver, ensure_features],
    "04": [ensure_raw, ensure_silver, ensure_features, ensure_model],
    "05": [ensure_raw, ensure_silver, ensure_features, ensure_model, ensure_online],
    "06": [ensure_raw, ensure_silver, ensure_features, ensure_model, ensure_inference_log],
}


WHAT = {
    "ensure_raw": "raw files (clickstream, customers, plants, orders)",
    "ensure_silver": "bronze, silver and quarantine tables",
    "ensure_features": "feature tables",
    "ensure_model": "a champion model that passed the gate",
    "ensure_online": "the feature tables' online copies",
    "ensure_inference_log": "an inference log (the champion's batch scores)",
}


class CatchUpReport(list):
    """The names of the steps that ran (a list), with a readable account of every step in ``details``."""

    def __init__(self, stage: str, details: list[dict[str, object]]) -> None:
        super().__init__(d["step"] for d in details if d["built"])
        self.stage = stage
        self.details = details

    def __repr__(self) -> str:
        lines = [f"catch-up for notebook {self.stage}: "
                 + (f"built {len(self)} of {len(self.details)} steps" if self else "nothing to build, all upstream state exists")]
        for d in self.details:
            state = f"built in {d['seconds']:.1f} s" if d["built"] else "already there"
            lines.append(f"  {d['what']:<52} {state}")
        return "\n".join(lines)


def catch_up(stage: str, rows: int, seed: int) -> CatchUpReport:
    """Run every missing upstream step for notebook ``stage`` (e.g. "02"); the report lists what it built."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected one of {sorted(STAGES)}")
    from utils.progress import progress

    details = []
    for step in progress(STAGES[stage], f"catch-up for {stage}: checking upstream state"):
        start = time.perf_counter()
        built = step(rows, seed)
        details.append({"step": step.__name__, "what": WHAT.get(step.__name__, step.__name__), "built": built,
                        "seconds": time.perf_counter() - start})
    return CatchUpReport(stage, details)


def set_up(stage: str, rows: int, seed: int) -> tuple[Any, Config]:
    """A notebook's set-up after its parameters: returns ``(spark, cfg)``, the Spark session and the config.

    On the way it points MLflow at the platform's tracking server and registry with the config's
    experiment active (``utils.platform.configure_mlflow``), so ``mlflow.search_runs()`` and
    ``mlflow.start_run()`` use it, and runs every missing upstream step for notebook ``stage``
    (:func:`catch_up`), printing what it built. On Databricks the session is the notebook's own ``spark``.
    Raises ``ValueError`` for an unknown ``stage``.
    """
    from utils.platform import configure_mlflow, get_spark

    spark = get_spark()
    configure_mlflow()
    print(catch_up(stage, rows, seed))
    return spark, get_config()
