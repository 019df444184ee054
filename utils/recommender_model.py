"""The packaged recommender (MLflow models-from-code): a classifier plus the business rule it must obey.

Logged by ``utils.training.log_recommender``; MLflow copies this file into the model, so the rule
"never recommend an invasive species" travels with every copy of the model: the purchase score of
an invasive plant is always 0, whatever the classifier says.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


def _invasive_flags(frame: pd.DataFrame) -> np.ndarray:
    """True where the plant is invasive or its flag is unknown (the safe reading); rows without the column are not."""
    if "invasive" not in frame:
        return np.zeros(len(frame), dtype=bool)
    flag = frame["invasive"]
    return flag.isna().to_numpy() | flag.where(flag.notna(), False).astype(bool).to_numpy()


class InvasiveSafeRecommender(PythonModel):
    """Purchase probability per row, forced to 0 for invasive plants."""

    def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's context type
        self.classifier = mlflow.sklearn.load_model(context.artifacts["classifier"])
        self.columns = list(getattr(self.classifier, "feature_names_in_", []))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.Series:  # noqa: ANN001
        frame = pd.DataFrame(model_input)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"request is missing feature columns: {missing}")
        scores = self.classifier.predict_proba(frame[self.columns] if self.columns else frame)[:, 1]
        invasive = _invasive_flags(frame)
        return pd.Series(np.where(invasive, 0.0, scores), name="probability")


mlflow.models.set_model(InvasiveSafeRecommender())
