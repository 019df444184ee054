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
        invasive = frame["invasive"].fillna(True).astype(bool).to_numpy() if "invasive" in frame else np.zeros(len(frame), bool)
        return pd.Series(np.where(invasive, 0.0, scores), name="probability")


mlflow.models.set_model(InvasiveSafeRecommender())
