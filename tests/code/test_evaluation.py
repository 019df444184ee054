"""SHAP importance: each encoded column is credited to the input column the fitted encoder built it from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from utils.evaluation import shap_importance

CLASSIFIERS = {
    "linear": lambda: LogisticRegression(max_iter=1000),
    "tree": lambda: HistGradientBoostingClassifier(max_iter=50, random_state=0),
}


def _pipeline(categorical: list[str], numeric: list[str], classifier: str) -> Pipeline:
    """The shape of ``utils.training.build_pipeline``: one-hot categoricals, impute + scale numerics."""
    features = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
    ])
    return Pipeline([("features", features), ("classifier", CLASSIFIERS[classifier]())])


@pytest.mark.parametrize("classifier", sorted(CLASSIFIERS))
def test_numeric_column_named_like_a_categorical_keeps_its_importance(classifier):
    """Issue 34: `plant_impressions_30d` starts with `plant_`, the prefix of `plant`'s one-hot columns."""
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame({
        "plant": rng.choice(["fern", "cactus", "palm", "orchid"], n),
        "plant_impressions_30d": rng.poisson(20, n).astype(float),
    })
    y = (X["plant_impressions_30d"] + rng.normal(0, 2, n) > 20).astype(int)  # the label ignores `plant`
    model = _pipeline(["plant"], ["plant_impressions_30d"], classifier).fit(X, y)
    importance, explanation = shap_importance(model, X, rows=300, seed=0)
    share = importance.set_index("feature")["mean_abs_shap"] / importance["mean_abs_shap"].sum()
    assert set(share.index) == {"plant", "plant_impressions_30d"}
    assert share["plant_impressions_30d"] > 0.8
    assert explanation.values.shape == (300, 5)  # four one-hot columns and the numeric one


def test_categorical_columns_sharing_a_prefix_are_told_apart():
    """Within one encoder: `plant`'s category `type_tree` and `plant_type`'s `tree` are both `plant_type_tree`."""
    rng = np.random.default_rng(1)
    n = 2000
    X = pd.DataFrame({
        "plant": rng.choice(["type_tree", "fern"], n),
        "plant_type": rng.choice(["tree", "herb"], n),
        "price": rng.normal(30, 5, n),
    })
    y = (X["plant_type"] == "tree").astype(int) ^ (rng.random(n) < 0.05)  # only `plant_type` matters
    model = _pipeline(["plant", "plant_type"], ["price"], "linear").fit(X, y)
    importance, _ = shap_importance(model, X, rows=300, seed=0)
    share = importance.set_index("feature")["mean_abs_shap"] / importance["mean_abs_shap"].sum()
    assert set(share.index) == {"plant", "plant_type", "price"}
    assert share["plant_type"] > 0.8
