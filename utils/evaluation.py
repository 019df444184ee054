"""Model evaluation: MLflow evaluate with business metrics, SHAP explanations and Fairlearn fairness.

The business metrics are defined once here and used by notebooks 02, 03 and the retraining loop:
precision among the top-k scored impressions, and the expected revenue of the top-k (score × price).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

TOP_K_FRACTION = 0.05  # "top-k" = the best-scored 5% of impressions


def _top_k(scores: np.ndarray, fraction: float = TOP_K_FRACTION) -> np.ndarray:
    k = max(1, int(round(len(scores) * fraction)))
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]


def precision_at_k(y_true: np.ndarray, scores: np.ndarray, fraction: float = TOP_K_FRACTION) -> float:
    """Share of purchases among the top-``fraction`` scored impressions."""
    idx = _top_k(scores, fraction)
    return float(np.asarray(y_true, dtype=float)[idx].mean())


def revenue_at_k(y_true: np.ndarray, scores: np.ndarray, price: np.ndarray, fraction: float = TOP_K_FRACTION) -> float:
    """Revenue actually realised by the top-``fraction`` recommendations (price of those bought)."""
    idx = _top_k(scores, fraction)
    return float((np.asarray(y_true, dtype=float)[idx] * np.asarray(price, dtype=float)[idx]).sum())


def business_metrics() -> list[Any]:
    """The custom metrics as MLflow ``EvaluationMetric``s (they read the ``probability`` and ``price`` columns)."""
    from mlflow.metrics import MetricValue
    from mlflow.models import make_metric
    from sklearn.metrics import roc_auc_score

    def _auc(predictions: pd.Series, targets: pd.Series, probability: pd.Series) -> MetricValue:
        # MLflow first tries each custom metric on the first row alone: one class, where AUC is undefined (NaN).
        if targets.nunique() < 2:
            return MetricValue(aggregate_results={"auc": float("nan")})
        return MetricValue(aggregate_results={"auc": float(roc_auc_score(targets, probability))})

    def _p_at_k(predictions: pd.Series, targets: pd.Series, probability: pd.Series) -> MetricValue:
        return MetricValue(aggregate_results={"value": precision_at_k(targets.to_numpy(), probability.to_numpy())})

    def _rev_at_k(predictions: pd.Series, targets: pd.Series, probability: pd.Series, price: pd.Series) -> MetricValue:
        return MetricValue(aggregate_results={"value": revenue_at_k(targets.to_numpy(), probability.to_numpy(), price.to_numpy())})

    return [
        make_metric(eval_fn=_auc, greater_is_better=True, name="roc_auc"),
        make_metric(eval_fn=_p_at_k, greater_is_better=True, name="precision_at_5pct"),
        make_metric(eval_fn=_rev_at_k, greater_is_better=True, name="revenue_at_5pct"),
    ]


def evaluate_scores(frame: pd.DataFrame, label: str, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Run ``mlflow.models.evaluate`` on scored rows (in the active run) and return its metrics."""
    import mlflow

    if frame.empty:
        raise ValueError("cannot evaluate on an empty frame: check the time split and the data size")
    if label not in frame.columns:
        raise ValueError(f"label column {label!r} is missing from the evaluation frame (columns: {list(frame.columns)})")
    data = frame.copy()
    data["probability"] = np.asarray(probability, dtype=float)
    data["prediction"] = (data["probability"] >= threshold).astype(int)
    data[label] = data[label].astype(int)
    with warnings.catch_warnings():
        # MLflow hints that integer columns of the logged evaluation data cannot hold missing values at inference
        # time; this frame is never a model's input schema, so the hint does not apply.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        result = mlflow.models.evaluate(
            data=data, targets=label, predictions="prediction", model_type="classifier",
            extra_metrics=business_metrics(), evaluators=["default"],
        )
    import matplotlib.pyplot as plt

    plt.close("all")  # the evaluator's plots are logged as artifacts; do not echo them into notebooks
    return {k.replace("/value", "").replace("/auc", ""): float(v) for k, v in result.metrics.items()
            if isinstance(v, (int, float, np.floating))}


def shap_importance(pipeline: Any, X: pd.DataFrame, rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, Any]:
    """Mean |SHAP| per input column of a fitted pipeline, and the explanation on its encoded features.

    ``pipeline``: a fitted sklearn ``Pipeline`` whose last step is the classifier and whose earlier steps
    encode ``X`` (e.g. ``utils.training.build_pipeline``). SHAP runs on the classifier over the encoded
    matrix of ``rows`` rows sampled from ``X`` (tree or linear explainer, chosen by SHAP). Each encoded
    column's mean |SHAP| is credited to the input column the fitted encoder built it from
    (:func:`encoded_sources`: the encoder's own column mapping, never a name prefix) and summed there;
    an encoded column the encoder cannot trace to one input keeps its own name.
    Returns ``(importance, explanation)``: a frame ``feature, mean_abs_shap`` (most important first; in
    the units of the explained output: log-odds for logistic regression and gradient boosting, probability
    for a random forest) and the ``shap.Explanation`` of shape ``(rows, encoded columns)``, positive class.
    """
    import shap

    sample = X.sample(n=min(rows, len(X)), random_state=seed)
    encoder, clf = pipeline[:-1], pipeline[-1]
    names = [n.split("__", 1)[-1] for n in encoder.get_feature_names_out()]
    encoded = pd.DataFrame(np.asarray(encoder.transform(sample), dtype=float), columns=names)
    if hasattr(clf, "coef_"):
        explanation = shap.LinearExplainer(clf, encoded)(encoded)
    else:  # tree ensembles; HistGradientBoosting's binned thresholds break SHAP's exact additivity check
        explanation = shap.TreeExplainer(clf, encoded)(encoded, check_additivity=False)
    values = explanation.values
    if values.ndim == 3:  # per-class values: keep the positive class
        values = values[..., 1]
        explanation = explanation[..., 1]
    sources = encoded_sources(encoder, list(getattr(encoder, "feature_names_in_", X.columns)))
    owner = [src if src is not None else name for src, name in zip(sources, names, strict=True)]
    per_encoded = pd.Series(np.abs(values).mean(axis=0), index=pd.Index(owner, name="feature"))
    importance = (per_encoded.groupby(level="feature", sort=False).sum().sort_values(ascending=False, kind="stable")
                  .rename("mean_abs_shap").reset_index())
    return importance, explanation


def encoded_sources(step: Any, names_in: list[str]) -> list[str | None]:
    """For each output column of a fitted sklearn transformer, the input column it is built from (None if unknown).

    ``names_in``: the transformer's input column names, in order. Follows the fitted objects themselves:
    a ``Pipeline`` step by step, a ``ColumnTransformer`` through ``transformers_`` (each transformer's
    columns, in output order, ``"drop"`` skipped), a ``OneHotEncoder`` through its own
    ``get_feature_names_out`` with a ``feature_name_combiner`` that returns the input column, and any other
    transformer by its output names that equal an input name (one-to-one steps such as scalers, imputers,
    ``"passthrough"``). Outputs built from several inputs, or not named after one (a missing-value
    indicator, PCA), are None.
    """
    import copy

    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if step is None or (isinstance(step, str) and step == "passthrough"):
        return list(names_in)
    if isinstance(step, Pipeline):
        sources: list[str | None] = list(names_in)
        names = list(names_in)
        for _, inner in step.steps:
            if inner is None or (isinstance(inner, str) and inner == "passthrough"):
                continue
            position = {n: i for i, n in enumerate(names)}
            inner_sources = encoded_sources(inner, names)
            sources = [None if s is None else sources[position[s]] for s in inner_sources]
            names = list(inner.get_feature_names_out(names))
        return sources
    if isinstance(step, ColumnTransformer):
        out: list[str | None] = []
        for _, trans, cols in step.transformers_:
            if isinstance(trans, str) and trans == "drop":
                continue
            picked = [names_in[i] for i in _column_positions(cols, names_in)]
            if picked:
                out += encoded_sources(trans, picked)
        return out if len(out) == len(step.get_feature_names_out()) else [None] * len(step.get_feature_names_out())
    if isinstance(step, OneHotEncoder):
        probe = copy.copy(step)  # the fitted encoder, naming each output after its input column only
        probe.feature_name_combiner = lambda feature, category: str(feature)
        return [str(n) for n in probe.get_feature_names_out(names_in)]
    known = set(names_in)
    return [str(n) if str(n) in known else None for n in step.get_feature_names_out(names_in)]


def _column_positions(cols: Any, names_in: list[str]) -> list[int]:
    """Positions in ``names_in`` of a ``ColumnTransformer`` column selection (names, indices, mask or slice)."""
    if isinstance(cols, slice) and (isinstance(cols.start, str) or isinstance(cols.stop, str)):  # by name, inclusive
        start = names_in.index(cols.start) if cols.start is not None else 0
        stop = names_in.index(cols.stop) + 1 if cols.stop is not None else len(names_in)
        return list(range(start, stop))
    if isinstance(cols, slice):
        return list(range(len(names_in)))[cols]
    if isinstance(cols, (str, int, np.integer)):
        cols = [cols]
    picked = list(cols)
    if picked and all(isinstance(c, (bool, np.bool_)) for c in picked):
        return [i for i, keep in enumerate(picked) if keep]
    return [names_in.index(c) if isinstance(c, str) else int(c) for c in picked]


class UndefinedRateWarning(UserWarning):
    """A per-group rate has no denominator in a group (e.g. a true-positive rate where the group has no positives)."""


# Rate -> the rows its denominator counts (sklearn's recall with zero_division=nan gives NaN without them).
_RATE_DENOMINATOR = {"tpr": "positive labels", "fpr": "negative labels"}


def _true_positive_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """TP / (TP + FN); NaN when there are no positive labels."""
    from sklearn.metrics import recall_score

    return float(recall_score(y_true, y_pred, pos_label=1, labels=[0, 1], zero_division=np.nan))


def _false_positive_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """FP / (FP + TN) = 1 - specificity; NaN when there are no negative labels."""
    from sklearn.metrics import recall_score

    return float(1.0 - recall_score(y_true, y_pred, pos_label=0, labels=[0, 1], zero_division=np.nan))


def fairness_by_group(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.Series) -> tuple[pd.DataFrame, dict[str, float | int]]:
    """Fairlearn ``MetricFrame`` by group (selection rate, TPR, FPR, accuracy) and disparity summaries.

    ``y_true`` and ``y_pred`` are 0/1 arrays of one length, ``sensitive`` the group of each row.
    A rate whose denominator is empty in a group (TPR where the group has no positive labels, FPR where
    it has no negatives) is undefined: it is NaN in the table and an ``UndefinedRateWarning`` names the
    group, never a 0 that would read as the worst value. The summaries are Fairlearn's definitions
    (demographic parity difference = max - min selection rate across groups; equalized odds difference
    = the larger of the TPR and FPR ranges, Hardt et al. 2016) computed over the groups where each rate
    is defined; ``tpr_groups_defined`` / ``fpr_groups_defined`` say over how many of ``groups`` (these three
    are ``int`` counts, the rest ``float``). A range over fewer than two defined groups is NaN.
    """
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        selection_rate,
    )
    from sklearn.metrics import accuracy_score

    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": _true_positive_rate, "fpr": _false_positive_rate,
                 "accuracy": accuracy_score},
        y_true=y_true, y_pred=y_pred, sensitive_features=sensitive,
    )
    by_group = frame.by_group
    summary = {
        "demographic_parity_difference": float(demographic_parity_difference(y_true, y_pred, sensitive_features=sensitive)),
        "groups": len(by_group),
    }
    ranges = {}
    for rate, needs in _RATE_DENOMINATOR.items():
        values = by_group[rate].astype(float)
        undefined = [str(g) for g in values.index[values.isna()]]
        defined = values.dropna()
        summary[f"{rate}_groups_defined"] = len(defined)
        ranges[rate] = float(defined.max() - defined.min()) if len(defined) >= 2 else float("nan")
        if undefined:
            warnings.warn(f"{rate} is undefined for group(s) {undefined} of {getattr(sensitive, 'name', None) or 'the sensitive feature'} "
                          f"(no {needs} there): reported as NaN; summary differences use the {len(defined)} of "
                          f"{len(values)} groups where it is defined", UndefinedRateWarning, stacklevel=2)
    summary["equalized_odds_difference"] = float(np.nanmax(list(ranges.values()))) if any(
        not np.isnan(v) for v in ranges.values()) else float("nan")
    return by_group, summary


def compare_decisions(decisions: dict[str, tuple[np.ndarray, np.ndarray]], y_true: np.ndarray, sensitive: pd.Series,
                      y_fit: np.ndarray, sensitive_fit: pd.Series) -> pd.DataFrame:
    """One row per decision rule: selection rate, balanced accuracy and demographic parity difference.

    ``decisions`` maps a name to ``(decisions on the evaluation rows, decisions on the rows a mitigation was
    fitted on)``, each a 0/1 array aligned with ``y_true`` / ``sensitive`` and ``y_fit`` / ``sensitive_fit``.
    Columns: ``selection_rate`` (share of 1s), ``balanced_accuracy`` (mean of TPR and TNR, scikit-learn's
    ``balanced_accuracy_score``), ``dp_difference`` and ``dp_difference_train`` (Fairlearn's demographic parity
    difference, max - min selection rate across groups, on the evaluation and the fitted rows). Balanced
    accuracy, not accuracy: at a 10 % positive rate, selecting no one has 90 % accuracy. Raises ValueError
    when an array's length does not match its labels.
    """
    from fairlearn.metrics import demographic_parity_difference
    from sklearn.metrics import balanced_accuracy_score

    rows = {}
    for name, (pred, pred_fit) in decisions.items():
        pred, pred_fit = np.asarray(pred).astype(int), np.asarray(pred_fit).astype(int)
        if len(pred) != len(y_true) or len(pred_fit) != len(y_fit):
            raise ValueError(f"{name}: {len(pred)} and {len(pred_fit)} decisions for {len(y_true)} and {len(y_fit)} labels")
        rows[name] = {
            "selection_rate": float(pred.mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
            "dp_difference": float(demographic_parity_difference(y_true, pred, sensitive_features=sensitive)),
            "dp_difference_train": float(demographic_parity_difference(y_fit, pred_fit, sensitive_features=sensitive_fit)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def top_k_decisions(scores: np.ndarray, fraction: float = TOP_K_FRACTION) -> np.ndarray:
    """1 for impressions the model would recommend (its top ``fraction``), else 0."""
    decision = np.zeros(len(scores), dtype=int)
    decision[_top_k(scores, fraction)] = 1
    return decision
