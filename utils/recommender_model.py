"""The packaged recommender (MLflow models-from-code): a classifier plus the business rule it must obey.

Logged by ``utils.training.log_recommender``; MLflow copies this file into the model, so the rule
"never recommend an invasive species" travels with every copy of the model: the purchase score of
an invasive plant, or of one whose flag is unknown, is always 0, whatever the classifier says.

Every request, whichever path it came by (in process, REST, batch, streaming, the router), is
converted here by ``utils.feature_types.features_frame``, the same function training used: nulls are
filled alike for every model family, integers of any width and whole-number floats are accepted,
and a value of the wrong type or one float64 cannot hold exactly is refused naming its column.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class InvasiveSafeRecommender(PythonModel):
    """Purchase probability per row, forced to 0 for invasive plants and plants whose flag is unknown."""

    def load_context(self, context) -> None:
        self.classifier = mlflow.sklearn.load_model(context.artifacts["classifier"])
        self.columns = list(getattr(self.classifier, "feature_names_in_", []))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.Series:
        """One probability per row of ``model_input`` (a DataFrame of the 15 feature columns; extra columns ignored).

        Raises ``MlflowException`` (INVALID_PARAMETER_VALUE, a 400 when served) for a missing column or a
        value of the wrong type; the message names the column.
        """
        from mlflow.exceptions import MlflowException

        from utils.feature_types import (
            FeatureTypeError,
            features_frame,
            invasive_or_unknown,
        )
        from utils.plantly_columns import FEATURES

        frame = pd.DataFrame(model_input)
        missing = [c for c in (self.columns or FEATURES) if c not in frame.columns]
        if missing:
            raise MlflowException.invalid_parameter_value(f"request is missing feature columns: {missing}")
        try:
            unsafe = invasive_or_unknown(frame["invasive"])
            X = features_frame(frame)
        except FeatureTypeError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        scores = self.classifier.predict_proba(X[self.columns] if self.columns else X)[:, 1]
        return pd.Series(np.where(unsafe, 0.0, scores), name="probability", index=range(len(frame)))


mlflow.models.set_model(InvasiveSafeRecommender())
