"""Helpers shared by several test modules (not fixtures: plain functions and context managers)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def table(schema: str, name: str) -> str:
    """``<catalog>.<schema>.<name>`` in the configured catalog (the project's name, or ``MLOPS_CATALOG``): a table's
    or a registered model's three-level name.

    The local engine answers to the configured catalog only, so a test's tables go there whatever the project is called.
    """
    from utils.config import get_config

    return f"{get_config().catalog}.{schema}.{name}"


def pandas_training_frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated training frame without Spark (profile features joined in pandas, activity at 0), split in time."""
    from utils.datagen import GeneratorSpec, generate
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


def publish_tiny_online_store(activity_source_version: int | None = None) -> None:
    """Customers C1, C2 and plants P1, P2 (P2 invasive) in the online store; activity for C1 and P1 only.

    ``activity_source_version`` is the Delta version the customer-activity table claims to come from.
    """
    from utils.local import online_store
    from utils.plantly_features import feature_table_names

    t = feature_table_names()
    online_store.publish(pd.DataFrame({"customer_id": ["C1", "C2"], "region": ["north", "south"],
                                       "age_band": ["25-34", "55+"], "device": ["mobile", "desktop"],
                                       "tenure_days": [100, 5]}), t["customer"], ["customer_id"])
    online_store.publish(pd.DataFrame({"customer_id": ["C1"], "feature_ts": [pd.Timestamp("2024-01-02", tz="UTC")],
                                       "cust_impressions_30d": [7], "cust_purchase_rate_30d": [0.25]}),
                         t["customer_activity"], ["customer_id", "feature_ts"], "feature_ts",
                         source_version=activity_source_version)
    online_store.publish(pd.DataFrame({"plant_id": ["P1", "P2"], "category": ["fern", "vine"],
                                       "care_level": ["easy", "hard"], "light_needs": ["shade", "sun"],
                                       "invasive": [False, True]}), t["plant"], ["plant_id"])
    online_store.publish(pd.DataFrame({"plant_id": ["P1"], "feature_ts": [pd.Timestamp("2024-01-02", tz="UTC")],
                                       "plant_impressions_30d": [40], "plant_purchase_rate_30d": [0.1]}),
                         t["plant_activity"], ["plant_id", "feature_ts"], "feature_ts")


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
