"""Helpers shared by several test modules (not fixtures: plain functions and context managers)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

LATE_JOINER = {"MLOPS_CATALOG": "late", "MLOPS_SCHEMA": "joiner", "MLOPS_MODEL_BASE_NAME": "late_recommender"}
"""Another project's names, under which the ``late_joiner`` fixture (``tests/conftest.py``) builds the example's tables."""


def table(schema: str, name: str) -> str:
    """``<catalog>.<schema>.<name>`` in the configured catalog (the project's name, or ``MLOPS_CATALOG``): a table's
    or a registered model's three-level name.

    The local engine answers to the configured catalog only, so a test's tables go there whatever the project is called.
    """
    from utils.config import get_config

    return f"{get_config().catalog}.{schema}.{name}"


def pandas_training_frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated training frame without Spark (profile features joined in pandas, activity at 0), split in time."""
    from utils.plantly_shop import GeneratorSpec
    from utils.plantly_simulation import generate
    from utils.training import time_split

    f = generate(GeneratorSpec(rows=rows, seed=seed))
    df = (f["impressions"].merge(f["customers"], on="customer_id")
          .merge(f["plants"].drop(columns=["price", "name", "species", "stock"]), on="plant_id"))
    for c in ("cust_impressions_30d", "cust_purchase_rate_30d", "plant_impressions_30d", "plant_purchase_rate_30d"):
        df[c] = 0.0
    return time_split(df)


@contextlib.contextmanager
def mlflow_restored() -> Iterator[None]:
    """Leave MLflow as the other tests expect it afterwards: their tracking store, registry and experiment."""
    import mlflow
    from mlflow.tracking import fluent

    # The URIs as configured (environment), not as resolved: resolving an unset URI gives MLflow's default
    # store in the working directory, and setting that would leak into every later test.
    before = (os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"), fluent._active_experiment_id,
              os.environ.get("MLFLOW_EXPERIMENT_ID"))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        if before[1] is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)
        fluent._active_experiment_id = before[2]
        if before[3] is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = before[3]


def tiny_features() -> dict[str, tuple[pd.DataFrame, list[str], str | None]]:
    """Per feature-table kind: its rows, primary keys and timeseries column. Customers C1, C2 and plants P1, P2
    (P2 invasive); activity for C1 and P1 only, C1's twice (the latest row is the one of 2024-01-02)."""
    day = lambda d: pd.Timestamp(d, tz="UTC")  # noqa: E731
    return {
        "customer": (pd.DataFrame({"customer_id": ["C1", "C2"], "region": ["north", "south"], "age_band": ["25-34", "55+"],
                                   "device": ["mobile", "desktop"], "tenure_days": [100, 5]}), ["customer_id"], None),
        "customer_activity": (pd.DataFrame({"customer_id": ["C1", "C1"], "feature_ts": [day("2024-01-01"), day("2024-01-02")],
                                            "cust_impressions_30d": [1, 7], "cust_purchase_rate_30d": [0.9, 0.25]}),
                              ["customer_id", "feature_ts"], "feature_ts"),
        "plant": (pd.DataFrame({"plant_id": ["P1", "P2"], "category": ["fern", "vine"], "care_level": ["easy", "hard"],
                                "light_needs": ["shade", "sun"], "invasive": [False, True]}), ["plant_id"], None),
        "plant_activity": (pd.DataFrame({"plant_id": ["P1"], "feature_ts": [day("2024-01-02")], "plant_impressions_30d": [40],
                                         "plant_purchase_rate_30d": [0.1]}), ["plant_id", "feature_ts"], "feature_ts"),
    }


def publish_tiny_online_store(activity_source_version: int | None = None) -> None:
    """The :func:`tiny_features` in the online store (the latest row per key).

    ``activity_source_version`` is the Delta version the customer-activity table claims to come from.
    """
    from utils.local import online_publish
    from utils.plantly_features import feature_table_names

    names = feature_table_names()
    for kind, (frame, keys, series) in tiny_features().items():
        online_publish.publish(frame, names[kind], keys, series,
                               source_version=activity_source_version if kind == "customer_activity" else None)


def write_tiny_feature_tables(cfg: Any) -> dict[str, int]:
    """The :func:`tiny_features` as the Delta feature tables of ``cfg``; returns each table's version."""
    from utils import lakehouse
    from utils.plantly_features import feature_table_names

    names = feature_table_names(cfg)
    return {names[kind]: lakehouse.write(frame, names[kind], mode="overwrite")
            for kind, (frame, _, _) in tiny_features().items()}


@contextlib.contextmanager
def own_state(state: Path, monkeypatch: Any) -> Iterator[Path]:
    """Point tables, raw files and MLflow at ``state`` for one test (``monkeypatch`` undoes the env); MLflow restored after."""
    from utils.platform import configure_mlflow

    monkeypatch.setenv("MLOPS_STATE_DIR", str(state))
    monkeypatch.setenv("MLOPS_RAW_DIR", str(state / "raw"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with mlflow_restored():
        configure_mlflow()
        yield state


@contextlib.contextmanager
def own_schema(folder: Path, monkeypatch: Any, mlflow_store: Path | None = None) -> Iterator[Path]:
    """A schema and an MLflow store of one test's own, on the session's warm engine (``monkeypatch`` undoes the env).

    The schema is new and empty (``MLOPS_SCHEMA``); MLflow's SQLite store is ``folder/mlflow`` (a copy of
    ``mlflow_store`` when given: a fresh store costs seconds of migrations). A state folder of the test's own
    (:func:`own_state`) would start an engine of its own: a cold JVM for every test.
    """
    import shutil
    import uuid

    from utils.platform import configure_mlflow

    if mlflow_store is not None:
        shutil.copytree(mlflow_store, folder / "mlflow")
    (folder / "mlflow").mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLOPS_SCHEMA", f"test_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    with mlflow_restored():
        configure_mlflow()
        yield folder


def register_constant_model(name: str, folder: Path, versions: int = 2) -> list[str]:
    """Register ``versions`` versions of a tiny pyfunc model that answers 0.5 for every row; aliases
    ``champion`` (first) and ``challenger`` (last) are set. Returns the version numbers."""
    import mlflow

    from utils import registry
    from utils.platform import configure_mlflow

    configure_mlflow("test-deploy")
    code = folder / f"const_model_{name.replace('.', '_')}.py"
    code.write_text("import mlflow\nimport pandas as pd\n"
                    "class M(mlflow.pyfunc.PythonModel):\n"
                    "    def predict(self, context, model_input, params=None):\n"
                    "        return pd.Series([0.5] * len(model_input))\n"
                    "mlflow.models.set_model(M())\n")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="m", python_model=str(code), pip_requirements=["mlflow"])
    numbers = [str(registry.register(info.model_uri, name=name).version) for _ in range(versions)]
    registry.set_alias(name, "champion", numbers[0], "first")
    registry.set_alias(name, "challenger", numbers[-1], "second")
    return numbers
