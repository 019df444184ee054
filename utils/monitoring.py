"""Monitoring: profile metrics per time window, the breaches of drift and quality thresholds, and :func:`monitor`,
the pass 06 runs on the champion's scores (:func:`score_training_set`): metrics to Delta, breaches to alerts.

The heavy work runs in Spark; only small per-window aggregates reach the driver. Four drifts map to functions:
data drift, ``utils.drift.drift_metrics`` / ``drift_by_window`` on the features; label and prediction drift,
``utils.drift.label_drift`` / ``prediction_drift``; concept drift, ``utils.model_quality.model_quality_by_window``
once late labels are merged into the inference log. ``utils.drift_statistics`` defines the statistics.
Tables are named and shaped as Databricks Lakehouse Monitoring's (``{table}_profile_metrics`` /
``{table}_drift_metrics``), so one dashboard query reads either; columns it lacks are marked *(extra)*.

Profile metrics (:func:`profile_metrics`, a Spark DataFrame):

============== ============================================================================
window         struct<start, end> of the time window (``F.window`` on ``window_col``)
granularity    the window length, e.g. ``"1 day"``
slice_key      ``NULL`` for the whole table, else the slicing column's name
slice_value    ``NULL`` for the whole table, else the slice's value as a string
column_name    the profiled column; ``":table"`` holds the window's row count only
data_type      Spark type of the column (``simpleString``)
log_type       ``"INPUT"`` (rows of the monitored table)
count          rows in the window (nulls included)
num_nulls      null values; ``percent_null`` = ``100 * num_nulls / count`` (a percentage)
num_nan        *(extra)* NaN values of a numeric column (not null; left out of avg..quantiles)
avg, stddev    mean and sample standard deviation (numeric columns; NULL for categorical)
min, max       numeric columns only
quantiles      ``approx_percentile`` at :data:`QUANTILE_LEVELS` (numeric columns)
median         ``approx_percentile`` at 0.5
distinct_count exact count of distinct non-null values
frequent_items top-k ``array<struct<item: string, count: bigint>>`` (categorical columns),
               most frequent first, ties by item
============== ============================================================================

Windows without rows do not appear (a gap in the time axis); rows whose timestamp is null are profiled under
a NULL window rather than dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from utils.config import Config, get_config, monitoring_tables
from utils.monitoring_inputs import (
    column_type,
    is_atomic,
    is_numeric,
    require_columns,
    window_column,
)
from utils.plantly_columns import LABEL, MONITORED_CATEGORICAL, MONITORED_NUMERIC

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from utils.config import Thresholds

QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
PERCENTILE_ACCURACY = 10_000  # approx_percentile accuracy of profile quantiles: rank error <= n / accuracy


def profile_metrics(
    df: DataFrame, columns: list[str], window_col: str, window: str = "1 day", categorical: list[str] | None = None,
    slice_cols: list[str] | None = None, *, top_k: int = 10, quantile_levels: Sequence[float] = QUANTILE_LEVELS,
) -> DataFrame:
    """Per time window, slice and column: counts, nulls, moments, quantiles, distinct and top items (the table above).

    Raises ``ValueError`` for no columns, ``top_k`` < 1, quantile levels outside [0, 1], a missing or nested
    column, a categorical column not in ``columns``, or a window column that is not a timestamp.
    """
    from pyspark.sql import functions as F

    categorical = list(categorical or [])
    slice_cols = list(slice_cols or [])
    levels = [float(q) for q in quantile_levels]
    ts = _check_profile_inputs(df, columns, categorical, slice_cols, window_col, top_k, levels)
    slice_structs = [F.struct(F.lit(None).cast("string").alias("slice_key"), F.lit(None).cast("string").alias("slice_value"))]
    slice_structs += [F.struct(F.lit(s).alias("slice_key"), F.col(s).cast("string").alias("slice_value")) for s in slice_cols]
    sliced = df.select(
        F.window(ts, window).alias("window"),
        F.explode(F.array(*slice_structs)).alias("_slice"),
        *[F.col(c).alias(f"_c{i}") for i, c in enumerate(columns)],
    ).select("window", "_slice.slice_key", "_slice.slice_value", *[f"_c{i}" for i in range(len(columns))])
    keys = ["window", "slice_key", "slice_value"]
    long = sliced.select(*keys, F.explode(F.array(*_cells(df, columns, categorical))).alias("_v")).select(*keys, "_v.*")
    s, t = _column_stats(long, keys, levels).alias("s"), _frequent_items(long, keys, top_k).alias("t")
    on = [F.col(f"s.{k}").eqNullSafe(F.col(f"t.{k}")) for k in [*keys, "column_name"]]
    per_column = s.join(t, on=on, how="left").select("s.*", F.col("t.frequent_items"))
    table_rows = sliced.groupBy(*keys).agg(F.count(F.lit(1)).alias("count")).select(
        *keys, F.lit(":table").alias("column_name"), F.lit(None).cast("string").alias("data_type"),
        F.lit(False).alias("is_cat"), "count", F.lit(0).cast("long").alias("num_nulls"),
    )
    out = per_column.unionByName(table_rows, allowMissingColumns=True)
    return out.select(
        "window", F.lit(window).alias("granularity"), "slice_key", "slice_value", "column_name", "data_type",
        F.lit("INPUT").alias("log_type"), F.col("count").cast("long").alias("count"),
        F.col("num_nulls").cast("long").alias("num_nulls"),
        F.when(F.col("count") > 0, 100.0 * F.col("num_nulls") / F.col("count")).alias("percent_null"),
        F.col("num_nan").cast("long").alias("num_nan"), "avg", "stddev", "min", "max", "quantiles", "median",
        F.col("distinct_count").cast("long").alias("distinct_count"), "frequent_items",
    ).orderBy(F.col("window.start"), F.col("slice_key").asc_nulls_first(), F.col("slice_value").asc_nulls_first(), "column_name")


def _check_profile_inputs(df: DataFrame, columns: list[str], categorical: list[str], slice_cols: list[str],
                          window_col: str, top_k: int, levels: list[float]) -> Column:
    """Raise ``ValueError`` for what :func:`profile_metrics` cannot profile; returns the window column."""
    if not columns:
        raise ValueError("profile_metrics needs at least one column to profile")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not levels or any(not 0.0 <= q <= 1.0 for q in levels):
        raise ValueError(f"quantile_levels must be non-empty and within [0, 1], got {levels}")
    require_columns(df, [*columns, *categorical, *slice_cols], "monitored")
    stray = sorted(set(categorical) - set(columns))
    if stray:
        raise ValueError(f"categorical column(s) {stray} are not in `columns`; add them there too")
    ts = window_column(df, window_col)
    for c in columns:
        if not is_atomic(column_type(df, c)):
            raise ValueError(f"column {c!r} is {column_type(df, c).simpleString()}; only flat columns can be profiled")
    return ts


def _cells(df: DataFrame, columns: list[str], categorical: list[str]) -> list[Column]:
    """One struct per column ``_c{i}`` of the sliced frame: ``column_name``, ``data_type``, ``is_cat`` (listed as
    categorical or not numeric), ``num`` (the value as double, NaN as null; null for categorical columns),
    ``str`` (the value as string) and ``is_nan``."""
    from pyspark.sql import functions as F

    cells = []
    for i, c in enumerate(columns):
        is_cat = c in categorical or not is_numeric(column_type(df, c))
        raw = F.col(f"_c{i}")
        v = raw.cast("double")
        num = F.lit(None).cast("double") if is_cat else F.when(F.isnan(v), F.lit(None).cast("double")).otherwise(v)
        nan = F.lit(False) if is_cat else F.coalesce(F.isnan(raw.cast("double")), F.lit(False))
        cells.append(F.struct(
            F.lit(c).alias("column_name"),
            F.lit(column_type(df, c).simpleString()).alias("data_type"),
            F.lit(is_cat).alias("is_cat"),
            num.alias("num"),
            raw.cast("string").alias("str"),
            nan.alias("is_nan"),
        ))
    return cells


def _column_stats(long: DataFrame, keys: list[str], levels: list[float]) -> DataFrame:
    """Per ``keys`` and column of the long frame: count, nulls, NaN, moments, min, max, quantiles at ``levels``,
    median and distinct count."""
    from pyspark.sql import functions as F

    gkeys = [*keys, "column_name", "data_type", "is_cat"]
    quantiles = F.percentile_approx("num", levels, PERCENTILE_ACCURACY)
    median = (
        F.element_at(quantiles, levels.index(0.5) + 1) if 0.5 in levels
        else F.percentile_approx("num", 0.5, PERCENTILE_ACCURACY)
    )
    return long.groupBy(*gkeys).agg(
        F.count(F.lit(1)).alias("count"),
        (F.count(F.lit(1)) - F.count("str")).alias("num_nulls"),
        F.sum(F.col("is_nan").cast("long")).alias("num_nan"),
        F.avg("num").alias("avg"),
        F.stddev_samp("num").alias("stddev"),
        F.min("num").alias("min"),
        F.max("num").alias("max"),
        quantiles.alias("quantiles"),
        median.alias("median"),
        F.count_distinct("str").alias("distinct_count"),
    )


def _frequent_items(long: DataFrame, keys: list[str], top_k: int) -> DataFrame:
    """Per ``keys`` and categorical ``column_name`` of the long frame: ``frequent_items``, the ``top_k`` values
    by count (ties by value), each ``{item, count}``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    item_counts = long.where(F.col("is_cat") & F.col("str").isNotNull()).groupBy(*keys, "column_name", "str").count()
    rank = Window.partitionBy(*keys, "column_name").orderBy(F.col("count").desc(), F.col("str").asc())
    ranked_item = F.struct(F.col("_rank").alias("rank"), F.col("str").alias("item"), F.col("count"))
    return (
        item_counts.withColumn("_rank", F.row_number().over(rank))
        .where(F.col("_rank") <= top_k)
        .groupBy(*keys, "column_name")
        .agg(F.array_sort(F.collect_list(ranked_item)).alias("_items"))  # sorted by rank
        .select(*keys, "column_name", F.transform(
            "_items", lambda s: F.struct(s["item"].alias("item"), s["count"].alias("count"))).alias("frequent_items"))
    )



def _rule_set(role: str, is_numeric: bool, th: Thresholds) -> list[tuple[str, str, float, str]]:
    """(metric, field inside a struct or '', threshold, direction) rules for one drift row."""
    psi = th.prediction_psi if role == "prediction" else th.psi
    rules = [("population_stability_index", "", psi, "above"), ("js_distance", "", th.js_distance, "above")]
    if is_numeric:
        rules.append(("ks_test", "pvalue", th.ks_pvalue, "below"))
    else:
        rules.append(("chi_squared_test", "pvalue", th.chi2_pvalue, "below"))
    return rules


def detect_breaches(drift: pd.DataFrame | DataFrame, thresholds: Thresholds, *, quality: pd.DataFrame | None = None,
                    baseline_auc: float | None = None) -> list[dict[str, Any]]:
    """Every threshold a drift row (or a window's AUC, for concept drift) crosses.

    Features and labels: PSI > ``psi``, JS distance > ``js_distance``, KS p < ``ks_pvalue`` (numeric),
    chi-squared p < ``chi2_pvalue`` (categorical); predictions use ``prediction_psi`` for PSI.
    Quality: AUC < ``baseline_auc - min_auc_drop``. NULL statistics never breach.
    Each breach: metric, column, value, threshold, direction, window, window_cmp, drift_type, role.
    """
    if not isinstance(drift, pd.DataFrame):
        drift = drift.toPandas()
    missing = [c for c in ("column_name", "window", "ks_test", "chi_squared_test", "population_stability_index") if c not in drift.columns]
    if missing:
        raise ValueError(f"drift table lacks column(s) {missing}; pass the output of drift_metrics / drift_by_window")
    breaches: list[dict[str, Any]] = []
    for rec in drift.to_dict("records"):
        role = rec.get("role") or "feature"
        is_numeric = isinstance(rec.get("ks_test"), Mapping)
        for metric, field, limit, direction in _rule_set(role, is_numeric, thresholds):
            raw = rec.get(metric)
            value = raw.get(field) if field and isinstance(raw, Mapping) else (None if field else raw)
            if value is None or pd.isna(value):
                continue
            crossed = value > limit if direction == "above" else value < limit
            if crossed:
                breaches.append({
                    "metric": f"{metric}.{field}" if field else metric, "column": rec["column_name"],
                    "value": float(value), "threshold": float(limit), "direction": direction,
                    "window": rec.get("window"), "window_cmp": rec.get("window_cmp"),
                    "drift_type": rec.get("drift_type") or "BASELINE", "role": role,
                })
    if quality is not None:
        if baseline_auc is None:
            raise ValueError("quality breaches need baseline_auc (the champion's AUC on its evaluation set)")
        floor = float(baseline_auc) - thresholds.min_auc_drop
        for rec in quality.to_dict("records"):
            auc = rec.get("auc")
            if auc is not None and pd.notna(auc) and auc < floor:
                breaches.append({
                    "metric": "auc", "column": "model", "value": float(auc), "threshold": floor,
                    "direction": "below", "window": {"start": rec["window_start"], "end": rec["window_end"]},
                    "window_cmp": None, "drift_type": "BASELINE", "role": "model",
                    "threshold_basis": f"the champion's held-out AUC {float(baseline_auc):.4g} minus "
                                       f"{thresholds.min_auc_drop:g}",
                })
    return breaches


@dataclasses.dataclass
class MonitorResult:
    """What one monitoring pass found."""

    baseline_end: pd.Timestamp
    drift: pd.DataFrame
    quality: pd.DataFrame
    breaches: list[dict[str, Any]]
    alerts: list[Any]
    baseline_auc: float
    tables: dict[str, int] = dataclasses.field(default_factory=dict)


def score_training_set(model_uri: str, cfg: Config | None = None) -> str:
    """Write the training set scored by ``model_uri`` to the ``scored`` monitoring table; returns the table's name."""
    import mlflow

    from utils import lakehouse
    from utils.feature_types import features_frame
    from utils.plantly_features import (
        load_training_frame,
        materialize_training_set,
        training_set_table,
    )
    from utils.platform import feature_client
    from utils.training import scoring_model_uri

    cfg = cfg or get_config()
    inputs = materialize_training_set(feature_client(), cfg)
    frame = load_training_frame(inputs[training_set_table(cfg)], cfg)
    model = mlflow.pyfunc.load_model(scoring_model_uri(model_uri))
    scored = features_frame(frame).assign(
        event_id=frame["event_id"].to_numpy(), event_ts=frame["event_ts"].to_numpy(),
        **{LABEL: frame[LABEL].astype(int).to_numpy()},
        prediction=pd.Series(model.predict(features_frame(frame))).to_numpy(dtype=float),
        model_uri=model_uri,
    )
    name = monitoring_tables(cfg)["scored"]
    lakehouse.write(scored, name, mode="overwrite", merge_schema=True,
                    description="training-set impressions scored by the champion, for monitoring")
    return name


def monitor(scored: Any, baseline_end: pd.Timestamp, model_name: str, cfg: Config | None = None,
            window: str = "7 days", baseline_auc: float | None = None) -> MonitorResult:
    """Profile, drift (features, label, prediction) and quality per window; breaches become alerts.

    Concept drift compares the current window's AUC with ``baseline_auc``: pass the model's held-out
    AUC from its training run, because the baseline rows may be the ones it was trained on (their
    AUC is optimistic). Without it, the baseline rows' AUC is used.
    """
    from pyspark.sql import functions as F

    from utils import lakehouse
    from utils.alerts import alerts_from_breaches, alerts_to_frame
    from utils.drift import drift_metrics, drift_to_arrow, label_drift, prediction_drift
    from utils.model_quality import model_quality_by_window
    from utils.monitoring import detect_breaches, profile_metrics

    cfg = cfg or get_config()
    names = monitoring_tables(cfg)
    cut = F.lit(pd.Timestamp(baseline_end).to_pydatetime())
    baseline = scored.where(F.col("event_ts") < cut)
    current = scored.where(F.col("event_ts") >= cut)
    if baseline.isEmpty() or current.isEmpty():
        raise ValueError(f"monitoring needs rows before and after {baseline_end}: check the scenario window")
    profile = profile_metrics(scored, MONITORED_NUMERIC + MONITORED_CATEGORICAL + ["prediction"],
                              window_col="event_ts", window=window, categorical=MONITORED_CATEGORICAL)
    drift = pd.concat([
        drift_metrics(baseline, current, MONITORED_NUMERIC, MONITORED_CATEGORICAL),
        label_drift(baseline, current, LABEL),
        prediction_drift(baseline, current, "prediction"),
    ], ignore_index=True)
    quality = model_quality_by_window(scored, LABEL, "prediction", "event_ts", window=window)
    whole = "3650 days"  # one window spanning each side
    if baseline_auc is None:
        baseline_auc = float(model_quality_by_window(baseline, LABEL, "prediction", "event_ts", window=whole)["auc"].iloc[0])
    current_quality = model_quality_by_window(current, LABEL, "prediction", "event_ts", window=whole)
    breaches = detect_breaches(drift, cfg.thresholds, quality=current_quality, baseline_auc=baseline_auc)
    alerts = alerts_from_breaches(breaches, model_name)
    versions = {
        "profile": lakehouse.write(profile, names["profile"], mode="overwrite", merge_schema=True),
        "drift": lakehouse.write(drift_to_arrow(drift), names["drift"], mode="overwrite", merge_schema=True),
        "quality": lakehouse.write(quality, names["quality"], mode="overwrite", merge_schema=True),
    }
    frame = alerts_to_frame(alerts).drop_duplicates("alert_id")  # the same breach has the same id: re-runs add nothing
    versions["alerts"] = lakehouse.merge(frame, names["alerts"], keys=["alert_id"])["version"]  # exists, even empty
    return MonitorResult(pd.Timestamp(baseline_end), drift, quality, breaches, alerts, float(baseline_auc), versions)
