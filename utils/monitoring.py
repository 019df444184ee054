"""Monitoring: profile, drift and model-quality metrics computed with Spark aggregations.

Everything heavy runs in Spark (group-bys, window functions, approximate percentiles; drift counts are
binned in Spark's Python workers); only small per-bin, per-category or per-window aggregates reach the
driver, so the same code runs on a laptop, a standalone cluster or Databricks.
The pure numpy functions at the top are the reference definitions (and are fine for small data);
the Spark functions produce the same numbers from aggregates.

Four drifts (data, label, prediction, concept) map to functions:

- data drift: :func:`drift_metrics` / :func:`drift_by_window` on the feature columns;
- label drift: :func:`label_drift`; prediction drift: :func:`prediction_drift`;
- concept drift: :func:`model_quality_by_window` once late labels are merged into the inference log.

Statistics (numeric = N, categorical = C; the baseline is the *expected* distribution):

How the Spark functions compute (one Spark job for any number of columns and windows): every
non-null numeric value falls in a *fine bin*, ``sign(v) * floor(log2|v| * LOG_BINS_PER_OCTAVE)`` (zero has
its own bin), so a bin spans a factor of ``2^(1/4096)`` (0.017%) and needs no first pass over the data;
one pass over the data counts per (window, column, fine bin or category, side) the rows, the sum, the
smallest and the largest value: Spark's Python workers bin every column of each Arrow batch with numpy
(``mapInArrow``) and return one small table per partition, which the driver sums; everything below is
computed on the driver from those counts with numpy.
Where a value range holds one distinct value per fine bin (integers, rounded values, up to about
4,096 distinct values per doubling) every statistic is exact; otherwise the bounds below apply, with
``p_j``, ``q_j`` the baseline's and the current data's shares of fine bin ``j``, ``J`` the bins holding two or
more distinct values and ``w_j`` their spread (largest minus smallest value in the bin).

- ``ks_test`` (N): two-sample Kolmogorov-Smirnov statistic, the largest ``|F - G|`` over the fine-bin
  boundaries, where both empirical CDFs are exact: ``0 <= D - ks <= max_J max(p_j, q_j)`` against the exact
  statistic ``D`` (``scipy.stats.ks_2samp``). The two-sided p-value is Smirnov's asymptotic one,
  ``scipy.stats.kstwo.sf(D, round(n*m/(n+m)))``, identical to ``scipy.stats.ks_2samp(method="asymp")``
  given the statistic (the effective size is floored at 1). The numpy :func:`ks_test` is exact.
- ``wasserstein_distance`` (N): the integral of ``|F - G|`` over the two empirical CDFs
  (``scipy.stats.wasserstein_distance``), computed with each side's mass in a fine bin put at its mean
  there: the integral of ``F - G`` over every bin is kept, so only bins where ``F - G`` changes sign add
  error, ``|wasserstein - W| <= 2 * sum_J w_j * max(p_j, q_j)``. The numpy :func:`wasserstein` is exact.
- ``chi_squared_test`` (C): Pearson's test of homogeneity on the 2 x K table of category counts,
  no Yates correction (``scipy.stats.chi2_contingency(table, correction=False)``); with fewer than two
  categories in all the statistic is 0 and the p-value 1.
- Binned distances, on baseline quantile bins for N (interior edges are the unique baseline
  quantiles at ``k/bins``, numpy's ``inverted_cdf`` quantiles (the value of rank ``ceil(k * n / bins)``):
  exact when the fine bin holding that rank has one distinct baseline value, else that bin's largest
  baseline value, a rank error of at most ``p_j * n``; bins are right-closed, ``(e[i-1], e[i]]``, and
  current values above an approximate edge but inside its fine bin count below it) and on the union
  of categories for C:

  - ``population_stability_index``: ``sum((q - p) * ln(q / p))``;
  - ``kl_divergence``: ``KL(current || baseline) = sum(q * ln(q / p))`` (natural log);
  - both on *smoothed* proportions ``(count / n + smoothing) / (1 + K * smoothing)``, so a bin or
    category empty on one side (e.g. a category never seen in the baseline) contributes a large but
    finite amount instead of infinity (``smoothing`` defaults to 1e-6);
  - ``js_distance``: Jensen-Shannon *distance* in base 2 (range 0..1) on the raw proportions,
    as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``;
  - ``tv_distance`` (``0.5 * sum|p - q|``) and ``l_infinity_distance`` (``max|p - q|``).
  - Sparse bins: a bin or category is *sparse* when it holds under :data:`MIN_BIN_SHARE` (5%) of the
    baseline, or under :data:`MIN_EXPECTED_COUNT` (5) expected rows in the smaller sample. With no shift,
    PSI is about ``(1/n + 1/m) * chi2(B - 1)`` on ``B`` bins (Yurdakul 2018), so many sparse categories
    alarm on sampling noise alone (200 equally likely categories, 2,000 rows a side: PSI about 0.2, JS
    about 0.2); on a categorical column two or more sparse categories are therefore pooled
    (:func:`pool_sparse_bins`) before these five statistics, ``chi_squared_test`` still uses every
    category, and the row says so (``sparse_bins``, ``num_bins``, ``note``). Numeric bins are the
    baseline's quantiles (each about ``1 / bins`` of it) and are not pooled; ``sparse_bins`` flags them too.

Nulls are excluded from every distribution statistic and tracked by ``percent_null`` instead;
NaN and +-infinity in a numeric column count as null for drift (``percent_null_delta`` shows them).

Mapping to Databricks Lakehouse Monitoring (``{table}_profile_metrics`` / ``{table}_drift_metrics``):
columns are named and shaped as in its metric tables, so one dashboard query reads either; the
definitions below are this module's (check a percentage-vs-fraction column such as ``percent_null``
against your workspace's tables before mixing the two), and columns it lacks are marked *(extra)*.

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

Drift metrics (:func:`drift_metrics`, :func:`drift_by_window`, a pandas DataFrame; :func:`drift_schema`
gives its Arrow schema for writing a Delta table):

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
js_distance, tv_distance,  as above, both kinds
l_infinity_distance,
population_stability_index,
kl_divergence              (``kl_divergence`` is *(extra)*)
wasserstein_distance       numeric only
num_bins                   *(extra)* bins (numeric) or categories (categorical) the binned statistics used,
                           after pooling sparse categories
note                       *(extra)* why metrics are NULL (e.g. an empty window or an all-null column),
                           or how many sparse categories were pooled into how many bins
sparse_bins                *(extra)* boolean: some bin or category was sparse (see above), so the binned
                           statistics were computed on pooled (categorical) or thin (numeric) bins
========================== ==================================================================

Bad input: a missing column, a column listed as both numeric and categorical, a numeric column that
is not numeric on one side, a label outside {0, 1}, a score outside [0, 1], or a window column that
is not a timestamp raise ``ValueError`` naming the column and the fix.
An empty window, or a column with no non-null values on one side, gives a drift row whose statistics
are NULL and whose ``note`` says why (no breach is raised for NULL statistics).
Windows without rows do not appear in profile or quality results (a gap in the time axis);
rows whose timestamp is null are profiled under a NULL window rather than dropped.
A single-valued baseline column gives two bins, ``(-inf, v]`` and ``(v, inf)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

    from utils.config import Thresholds

MIN_BIN_SHARE = 0.05  # a bin under 5% of the baseline is sparse: at most 20 bins, as in the usual 10-20 PSI bins
MIN_EXPECTED_COUNT = 5  # ... or under 5 expected rows in the smaller sample (Cochran 1954)
QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
PERCENTILE_ACCURACY = 10_000  # approx_percentile accuracy of profile quantiles: rank error <= n / accuracy
LOG_BINS_PER_OCTAVE = 4096  # fine bins of numeric drift: 4,096 per doubling of |value| (each 0.017% wide)
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

# =============================================================== numpy reference definitions


def _as_counts(x: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d vector of counts or probabilities, got shape {arr.shape}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("counts/probabilities must be finite and non-negative")
    return arr


def smoothed_proportions(counts: Sequence[float] | np.ndarray, smoothing: float = 1e-6) -> np.ndarray:
    """Proportions ``(c / n + smoothing) / (1 + K * smoothing)``: no zero bins, still summing to 1."""
    c = _as_counts(counts)
    total = c.sum()
    if total <= 0:
        raise ValueError("cannot form proportions from an all-zero count vector (empty sample)")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    return (c / total + smoothing) / (1.0 + len(c) * smoothing)


def psi_from_counts(expected: Sequence[float], actual: Sequence[float], smoothing: float = 1e-6) -> float:
    """Population stability index of ``actual`` against ``expected`` bin counts (smoothed)."""
    p, q = _pair(expected, actual)
    p, q = smoothed_proportions(p, smoothing), smoothed_proportions(q, smoothing)
    return float(np.sum((q - p) * np.log(q / p)))


def kl_divergence(p: Sequence[float], q: Sequence[float], smoothing: float = 1e-6) -> float:
    """``KL(p || q)`` in nats of two count (or probability) vectors, after smoothing both."""
    a, b = _pair(p, q)
    a, b = smoothed_proportions(a, smoothing), smoothed_proportions(b, smoothing)
    return float(np.sum(a * np.log(a / b)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count or probability vectors."""
    a, b = _pair(p, q)
    if a.sum() <= 0 or b.sum() <= 0:
        raise ValueError("js_distance needs two non-empty distributions")
    a, b = a / a.sum(), b / b.sum()
    m = 0.5 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = np.where(a > 0, a * np.log2(a / m), 0.0).sum()
        kb = np.where(b > 0, b * np.log2(b / m), 0.0).sum()
    return float(math.sqrt(max(0.5 * (ka + kb), 0.0)))


def tv_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Total variation distance ``0.5 * sum|p - q|`` of two count or probability vectors."""
    a, b = _pair(p, q)
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def l_infinity_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Largest absolute difference in proportion, ``max|p - q|``."""
    a, b = _pair(p, q)
    return float(np.abs(a / a.sum() - b / b.sum()).max())


def chi_squared_test(expected: Sequence[float], actual: Sequence[float]) -> tuple[float, float]:
    """Pearson chi-squared test of homogeneity on two category-count vectors (no Yates correction)."""
    from scipy.stats import chi2

    a, b = _pair(expected, actual)
    keep = (a + b) > 0
    table = np.vstack([a[keep], b[keep]])
    if table.shape[1] < 2 or a.sum() == 0 or b.sum() == 0:
        return 0.0, 1.0
    exp = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - exp) ** 2 / exp).sum())
    return stat, float(chi2.sf(stat, table.shape[1] - 1))


def _min_baseline_rows(n_expected: float, n_actual: float, min_share: float, min_count: float) -> float:
    """Baseline rows a bin needs: ``min_share`` of the baseline and ``min_count`` expected rows in the smaller sample."""
    if n_expected <= 0 or n_actual <= 0:
        raise ValueError("sparse bins are defined for two non-empty samples")
    return n_expected * max(min_share, min_count / min(n_expected, n_actual)) * (1 - 1e-12)  # float slack


def sparse_bin_mask(
    expected: Sequence[float], actual: Sequence[float],
    min_share: float = MIN_BIN_SHARE, min_count: float = MIN_EXPECTED_COUNT,
) -> np.ndarray:
    """Which bins are sparse (boolean, one per bin): under ``min_share`` of ``expected``'s rows, or under
    ``min_count`` rows expected in the smaller sample (``min(n, m) * expected share``).

    ``min_count`` = 5 is the usual minimum expected count of chi-squared tests (W. G. Cochran, "Some methods
    for strengthening the common chi-squared tests", Biometrics 10(4), 1954, 417-451). ``min_share`` = 5%
    bounds the bins at 20: with no shift PSI is about ``(1/n + 1/m) * chi2(B - 1)`` on ``B`` bins (B. Yurdakul,
    "Statistical Properties of Population Stability Index", PhD thesis, Western Michigan University, 2018,
    https://scholarworks.wmich.edu/dissertations/3208), so its mean stays under ``19 * (1/n + 1/m)``
    (0.019 at 2,000 rows a side) instead of ``(B - 1) * (1/n + 1/m)`` for ``B`` sparse categories; the JS
    distance follows, its square being about ``PSI / (8 ln 2)`` for small differences.
    """
    a, b = _pair(expected, actual)
    return a < _min_baseline_rows(a.sum(), b.sum(), min_share, min_count)


def pool_sparse_bins(
    expected: Sequence[float], actual: Sequence[float],
    min_share: float = MIN_BIN_SHARE, min_count: float = MIN_EXPECTED_COUNT,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts with sparse bins (:func:`sparse_bin_mask`) pooled: ``(expected, actual)``, same total rows.

    Bins that are not sparse are kept as they are, first. The sparse ones, in their given order (sorted
    category names, not their counts: groups sorted by count would pair rows that are rare by chance in
    the baseline and inflate PSI), are merged greedily into groups that each reach the minimum; a last group short of it joins the group before,
    or stays on its own when it is the only one. Fewer than two sparse bins: nothing to pool, the input
    is returned unchanged. Pooling hides a shift *between* categories of one group (two rare plants
    swapping places); ``chi_squared_test`` on the full table still sees it.
    """
    a, b = _pair(expected, actual)
    sparse = sparse_bin_mask(a, b, min_share, min_count)
    if sparse.sum() < 2:
        return a, b
    need = _min_baseline_rows(a.sum(), b.sum(), min_share, min_count)
    groups: list[list[int]] = []
    group: list[int] = []
    for j in np.flatnonzero(sparse):
        group.append(int(j))
        if a[group].sum() >= need:
            groups.append(group)
            group = []
    if group:
        if groups:
            groups[-1] += group
        else:
            groups.append(group)
    pooled_a = np.concatenate([a[~sparse], [a[g].sum() for g in groups]])
    pooled_b = np.concatenate([b[~sparse], [b[g].sum() for g in groups]])
    return pooled_a, pooled_b


def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """Two-sided asymptotic KS p-value, as ``scipy.stats.ks_2samp(method="asymp")``."""
    from scipy.stats import distributions

    if n1 <= 0 or n2 <= 0:
        raise ValueError("KS p-value needs two non-empty samples")
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = max(1.0, float(np.round(m * n / (m + n))))
    return float(np.clip(distributions.kstwo.sf(statistic, en), 0.0, 1.0))


def ks_test(expected: Sequence[float], actual: Sequence[float]) -> tuple[float, float]:
    """Two-sample KS statistic (exact) and asymptotic two-sided p-value."""
    x, y = _finite(expected, "expected"), _finite(actual, "actual")
    x, y = np.sort(x), np.sort(y)
    both = np.concatenate([x, y])
    d = np.abs(np.searchsorted(x, both, side="right") / len(x) - np.searchsorted(y, both, side="right") / len(y))
    stat = float(d.max())
    return stat, ks_pvalue(stat, len(x), len(y))


def wasserstein(expected: Sequence[float], actual: Sequence[float]) -> float:
    """First Wasserstein distance between two samples, ``integral |F - G|``."""
    x, y = np.sort(_finite(expected, "expected")), np.sort(_finite(actual, "actual"))
    both = np.sort(np.concatenate([x, y]))
    deltas = np.diff(both)
    fx = np.searchsorted(x, both[:-1], side="right") / len(x)
    fy = np.searchsorted(y, both[:-1], side="right") / len(y)
    return float(np.sum(np.abs(fx - fy) * deltas))


def quantile_bin_edges(expected: Sequence[float], bins: int = 10) -> np.ndarray:
    """Unique interior bin edges: ``expected``'s ``inverted_cdf`` quantiles at ``k / bins``."""
    _check_bins(bins)
    x = _finite(expected, "expected")
    levels = [k / bins for k in range(1, bins)]
    return np.unique(np.quantile(x, levels, method="inverted_cdf")) if levels else np.array([])


def bin_counts(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin ``(e[i-1], e[i]]`` (``len(edges) + 1`` bins)."""
    idx = np.searchsorted(np.asarray(edges, dtype=float), _finite(values, "values"), side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(float)


def population_stability_index(
    expected: Sequence[float], actual: Sequence[float], bins: int = 10, smoothing: float = 1e-6
) -> float:
    """PSI of ``actual`` against ``expected``, binned on ``expected``'s quantiles."""
    edges = quantile_bin_edges(expected, bins)
    return psi_from_counts(bin_counts(expected, edges), bin_counts(actual, edges), smoothing)


def category_counts(expected: Iterable[Any], actual: Iterable[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted union of categories (as strings, nulls left out) and each side's counts."""
    e = pd.Series(list(expected), dtype=object).dropna().astype(str).value_counts()
    a = pd.Series(list(actual), dtype=object).dropna().astype(str).value_counts()
    cats = sorted(set(e.index) | set(a.index))
    return cats, e.reindex(cats, fill_value=0).to_numpy(float), a.reindex(cats, fill_value=0).to_numpy(float)


def numeric_drift(
    expected: Sequence[float], actual: Sequence[float], bins: int = 10, smoothing: float = 1e-6
) -> dict[str, Any]:
    """All numeric drift statistics of two small samples (the reference for :func:`drift_metrics`)."""
    edges = quantile_bin_edges(expected, bins)
    p, q = bin_counts(expected, edges), bin_counts(actual, edges)
    stat, pvalue = ks_test(expected, actual)
    return {
        "ks_test": {"statistic": stat, "pvalue": pvalue},
        "wasserstein_distance": wasserstein(expected, actual),
        **_binned(p, q, smoothing),
    }


def categorical_drift(expected: Iterable[Any], actual: Iterable[Any], smoothing: float = 1e-6) -> dict[str, Any]:
    """All categorical drift statistics of two small samples (the reference for :func:`drift_metrics`)."""
    _, p, q = category_counts(expected, actual)
    stat, pvalue = chi_squared_test(p, q)
    return {"chi_squared_test": {"statistic": stat, "pvalue": pvalue}, **_binned(p, q, smoothing, pool=True)}


def _binned(p: np.ndarray, q: np.ndarray, smoothing: float, *, pool: bool = False) -> dict[str, Any]:
    """The binned statistics of baseline counts ``p`` and current counts ``q`` (one entry per bin or category).

    ``pool``: pool sparse bins first (:func:`pool_sparse_bins`; categorical columns). Every way of gathering
    counts (numpy reference, Spark group-by) ends here, so all of them pool alike.
    """
    sparse = sparse_bin_mask(p, q)
    row: dict[str, Any] = {"sparse_bins": bool(sparse.any())}
    if pool:
        k = len(p)
        p, q = pool_sparse_bins(p, q)
        if len(p) < k:
            row["note"] = (f"binned statistics on {len(p)} bins: {int(sparse.sum())} of {k} categories were sparse "
                           f"(under {MIN_BIN_SHARE:.0%} of the baseline or {MIN_EXPECTED_COUNT} expected rows) and were "
                           f"pooled; chi-squared uses all {k}")
    return {
        "population_stability_index": psi_from_counts(p, q, smoothing),
        "kl_divergence": kl_divergence(q, p, smoothing),
        "js_distance": js_distance(p, q),
        "tv_distance": tv_distance(p, q),
        "l_infinity_distance": l_infinity_distance(p, q),
        "num_bins": len(p),
        **row,
    }


def _pair(p: Sequence[float], q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_counts(p), _as_counts(q)
    if a.shape != b.shape:
        raise ValueError(f"the two distributions have different lengths ({len(a)} vs {len(b)}); align the bins first")
    if len(a) == 0:
        raise ValueError("empty distributions: no bins or categories to compare")
    return a, b


def _finite(x: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise ValueError(f"{name} has no non-null values")
    return arr


def _check_bins(bins: int) -> None:
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


# =============================================================== Spark helpers


def _spark() -> tuple[Any, Any, Any]:
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    return F, T, Window


def _require_columns(df: DataFrame, cols: Iterable[str], side: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"column(s) {missing} not found in the {side} data (it has {df.columns}); "
            "pass the right column names or select/rename them first"
        )


def _dtype(df: DataFrame, col: str) -> Any:
    return df.schema[col].dataType


def _is_numeric(dtype: Any) -> bool:
    _, T, _ = _spark()
    return isinstance(dtype, (T.NumericType, T.BooleanType))


def _is_atomic(dtype: Any) -> bool:
    _, T, _ = _spark()
    return not isinstance(dtype, (T.ArrayType, T.MapType, T.StructType))


def _window_column(df: DataFrame, window_col: str) -> Column:
    F, T, _ = _spark()
    _require_columns(df, [window_col], "monitored")
    dtype = _dtype(df, window_col)
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return F.col(window_col)
    if isinstance(dtype, T.DateType):
        return F.col(window_col).cast("timestamp")
    raise ValueError(
        f"window column {window_col!r} has type {dtype.simpleString()}, not a timestamp or date; "
        f"convert it with F.to_timestamp({window_col!r}) first"
    )


def _numeric_value(col: str) -> Column:
    """The column as double with NaN turned into null."""
    F, _, _ = _spark()
    v = F.col(col).cast("double")
    return F.when(F.isnan(v), F.lit(None).cast("double")).otherwise(v)


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


# =============================================================== profile metrics


def profile_metrics(
    df: DataFrame,
    columns: list[str],
    window_col: str,
    window: str = "1 day",
    categorical: list[str] | None = None,
    slice_cols: list[str] | None = None,
    *,
    top_k: int = 10,
    quantile_levels: Sequence[float] = QUANTILE_LEVELS,
) -> DataFrame:
    """Per time window, slice and column: counts, nulls, moments, quantiles, distinct and top items.

    Raises ``ValueError`` for no columns, ``top_k`` < 1, quantile levels outside [0, 1], a missing or nested
    column, or a categorical column not in ``columns``.
    """
    F, _, _ = _spark()
    categorical = list(categorical or [])
    slice_cols = list(slice_cols or [])
    levels = [float(q) for q in quantile_levels]
    ts = _check_profile_inputs(df, columns, categorical, slice_cols, window_col, top_k, levels)
    is_cat = {c: c in categorical or not _is_numeric(_dtype(df, c)) for c in columns}
    slice_structs = [F.struct(F.lit(None).cast("string").alias("slice_key"), F.lit(None).cast("string").alias("slice_value"))]
    slice_structs += [F.struct(F.lit(s).alias("slice_key"), F.col(s).cast("string").alias("slice_value")) for s in slice_cols]
    sliced = df.select(
        F.window(ts, window).alias("window"),
        F.explode(F.array(*slice_structs)).alias("_slice"),
        *[F.col(c).alias(f"_c{i}") for i, c in enumerate(columns)],
    ).select("window", "_slice.slice_key", "_slice.slice_value", *[f"_c{i}" for i in range(len(columns))])
    keys = ["window", "slice_key", "slice_value"]

    cells = []
    for i, c in enumerate(columns):
        raw = F.col(f"_c{i}")
        num = F.lit(None).cast("double") if is_cat[c] else _numeric_value(f"_c{i}")
        nan = F.lit(False) if is_cat[c] else F.coalesce(F.isnan(raw.cast("double")), F.lit(False))
        cells.append(F.struct(
            F.lit(c).alias("column_name"),
            F.lit(_dtype(df, c).simpleString()).alias("data_type"),
            F.lit(is_cat[c]).alias("is_cat"),
            num.alias("num"),
            raw.cast("string").alias("str"),
            nan.alias("is_nan"),
        ))
    long = sliced.select(*keys, F.explode(F.array(*cells)).alias("_v")).select(*keys, "_v.*")
    gkeys = [*keys, "column_name", "data_type", "is_cat"]
    quantiles = F.percentile_approx("num", levels, PERCENTILE_ACCURACY)
    median = (
        F.element_at(quantiles, levels.index(0.5) + 1) if 0.5 in levels
        else F.percentile_approx("num", 0.5, PERCENTILE_ACCURACY)
    )
    stats = long.groupBy(*gkeys).agg(
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

    s, t = stats.alias("s"), _frequent_items(long, keys, top_k).alias("t")
    on = [F.col(f"s.{k}").eqNullSafe(F.col(f"t.{k}")) for k in [*keys, "column_name"]]
    per_column = s.join(t, on=on, how="left").select("s.*", F.col("t.frequent_items"))

    table_rows = sliced.groupBy(*keys).agg(F.count(F.lit(1)).alias("count")).select(
        *keys, F.lit(":table").alias("column_name"), F.lit(None).cast("string").alias("data_type"),
        F.lit(False).alias("is_cat"), "count", F.lit(0).cast("long").alias("num_nulls"),
    )
    out = per_column.unionByName(table_rows, allowMissingColumns=True)
    return out.select(
        "window",
        F.lit(window).alias("granularity"),
        "slice_key",
        "slice_value",
        "column_name",
        "data_type",
        F.lit("INPUT").alias("log_type"),
        F.col("count").cast("long").alias("count"),
        F.col("num_nulls").cast("long").alias("num_nulls"),
        F.when(F.col("count") > 0, 100.0 * F.col("num_nulls") / F.col("count")).alias("percent_null"),
        F.col("num_nan").cast("long").alias("num_nan"),
        "avg", "stddev", "min", "max", "quantiles", "median",
        F.col("distinct_count").cast("long").alias("distinct_count"),
        "frequent_items",
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
    _require_columns(df, [*columns, *categorical, *slice_cols], "monitored")
    stray = sorted(set(categorical) - set(columns))
    if stray:
        raise ValueError(f"categorical column(s) {stray} are not in `columns`; add them there too")
    ts = _window_column(df, window_col)
    for c in columns:
        if not _is_atomic(_dtype(df, c)):
            raise ValueError(f"column {c!r} is {_dtype(df, c).simpleString()}; only flat columns can be profiled")
    return ts


def _frequent_items(long: DataFrame, keys: list[str], top_k: int) -> DataFrame:
    """Per ``keys`` and categorical ``column_name`` of the long frame: ``frequent_items``, the ``top_k`` values
    by count (ties by value), each ``{item, count}``."""
    F, _, Window = _spark()
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


# =============================================================== drift metrics


def _check_drift_inputs(
    baseline_df: DataFrame, current_df: DataFrame, numeric: list[str], categorical: list[str],
    bins: int, smoothing: float, drift_type: str, role: str,
) -> None:
    _check_bins(bins)
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
        _require_columns(df, [*numeric, *categorical], side)
        for c in numeric:
            if not _is_numeric(_dtype(df, c)):
                raise ValueError(
                    f"numeric column {c!r} is {_dtype(df, c).simpleString()} in the {side} data; "
                    "cast it to a number or list it as categorical (schemas of baseline and current must match)"
                )
        for c in categorical:
            if not _is_atomic(_dtype(df, c)):
                raise ValueError(f"categorical column {c!r} is {_dtype(df, c).simpleString()} in the {side} data; only flat columns")


def _side_columns(df: DataFrame, numeric: list[str], categorical: list[str]) -> list[Column]:
    """Numeric columns as double ``_n{i}`` (the counts job leaves NaN and +-infinity out, as nulls), categorical
    as string ``_k{i}``."""
    F, _, _ = _spark()
    cols = [F.col(c).cast("double").alias(f"_n{i}") for i, c in enumerate(numeric)]
    return cols + [F.col(c).cast("string").alias(f"_k{i}") for i, c in enumerate(categorical)]


_CAT = 1 << 20  # column ids of categorical parts in the counts job start here
_KEY_BITS = 25  # fine-bin keys lie in (-2^24, 2^24): shifted by 2^24 they fill the low 25 bits of a packed key
_MERGE_EVERY = 1 << 18  # a worker merges one column's per-batch bins once this many entries wait
_COUNTS_SCHEMA = "_g bigint, col int, key bigint, item string, b int, n bigint, s double, lo double, hi double"


def _fine_keys(v: np.ndarray) -> np.ndarray:
    """The fine bin of each finite double of ``v`` (int64, ordered like the values): 0 for zero, else
    ``sign(v) * (floor(log2|v| * LOG_BINS_PER_OCTAVE) + 2^23)``; a bin is a factor ``2^(1/LOG_BINS_PER_OCTAVE)``
    wide and ``|key| < 2^24`` for every double."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log2(np.abs(v)) * LOG_BINS_PER_OCTAVE) + (1 << 23)
        return np.where(v == 0, 0.0, np.sign(v) * mag).astype(np.int64)


def _reduce_bins(
    packed: np.ndarray, n: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Entries with equal key ``packed`` merged into one: counts ``n`` and sums ``s`` added, the smallest
    ``lo`` and the largest ``hi`` kept (NaN, an unknown bound, is ignored unless all are NaN).
    Returns ``(packed, n, s, lo, hi)`` sorted by key, one entry per distinct key."""
    if packed.size == 0:
        return packed, n, s, lo, hi
    order = np.argsort(packed)
    packed = packed[order]
    start = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
    return (packed[start], np.add.reduceat(n[order], start), np.add.reduceat(s[order], start),
            np.fmin.reduceat(lo[order], start), np.fmax.reduceat(hi[order], start))


class _PartitionCounts:
    """The drift counts of one partition of the tagged union, gathered batch by batch in a Spark worker.

    ``groups`` numbers the partition's (``_g``, side) pairs as they appear (key ``2 * _g + side``). Rows
    (column ``-1``) and numeric column ``i`` are keyed by a packed int64, ``group << 25 | (fine bin + 2^24)``,
    and hold per key the count ``n``, sum ``s`` and smallest / largest value (``lo``, ``hi``; for rows, of
    ``_ts`` in microseconds); each batch's entries wait in ``pending`` and are merged (:func:`_reduce_bins`)
    once :data:`_MERGE_EVERY` wait, so memory stays near the number of distinct bins. Categorical column
    ``_CAT + i`` is counted per (group, value) in ``items``.
    """

    def __init__(self) -> None:
        self.groups: dict[int, int] = {}
        self.merged: dict[int, tuple[np.ndarray, ...]] = {}
        self.pending: dict[int, list[tuple[np.ndarray, ...]]] = {}
        self.items: dict[tuple[int, int, str], int] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        """Bin every column of one Arrow batch: ``_g`` bigint, ``b`` int (1 = comparison side), ``_n{i}``
        double (null, NaN and +-infinity are missing), ``_k{i}`` string, optional ``_ts`` bigint (microseconds)."""
        if batch.num_rows == 0:
            return
        names = batch.schema.names
        column = {name: batch.column(j) for j, name in enumerate(names)}
        pair = 2 * column["_g"].to_numpy(zero_copy_only=False) + column["b"].to_numpy(zero_copy_only=False)
        pairs, local = np.unique(pair, return_inverse=True)
        group = np.array([self.groups.setdefault(int(p), len(self.groups)) for p in pairs], np.int64)[local]
        zero = (group << _KEY_BITS) + (1 << (_KEY_BITS - 1))  # each row's packed key of fine bin 0
        ts = column["_ts"].to_numpy(zero_copy_only=False).astype(float) if "_ts" in column else np.full(len(zero), np.nan)
        self._absorb(-1, zero, np.zeros(len(zero)), ts)
        for name in names:
            if name.startswith("_n"):
                v = column[name].to_numpy(zero_copy_only=False)
                ok = np.isfinite(v)  # null (NaN here), NaN and +-infinity are left out
                self._absorb(int(name[2:]), zero[ok] + _fine_keys(v[ok]), v[ok], v[ok])
            elif name.startswith("_k"):
                self._add_items(_CAT + int(name[2:]), pairs, local, column[name])

    def _absorb(self, col: int, packed: np.ndarray, s: np.ndarray, v: np.ndarray) -> None:
        """One batch's entries of column ``col``, one per row: packed key, value to sum, value for min / max."""
        queue = self.pending.setdefault(col, [])
        queue.append(_reduce_bins(packed, np.ones(len(packed), np.int64), s, v, v))
        if sum(len(part[0]) for part in queue) >= _MERGE_EVERY:
            self._merge(col)

    def _merge(self, col: int) -> None:
        parts = self.pending.pop(col, []) + ([self.merged[col]] if col in self.merged else [])
        self.merged[col] = _reduce_bins(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))

    def _add_items(self, col: int, pairs: np.ndarray, local: np.ndarray, values: pa.Array) -> None:
        """Count the non-null values of a categorical column per group (``local``: row -> index in ``pairs``)."""
        import pyarrow.compute as pc

        coded = pc.dictionary_encode(values)
        k = len(coded.dictionary)
        idx = coded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        ok = idx >= 0
        counts = np.bincount(local[ok] * k + idx[ok], minlength=len(pairs) * k)
        words = coded.dictionary.to_pylist()
        for at in np.flatnonzero(counts):
            key = (col, self.groups[int(pairs[at // k])], words[at % k])
            self.items[key] = self.items.get(key, 0) + int(counts[at])

    def table(self) -> pa.Table:
        """The partition's counts, one row per (``_g``, column, fine bin or value, side) (:data:`_COUNTS_SCHEMA`)."""
        import pyarrow as pa

        for col in list(self.pending):
            self._merge(col)
        pair_of = np.fromiter(self.groups, np.int64, len(self.groups))  # group number -> 2 * _g + side
        parts = []
        for col, (packed, n, s, lo, hi) in self.merged.items():
            key = (packed & ((1 << _KEY_BITS) - 1)) - (1 << (_KEY_BITS - 1))
            parts.append((col, pair_of[packed >> _KEY_BITS], key, None, n, s, lo, hi))
        if self.items:
            cols, groups, words = zip(*self.items, strict=True)
            none = np.full(len(words), np.nan)
            parts.append((np.array(cols), pair_of[np.array(groups)], np.zeros(len(words), np.int64), list(words),
                          np.fromiter(self.items.values(), np.int64, len(words)), np.zeros(len(words)), none, none))
        schema = pa.schema([("_g", pa.int64()), ("col", pa.int32()), ("key", pa.int64()), ("item", pa.string()),
                            ("b", pa.int32()), ("n", pa.int64()), ("s", pa.float64()), ("lo", pa.float64()), ("hi", pa.float64())])
        tables = [pa.table([pair >> 1, np.broadcast_to(np.int32(col), len(n)), key,
                            pa.nulls(len(n), pa.string()) if item is None else pa.array(item, pa.string()),
                            (pair & 1).astype(np.int32), n, s, pa.array(lo, from_pandas=True), pa.array(hi, from_pandas=True)],
                           schema=schema) for col, pair, key, item, n, s, lo, hi in parts]
        return pa.concat_tables(tables) if tables else schema.empty_table()


def _count_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function of :func:`_counts_job`, run in Spark's Python workers: bin every column of
    every Arrow batch of one partition (:class:`_PartitionCounts`), then yield the partition's counts, as
    many rows as distinct (group, column, fine bin or value, side), whatever the number of input rows."""
    counts = _PartitionCounts()
    for batch in batches:
        counts.add(batch)
    yield from counts.table().to_batches()


def partition_counter() -> Any:
    """The ``mapInArrow`` function that bins a partition, set to travel by value: no ``import utils`` where it runs.

    Spark pickles a function with cloudpickle, by reference when its module is importable here, so the
    worker would import ``utils.monitoring``. A serverless UDF sandbox need not see this project's files
    (Databricks review R9), so this module is registered with ``cloudpickle.register_pickle_by_value``: the
    function and the module-level code it calls travel with the job; they use only numpy and pyarrow.
    """
    import sys

    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return _count_partition


def _counts_job(combined: DataFrame, n_numeric: int, n_categorical: int, with_ts: bool) -> pd.DataFrame:
    """The one Spark job: every partition of the tagged union of both sides is binned in one pass by a
    ``mapInArrow`` worker (:func:`_count_partition`); the driver sums the partitions' counts.

    Per group ``_g`` and side ``b`` (1 = comparison side): rows (``col = -1``; ``lo`` / ``hi`` the first and
    last ``_ts`` when ``with_ts``); per numeric column ``i`` (``col = i``) and fine bin ``key``
    (:func:`_fine_keys`): count, sum, min and max of the finite values; per categorical column
    (``col = _CAT + i``) and value ``item``: count (the caller checks ``max_categories`` on the result).
    The driver receives at most (partitions x distinct bins) rows: a few hundred thousand for 14 columns
    of 1M rows a side in 8 partitions, whatever the number of rows.
    """
    F, _, _ = _spark()
    worker = partition_counter()
    values = [f"_n{i}" for i in range(n_numeric)] + [f"_k{i}" for i in range(n_categorical)] + (["_ts"] if with_ts else [])
    parts = (combined.select("_g", F.expr("IF(_src = 'b', 1, 0)").alias("b"), *values)
             .mapInArrow(worker, _COUNTS_SCHEMA).toArrow())
    summed = parts.group_by(["_g", "col", "key", "item", "b"]).aggregate(
        [("n", "sum"), ("s", "sum"), ("lo", "min"), ("hi", "max")])
    plain = {"n_sum": "n", "s_sum": "s", "lo_min": "lo", "hi_max": "hi"}
    return summed.rename_columns([plain.get(c, c) for c in summed.column_names]).to_pandas()


def _fine_bins(part: pd.DataFrame) -> dict[str, np.ndarray]:
    """One (group, numeric column)'s fine bins, in value order, as per-side arrays."""
    base, cur = part[part["b"] == 1].set_index("key"), part[part["b"] == 0].set_index("key")
    idx = base.index.union(cur.index).sort_values()
    base, cur = base.reindex(idx), cur.reindex(idx)
    out = {"key": idx.to_numpy(np.int64)}
    for name, df in (("b", base), ("c", cur)):
        out[f"n_{name}"] = df["n"].fillna(0).to_numpy(float)
        out[f"s_{name}"] = df["s"].fillna(0).to_numpy(float)
        out[f"lo_{name}"] = df["lo"].to_numpy(float)
        out[f"hi_{name}"] = df["hi"].to_numpy(float)
    return out


def _quantile_edges(fb: dict[str, np.ndarray], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """PSI bin edges from the baseline's fine bins, and the fine bin each edge lies in.

    The edge at level ``k / bins`` is the baseline's ``inverted_cdf`` quantile (the value of rank
    ``ceil(k * n / bins)``): exact when the fine bin holding that rank has a single distinct baseline
    value, else that bin's largest baseline value (rank error at most that bin's baseline count).
    """
    n_b = fb["n_b"]
    cum = np.cumsum(n_b)
    total = cum[-1]
    ranks = [max(1, math.ceil(k * total / bins - 1e-9)) for k in range(1, bins)]
    at = np.searchsorted(cum, ranks, side="left")
    values = fb["hi_b"][at]
    uniq, first = np.unique(values, return_index=True)
    return uniq, at[first]


def _fine_statistics(fb: dict[str, np.ndarray]) -> dict[str, float]:
    """KS statistic and Wasserstein distance from one column's fine bins, with their error bounds.

    ``fb``: per non-empty fine bin, in value order (disjoint value ranges), each side's count, sum,
    smallest and largest value. KS is the largest ``|F - G|`` at the bin boundaries (the empirical
    CDFs are exact there). For Wasserstein each side's mass in a bin is put at its mean there (its
    value, when the side has one distinct value in the bin) and ``integral |F - G|`` is computed
    exactly on these atoms, as :func:`wasserstein` does on samples; the atoms keep each bin's
    ``integral (F - G)``, so only bins where ``F - G`` changes sign add error.
    Returns ``ks``, ``wasserstein``, ``ks_bound`` and ``wasserstein_bound``: with ``p_j``, ``q_j`` the two
    sides' shares of bin ``j`` and ``J`` the bins holding more than one distinct value,
    ``0 <= KS - ks <= max_J max(p_j, q_j)`` and ``|wasserstein - W| <= 2 * sum_J (hi_j - lo_j) * max(p_j, q_j)``;
    both bounds are 0, and both statistics exact, when no bin holds two distinct values.
    """
    n_b, n_c = fb["n_b"], fb["n_c"]
    tb, tc = n_b.sum(), n_c.sum()
    ks = float(np.abs(np.cumsum(n_b) / tb - np.cumsum(n_c) / tc).max())
    lo, hi = np.fmin(fb["lo_b"], fb["lo_c"]), np.fmax(fb["hi_b"], fb["hi_c"])
    with np.errstate(divide="ignore", invalid="ignore"):
        pos_b = np.where(fb["lo_b"] == fb["hi_b"], fb["lo_b"], fb["s_b"] / n_b)
        pos_c = np.where(fb["lo_c"] == fb["hi_c"], fb["lo_c"], fb["s_c"] / n_c)
    has_b, has_c = n_b > 0, n_c > 0
    pos = np.concatenate([pos_b[has_b], pos_c[has_c]])
    wb = np.concatenate([n_b[has_b] / tb, np.zeros(int(has_c.sum()))])
    wc = np.concatenate([np.zeros(int(has_b.sum())), n_c[has_c] / tc])
    order = np.argsort(pos, kind="stable")
    pos, wb, wc = pos[order], wb[order], wc[order]
    uniq, start = np.unique(pos, return_index=True)
    d = np.abs(np.cumsum(np.add.reduceat(wb, start)) - np.cumsum(np.add.reduceat(wc, start)))
    w = float(np.sum(d[:-1] * np.diff(uniq)))
    share = np.maximum(n_b / tb, n_c / tc)
    multi = lo < hi
    return {
        "ks": min(ks, 1.0), "wasserstein": w,
        "ks_bound": float(share[multi].max()) if multi.any() else 0.0,
        "wasserstein_bound": float(2.0 * np.sum((hi - lo)[multi] * share[multi])),
    }


def _numeric_from_fine(fb: dict[str, np.ndarray], bins: int) -> dict[str, Any]:
    """KS, Wasserstein, PSI-bin counts and PSI edges of one (group, numeric column) from its fine bins.

    Fine bins below an edge's bin count below the edge; the edge's own bin counts below it too (all
    its baseline values are <= the edge; its current values above the edge, possible only when the
    edge is approximate, are the PSI counts' only error).
    """
    edges, edge_bins = _quantile_edges(fb, bins)
    coarse = np.searchsorted(edge_bins, np.arange(len(fb["key"])), side="left")
    p = np.bincount(coarse, weights=fb["n_b"], minlength=len(edges) + 1).astype(float)
    q = np.bincount(coarse, weights=fb["n_c"], minlength=len(edges) + 1).astype(float)
    return {**_fine_statistics(fb), "p": p, "q": q, "edges": edges}


def _drift_rows(
    combined: DataFrame,
    types: dict[str, str],
    numeric: list[str],
    categorical: list[str],
    labels: dict[int, dict[str, Any]],
    bins: int,
    smoothing: float,
    max_categories: int,
    with_ts: bool = False,
) -> pd.DataFrame:
    """Drift rows for every comparison group ``_g`` of a tagged union (``_src`` 'b' = comparison side).

    One Spark job (:func:`_counts_job`) whatever the number of columns and groups; every statistic is
    then computed on the driver from the collected counts.
    """
    counts = _counts_job(combined, len(numeric), len(categorical), with_ts)
    by_part = {key: part for key, part in counts.groupby(["_g", "col"])}
    rows = []
    for g in sorted(labels):
        lab = dict(labels[g])
        rc = by_part.get((g, -1), counts.iloc[:0])
        side_rows = {int(b): r for b, r in zip(rc["b"], rc.to_dict("records"), strict=True)}
        t = {"rows_b": int(side_rows[1]["n"]) if 1 in side_rows else 0, "rows_c": int(side_rows[0]["n"]) if 0 in side_rows else 0}
        if with_ts:
            if lab.get("window") is None and 0 in side_rows and pd.notna(side_rows[0]["lo"]):
                lab["window"] = (_utc(int(side_rows[0]["lo"])), _utc(int(side_rows[0]["hi"])))
            if lab.get("window_cmp") is None and 1 in side_rows and pd.notna(side_rows[1]["lo"]):
                lab["window_cmp"] = (_utc(int(side_rows[1]["lo"])), _utc(int(side_rows[1]["hi"])))
        common = {
            **lab, "window": _window_struct(lab.get("window")), "window_cmp": _window_struct(lab.get("window_cmp")),
            "slice_key": None, "slice_value": None,
            "count": t["rows_c"], "count_cmp": t["rows_b"], "count_delta": t["rows_c"] - t["rows_b"],
        }
        for kind, cols in (("n", numeric), ("k", categorical)):
            for i, c in enumerate(cols):
                part = by_part.get((g, i if kind == "n" else _CAT + i), counts.iloc[:0])
                nn_b, nn_c = int(part.loc[part["b"] == 1, "n"].sum()), int(part.loc[part["b"] == 0, "n"].sum())
                row = {**common, "column_name": c, "data_type": types[c], "percent_null_delta": _pct_null_delta(t, nn_b, nn_c)}
                if nn_b == 0 or nn_c == 0:
                    rows.append({**row, "note": _empty_note(t, nn_b, nn_c)})
                    continue
                if kind == "n":
                    fb = _fine_bins(part)
                    num = _numeric_from_fine(fb, bins)
                    row.update(_binned(num["p"], num["q"], smoothing))
                    stat = num["ks"]
                    row.update({"avg_delta": float(fb["s_c"].sum() / nn_c - fb["s_b"].sum() / nn_b),
                                "ks_test": {"statistic": stat, "pvalue": ks_pvalue(stat, nn_b, nn_c)},
                                "wasserstein_distance": num["wasserstein"]})
                else:
                    h: dict[int, dict[str, int]] = {0: {}, 1: {}}
                    for item, b, n in zip(part["item"], part["b"], part["n"], strict=True):
                        h[int(b)][item] = int(n)
                    keys = sorted(set(h[0]) | set(h[1]))
                    if len(keys) > max_categories:  # checked per group and column
                        raise ValueError(
                            f"categorical column {c!r} has {len(keys)} distinct values (> max_categories={max_categories}); "
                            "leave high-cardinality columns out, bucket them, or raise max_categories"
                        )
                    p = np.array([h[1].get(k, 0) for k in keys], float)
                    q = np.array([h[0].get(k, 0) for k in keys], float)
                    row.update(_binned(p, q, smoothing, pool=True))
                    stat, pvalue = chi_squared_test(p, q)
                    row["chi_squared_test"] = {"statistic": stat, "pvalue": pvalue}
                rows.append(row)
    return _drift_frame(rows)


def drift_metrics(
    baseline_df: DataFrame,
    current_df: DataFrame,
    numeric: list[str],
    categorical: list[str],
    bins: int = 10,
    smoothing: float = 1e-6,
    *,
    window: Any = None,
    window_cmp: Any = None,
    window_col: str | None = None,
    drift_type: str = "BASELINE",
    granularity: str | None = None,
    role: str = "feature",
    max_categories: int = 1000,
) -> pd.DataFrame:
    """Drift of ``current_df`` against ``baseline_df``, one row per column (Lakehouse Monitoring shape).

    ``window`` / ``window_cmp`` label the rows (a ``(start, end)`` pair or ``{"start", "end"}``);
    with ``window_col`` they default to the first/last timestamp of each side.
    """
    F, _, _ = _spark()
    numeric, categorical = list(numeric), list(categorical)
    _check_drift_inputs(baseline_df, current_df, numeric, categorical, bins, smoothing, drift_type, role)

    def side(df: DataFrame, tag: str) -> DataFrame:
        ts = [F.unix_micros(_window_column(df, window_col)).alias("_ts")] if window_col else []
        return df.select(F.lit(tag).alias("_src"), F.lit(0).cast("long").alias("_g"), *_side_columns(df, numeric, categorical), *ts)

    combined = side(baseline_df, "b").unionByName(side(current_df, "c"))
    labels = {0: {"window": window, "window_cmp": window_cmp, "drift_type": drift_type, "granularity": granularity, "role": role}}
    types = {c: _dtype(current_df, c).simpleString() for c in [*numeric, *categorical]}
    return _drift_rows(combined, types, numeric, categorical, labels, bins, smoothing, max_categories, with_ts=bool(window_col))


def _pct_null_delta(tot: dict[str, Any], nn_b: int, nn_c: int) -> float | None:
    if not tot["rows_b"] or not tot["rows_c"]:
        return None
    return 100.0 * (1 - nn_c / tot["rows_c"]) - 100.0 * (1 - nn_b / tot["rows_b"])


def _empty_note(tot: dict[str, Any], nn_b: int, nn_c: int) -> str:
    parts = []
    for side, rows, nn in (("current", tot["rows_c"], nn_c), ("baseline", tot["rows_b"], nn_b)):
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


def drift_by_window(
    baseline_df: DataFrame | None,
    current_df: DataFrame,
    numeric: list[str],
    categorical: list[str],
    window_col: str,
    window: str = "1 day",
    *,
    drift_type: str = "BASELINE",
    bins: int = 10,
    smoothing: float = 1e-6,
    role: str = "feature",
    max_categories: int = 1000,
) -> pd.DataFrame:
    """Drift of every time window of ``current_df``, against the baseline or the previous window.

    All windows are computed in the same few Spark jobs (the comparison rows are replicated per
    window, so prefer a coarser ``window`` over hundreds of windows). ``CONSECUTIVE`` compares a
    window with the one just before it, only where that one has rows (as Lakehouse Monitoring
    does); ``baseline_df`` may then be ``None``. Rows with a null timestamp belong to no window and
    are left out here (:func:`profile_metrics` counts them under a NULL window).
    """
    F, _, _ = _spark()
    if drift_type == "BASELINE" and baseline_df is None:
        raise ValueError("BASELINE drift needs a baseline_df (or use drift_type='CONSECUTIVE')")
    cmp_df = baseline_df if baseline_df is not None else current_df
    numeric, categorical = list(numeric), list(categorical)
    _check_drift_inputs(cmp_df, current_df, numeric, categorical, bins, smoothing, drift_type, role)
    ts = _window_column(current_df, window_col)
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
        window_cmp = None
        if window_col in cmp_df.columns:
            r = cmp_df.select(F.unix_micros(F.min(_window_column(cmp_df, window_col))).alias("s"),
                              F.unix_micros(F.max(_window_column(cmp_df, window_col))).alias("e")).first()
            window_cmp = None if r["s"] is None else (_utc(r["s"]), _utc(r["e"]))
        for lab in labels.values():
            lab["window_cmp"] = window_cmp
        if not windows:
            return _drift_frame([])
        comparison = cmp_df.select(
            F.lit("b").alias("_src"), F.explode(F.array(*[F.lit(s) for s, _ in windows])).alias("_g"),
            *_side_columns(cmp_df, numeric, categorical),
        )
    else:
        follows = {s: nxt for (s, e), (nxt, _) in pairwise(windows) if e == nxt}
        labels = {nxt: {**labels[nxt], "window_cmp": (_utc(s), _utc(e))}
                  for (s, e), (nxt, _) in pairwise(windows) if e == nxt}
        if not follows:
            return _drift_frame([])
        shift = F.create_map(*[x for s, nxt in follows.items() for x in (F.lit(s), F.lit(nxt))])
        comparison = cur.select(
            F.lit("b").alias("_src"), F.try_element_at(shift, F.col("_w")).alias("_g"), *[c for c in cur.columns if c != "_w"]
        ).where(F.col("_g").isNotNull())
        current = current.where(F.col("_g").isin(list(follows.values())))
    combined = comparison.unionByName(current)
    types = {c: _dtype(current_df, c).simpleString() for c in [*numeric, *categorical]}
    return _drift_rows(combined, types, numeric, categorical, labels, bins, smoothing, max_categories)


def label_drift(baseline_df: DataFrame, current_df: DataFrame, label_col: str, *, categorical: bool = True, **kwargs: Any) -> pd.DataFrame:
    """Drift of the label column (categorical by default, as for a classification label)."""
    cols = ([], [label_col]) if categorical else ([label_col], [])
    return drift_metrics(baseline_df, current_df, *cols, role="label", **kwargs)


def prediction_drift(baseline_df: DataFrame, current_df: DataFrame, prediction_col: str, *, categorical: bool = False, **kwargs: Any) -> pd.DataFrame:
    """Drift of the model's output column (numeric scores by default)."""
    cols = ([], [prediction_col]) if categorical else ([prediction_col], [])
    return drift_metrics(baseline_df, current_df, *cols, role="prediction", **kwargs)


# =============================================================== model quality (concept drift)

QUALITY_COLUMNS: tuple[str, ...] = (
    "window_start", "window_end", "count", "n_labeled", "positives", "observed_rate", "mean_predicted",
    "auc", "precision", "recall", "f1", "accuracy", "brier", "ece", "threshold",
)


def model_quality_by_window(
    df: DataFrame,
    label_col: str,
    score_col: str,
    window_col: str,
    window: str = "1 day",
    threshold: float = 0.5,
    *,
    ece_bins: int = 10,
) -> pd.DataFrame:
    """Per time window: AUC, precision, recall, F1, accuracy, Brier score and calibration (ECE).

    Only rows with both a label (0/1) and a score count as labeled; windows whose labels have not
    arrived yet appear with ``n_labeled == 0`` and NaN metrics. AUC is the Mann-Whitney statistic
    (ties count half), equal to ``sklearn.metrics.roc_auc_score``; precision is NaN with no predicted
    positive, AUC NaN with one class. ECE: ``sum(n_b / n * |mean score_b - positive rate_b|)``
    over ``ece_bins`` equal-width score bins. ``window_start`` / ``window_end`` are the window's bounds
    clipped to the data's first and last timestamp, so a window wider than the data (one window over
    everything) reports the span the rows cover, not the calendar-aligned bucket around it.
    """
    F, _, _ = _spark()
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
    lab = base.where(labeled)
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
    bad = int(stats["bad_labels"].sum())
    if bad:
        raise ValueError(f"label column {label_col!r} has {bad} value(s) other than 0/1; map the labels to 0/1 first")
    lo, hi = stats["s_min"].min(), stats["s_max"].max()
    if (pd.notna(lo) and lo < 0) or (pd.notna(hi) and hi > 1):
        raise ValueError(
            f"score column {score_col!r} has values outside [0, 1] (min {lo}, max {hi}); "
            "pass the positive-class probability, not a margin or a label"
        )
    out = stats.merge(_auc_and_ece(lab, ece_bins), on="ws", how="left").sort_values("ws")
    return _quality_frame(out, threshold)


def _check_quality_inputs(df: DataFrame, label_col: str, score_col: str, window_col: str, threshold: float,
                          ece_bins: int) -> Column:
    """Raise ``ValueError`` for a missing or non-numeric label or score column, a threshold outside [0, 1] or
    fewer than one ECE bin; returns the window column as a timestamp."""
    _require_columns(df, [label_col, score_col], "scored")
    for c in (label_col, score_col):
        if not _is_numeric(_dtype(df, c)):
            raise ValueError(f"column {c!r} is {_dtype(df, c).simpleString()}; labels must be 0/1 and scores numbers in [0, 1]")
    ts = _window_column(df, window_col)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    if ece_bins < 1:
        raise ValueError(f"ece_bins must be >= 1, got {ece_bins}")
    return ts


def _auc_and_ece(lab: DataFrame, ece_bins: int) -> pd.DataFrame:
    """Per window start ``ws`` (microseconds) of the labeled rows (``y`` 0/1, score ``s``): the Mann-Whitney
    ``u`` (ties count half) and ``ece_abs``, the sum over ``ece_bins`` equal-width score bins of
    ``|sum of scores - sum of labels|``."""
    F, _, Window = _spark()
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


# =============================================================== breaches


def _rule_set(role: str, is_numeric: bool, th: Thresholds) -> list[tuple[str, str, float, str]]:
    """(metric, field inside a struct or '', threshold, direction) rules for one drift row."""
    psi = th.prediction_psi if role == "prediction" else th.psi
    rules = [("population_stability_index", "", psi, "above"), ("js_distance", "", th.js_distance, "above")]
    if is_numeric:
        rules.append(("ks_test", "pvalue", th.ks_pvalue, "below"))
    else:
        rules.append(("chi_squared_test", "pvalue", th.chi2_pvalue, "below"))
    return rules


def detect_breaches(
    drift: pd.DataFrame | DataFrame,
    thresholds: Thresholds,
    *,
    quality: pd.DataFrame | None = None,
    baseline_auc: float | None = None,
) -> list[dict[str, Any]]:
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
