"""Benchmark: data drift of ``utils.drift.drift_metrics`` (Spark) against Evidently, on the same frames.

A baseline and a drifted current frame of ``N`` rows each (``--sizes``), with the example model's
features (``utils.plantly_features``: 7 categorical, 7 numeric columns), are generated with numpy:
the current frame carries the data generator's scenarios (a new customer segment in a new region with
short tenures, a demand spike in two plant categories, a price rise in three), the other columns keep
their distribution. Then, side by side in one run, ``--repeats`` times each (medians reported):

* ``utils.drift.drift_metrics`` on cached Spark DataFrames: KS, Wasserstein, PSI, JS, KL, TV and
  L-inf distance per numeric column; chi-squared, PSI, JS, KL, TV and L-inf per categorical column, in one call;
* Evidently, the same tests: one ``ValueDrift`` per column and method in one ``Report`` (numeric:
  ``ks``, ``wasserstein``, ``psi``, ``jensenshannon``; categorical: ``chisquare``, ``psi``,
  ``jensenshannon``): the like-for-like figure, and the ratio is taken against it;
* Evidently's ``DataDriftPreset`` as shipped (one test per column: normed Wasserstein for numeric,
  JS for categorical columns at these sizes): what a default Evidently report costs;
* Evidently's stat-test functions called directly on pandas Series, no ``Report`` (the compute floor);
* ``utils.drift_statistics``' numpy reference functions (``numeric_drift`` / ``categorical_drift``), in one process.

Afterwards, for a few columns, the two tools' statistics are printed side by side, put on one scale where
the definitions differ only by a constant (Evidently's Wasserstein is divided by the baseline's standard
deviation; its JS distance uses the natural log, ours base 2), with the reason where they cannot agree.

Needs the ``bench`` extra (Evidently), which ``make bench-env`` installs:

    .venv/bin/python bench/bench_drift_evidently.py                          # 100,000 and 1,000,000 rows, 3 repeats
    .venv/bin/python bench/bench_drift_evidently.py --sizes 20000 --repeats 1 --no-record   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, machine_description, markdown_table, record

EVIDENTLY_API = (0, 7)  # Report / Dataset / DataDefinition / metrics.ValueDrift / presets.DataDriftPreset
INSTALL_HINT = (
    "bench/bench_drift_evidently.py needs Evidently, which is only in the `bench` extra of pyproject.toml.\n"
    "Install it into .venv with:\n"
    "    make bench-env\n"
    "(which runs: .venv/bin/uv pip install --python .venv/bin/python -r bench/requirements-bench.txt -c requirements.lock)"
)
NUM_METHODS = ("ks", "wasserstein", "psi", "jensenshannon")
CAT_METHODS = ("chisquare", "psi", "jensenshannon")
# Columns whose statistics are printed side by side: drifted and undrifted, continuous and discrete.
AGREEMENT_NUMERIC = ("price", "tenure_days", "plant_purchase_rate_30d", "position")
AGREEMENT_CATEGORICAL = ("region", "category", "care_level")
DRIFTED = ("region", "category", "tenure_days", "price")  # drifted by construction in make_frames; the rest are not


def parse_args() -> argparse.Namespace:
    """Command-line sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="rows in each of baseline and current")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each implementation (median reported)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip-numpy", action="store_true", help="leave out utils.drift_statistics' numpy reference functions")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to bench/results.md")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args()
    if args.repeats < 1 or any(n < 100 for n in args.sizes):
        p.error("--repeats must be >= 1 and every size >= 100")
    return args


def require_evidently() -> str:
    """Evidently's version; exits with how to install the extra when it is missing or of another API."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry (iterative-telemetry) off
    try:
        import evidently
    except ImportError:
        sys.exit(INSTALL_HINT)
    version = getattr(evidently, "__version__", "0")
    try:
        major_minor = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        major_minor = (0, 0)
    if major_minor < EVIDENTLY_API:
        sys.exit(f"Evidently {version} is installed, but this script uses the Evidently {EVIDENTLY_API[0]}.{EVIDENTLY_API[1]}+ API "
                 f"(Report, Dataset, metrics.ValueDrift).\n{INSTALL_HINT}")
    return version


# ------------------------------------------------------------------ data


def make_frames(n: int, seed: int) -> tuple[Any, Any]:
    """A baseline and a drifted current pandas frame of ``n`` rows with the example model's features."""
    import numpy as np
    import pandas as pd

    from utils.plantly_shop import (
        AGE_BANDS,
        CARE_LEVELS,
        CATEGORIES,
        DEVICES,
        LIGHT_NEEDS,
        NEW_SEGMENT_REGION,
        PAGES,
        REGIONS,
    )

    def frame(rng: np.random.Generator, drifted: bool) -> pd.DataFrame:
        region_p = [0.25, 0.20, 0.20, 0.20, 0.15]
        category_p = np.full(len(CATEGORIES), 1 / len(CATEGORIES))
        if drifted:  # demand spike: herbs and flowering plants twice as often
            category_p[[CATEGORIES.index("herb"), CATEGORIES.index("flowering")]] *= 2
            category_p /= category_p.sum()
        category = rng.choice(np.array(CATEGORIES, dtype=object), n, p=category_p)
        region = rng.choice(np.array(REGIONS, dtype=object), n, p=region_p)
        tenure = rng.exponential(420.0, n)
        if drifted:  # new segment: 4% of customers from a region never seen, all recent sign-ups
            new = rng.random(n) < 0.04
            region[new] = NEW_SEGMENT_REGION
            tenure[new] = rng.exponential(20.0, int(new.sum()))
        price = np.round(rng.lognormal(math.log(18.0), 0.5, n), 2)
        if drifted:  # price change: +15% on three categories
            price = np.where(np.isin(category, ["palm", "tree", "fern"]), np.round(price * 1.15, 2), price)
        cust_impressions = rng.poisson(8.0, n).astype(float)
        cust_rate = rng.beta(1.0, 20.0, n)
        cust_rate[rng.random(n) < 0.01] = np.nan  # 1% missing (rate unknown): both tools drop nulls
        return pd.DataFrame({
            "region": region,
            "age_band": rng.choice(np.array(AGE_BANDS, dtype=object), n, p=[0.15, 0.30, 0.25, 0.18, 0.12]),
            "device": rng.choice(np.array(DEVICES, dtype=object), n, p=[0.60, 0.30, 0.10]),
            "category": category,
            "care_level": rng.choice(np.array(CARE_LEVELS, dtype=object), n, p=[0.50, 0.35, 0.15]),
            "light_needs": rng.choice(np.array(LIGHT_NEEDS, dtype=object), n, p=[0.30, 0.40, 0.30]),
            "page": rng.choice(np.array(PAGES, dtype=object), n, p=[0.40, 0.35, 0.25]),
            "tenure_days": np.round(tenure),
            "cust_impressions_30d": cust_impressions,
            "cust_purchase_rate_30d": cust_rate,
            "plant_impressions_30d": rng.poisson(60.0, n).astype(float),
            "plant_purchase_rate_30d": rng.beta(2.0, 40.0, n),
            "position": rng.integers(1, 21, n).astype(float),
            "price": price,
        })

    return frame(np.random.default_rng([seed, 0]), False), frame(np.random.default_rng([seed, 1]), True)


# ------------------------------------------------------------------ the implementations


def evidently_same_tests(numeric: list[str], categorical: list[str]) -> Any:
    """A Report with one ValueDrift per (column, method): the statistics drift_metrics computes."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    metrics = [ValueDrift(column=c, method=m) for c in numeric for m in NUM_METHODS]
    metrics += [ValueDrift(column=c, method=m) for c in categorical for m in CAT_METHODS]
    return Report(metrics)


def evidently_values(snapshot: Any) -> dict[tuple[str, str], float]:
    """(column, method) -> value from a snapshot of :func:`evidently_same_tests`."""
    out = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            out[(cfg["column"], cfg["method"])] = float(m["value"])
    return out


def evidently_stattests(ref: Any, cur: Any, numeric: list[str], categorical: list[str]) -> dict[tuple[str, str], float]:
    """The same stat tests called directly (no Report): nulls and infinities dropped as Evidently does."""
    import numpy as np
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    out = {}
    for cols, kind, methods in ((numeric, ColumnType.Numerical, NUM_METHODS), (categorical, ColumnType.Categorical, CAT_METHODS)):
        for c in cols:
            r = ref[c].replace([-np.inf, np.inf], np.nan).dropna()
            k = cur[c].replace([-np.inf, np.inf], np.nan).dropna()
            for m in methods:
                out[(c, m)] = float(get_stattest(r, k, kind, m)(r, k, kind, None).drift_score)
    return out


def numpy_reference(ref: Any, cur: Any, numeric: list[str], categorical: list[str]) -> dict[str, dict[str, Any]]:
    """utils.drift_statistics' numpy definitions, column by column, in this process."""
    from utils.drift_statistics import categorical_drift, numeric_drift

    out = {c: numeric_drift(ref[c].to_numpy(float), cur[c].to_numpy(float)) for c in numeric}
    out.update({c: categorical_drift(ref[c], cur[c]) for c in categorical})
    return out


def timed_once(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Wall seconds of one ``call(*args)``, and what it returned."""
    start = time.perf_counter()
    result = call(*args)
    return time.perf_counter() - start, result


# ------------------------------------------------------------------ agreement


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    """Equal to ``rel`` relative (p-values underflowing to 0 on both sides count as equal)."""
    if math.isnan(a) or math.isnan(b):
        return False
    if abs(a) < 1e-300 and abs(b) < 1e-300:
        return True
    return math.isclose(a, b, rel_tol=rel)


def _same(a: float, b: float, rel: float = 1e-6) -> str:
    return "equal" if _close(a, b, rel) else "differs"


def _verdict(a: float, b: float, alpha: float = 0.05) -> str:
    """For two p-values of different tests: whether they reach the same verdict at ``alpha``."""
    return "differs, same verdict" if (a < alpha) == (b < alpha) else "differs, other verdict"


def _g(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.4g}" if 1e-4 <= abs(x) < 1e5 else f"{x:.3e}"


def agreement_rows(ours: Any, ev: dict[tuple[str, str], float], ref: Any, cur: Any) -> list[list[str]]:
    """Rows: column | statistic | utils.monitoring | Evidently | Evidently on our scale | agree | why."""
    import numpy as np
    from scipy.stats import chi2

    by_col = {r["column_name"]: r for r in ours.to_dict("records")}
    ln2 = math.log(2.0)
    rows: list[list[str]] = []
    for c in AGREEMENT_NUMERIC:
        o = by_col[c]
        base = ref[c].replace([-np.inf, np.inf], np.nan).dropna()
        sd = max(float(np.std(base)), 0.001)
        distinct = int(base.nunique())
        psi_bins = f"one bin per value ({distinct} values)" if distinct <= 20 else "Sturges equal-width bins over both samples"
        ks_o, ks_e = o["ks_test"]["pvalue"], ev[(c, "ks")]
        rows.append([c, "KS p-value", _g(ks_o), _g(ks_e), _g(ks_e), _same(ks_o, ks_e),
                     "both scipy's asymptotic two-sided p (ks_2samp picks it above 10,000 rows)"])
        w_o, w_e = o["wasserstein_distance"], ev[(c, "wasserstein")]
        rows.append([c, "Wasserstein", _g(w_o), _g(w_e), _g(w_e * sd), _same(w_o, w_e * sd),
                     "Evidently divides by the baseline's std (ddof=0)"])
        p_o, p_e = o["population_stability_index"], ev[(c, "psi")]
        rows.append([c, "PSI", _g(p_o), _g(p_e), "", "not comparable",
                     f"bins differ: ours {int(o['num_bins'])} baseline-decile bins, Evidently {psi_bins}"])
        j_o, j_e = o["js_distance"], ev[(c, "jensenshannon")]
        rows.append([c, "JS distance", _g(j_o), _g(j_e), _g(j_e / math.sqrt(ln2)), "not comparable",
                     "bins as for PSI; Evidently's log is natural, ours base 2 (x 1/sqrt(ln 2))"])
    for c in AGREEMENT_CATEGORICAL:
        o = by_col[c]
        unseen = sorted(set(cur[c].dropna()) - set(ref[c].dropna()))
        chi_o, chi_e = o["chi_squared_test"]["pvalue"], ev[(c, "chisquare")]
        n_b, n_c = int(ref[c].notna().sum()), int(cur[c].notna().sum())
        dof = len(set(ref[c].dropna().astype(str)) | set(cur[c].dropna().astype(str))) - 1  # chi-squared: every category
        stat_e = float(chi2.isf(chi_e, dof)) if chi_e > 0 else math.inf
        converted = _g(float(chi2.sf(stat_e * n_b / (n_b + n_c), dof))) if math.isfinite(stat_e) else ""
        rows.append([c, "chi-squared p-value", _g(chi_o), _g(chi_e), f"~{converted}" if converted else "",
                     "equal" if _close(chi_o, chi_e) else _verdict(chi_o, chi_e),
                     "different tests: ours homogeneity on the 2 x K table, Evidently goodness of fit to the baseline's "
                     "shares taken as exact, a statistic ~(n_b + n_c) / n_b = 2x ours, so smaller p (converted: p of its "
                     "statistic x n_b / (n_b + n_c))" + (f"; unseen {unseen}: expected count 0, statistic inf" if unseen else "")])
        p_o, p_e = o["population_stability_index"], ev[(c, "psi")]
        why = ("same categories; empty ones are filled differently: ours smooths every share by 1e-6, "
               f"Evidently puts 1e-4 where the baseline has none (unseen {unseen})") if unseen else \
            "same categories, none empty (our 1e-6 smoothing moves the 6th digit)"
        rows.append([c, "PSI", _g(p_o), _g(p_e), _g(p_e), _same(p_o, p_e, 1e-4), why])
        j_o, j_e = o["js_distance"], ev[(c, "jensenshannon")]
        rows.append([c, "JS distance", _g(j_o), _g(j_e), _g(j_e / math.sqrt(ln2)), _same(j_o, j_e / math.sqrt(ln2)),
                     "same raw proportions; natural log vs base 2"])
    return rows


def flagged(ours: Any, ev: dict[tuple[str, str], float], numeric: list[str], categorical: list[str], alpha: float = 0.05) -> tuple[list[str], list[str]]:
    """Columns each tool flags at p < alpha (KS for numeric, chi-squared for categorical)."""
    by_col = {r["column_name"]: r for r in ours.to_dict("records")}
    o = [c for c in numeric if by_col[c]["ks_test"]["pvalue"] < alpha] + \
        [c for c in categorical if by_col[c]["chi_squared_test"]["pvalue"] < alpha]
    e = [c for c in numeric if ev[(c, "ks")] < alpha] + [c for c in categorical if ev[(c, "chisquare")] < alpha]
    return o, e


def reading(results: dict[int, dict[str, Any]], impls: list[str]) -> str:
    """One sentence that reads the timing table."""
    ratios = " and ".join(f"{r['utils_over_evidently']:.1f}x ({fmt(n)} rows)" for n, r in results.items())
    big = max(results)
    m = results[big]["median_s"]
    text = (f"On one machine, utils.monitoring on local Spark takes {ratios} the time Evidently takes for the same tests. "
            f"At {fmt(big)} rows most of Evidently's time is its Report (histograms, correlations and widgets per metric): "
            f"the bare stat tests take {m[impls[3]]:.1f} s of its {m[impls[1]]:.1f} s")
    if len(impls) > 4:
        text += (f"; utils.monitoring's own numpy definitions take {m[impls[4]]:.1f} s, so the Spark version's cost is "
                 "distribution overhead (one pass that moves every row from Spark's JVM to its Python workers as Arrow "
                 "batches, binned there with numpy), paid for running unchanged on a cluster when the frames no longer "
                 "fit in one process")
    return text + "."


def flagged_sentence(results: dict[int, dict[str, Any]]) -> str:
    """Which columns each tool flags at every size, and which of those are false alarms."""
    parts = []
    for n, r in results.items():
        said = []
        for tool, key in (("utils.monitoring", "flagged_utils"), ("Evidently", "flagged_evidently")):
            false = [c for c in r[key] if c not in DRIFTED]
            said.append(f"{tool} {', '.join(r[key]) or 'none'}" + (f" (not drifted: {', '.join(false)})" if false else ""))
        parts.append(f"{fmt(n)} rows: " + "; ".join(said))
    return ("Flagged at p < 0.05 (KS for numeric, chi-squared for categorical; drifted by construction: "
            f"{', '.join(DRIFTED)}). " + ". ".join(parts) + ".")


# ------------------------------------------------------------------ main


def main() -> None:
    """Generate the frames, time every implementation side by side, print and record the comparison."""
    args = parse_args()
    ev_version = require_evidently()
    os.environ.setdefault("MLOPS_STATE_DIR", tempfile.mkdtemp(prefix="bench-drift-"))
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # scipy's chisquare divides by a 0 expected count
    warnings.filterwarnings("ignore", category=FutureWarning)
    import numpy as np  # noqa: F401  (fail early if the venv is broken)
    from evidently import DataDefinition

    from utils.drift import drift_metrics
    from utils.plantly_features import CATEGORICAL, NUMERIC
    from utils.platform import get_spark

    machine = machine_description()
    numeric, categorical = list(NUMERIC), list(CATEGORICAL)
    spark = get_spark("bench-drift-evidently")
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    impls = ["utils.monitoring (Spark)", "Evidently, same tests", "Evidently DataDriftPreset", "Evidently stat tests, no Report"]
    if not args.skip_numpy:
        impls.append("utils.monitoring numpy reference")

    # Warm-up on a small frame: JVM code generation, first imports.
    wb, wc = make_frames(5_000, args.seed)
    drift_metrics(spark.createDataFrame(wb), spark.createDataFrame(wc), numeric, categorical)
    evidently_same_tests(numeric, categorical).run(wc, wb)

    results: dict[int, dict[str, Any]] = {}
    agreement: dict[int, list[list[str]]] = {}
    for n in args.sizes:
        t0 = time.perf_counter()
        ref, cur = make_frames(n, args.seed)
        gen_s = time.perf_counter() - t0
        load_s, (ref_sdf, cur_sdf) = timed_once(_cached, spark, ref, cur)
        ds_s, (ref_ds, cur_ds) = timed_once(_datasets, ref, cur, definition)
        print(f"\n{n:,} rows per side: generated in {gen_s:.1f} s; to cached Spark DataFrames {load_s:.1f} s; "
              f"to Evidently Datasets {ds_s:.1f} s (neither counted below)", flush=True)
        times: dict[str, list[float]] = {k: [] for k in impls}
        ours = ev = None
        for rep in range(args.repeats):
            s, ours = timed_once(drift_metrics, ref_sdf, cur_sdf, numeric, categorical)
            times[impls[0]].append(s)
            s, snap = timed_once(_run_same_tests, cur_ds, ref_ds, numeric, categorical)
            times[impls[1]].append(s)
            ev = evidently_values(snap)
            s, _ = timed_once(_run_preset, cur_ds, ref_ds, numeric + categorical)
            times[impls[2]].append(s)
            s, direct = timed_once(evidently_stattests, ref, cur, numeric, categorical)
            times[impls[3]].append(s)
            if not args.skip_numpy:
                s, _ = timed_once(numpy_reference, ref, cur, numeric, categorical)
                times[impls[4]].append(s)
            print(f"  run {rep + 1}: " + "; ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        mismatch = [k for k in ev if not _close(ev[k], direct[k], 1e-9)]
        if mismatch:
            print(f"  note: the Report and the direct stat-test calls differ on {mismatch}")
        medians = {k: statistics.median(v) for k, v in times.items()}
        o_flag, e_flag = flagged(ours, ev, numeric, categorical)
        results[n] = {"seconds": times, "median_s": medians, "generate_s": gen_s, "spark_load_s": load_s,
                      "evidently_dataset_s": ds_s, "flagged_utils": o_flag, "flagged_evidently": e_flag,
                      "utils_over_evidently": medians[impls[0]] / medians[impls[1]]}
        agreement[n] = agreement_rows(ours, ev, ref, cur)
        print(markdown_table(["column", "statistic", "utils.monitoring", "Evidently", "Evidently on our scale", "agree", "why"],
                             agreement[n], align="llrrrll"))
        print(f"  flagged at p < 0.05 (KS / chi-squared): utils.monitoring {o_flag}; Evidently {e_flag}")
        ref_sdf.unpersist()
        cur_sdf.unpersist()

    sizes = args.sizes
    header = ["implementation", *[f"{fmt(n)} rows" for n in sizes]]
    rows = [[k, *[f"{results[n]['median_s'][k]:.2f} s" for n in sizes]] for k in impls]
    rows.append(["utils.monitoring / Evidently same tests", *[f"{results[n]['utils_over_evidently']:.2f}x" for n in sizes]])
    table = markdown_table(header, rows)
    big = max(sizes)
    body = (
        f"Baseline and drifted current frames of N rows each, the example model's features (7 numeric, 7 categorical columns); "
        f"Evidently {ev_version}; median of {args.repeats} runs, side by side in one run. "
        f"utils.monitoring computes KS, Wasserstein, PSI, JS, KL, TV and L-inf (numeric) and chi-squared, PSI, JS, KL, TV and L-inf "
        f"(categorical) in one call on cached Spark DataFrames; 'Evidently, same tests' is one Report of "
        f"{len(numeric) * len(NUM_METHODS) + len(categorical) * len(CAT_METHODS)} ValueDrift metrics "
        f"(numeric: {', '.join(NUM_METHODS)}; categorical: {', '.join(CAT_METHODS)}) on Evidently Datasets; the preset runs one test "
        f"per column. Conversions to Spark DataFrames / Evidently Datasets are not counted "
        + ", ".join(f"({fmt(n)}: {results[n]['spark_load_s']:.1f} s / {results[n]['evidently_dataset_s']:.2f} s)" for n in sizes)
        + ".\n\n" + table + "\n\n" + reading(results, impls)
        + f"\n\nStatistics side by side at {fmt(big)} rows (Evidently's value as reported, then converted where the "
        f"definitions differ by a constant):\n\n"
        + markdown_table(["column", "statistic", "utils.monitoring", "Evidently", "Evidently on our scale", "agree", "why"],
                         agreement[big], align="llrrrll")
        + "\n\n" + flagged_sentence(results)
    )
    print()
    if args.no_record:
        print(body)
    else:
        record("Drift metrics: utils.monitoring vs Evidently", body, "bench/bench_drift_evidently.py", machine=machine)
    if args.out:
        args.out.write_text(json.dumps({"evidently": ev_version, "sizes": sizes, "results": {str(k): v for k, v in results.items()},
                                        "agreement": {str(k): v for k, v in agreement.items()}}, indent=2, default=str))


def _cached(spark: Any, ref: Any, cur: Any) -> tuple[Any, Any]:
    """Both frames as cached, materialised Spark DataFrames."""
    out = []
    for pdf in (ref, cur):
        sdf = spark.createDataFrame(pdf).cache()
        sdf.count()
        out.append(sdf)
    return out[0], out[1]


def _datasets(ref: Any, cur: Any, definition: Any) -> tuple[Any, Any]:
    """Both frames as Evidently Datasets with the explicit column types."""
    from evidently import Dataset

    return Dataset.from_pandas(ref, data_definition=definition), Dataset.from_pandas(cur, data_definition=definition)


def _run_same_tests(cur_ds: Any, ref_ds: Any, numeric: list[str], categorical: list[str]) -> Any:
    """Evidently's Report of the same tests, run."""
    return evidently_same_tests(numeric, categorical).run(cur_ds, ref_ds)


def _run_preset(cur_ds: Any, ref_ds: Any, columns: list[str]) -> Any:
    """Evidently's DataDriftPreset as shipped (methods chosen per column by Evidently)."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    return Report([DataDriftPreset(columns=columns)]).run(cur_ds, ref_ds)


if __name__ == "__main__":
    try:
        main()
    finally:  # the Spark engine this run started (its own state folder), not one a notebook or test uses
        from utils.local import engine

        engine.stop_started()
