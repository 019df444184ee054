"""Helpers shared by several test modules (not fixtures: plain functions and context managers)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pandas as pd


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
