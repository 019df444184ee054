"""Monitoring statistics: numpy references and Spark aggregations checked against scipy/sklearn."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from utils import drift as dm
from utils import drift_binning as db
from utils import drift_statistics as ds
from utils import model_quality as mq
from utils import monitoring as m
from utils.config import Thresholds

T0 = datetime(2024, 3, 1, tzinfo=UTC)
RTOL = 1e-9


def _frame(spark, **columns):
    """A Spark DataFrame from equal-length Python lists (None is null)."""
    return spark.createDataFrame(pa.table(columns))


def _times(n, day, rng):
    return [T0 + timedelta(days=day, seconds=int(s)) for s in rng.integers(0, 86_400, n)]


def _smooth(counts, eps=1e-6):
    p = np.asarray(counts, float) / np.sum(counts)
    return (p + eps) / (1 + len(p) * eps)


# ------------------------------------------------------------------ numpy references vs scipy


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_ks_and_wasserstein_match_scipy(seed, shift):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=150).round(1), rng.normal(shift, 1.2, size=90).round(1)  # rounding makes ties
    stat, pvalue = ds.ks_test(x, y)
    ref = stats.ks_2samp(x, y, method="asymp")
    assert stat == pytest.approx(ref.statistic, rel=1e-12)
    assert pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert ds.wasserstein(x, y) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)


def test_distribution_distances_match_scipy():
    p, q = np.array([30.0, 50, 0, 20]), np.array([10.0, 40, 25, 25])
    assert ds.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)
    ps, qs = _smooth(p), _smooth(q)
    assert ds.kl_divergence(q, p) == pytest.approx(stats.entropy(qs, ps), rel=1e-12)
    assert ds.kl_divergence(q, p) == pytest.approx(rel_entr(qs, ps).sum(), rel=1e-12)
    assert ds.psi_from_counts(p, q) == pytest.approx(rel_entr(qs, ps).sum() + rel_entr(ps, qs).sum(), rel=1e-12)
    assert ds.tv_distance(p, q) == pytest.approx(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())
    assert ds.js_distance(p, p) == 0.0 and ds.psi_from_counts(p, p) == pytest.approx(0.0, abs=1e-15)
    assert 0.0 < ds.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)  # base 2: disjoint supports -> 1


def test_chi_squared_matches_chi2_contingency():
    p, q = np.array([120.0, 80, 40, 0]), np.array([50.0, 60, 30, 12])
    stat, pvalue = ds.chi_squared_test(p, q)
    table = np.vstack([p, q])
    ref = stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)  # scipy rejects empty columns
    assert stat == pytest.approx(ref.statistic, rel=1e-12)
    assert pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert ds.chi_squared_test([10], [4]) == (0.0, 1.0)  # one category in all: nothing to test


def test_psi_on_quantile_bins_of_expected():
    rng = np.random.default_rng(3)
    expected, actual = rng.normal(size=1000), rng.normal(0.5, 1, size=800)
    edges = ds.quantile_bin_edges(expected, 10)
    np.testing.assert_array_equal(edges, np.quantile(expected, np.arange(1, 10) / 10, method="inverted_cdf"))
    counts = ds.bin_counts(expected, edges)
    assert counts.sum() == 1000 and set(counts) == {100.0}  # equal-frequency bins on the baseline
    p, q = counts, ds.bin_counts(actual, edges)
    assert ds.population_stability_index(expected, actual) == pytest.approx(ds.psi_from_counts(p, q), rel=1e-12)
    assert ds.population_stability_index(expected, actual) > 0.2 > ds.population_stability_index(expected, rng.normal(size=800))


def test_reference_functions_reject_bad_input():
    with pytest.raises(ValueError, match="different lengths"):
        ds.js_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no non-null"):
        ds.ks_test([np.nan], [1.0])
    with pytest.raises(ValueError, match="bins"):
        ds.quantile_bin_edges([1.0, 2.0], bins=1)
    with pytest.raises(ValueError, match="all-zero"):
        ds.psi_from_counts([0, 0], [1, 2])


# ------------------------------------------------------------------ Spark drift vs scipy


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(7)
    nb, nc = 400, 250
    return {
        "b_x": rng.normal(10, 2, nb).round(1).tolist(),
        "c_x": rng.normal(11, 2.5, nc).round(1).tolist(),
        "b_k": rng.choice(["fern", "cactus", "palm"], nb, p=[0.5, 0.3, 0.2]).tolist(),
        "c_k": rng.choice(["fern", "cactus", "palm", "orchid"], nc, p=[0.3, 0.3, 0.2, 0.2]).tolist(),
        "b_t": _times(nb, 0, rng),
        "c_t": _times(nc, 5, rng),
    }


@pytest.fixture(scope="module")
def shifted_drift(spark, samples):
    s = samples
    base = _frame(spark, x=s["b_x"], k=s["b_k"], t=s["b_t"])
    cur = _frame(spark, x=s["c_x"], k=s["c_k"], t=s["c_t"])
    return dm.drift_metrics(base, cur, ["x"], ["k"], window_col="t").set_index("column_name")


def test_spark_numeric_drift_matches_scipy(samples, shifted_drift):
    row = shifted_drift.loc["x"]
    x, y = np.array(samples["b_x"]), np.array(samples["c_x"])
    ks = stats.ks_2samp(x, y, method="asymp")
    assert row["ks_test"]["statistic"] == pytest.approx(ks.statistic, rel=RTOL)
    assert row["ks_test"]["pvalue"] == pytest.approx(ks.pvalue, rel=1e-6)
    assert row["wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(x, y), rel=RTOL)
    ref = ds.numeric_drift(x, y)
    edges = ds.quantile_bin_edges(x)
    p, q = ds.bin_counts(x, edges), ds.bin_counts(y, edges)
    assert row["num_bins"] == len(edges) + 1 == ref["num_bins"]
    assert row["js_distance"] == pytest.approx(jensenshannon(p, q, base=2), rel=RTOL)
    assert row["kl_divergence"] == pytest.approx(stats.entropy(_smooth(q), _smooth(p)), rel=RTOL)
    assert row["population_stability_index"] == pytest.approx(ref["population_stability_index"], rel=RTOL)
    assert row["avg_delta"] == pytest.approx(y.mean() - x.mean(), rel=RTOL)
    assert row["chi_squared_test"] is None and row["role"] == "feature" and row["data_type"] == "double"


def test_spark_ks_and_wasserstein_stay_within_their_stated_bounds(spark):
    """Continuous values crowded into few fine bins (U(100, 101) spans 64 of them): the approximate path."""
    rng = np.random.default_rng(3)
    x, y = rng.uniform(100, 101, 50_000), rng.uniform(100.02, 101.05, 40_000)
    row = dm.drift_metrics(_frame(spark, v=x.tolist()), _frame(spark, v=y.tolist()), ["v"], []).iloc[0]
    # the documented bounds, from the fine bins (floor(log2 v * 4096)) computed here with numpy
    kx, ky = np.floor(np.log2(x) * db.LOG_BINS_PER_OCTAVE), np.floor(np.log2(y) * db.LOG_BINS_PER_OCTAVE)
    keys = np.union1d(kx, ky)
    p = np.array([(kx == k).sum() for k in keys]) / len(x)
    q = np.array([(ky == k).sum() for k in keys]) / len(y)
    both = np.concatenate([x, y])
    kb = np.concatenate([kx, ky])
    spread = np.array([np.ptp(both[kb == k]) for k in keys])
    ks_bound = np.maximum(p, q)[spread > 0].max()
    w_bound = 2 * np.sum(spread * np.maximum(p, q))
    assert 0.01 < ks_bound < 0.02 and 0 < w_bound < 0.05  # every bin holds many values: nothing is exact here
    ks = stats.ks_2samp(x, y).statistic
    assert 0 <= ks - row["ks_test"]["statistic"] <= ks_bound
    assert abs(row["wasserstein_distance"] - stats.wasserstein_distance(x, y)) <= w_bound
    # in practice far inside the bounds: the shift is found to a few parts in a thousand
    assert row["ks_test"]["statistic"] == pytest.approx(ks, abs=2e-3)
    assert row["wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(x, y), rel=5e-3)


def test_spark_categorical_drift_matches_scipy(samples, shifted_drift):
    row = shifted_drift.loc["k"]
    cats, p, q = ds.category_counts(samples["b_k"], samples["c_k"])
    assert cats == ["cactus", "fern", "orchid", "palm"] and p[cats.index("orchid")] == 0  # unseen in the baseline
    chi = stats.chi2_contingency(np.vstack([p, q]), correction=False)
    assert row["chi_squared_test"]["statistic"] == pytest.approx(chi.statistic, rel=RTOL)
    assert row["chi_squared_test"]["pvalue"] == pytest.approx(chi.pvalue, rel=1e-6)
    assert row["js_distance"] == pytest.approx(jensenshannon(p, q, base=2), rel=RTOL)
    assert row["kl_divergence"] == pytest.approx(rel_entr(_smooth(q), _smooth(p)).sum(), rel=RTOL)
    psi = rel_entr(_smooth(q), _smooth(p)).sum() + rel_entr(_smooth(p), _smooth(q)).sum()
    assert math.isfinite(row["population_stability_index"])
    assert row["population_stability_index"] == pytest.approx(psi, rel=RTOL)
    assert row["num_bins"] == 4 and pd.isna(row["wasserstein_distance"]) and row["ks_test"] is None


def test_drift_rows_carry_windows_and_counts(samples, shifted_drift):
    row = shifted_drift.loc["x"]
    assert row["window"]["start"] == min(samples["c_t"]) and row["window"]["end"] == max(samples["c_t"])
    assert row["window_cmp"]["start"] == min(samples["b_t"])
    assert (row["count"], row["count_cmp"], row["count_delta"]) == (250, 400, -150)
    assert row["drift_type"] == "BASELINE" and row["note"] is None


def test_shifted_distribution_is_flagged_and_identical_is_not(spark, samples, shifted_drift):
    found = {(b["column"], b["metric"]) for b in m.detect_breaches(shifted_drift.reset_index(), Thresholds())}
    assert ("x", "ks_test.pvalue") in found and ("x", "population_stability_index") in found
    assert ("k", "chi_squared_test.pvalue") in found and ("k", "js_distance") in found
    rng = np.random.default_rng(11)
    base = _frame(spark, x=samples["b_x"], k=samples["b_k"])
    same = dm.drift_metrics(base, base, ["x"], ["k"])
    assert same["population_stability_index"].max() == pytest.approx(0.0, abs=1e-12)
    assert same["js_distance"].max() == 0.0 and same.iloc[0]["ks_test"]["statistic"] == 0.0
    assert m.detect_breaches(same, Thresholds()) == []
    # a fresh sample of the same distribution; 2,000 rows a side, since with 10 bins the JS distance
    # of two samples of n from one distribution is about 0.085 at n=400 (above the 0.1 default 25% of the time)
    def sample(n):
        return _frame(spark, x=rng.normal(10, 2, n).round(2).tolist(),
                      k=rng.choice(["fern", "cactus", "palm"], n, p=[0.5, 0.3, 0.2]).tolist())
    assert m.detect_breaches(dm.drift_metrics(sample(2000), sample(2000), ["x"], ["k"]), Thresholds()) == []


def _uniform_categories(k, n, rng):
    return rng.choice([f"c{i:04d}" for i in range(k)], n).tolist()


@pytest.mark.parametrize("k", [200, 800])
def test_unchanged_high_cardinality_column_does_not_alarm(k):
    """Issue 34: 2,000 rows a side from one uniform distribution over 200 (or 800) categories gave PSI
    0.2 (1.7) and JS 0.2, over the thresholds; sparse categories are now pooled before PSI and JS."""
    rng = np.random.default_rng(k)
    base, cur = _uniform_categories(k, 2000, rng), _uniform_categories(k, 2000, rng)
    got = ds.categorical_drift(base, cur)
    th = Thresholds()
    assert got["population_stability_index"] < th.psi / 4 and got["js_distance"] < th.js_distance
    assert got["sparse_bins"] and got["num_bins"] <= 20 and "pooled" in got["note"]
    _, p, q = ds.category_counts(base, cur)
    chi = stats.chi2_contingency(np.vstack([p, q]), correction=False)  # the test still sees every category
    assert got["chi_squared_test"]["statistic"] == pytest.approx(chi.statistic, rel=1e-12)
    assert got["chi_squared_test"]["pvalue"] > th.chi2_pvalue


@pytest.mark.parametrize("k", [200, 800])
def test_shift_in_high_cardinality_column_still_alarms(k):
    rng = np.random.default_rng(k + 1)
    cats = np.array([f"c{i:04d}" for i in range(k)])
    base = _uniform_categories(k, 2000, rng)
    popular = np.where(rng.random(2000) < 0.5, rng.choice(cats[[3, 50, 77, 120, 160]], 2000), rng.choice(cats, 2000))
    newcomers = np.where(rng.random(2000) < 0.3, rng.choice([f"new{i}" for i in range(40)], 2000), rng.choice(cats, 2000))
    for cur in (popular, newcomers):  # half the rows on five categories; 30% on forty categories never seen
        got = ds.categorical_drift(base, cur.tolist())
        assert got["population_stability_index"] > 0.4 and got["js_distance"] > 0.25 and got["sparse_bins"]


def test_pooling_keeps_every_row_and_leaves_dense_categories_alone():
    a, b = np.array([500.0, 300, 60, 40, 30, 20, 20, 15, 10, 5]), np.array([450.0, 330, 50, 40, 40, 30, 20, 20, 10, 10])
    np.testing.assert_array_equal(ds.sparse_bin_mask(a, b), a < 50)  # 5% of 1,000 baseline rows
    pa_, pb = ds.pool_sparse_bins(a, b)
    assert pa_.sum() == a.sum() and pb.sum() == b.sum()
    np.testing.assert_array_equal(pa_[:3], [500, 300, 60])  # the dense ones, as they were
    assert len(pa_) == 5 and (pa_ >= 50).all()  # [40, 30] [20, 20, 15] and [10, 5] joining the group before
    # one sparse category (a new one, unseen in the baseline) has nothing to pool with: left as is
    a1, b1 = np.array([120.0, 80, 0]), np.array([50.0, 60, 30])
    assert ds.sparse_bin_mask(a1, b1).tolist() == [False, False, True]
    assert [x.tolist() for x in ds.pool_sparse_bins(a1, b1)] == [a1.tolist(), b1.tolist()]
    # a small current sample needs more rows per bin: 5 expected of its 40 rows is 12.5% of the baseline
    assert ds.sparse_bin_mask([900.0, 100], [30.0, 10]).tolist() == [False, True]


def test_spark_drift_pools_sparse_categories_and_says_so(spark):
    rng = np.random.default_rng(34)
    side = lambda: _frame(spark, k200=_uniform_categories(200, 2000, rng), k800=_uniform_categories(800, 2000, rng),
                          k3=rng.choice(["fern", "cactus", "palm"], 2000, p=[0.5, 0.3, 0.2]).tolist())
    base, cur = side(), side()
    d = dm.drift_metrics(base, cur, [], ["k200", "k800", "k3"])
    assert m.detect_breaches(d, Thresholds()) == []
    rows = d.set_index("column_name")
    assert rows.loc["k200", "sparse_bins"] and rows.loc["k800", "sparse_bins"] and not rows.loc["k3", "sparse_bins"]
    assert rows.loc["k800", "num_bins"] <= 20 and "categories were sparse" in rows.loc["k800", "note"]
    assert rows.loc["k3", "num_bins"] == 3 and rows.loc["k3", "note"] is None
    assert dm.drift_to_arrow(d).schema.field("sparse_bins").type == pa.bool_()


def test_drift_by_window_matches_per_window_drift(spark):
    rng = np.random.default_rng(5)
    base_x, base_k = rng.normal(size=200).round(2), rng.choice(list("ab"), 200).tolist()
    base = _frame(spark, x=base_x.tolist(), k=base_k)
    xs = np.concatenate([rng.normal(0, 1, 60), rng.normal(2, 1, 60), rng.normal(0, 1, 60)]).round(2)
    ts = _times(60, 0, rng) + _times(60, 1, rng) + _times(60, 3, rng)  # day 2 is empty
    ks = rng.choice(list("abc"), 180).tolist()
    cur = _frame(spark, x=xs.tolist(), k=ks, t=ts)
    by_window = dm.drift_by_window(base, cur, ["x"], ["k"], "t")
    starts = sorted({w["start"] for w in by_window["window"]})
    assert starts == [pd.Timestamp(T0 + timedelta(days=d)) for d in (0, 1, 3)]
    day1 = by_window[(by_window["column_name"] == "x") & (by_window["window"].map(lambda w: w["start"]) == starts[1])].iloc[0]
    alone = ds.numeric_drift(base_x, xs[60:120])  # the numpy reference on that window's rows alone
    for col in ("population_stability_index", "js_distance", "wasserstein_distance", "kl_divergence"):
        assert day1[col] == pytest.approx(alone[col], rel=RTOL)
    assert day1["ks_test"]["pvalue"] == pytest.approx(stats.ks_2samp(base_x, xs[60:120], method="asymp").pvalue, rel=1e-6)
    day1_k = by_window[(by_window["column_name"] == "k") & (by_window["window"].map(lambda w: w["start"]) == starts[1])].iloc[0]
    assert day1_k["chi_squared_test"]["statistic"] == pytest.approx(
        ds.categorical_drift(base_k, ks[60:120])["chi_squared_test"]["statistic"], rel=RTOL)  # "c" is new on day 1
    assert day1["granularity"] == "1 day" and day1["window"]["end"] == starts[1] + pd.Timedelta(days=1)
    x_rows = by_window[by_window["column_name"] == "x"]
    w = x_rows.set_index(x_rows["window"].map(lambda w: w["start"]))["wasserstein_distance"]
    assert w[starts[1]] > 1.5 and max(w[starts[0]], w[starts[2]]) < 0.5  # day 1 is shifted by 2

    consecutive = dm.drift_by_window(None, cur, ["x"], ["k"], "t", drift_type="CONSECUTIVE")
    # only day 1 has a window right before it; day 3's predecessor (day 2) has no rows
    assert [w["start"] for w in consecutive["window"]] == [starts[1], starts[1]]
    assert consecutive["window_cmp"].iloc[0] == {"start": starts[0], "end": starts[1]}
    x0, x1 = xs[:60], xs[60:120]
    got = consecutive.set_index("column_name").loc["x"]
    assert got["ks_test"]["statistic"] == pytest.approx(stats.ks_2samp(x0, x1).statistic, rel=RTOL)
    assert got["wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(x0, x1), rel=RTOL)


def test_drift_edge_cases_give_defined_results(spark):
    f_base, f_cur = [float(v) for v in range(20)], [float(v) for v in range(2, 20)] + [float("inf"), float("nan")]
    base = _frame(spark, x=[5.0] * 20, k=["a"] * 20, z=[1.0] * 20, f=f_base)
    cur = _frame(spark, x=[5.0] * 10 + [6.0] * 10, k=["a"] * 15 + ["new"] * 5, z=pa.array([None] * 20, pa.float64()), f=f_cur)
    d = dm.drift_metrics(base, cur, ["x", "z", "f"], ["k"]).set_index("column_name")
    # NaN and infinity are left out like nulls (and show up in percent_null_delta), not turned into NaN metrics
    assert d.loc["f", "ks_test"]["statistic"] == pytest.approx(stats.ks_2samp(f_base, f_cur[:18]).statistic, rel=RTOL)
    assert d.loc["f", "wasserstein_distance"] == pytest.approx(stats.wasserstein_distance(f_base, f_cur[:18]), rel=RTOL)
    assert d.loc["f", "percent_null_delta"] == pytest.approx(10.0)
    # single-valued baseline: two bins (<= 5, > 5)
    assert d.loc["x", "num_bins"] == 2
    assert d.loc["x", "js_distance"] == pytest.approx(jensenshannon([20, 0], [10, 10], base=2), rel=RTOL)
    assert d.loc["x", "ks_test"]["statistic"] == pytest.approx(0.5)
    # a category never seen in the baseline: finite PSI through smoothing
    assert math.isfinite(d.loc["k", "population_stability_index"]) and d.loc["k", "population_stability_index"] > 1
    # all-null column: NULL statistics, a note, and no breach from it
    assert pd.isna(d.loc["z", "population_stability_index"]) and d.loc["z", "ks_test"] is None
    assert "current has no non-null values" in d.loc["z", "note"]
    assert d.loc["z", "percent_null_delta"] == pytest.approx(100.0)
    assert "z" not in {b["column"] for b in m.detect_breaches(d.reset_index(), Thresholds())}
    empty = dm.drift_metrics(base, base.limit(0), ["x"], ["k"])
    assert empty["note"].str.contains("current has no rows").all() and empty["js_distance"].isna().all()


def _mixed_side(rng, n, drifted):
    """A side of the mixed frame: numeric (with nulls, NaN, infinity; long, boolean) and categorical
    (with nulls, a category new in the current data, a sparse high-cardinality column, integers)."""
    price = rng.lognormal(3 + 0.2 * drifted, 0.5, n).round(2)
    price[rng.random(n) < 0.05] = np.nan
    price[rng.random(n) < 0.01] = np.inf
    qty = pa.array(rng.poisson(3 + drifted, n), mask=rng.random(n) < 0.1)
    region = rng.choice(["north", "south", "east"] + ["coast"] * drifted, n).astype(object)
    region[rng.random(n) < 0.07] = None
    return pa.table({"price": price, "qty": qty, "signed": rng.normal(drifted, 3, n).round(1), "flag": rng.random(n) < 0.3,
                     "region": pa.array(region, pa.string()), "sku": rng.integers(0, 60 + 5 * drifted, n),
                     "tier": rng.integers(1, 4, n)})


def test_spark_drift_equals_numpy_reference_on_mixed_frame(spark):
    """The one-pass Spark path (mapInArrow over several partitions of several Arrow batches each) gives the
    numpy reference's statistics on a frame with nulls, NaN and infinity (left out like nulls), a long and a
    boolean column, a new category, pooled sparse categories and integer categories."""
    rng = np.random.default_rng(31)
    base, cur = _mixed_side(rng, 24_000, 0), _mixed_side(rng, 21_000, 1)
    numeric, categorical = ["price", "qty", "signed", "flag"], ["region", "sku", "tier"]
    got = dm.drift_metrics(*(spark.createDataFrame(s).repartition(2) for s in (base, cur)), numeric, categorical)
    got = got.set_index("column_name")
    for c in numeric:
        x, y = (pd.Series(s.column(c).to_numpy(), dtype=float) for s in (base, cur))
        want = ds.numeric_drift(*(v[np.isfinite(v)].to_numpy() for v in (x, y)))
        row = got.loc[c]
        assert row["ks_test"]["statistic"] == pytest.approx(want["ks_test"]["statistic"], rel=RTOL), c
        assert row["ks_test"]["pvalue"] == pytest.approx(want["ks_test"]["pvalue"], rel=1e-6, abs=1e-300), c
        for key in ("wasserstein_distance", "population_stability_index", "kl_divergence", "js_distance",
                    "tv_distance", "l_infinity_distance"):
            assert row[key] == pytest.approx(want[key], rel=RTOL, abs=1e-15), (c, key)
        assert (row["num_bins"], row["sparse_bins"]) == (want["num_bins"], want["sparse_bins"]), c
        assert row["avg_delta"] == pytest.approx(y[np.isfinite(y)].mean() - x[np.isfinite(x)].mean(), rel=RTOL), c
        assert row["percent_null_delta"] == pytest.approx(100 * ((~np.isfinite(y)).mean() - (~np.isfinite(x)).mean())), c
    for c in categorical:
        want = ds.categorical_drift(*(s.column(c).to_pylist() for s in (base, cur)))
        row = got.loc[c]
        assert row["chi_squared_test"]["statistic"] == pytest.approx(want["chi_squared_test"]["statistic"], rel=RTOL), c
        for key in ("population_stability_index", "kl_divergence", "js_distance", "tv_distance", "l_infinity_distance"):
            assert row[key] == pytest.approx(want[key], rel=RTOL, abs=1e-15), (c, key)
        assert (row["num_bins"], row["sparse_bins"], row["note"]) == (want["num_bins"], want["sparse_bins"], want.get("note")), c
    assert got.loc["sku", "sparse_bins"] and "pooled" in got.loc["sku", "note"]  # the pooling path was taken
    assert (got["count"] == 21_000).all() and (got["count_cmp"] == 24_000).all()


def test_drift_rejects_bad_input_with_clear_errors(spark):
    base = _frame(spark, x=[1.0, 2.0], k=["a", "b"])
    with pytest.raises(ValueError, match=r"\['y'\] not found in the current data"):
        dm.drift_metrics(base.withColumn("y", base.x), base, ["x", "y"], [])
    with pytest.raises(ValueError, match="numeric column 'x' is string in the current data"):
        dm.drift_metrics(base, _frame(spark, x=["1.0"], k=["a"]), ["x"], ["k"])
    with pytest.raises(ValueError, match="both numeric and categorical"):
        dm.drift_metrics(base, base, ["x"], ["x"])
    with pytest.raises(ValueError, match="at least one"):
        dm.drift_metrics(base, base, [], [])
    with pytest.raises(ValueError, match="max_categories"):
        dm.drift_metrics(base, base, [], ["k"], max_categories=1)


def test_label_and_prediction_drift_roles(spark):
    base = _frame(spark, label=[0] * 80 + [1] * 20, score=np.linspace(0, 0.6, 100).tolist())
    cur = _frame(spark, label=[0] * 50 + [1] * 50, score=np.linspace(0.3, 1.0, 100).tolist())
    lab = dm.label_drift(base, cur, "label")
    pred = dm.prediction_drift(base, cur, "score")
    assert lab.iloc[0]["role"] == "label" and lab.iloc[0]["chi_squared_test"] is not None
    chi = stats.chi2_contingency([[80, 20], [50, 50]], correction=False)
    assert lab.iloc[0]["chi_squared_test"]["statistic"] == pytest.approx(chi.statistic, rel=RTOL)
    assert pred.iloc[0]["role"] == "prediction" and pred.iloc[0]["ks_test"] is not None
    breaches = m.detect_breaches(pd.concat([lab, pred]), Thresholds(prediction_psi=50.0))
    assert {(b["role"], b["metric"]) for b in breaches} >= {("label", "chi_squared_test.pvalue"), ("prediction", "js_distance")}
    assert ("prediction", "population_stability_index") not in {(b["role"], b["metric"]) for b in breaches}


def test_drift_and_profile_tables_write_to_delta(spark, shifted_drift):
    import uuid

    from utils import lakehouse

    name = f"test.monitoring.drift_{uuid.uuid4().hex[:8]}"
    lakehouse.write(dm.drift_to_arrow(shifted_drift.reset_index()), name)
    lakehouse.write(dm.drift_to_arrow(dm._drift_frame([])), name, mode="append")
    back = lakehouse.read_pandas(name)
    assert sorted(back["column_name"]) == ["k", "x"] and list(back.columns) == list(dm.DRIFT_COLUMNS)
    assert back.set_index("column_name").loc["x", "ks_test"]["statistic"] == pytest.approx(
        shifted_drift.loc["x", "ks_test"]["statistic"])


# ------------------------------------------------------------------ profile metrics


def test_profile_metrics_per_window_and_slice(spark):
    import uuid

    from utils import lakehouse

    ts = [T0 + timedelta(hours=h) for h in (1, 2, 3, 4, 5)] + [T0 + timedelta(days=1, hours=h) for h in (1, 2, 3)]
    price = [1.0, 2.0, None, 4.0, 10.0, 3.0, float("nan"), 5.0]
    species = ["fern", "fern", "palm", None, "fern", "palm", "palm", "cactus"]
    region = ["eu", "us", "eu", "eu", "us", "eu", "eu", "us"]
    df = _frame(spark, ts=ts, price=price, species=species, region=region)
    prof = m.profile_metrics(df, ["price", "species"], "ts", categorical=["species"], slice_cols=["region"], top_k=2)
    assert {f.name for f in prof.schema.fields} >= {
        "window", "column_name", "data_type", "count", "num_nulls", "percent_null", "avg", "stddev", "min", "max",
        "quantiles", "distinct_count", "frequent_items", "granularity", "slice_key", "slice_value", "log_type"}
    rows = {(r["window"]["start"].day, r["slice_key"], r["slice_value"], r["column_name"]): r for r in prof.collect()}
    day0 = rows[(1, None, None, "price")]
    ref = pd.Series([1.0, 2.0, 4.0, 10.0])
    assert (day0["count"], day0["num_nulls"], day0["num_nan"]) == (5, 1, 0)
    assert day0["percent_null"] == pytest.approx(20.0)
    assert day0["avg"] == pytest.approx(ref.mean()) and day0["stddev"] == pytest.approx(ref.std())
    assert (day0["min"], day0["max"], day0["median"], day0["distinct_count"]) == (1.0, 10.0, 2.0, 4)
    levels = list(m.QUANTILE_LEVELS)
    assert day0["quantiles"] == list(np.quantile(ref, levels, method="inverted_cdf"))
    assert day0["frequent_items"] is None and day0["log_type"] == "INPUT" and day0["granularity"] == "1 day"
    day1 = rows[(2, None, None, "price")]
    assert (day1["num_nulls"], day1["num_nan"], day1["avg"]) == (0, 1, 4.0)  # NaN is counted, not averaged
    sp = rows[(1, None, None, "species")]
    assert [r.asDict() for r in sp["frequent_items"]] == [{"item": "fern", "count": 3}, {"item": "palm", "count": 1}]
    assert (sp["num_nulls"], sp["distinct_count"], sp["avg"], sp["quantiles"]) == (1, 2, None, None)
    assert rows[(2, None, None, "species")]["frequent_items"][0].asDict() == {"item": "palm", "count": 2}
    eu = rows[(1, "region", "eu", "price")]
    assert (eu["count"], eu["num_nulls"], eu["avg"]) == (3, 1, 2.5)
    assert rows[(1, None, None, ":table")]["count"] == 5 and rows[(1, "region", "us", ":table")]["count"] == 2
    name = f"test.monitoring.profile_{uuid.uuid4().hex[:8]}"
    lakehouse.write(prof, name)  # the Lakehouse-Monitoring-shaped table
    assert spark.table(name).count() == len(rows)


def test_profile_metrics_rejects_bad_input(spark):
    df = _frame(spark, day=["2024-03-01"], x=[1.0])
    with pytest.raises(ValueError, match="not a timestamp"):
        m.profile_metrics(df, ["x"], "day")
    with pytest.raises(ValueError, match=r"\['nope'\] not found"):
        m.profile_metrics(df, ["nope"], "day")
    with pytest.raises(ValueError, match="not in `columns`"):
        m.profile_metrics(df, ["x"], "day", categorical=["day"])


# ------------------------------------------------------------------ model quality (concept drift)


def test_model_quality_by_window_matches_sklearn(spark):
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    rng = np.random.default_rng(2)
    n = 120
    y = rng.integers(0, 2, n)
    good = np.clip(np.round(0.6 * y + rng.uniform(0, 0.4, n), 2), 0, 1)  # day 0: informative, with ties
    bad = np.round(rng.uniform(0, 1, n), 2)  # day 1: noise
    ts = _times(n, 0, rng) + _times(n, 1, rng) + _times(5, 2, rng)
    labels = [*y.tolist(), *y.tolist(), *[None] * 5]  # day 2: labels not arrived yet
    scores = [*good.tolist(), *bad.tolist(), *[0.5] * 5]
    q = mq.model_quality_by_window(_frame(spark, ts=ts, label=labels, score=scores), "label", "score", "ts")
    assert list(q.columns) == list(mq.QUALITY_COLUMNS) and len(q) == 3
    for i, s in enumerate((good, bad)):
        row, pred = q.iloc[i], (s >= 0.5).astype(int)
        assert row["auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-12)
        assert row["precision"] == pytest.approx(precision_score(y, pred))
        assert row["recall"] == pytest.approx(recall_score(y, pred))
        assert row["f1"] == pytest.approx(f1_score(y, pred))
        assert row["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert row["brier"] == pytest.approx(np.mean((s - y) ** 2))
        bins = np.minimum(np.floor(s * 10), 9)
        ece = sum(abs(s[bins == b].sum() - y[bins == b].sum()) for b in np.unique(bins)) / n
        assert row["ece"] == pytest.approx(ece)
        assert (row["n_labeled"], row["positives"]) == (n, y.sum())
    assert q.iloc[0]["auc"] > 0.9 and q.iloc[1]["auc"] < 0.7
    late = q.iloc[2]
    assert (late["count"], late["n_labeled"]) == (5, 0) and pd.isna(late["auc"]) and pd.isna(late["f1"])
    breaches = m.detect_breaches(dm._drift_frame([]), Thresholds(), quality=q, baseline_auc=float(q.iloc[0]["auc"]))
    assert [(b["metric"], b["window"]["start"]) for b in breaches] == [("auc", q.iloc[1]["window_start"])]


def test_model_quality_rejects_bad_labels_and_scores(spark):
    ts = [T0, T0 + timedelta(hours=1)]
    with pytest.raises(ValueError, match="other than 0/1"):
        mq.model_quality_by_window(_frame(spark, ts=ts, y=[0, 2], s=[0.1, 0.9]), "y", "s", "ts")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        mq.model_quality_by_window(_frame(spark, ts=ts, y=[0, 1], s=[-1.5, 2.0]), "y", "s", "ts")
    with pytest.raises(ValueError, match="baseline_auc"):
        m.detect_breaches(dm._drift_frame([]), Thresholds(), quality=pd.DataFrame({"auc": [0.5]}))


def test_the_drift_worker_runs_where_utils_cannot_be_imported(tmp_path) -> None:
    """The mapInArrow function travels by value: a worker without this project's files bins the same counts."""
    import subprocess
    import sys

    from pyspark import cloudpickle

    batch = pa.record_batch({"_g": pa.array([0, 0, 1, 1], pa.int64()), "b": pa.array([0, 1, 0, 1], pa.int32()),
                             "_n0": pa.array([1.5, None, 3.0, float("inf")]), "_k0": pa.array(["a", "b", None, "a"])})
    expected = pa.Table.from_batches(list(db._count_partition(iter([batch]))))
    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps((db.partition_counter(), batch)))
    script = ("import pickle, sys; sys.modules['utils'] = None  # import utils fails from here on\n"
              "import pyarrow as pa\n"
              f"fn, batch = pickle.loads(open({str(tmp_path / 'job.pkl')!r}, 'rb').read())\n"
              "out = pa.Table.from_batches(list(fn(iter([batch]))))\n"
              f"with pa.ipc.new_file({str(tmp_path / 'out.arrow')!r}, out.schema) as w: w.write_table(out)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = pa.ipc.open_file(str(tmp_path / "out.arrow")).read_all()
    assert got.sort_by([("col", "ascending"), ("_g", "ascending"), ("key", "ascending"), ("b", "ascending")]).equals(
        expected.sort_by([("col", "ascending"), ("_g", "ascending"), ("key", "ascending"), ("b", "ascending")]))
