"""Model quality per time window (concept drift, once late labels are merged into the inference log), computed with
Spark aggregations: only per-window sums reach the driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from utils.monitoring_inputs import column_type, is_numeric, require_columns, window_column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

QUALITY_COLUMNS: tuple[str, ...] = (
    "window_start", "window_end", "count", "n_labeled", "positives", "observed_rate", "mean_predicted",
    "auc", "precision", "recall", "f1", "accuracy", "brier", "ece", "threshold",
)


def model_quality_by_window(df: DataFrame, label_col: str, score_col: str, window_col: str, window: str = "1 day",
                            threshold: float = 0.5, *, ece_bins: int = 10) -> pd.DataFrame:
    """Per time window (:data:`QUALITY_COLUMNS`): AUC, precision, recall, F1, accuracy, Brier score and ECE.

    Only rows with both a label (0/1) and a score count as labeled; windows whose labels have not
    arrived yet appear with ``n_labeled == 0`` and NaN metrics. AUC is the Mann-Whitney statistic
    (ties count half), equal to ``sklearn.metrics.roc_auc_score``; precision is NaN with no predicted
    positive, AUC NaN with one class. ECE: ``sum(n_b / n * |mean score_b - positive rate_b|)``
    over ``ece_bins`` equal-width score bins. ``window_start`` / ``window_end`` are the window's bounds clipped
    to the data's first and last timestamp, so one window over everything reports the span the rows cover;
    windows without rows do not appear. ``ValueError`` for a label other than 0/1, a score outside [0, 1] and
    the input errors of :func:`_check_quality_inputs`.
    """
    from pyspark.sql import functions as F

    ts = _check_quality_inputs(df, label_col, score_col, window_col, threshold, ece_bins)
    base = df.select(
        F.window(ts, window).alias("window"),
        F.unix_micros(ts).alias("t"),
        F.col(label_col).cast("double").alias("y"),
        F.col(score_col).cast("double").alias("s"),
    )
    labeled = F.col("y").isNotNull() & F.col("s").isNotNull()
    y, s = F.col("y"), F.col("s")
    pred = (s >= threshold).cast("double")
    counts = base.groupBy("window").agg(
        F.count(F.lit(1)).alias("count"),
        F.min("t").alias("t_min"),
        F.max("t").alias("t_max"),
        F.count(F.when(labeled, 1)).alias("n_labeled"),
        F.count(F.when(y.isNotNull() & ~y.isin(0.0, 1.0), 1)).alias("bad_labels"),
        F.min(F.when(labeled, s)).alias("s_min"),
        F.max(F.when(labeled, s)).alias("s_max"),
        F.sum(F.when(labeled, y)).alias("positives"),
        F.avg(F.when(labeled, s)).alias("mean_predicted"),
        F.sum(F.when(labeled, y * pred)).alias("tp"),
        F.sum(F.when(labeled, (1 - y) * pred)).alias("fp"),
        F.sum(F.when(labeled, y * (1 - pred))).alias("fn"),
        F.avg(F.when(labeled, (s - y) * (s - y))).alias("brier"),
    ).select(F.unix_micros("window.start").alias("ws"), F.unix_micros("window.end").alias("we"), "*").drop("window")
    stats = counts.toPandas()
    if stats.empty:
        return pd.DataFrame(columns=list(QUALITY_COLUMNS))
    _check_labels_and_scores(stats, label_col, score_col)
    out = stats.merge(_auc_and_ece(base.where(labeled), ece_bins), on="ws", how="left").sort_values("ws")
    return _quality_frame(out, threshold)


def _check_quality_inputs(df: DataFrame, label_col: str, score_col: str, window_col: str, threshold: float,
                          ece_bins: int) -> Column:
    """Raise ``ValueError`` for a missing or non-numeric label or score column, a threshold outside [0, 1] or
    fewer than one ECE bin; returns the window column as a timestamp."""
    require_columns(df, [label_col, score_col], "scored")
    for c in (label_col, score_col):
        if not is_numeric(column_type(df, c)):
            raise ValueError(f"column {c!r} is {column_type(df, c).simpleString()}; labels must be 0/1 and scores numbers in [0, 1]")
    ts = window_column(df, window_col)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    if ece_bins < 1:
        raise ValueError(f"ece_bins must be >= 1, got {ece_bins}")
    return ts


def _check_labels_and_scores(stats: pd.DataFrame, label_col: str, score_col: str) -> None:
    """Raise ``ValueError`` when the per-window sums show a label other than 0/1 or a score outside [0, 1]."""
    bad = int(stats["bad_labels"].sum())
    if bad:
        raise ValueError(f"label column {label_col!r} has {bad} value(s) other than 0/1; map the labels to 0/1 first")
    lo, hi = stats["s_min"].min(), stats["s_max"].max()
    if (pd.notna(lo) and lo < 0) or (pd.notna(hi) and hi > 1):
        raise ValueError(
            f"score column {score_col!r} has values outside [0, 1] (min {lo}, max {hi}); "
            "pass the positive-class probability, not a margin or a label"
        )


def _auc_and_ece(lab: DataFrame, ece_bins: int) -> pd.DataFrame:
    """Per window start ``ws`` (microseconds) of the labeled rows (``y`` 0/1, score ``s``): the Mann-Whitney
    ``u`` (ties count half) and ``ece_abs``, the sum over ``ece_bins`` equal-width score bins of
    ``|sum of scores - sum of labels|``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    per_score = lab.groupBy("window", "s").agg(F.sum("y").alias("pos"), F.sum(1 - F.col("y")).alias("neg"))
    below = Window.partitionBy("window").orderBy("s").rowsBetween(Window.unboundedPreceding, -1)
    auc = (
        per_score.withColumn("neg_below", F.coalesce(F.sum("neg").over(below), F.lit(0.0)))
        .groupBy("window")
        .agg(F.sum(F.col("pos") * (F.col("neg_below") + 0.5 * F.col("neg"))).alias("u"))
        .select(F.unix_micros("window.start").alias("ws"), "u")
        .toPandas()
    )
    bin_idx = F.least(F.floor(F.col("s") * ece_bins), F.lit(ece_bins - 1))
    ece = (
        lab.groupBy("window", bin_idx.alias("b"))
        .agg(F.sum("s").alias("sum_s"), F.sum("y").alias("sum_y"))
        .groupBy(F.unix_micros("window.start").alias("ws"))
        .agg(F.sum(F.abs(F.col("sum_s") - F.col("sum_y"))).alias("ece_abs"))
        .toPandas()
    )
    return auc.merge(ece, on="ws", how="outer")


def _quality_frame(out: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The :data:`QUALITY_COLUMNS` frame from the per-window sums (``n_labeled``, ``positives``, ``tp``, ``fp``,
    ``fn``, ``u``, ``ece_abs``, ...); a metric whose denominator is 0 is NaN."""
    start = out["ws"].clip(lower=out["t_min"].min())
    end = out["we"].clip(upper=out["t_max"].max())
    n = out["n_labeled"].astype(float)
    pos = out["positives"].astype(float)
    neg = n - pos
    tp, fp, fn = out["tp"].astype(float), out["fp"].astype(float), out["fn"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = (tp / (tp + fp)).where(tp + fp > 0)
        recall = (tp / pos).where(pos > 0)
        frame = pd.DataFrame({
            "window_start": pd.to_datetime(start, unit="us", utc=True),
            "window_end": pd.to_datetime(end, unit="us", utc=True),
            "count": out["count"].astype("int64"),
            "n_labeled": out["n_labeled"].astype("int64"),
            "positives": pos.fillna(0).astype("int64"),
            "observed_rate": (pos / n).where(n > 0),
            "mean_predicted": out["mean_predicted"].astype(float),
            "auc": (out["u"].astype(float) / (pos * neg)).where((pos > 0) & (neg > 0)),
            "precision": precision,
            "recall": recall,
            "f1": (2 * tp / (2 * tp + fp + fn)).where(2 * tp + fp + fn > 0),
            "accuracy": ((n - fp - fn) / n).where(n > 0),
            "brier": out["brier"].astype(float),
            "ece": (out["ece_abs"].astype(float) / n).where(n > 0),
            "threshold": float(threshold),
        })
    return frame.reset_index(drop=True)[list(QUALITY_COLUMNS)]
