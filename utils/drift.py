"""Data, label and prediction drift of Spark DataFrames, one row per column, in the shape of Lakehouse Monitoring's
``{table}_drift_metrics`` (check a percentage-vs-fraction column such as ``percent_null`` against your workspace's
tables before mixing the two; *(extra)* marks columns it lacks). One Spark job (``utils.drift_binning``) whatever
the number of columns and windows; the driver computes the statistics of ``utils.drift_statistics`` from its
counts (exact up to the bounds ``utils.drift_binning`` states). :func:`drift_schema` is the Arrow schema:

========================== ==================================================================
window / window_cmp        struct<start, end> of the current / comparison window (NULL if unknown)
drift_type                 ``"BASELINE"`` (against the baseline) or ``"CONSECUTIVE"`` (previous window)
granularity, slice_key,    as in the profile table (slices are always NULL here)
slice_value
column_name, data_type     the column and its Spark type in the current data
role                       *(extra)* ``feature``, ``label`` or ``prediction``
count, count_cmp           *(extra)* rows in the current / comparison data; ``count_delta`` their difference
avg_delta                  mean(current) - mean(comparison) (numeric)
percent_null_delta         percent_null(current) - percent_null(comparison)
ks_test                    struct<statistic, pvalue> (numeric)
chi_squared_test           struct<statistic, pvalue> (categorical)
js_distance, tv_distance,  both kinds
l_infinity_distance,
population_stability_index,
kl_divergence              (``kl_divergence`` is *(extra)*)
wasserstein_distance       numeric only
num_bins                   *(extra)* bins (numeric) or categories (categorical) the binned statistics used,
                           after pooling sparse categories
note                       *(extra)* why metrics are NULL (e.g. an empty window or an all-null column),
                           or how many sparse categories were pooled into how many bins
sparse_bins                *(extra)* boolean: some bin or category was sparse, so the binned statistics
                           were computed on pooled (categorical) or thin (numeric) bins
========================== ==================================================================

Nulls, NaN and +-infinity are left out of every distribution statistic (``percent_null_delta`` shows them). A
single-valued baseline column gives two bins, ``(-inf, v]`` and ``(v, inf)``. A missing column, a column listed
as both numeric and categorical, a numeric column not numeric on one side or a window column that is not a
timestamp raise ``ValueError``. An empty window, or a column with no non-null values on one side, gives a row
whose statistics are NULL and whose ``note`` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from utils.drift_binning import CATEGORICAL_COL, counts_job, fine_bins, numeric_from_fine
from utils.drift_statistics import binned_statistics, check_bins, chi_squared_test, ks_pvalue
from utils.monitoring_inputs import column_type, is_atomic, is_numeric, require_columns, window_column

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

DRIFT_TYPES = ("BASELINE", "CONSECUTIVE")
ROLES = ("feature", "label", "prediction")
DRIFT_COLUMNS: tuple[str, ...] = (
    "window", "window_cmp", "drift_type", "granularity", "slice_key", "slice_value",
    "column_name", "data_type", "role", "count", "count_cmp", "count_delta", "avg_delta",
    "percent_null_delta", "ks_test", "chi_squared_test", "js_distance", "wasserstein_distance",
    "population_stability_index", "kl_divergence", "tv_distance", "l_infinity_distance",
    "num_bins", "note", "sparse_bins",
)
_FLOAT_COLUMNS = (
    "avg_delta", "percent_null_delta", "js_distance", "wasserstein_distance",
    "population_stability_index", "kl_divergence", "tv_distance", "l_infinity_distance",
)


def drift_metrics(
    baseline_df: DataFrame, current_df: DataFrame, numeric: list[str], categorical: list[str], bins: int = 10,
    smoothing: float = 1e-6, *, window: Any = None, window_cmp: Any = None, window_col: str | None = None,
    drift_type: str = "BASELINE", granularity: str | None = None, role: str = "feature", max_categories: int = 1000,
) -> pd.DataFrame:
    """Drift of ``current_df`` against ``baseline_df``, one row per column (:data:`DRIFT_COLUMNS`).

    ``window`` / ``window_cmp`` label the rows (a ``(start, end)`` pair or ``{"start", "end"}``);
    with ``window_col`` they default to the first/last timestamp of each side. ``ValueError`` for bad input
    (see the module docstring) or a categorical column with more than ``max_categories`` values.
    """
    from pyspark.sql import functions as F

    numeric, categorical = list(numeric), list(categorical)
    _check_drift_inputs(baseline_df, current_df, numeric, categorical, bins, smoothing, drift_type, role)

    def side(df: DataFrame, tag: str) -> DataFrame:
        ts = [F.unix_micros(window_column(df, window_col)).alias("_ts")] if window_col else []
        return df.select(F.lit(tag).alias("_src"), F.lit(0).cast("long").alias("_g"), *_side_columns(df, numeric, categorical), *ts)

    combined = side(baseline_df, "b").unionByName(side(current_df, "c"))
    labels = {0: {"window": window, "window_cmp": window_cmp, "drift_type": drift_type, "granularity": granularity, "role": role}}
    types = {c: column_type(current_df, c).simpleString() for c in [*numeric, *categorical]}
    return _drift_rows(combined, types, numeric, categorical, labels, bins, smoothing, max_categories, with_ts=bool(window_col))


def drift_by_window(
    baseline_df: DataFrame | None, current_df: DataFrame, numeric: list[str], categorical: list[str], window_col: str,
    window: str = "1 day", *, drift_type: str = "BASELINE", bins: int = 10, smoothing: float = 1e-6,
    role: str = "feature", max_categories: int = 1000,
) -> pd.DataFrame:
    """Drift of every time window of ``current_df``, against the baseline or the previous window (:data:`DRIFT_COLUMNS`).

    All windows are computed in the same few Spark jobs (the comparison rows are replicated per
    window, so prefer a coarser ``window`` over hundreds of windows). ``CONSECUTIVE`` compares a
    window with the one just before it, only where that one has rows (as Lakehouse Monitoring
    does); ``baseline_df`` may then be ``None``. Rows with a null timestamp belong to no window and
    are left out here (``utils.monitoring.profile_metrics`` counts them under a NULL window).
    """
    from pyspark.sql import functions as F

    if drift_type == "BASELINE" and baseline_df is None:
        raise ValueError("BASELINE drift needs a baseline_df (or use drift_type='CONSECUTIVE')")
    cmp_df = baseline_df if baseline_df is not None else current_df
    numeric, categorical = list(numeric), list(categorical)
    _check_drift_inputs(cmp_df, current_df, numeric, categorical, bins, smoothing, drift_type, role)
    ts = window_column(current_df, window_col)
    cur = current_df.select(
        F.unix_micros(F.window(ts, window).start).alias("_w"), *_side_columns(current_df, numeric, categorical)
    ).where(F.col("_w").isNotNull())
    bounds = (
        current_df.select(F.window(ts, window).alias("w")).where(F.col("w").isNotNull()).distinct()
        .select(F.unix_micros("w.start").alias("s"), F.unix_micros("w.end").alias("e")).orderBy("s").collect()
    )
    windows = [(int(r["s"]), int(r["e"])) for r in bounds]
    labels = {s: {"window": (_utc(s), _utc(e)), "drift_type": drift_type, "granularity": window, "role": role}
              for s, e in windows}
    current = cur.select(F.lit("c").alias("_src"), F.col("_w").alias("_g"), *[c for c in cur.columns if c != "_w"])
    if drift_type == "BASELINE":
        comparison = _baseline_side(cmp_df, window_col, windows, labels, _side_columns(cmp_df, numeric, categorical))
    else:
        comparison, current, labels = _previous_window_side(cur, current, windows, labels)
    if comparison is None:
        return _drift_frame([])
    types = {c: column_type(current_df, c).simpleString() for c in [*numeric, *categorical]}
    return _drift_rows(comparison.unionByName(current), types, numeric, categorical, labels, bins, smoothing, max_categories)


def _baseline_side(cmp_df: DataFrame, window_col: str, windows: list[tuple[int, int]],
                   labels: dict[int, dict[str, Any]], columns: list[Column]) -> DataFrame | None:
    """The baseline's rows once per window (``_g`` the window's start), ``None`` with no window; labels every
    window's ``window_cmp`` with the baseline's first and last timestamp, when it has ``window_col``."""
    from pyspark.sql import functions as F

    window_cmp = None
    if window_col in cmp_df.columns:
        r = cmp_df.select(F.unix_micros(F.min(window_column(cmp_df, window_col))).alias("s"),
                          F.unix_micros(F.max(window_column(cmp_df, window_col))).alias("e")).first()
        window_cmp = None if r["s"] is None else (_utc(r["s"]), _utc(r["e"]))
    for lab in labels.values():
        lab["window_cmp"] = window_cmp
    if not windows:
        return None
    return cmp_df.select(F.lit("b").alias("_src"), F.explode(F.array(*[F.lit(s) for s, _ in windows])).alias("_g"), *columns)


def _previous_window_side(cur: DataFrame, current: DataFrame, windows: list[tuple[int, int]],
                          labels: dict[int, dict[str, Any]]) -> tuple[DataFrame | None, DataFrame, dict[int, dict[str, Any]]]:
    """``(comparison, current, labels)`` of CONSECUTIVE drift: each window's rows as the comparison side of the
    window that follows it directly, and only the windows that have such a predecessor (comparison ``None``: none)."""
    from pyspark.sql import functions as F

    follows = {s: nxt for (s, e), (nxt, _) in pairwise(windows) if e == nxt}
    labels = {nxt: {**labels[nxt], "window_cmp": (_utc(s), _utc(e))}
              for (s, e), (nxt, _) in pairwise(windows) if e == nxt}
    if not follows:
        return None, current, labels
    shift = F.create_map(*[x for s, nxt in follows.items() for x in (F.lit(s), F.lit(nxt))])
    comparison = cur.select(
        F.lit("b").alias("_src"), F.try_element_at(shift, F.col("_w")).alias("_g"), *[c for c in cur.columns if c != "_w"]
    ).where(F.col("_g").isNotNull())
    return comparison, current.where(F.col("_g").isin(list(follows.values()))), labels


def label_drift(baseline_df: DataFrame, current_df: DataFrame, label_col: str, *, categorical: bool = True, **kwargs: Any) -> pd.DataFrame:
    """Drift of the label column (categorical by default, as for a classification label)."""
    cols = ([], [label_col]) if categorical else ([label_col], [])
    return drift_metrics(baseline_df, current_df, *cols, role="label", **kwargs)


def prediction_drift(baseline_df: DataFrame, current_df: DataFrame, prediction_col: str, *, categorical: bool = False, **kwargs: Any) -> pd.DataFrame:
    """Drift of the model's output column (numeric scores by default)."""
    cols = ([], [prediction_col]) if categorical else ([prediction_col], [])
    return drift_metrics(baseline_df, current_df, *cols, role="prediction", **kwargs)


def drift_schema() -> pa.Schema:
    """Arrow schema of the drift metrics table (for writing :func:`drift_metrics` output to Delta)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    window = pa.struct([("start", ts), ("end", ts)])
    test = pa.struct([("statistic", pa.float64()), ("pvalue", pa.float64())])
    types = {
        "window": window, "window_cmp": window, "count": pa.int64(), "count_cmp": pa.int64(),
        "count_delta": pa.int64(), "ks_test": test, "chi_squared_test": test, "num_bins": pa.int64(),
        "sparse_bins": pa.bool_(),
        **{c: pa.float64() for c in _FLOAT_COLUMNS},
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in DRIFT_COLUMNS])


def drift_to_arrow(drift: pd.DataFrame) -> pa.Table:
    """The drift frame as an Arrow table with :func:`drift_schema` (stable types even when empty)."""
    import pyarrow as pa

    return pa.Table.from_pandas(drift[list(DRIFT_COLUMNS)], schema=drift_schema(), preserve_index=False)


def _check_drift_inputs(
    baseline_df: DataFrame, current_df: DataFrame, numeric: list[str], categorical: list[str],
    bins: int, smoothing: float, drift_type: str, role: str,
) -> None:
    check_bins(bins)
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if drift_type not in DRIFT_TYPES:
        raise ValueError(f"drift_type must be one of {DRIFT_TYPES}, got {drift_type!r}")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not numeric and not categorical:
        raise ValueError("drift needs at least one numeric or categorical column")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"column(s) {both} are listed as both numeric and categorical; keep each in one list")
    dup = sorted({c for c in [*numeric, *categorical] if [*numeric, *categorical].count(c) > 1})
    if dup:
        raise ValueError(f"column(s) {dup} are listed more than once")
    for df, side in ((baseline_df, "baseline"), (current_df, "current")):
        require_columns(df, [*numeric, *categorical], side)
        for c in numeric:
            if not is_numeric(column_type(df, c)):
                raise ValueError(
                    f"numeric column {c!r} is {column_type(df, c).simpleString()} in the {side} data; "
                    "cast it to a number or list it as categorical (schemas of baseline and current must match)"
                )
        for c in categorical:
            if not is_atomic(column_type(df, c)):
                raise ValueError(f"categorical column {c!r} is {column_type(df, c).simpleString()} in the {side} data; only flat columns")


def _side_columns(df: DataFrame, numeric: list[str], categorical: list[str]) -> list[Column]:
    """Numeric columns as double ``_n{i}`` (the counts job leaves NaN and +-infinity out, as nulls), categorical
    as string ``_k{i}``."""
    from pyspark.sql import functions as F

    cols = [F.col(c).cast("double").alias(f"_n{i}") for i, c in enumerate(numeric)]
    return cols + [F.col(c).cast("string").alias(f"_k{i}") for i, c in enumerate(categorical)]


def _drift_rows(combined: DataFrame, types: dict[str, str], numeric: list[str], categorical: list[str],
                labels: dict[int, dict[str, Any]], bins: int, smoothing: float, max_categories: int,
                with_ts: bool = False) -> pd.DataFrame:
    """Drift rows for every comparison group ``_g`` of a tagged union (``_src`` 'b' = comparison side).

    One Spark job (``utils.drift_binning.counts_job``) whatever the number of columns and groups; every
    statistic is then computed on the driver from the collected counts.
    """
    counts = counts_job(combined, len(numeric), len(categorical), with_ts)
    by_part = {key: part for key, part in counts.groupby(["_g", "col"])}
    columns = [*enumerate(numeric), *((CATEGORICAL_COL + i, c) for i, c in enumerate(categorical))]
    rows = []
    for g in sorted(labels):
        common = _group_fields(labels[g], by_part.get((g, -1), counts.iloc[:0]), with_ts)
        for col, c in columns:
            part = by_part.get((g, col), counts.iloc[:0])
            row = {**common, "column_name": c, "data_type": types[c]}
            rows.append(_column_row(row, part, col < CATEGORICAL_COL, bins, smoothing, max_categories))
    return _drift_frame(rows)


def _group_fields(labels: dict[str, Any], rc: pd.DataFrame, with_ts: bool) -> dict[str, Any]:
    """What every row of one group shares: its labels (with ``with_ts``, a missing window is the side's first and
    last ``_ts``), and the rows of each side (``rc``, the group's ``col = -1`` counts)."""
    lab = dict(labels)
    side_rows = {int(b): r for b, r in zip(rc["b"], rc.to_dict("records"), strict=True)}
    rows_b = int(side_rows[1]["n"]) if 1 in side_rows else 0
    rows_c = int(side_rows[0]["n"]) if 0 in side_rows else 0
    if with_ts:
        for key, b in (("window", 0), ("window_cmp", 1)):
            if lab.get(key) is None and b in side_rows and pd.notna(side_rows[b]["lo"]):
                lab[key] = (_utc(int(side_rows[b]["lo"])), _utc(int(side_rows[b]["hi"])))
    return {
        **lab, "window": _window_struct(lab.get("window")), "window_cmp": _window_struct(lab.get("window_cmp")),
        "slice_key": None, "slice_value": None, "count": rows_c, "count_cmp": rows_b, "count_delta": rows_c - rows_b,
    }


def _column_row(row: dict[str, Any], part: pd.DataFrame, numeric: bool, bins: int, smoothing: float,
                max_categories: int) -> dict[str, Any]:
    """``row`` (labels, row counts, column) with the column's statistics from its counts ``part``."""
    nn_b, nn_c = int(part.loc[part["b"] == 1, "n"].sum()), int(part.loc[part["b"] == 0, "n"].sum())
    rows_b, rows_c = row["count_cmp"], row["count"]
    row = {**row, "percent_null_delta": _pct_null_delta(rows_b, rows_c, nn_b, nn_c)}
    if nn_b == 0 or nn_c == 0:
        return {**row, "note": _empty_note(rows_b, rows_c, nn_b, nn_c)}
    if numeric:
        fb = fine_bins(part)
        num = numeric_from_fine(fb, bins)
        return {**row, **binned_statistics(num["p"], num["q"], smoothing),
                "avg_delta": float(fb["s_c"].sum() / nn_c - fb["s_b"].sum() / nn_b),
                "ks_test": {"statistic": num["ks"], "pvalue": ks_pvalue(num["ks"], nn_b, nn_c)},
                "wasserstein_distance": num["wasserstein"]}
    h: dict[int, dict[str, int]] = {0: {}, 1: {}}
    for item, b, n in zip(part["item"], part["b"], part["n"], strict=True):
        h[int(b)][item] = int(n)
    keys = sorted(set(h[0]) | set(h[1]))
    if len(keys) > max_categories:  # checked per group and column
        raise ValueError(
            f"categorical column {row['column_name']!r} has {len(keys)} distinct values (> max_categories={max_categories}); "
            "leave high-cardinality columns out, bucket them, or raise max_categories"
        )
    p = np.array([h[1].get(k, 0) for k in keys], float)
    q = np.array([h[0].get(k, 0) for k in keys], float)
    stat, pvalue = chi_squared_test(p, q)
    return {**row, **binned_statistics(p, q, smoothing, pool=True), "chi_squared_test": {"statistic": stat, "pvalue": pvalue}}


def _pct_null_delta(rows_b: int, rows_c: int, nn_b: int, nn_c: int) -> float | None:
    if not rows_b or not rows_c:
        return None
    return 100.0 * (1 - nn_c / rows_c) - 100.0 * (1 - nn_b / rows_b)


def _empty_note(rows_b: int, rows_c: int, nn_b: int, nn_c: int) -> str:
    parts = []
    for side, rows, nn in (("current", rows_c, nn_c), ("baseline", rows_b, nn_b)):
        if rows == 0:
            parts.append(f"{side} has no rows")
        elif nn == 0:
            parts.append(f"{side} has no non-null values")
    return "; ".join(parts) + ": drift statistics are undefined"


def _drift_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([{k: r.get(k) for k in DRIFT_COLUMNS} for r in rows], columns=list(DRIFT_COLUMNS))
    for c in _FLOAT_COLUMNS:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    for c in ("count", "count_cmp", "count_delta"):
        frame[c] = frame[c].astype("int64")
    frame["num_bins"] = frame["num_bins"].astype("Int64")
    frame["sparse_bins"] = frame["sparse_bins"].astype("boolean")
    return frame


def _utc(micros: Any) -> pd.Timestamp | None:
    return None if micros is None else pd.Timestamp(int(micros), unit="us", tz="UTC")


def _window_struct(window: Any) -> dict[str, pd.Timestamp] | None:
    if window is None:
        return None
    start, end = (window["start"], window["end"]) if isinstance(window, Mapping) else tuple(window)
    return {"start": _to_utc(start), "end": _to_utc(end)}


def _to_utc(t: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
