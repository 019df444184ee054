"""Drift statistics defined in numpy, on small samples or count vectors (the baseline is the *expected*
distribution): the reference the Spark drift tables of ``utils.drift`` reproduce from counts.

- ``ks_test`` (numeric): the two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``), exact, with
  Smirnov's asymptotic two-sided p-value ``scipy.stats.kstwo.sf(D, round(n*m/(n+m)))``, as
  ``scipy.stats.ks_2samp(method="asymp")`` (the effective size is floored at 1).
- ``wasserstein`` (numeric): ``integral |F - G|`` of the empirical CDFs (``scipy.stats.wasserstein_distance``).
- ``chi_squared_test`` (categorical): Pearson's test of homogeneity on the 2 x K table of counts, no Yates
  correction (``scipy.stats.chi2_contingency(table, correction=False)``); under two categories: 0 and p = 1.
- Binned distances, on the baseline's quantile bins (numeric: unique ``inverted_cdf`` quantiles at ``k/bins``,
  right-closed bins ``(e[i-1], e[i]]``) or the union of categories: ``population_stability_index``
  ``sum((q - p) * ln(q / p))`` and ``kl_divergence`` ``KL(current || baseline) = sum(q * ln(q / p))`` on
  *smoothed* proportions ``(count / n + smoothing) / (1 + K * smoothing)``, so a bin empty on one side costs a
  large but finite amount; ``js_distance``, the Jensen-Shannon *distance* in base 2 (0..1) on raw proportions,
  as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; ``tv_distance`` ``0.5 * sum|p - q|`` and
  ``l_infinity_distance`` ``max|p - q|``.
- Sparse bins (:func:`sparse_bin_mask`: under :data:`MIN_BIN_SHARE` of the baseline or :data:`MIN_EXPECTED_COUNT`
  expected rows) make PSI and JS alarm on sampling noise alone (200 equally likely categories, 2,000 rows a
  side: PSI about 0.2, JS about 0.2), so two or more sparse categories are pooled (:func:`pool_sparse_bins`)
  before the binned statistics; chi-squared uses every category. Numeric quantile bins are not pooled.

Bad input (counts not 1-d, negative or not finite, vectors of different lengths, an empty sample, ``bins`` < 2,
negative ``smoothing``) raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

MIN_BIN_SHARE = 0.05  # a bin under 5% of the baseline is sparse: at most 20 bins, as in the usual 10-20 PSI bins
MIN_EXPECTED_COUNT = 5  # ... or under 5 expected rows in the smaller sample (Cochran 1954)


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


def sparse_bin_mask(expected: Sequence[float], actual: Sequence[float], min_share: float = MIN_BIN_SHARE,
                    min_count: float = MIN_EXPECTED_COUNT) -> np.ndarray:
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


def pool_sparse_bins(expected: Sequence[float], actual: Sequence[float], min_share: float = MIN_BIN_SHARE,
                     min_count: float = MIN_EXPECTED_COUNT) -> tuple[np.ndarray, np.ndarray]:
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
    check_bins(bins)
    x = _finite(expected, "expected")
    levels = [k / bins for k in range(1, bins)]
    return np.unique(np.quantile(x, levels, method="inverted_cdf")) if levels else np.array([])


def bin_counts(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin ``(e[i-1], e[i]]`` (``len(edges) + 1`` bins)."""
    idx = np.searchsorted(np.asarray(edges, dtype=float), _finite(values, "values"), side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(float)


def population_stability_index(expected: Sequence[float], actual: Sequence[float], bins: int = 10,
                               smoothing: float = 1e-6) -> float:
    """PSI of ``actual`` against ``expected``, binned on ``expected``'s quantiles."""
    edges = quantile_bin_edges(expected, bins)
    return psi_from_counts(bin_counts(expected, edges), bin_counts(actual, edges), smoothing)


def category_counts(expected: Iterable[Any], actual: Iterable[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted union of categories (as strings, nulls left out) and each side's counts."""
    e = pd.Series(list(expected), dtype=object).dropna().astype(str).value_counts()
    a = pd.Series(list(actual), dtype=object).dropna().astype(str).value_counts()
    cats = sorted(set(e.index) | set(a.index))
    return cats, e.reindex(cats, fill_value=0).to_numpy(float), a.reindex(cats, fill_value=0).to_numpy(float)


def numeric_drift(expected: Sequence[float], actual: Sequence[float], bins: int = 10,
                  smoothing: float = 1e-6) -> dict[str, Any]:
    """All numeric drift statistics of two small samples (the reference for ``utils.drift.drift_metrics``)."""
    edges = quantile_bin_edges(expected, bins)
    p, q = bin_counts(expected, edges), bin_counts(actual, edges)
    stat, pvalue = ks_test(expected, actual)
    return {
        "ks_test": {"statistic": stat, "pvalue": pvalue},
        "wasserstein_distance": wasserstein(expected, actual),
        **binned_statistics(p, q, smoothing),
    }


def categorical_drift(expected: Iterable[Any], actual: Iterable[Any], smoothing: float = 1e-6) -> dict[str, Any]:
    """All categorical drift statistics of two small samples (the reference for ``utils.drift.drift_metrics``)."""
    _, p, q = category_counts(expected, actual)
    stat, pvalue = chi_squared_test(p, q)
    return {"chi_squared_test": {"statistic": stat, "pvalue": pvalue}, **binned_statistics(p, q, smoothing, pool=True)}


def binned_statistics(p: np.ndarray, q: np.ndarray, smoothing: float, *, pool: bool = False) -> dict[str, Any]:
    """The binned statistics of baseline counts ``p`` and current counts ``q`` (one entry per bin or category).

    ``pool``: pool sparse bins first (:func:`pool_sparse_bins`; categorical columns). Every way of gathering
    counts (numpy reference, Spark) ends here, so all of them pool alike.
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


def check_bins(bins: int) -> None:
    """Raise ``ValueError`` unless ``bins`` is an integer >= 2."""
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


def _as_counts(x: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d vector of counts or probabilities, got shape {arr.shape}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("counts/probabilities must be finite and non-negative")
    return arr


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
