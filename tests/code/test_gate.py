"""The validation gate on real pyfunc models logged to the local MLflow (SQLite) of the test session."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from utils.gate import CHECK_NAMES, GateResult, run_gate, scores_from_output

LABEL = "purchased"
FEATURES = {"price": "double", "age_band": "string", "invasive": "boolean"}
BANDS = np.array(["18-34", "35-54", "55+"])
# An error message longer than any cut the gate might apply, over two lines, its end marked.
LONG_ERROR = "price column rejected: see below\n" + "detail " * 150 + "END-OF-MESSAGE"


def make_eval_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Purchases depend on price only (cheaper sells better); age band and invasive flag are independent."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(5.0, 60.0, n)
    bought = rng.random(n) < 1.0 / (1.0 + np.exp(-(2.5 - 0.1 * price)))
    return pd.DataFrame({
        "customer_id": [f"C{i:04d}" for i in range(n)],
        "price": price,
        "age_band": BANDS[rng.integers(0, 3, n)],
        "invasive": rng.random(n) < 0.1,
        LABEL: bought,
    })


def price_score(price: pd.Series) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(2.5 - 0.1 * price.to_numpy(dtype=float))))


class ScoreModel(mlflow.pyfunc.PythonModel):
    """Probability of purchase; ``mode`` picks a well-behaved or a deliberately broken variant."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def predict(self, context, model_input, params=None):
        df = model_input
        if self.mode == "raises":
            raise ValueError(LONG_ERROR)
        score = price_score(df["price"])
        if self.mode == "random":
            score = np.random.default_rng(len(df)).random(len(df))
        elif self.mode == "biased":
            young = (df["age_band"] == "18-34").to_numpy()
            score = np.where(young, 0.5 + 0.5 * score, 0.5 * score)
        flag = df["invasive"] if "invasive" in df else pd.Series(False, index=df.index)
        if self.mode == "null_is_safe":  # the fault the compliance check must catch: an unknown flag read as False
            invasive = flag.where(flag.notna(), False).to_numpy(dtype=bool)
        else:  # the rule: invasive, or unknown
            invasive = flag.isna().to_numpy() | flag.where(flag.notna(), True).to_numpy(dtype=bool)
        if self.mode != "no_rule":
            score = np.where(invasive, 0.0, score)
        if self.mode == "frame":
            return pd.DataFrame({"probability": score})
        return score


@pytest.fixture(scope="module")
def eval_df() -> pd.DataFrame:
    return make_eval_frame()


@pytest.fixture(scope="module")
def model_uris(isolated_state, eval_df: pd.DataFrame) -> dict[str, str]:
    """One logged model per variant; ``other_signature`` expects columns production does not have."""
    from utils.platform import configure_mlflow

    configure_mlflow("registry-tests")
    X = eval_df[list(FEATURES)]
    sig = infer_signature(X, price_score(X["price"]))
    other = pd.DataFrame({"price": np.array([10, 20], dtype="int64"), "age_band": ["18-34", "55+"],
                          "colour": ["red", "green"]})
    other_sig = infer_signature(other, np.array([0.1, 0.2]))
    uris = {}
    with mlflow.start_run(run_name="gate-test-models"):
        for mode in ("good", "frame", "random", "biased", "no_rule", "null_is_safe", "raises"):
            info = mlflow.pyfunc.log_model(name=mode, python_model=ScoreModel(mode), signature=sig,
                                           pip_requirements=["mlflow"])
            uris[mode] = info.model_uri
        info = mlflow.pyfunc.log_model(name="other_signature", python_model=ScoreModel("good"),
                                       signature=other_sig, pip_requirements=["mlflow"])
        uris["other_signature"] = info.model_uri
    return uris


def gate(uri: str, df: pd.DataFrame, **kw) -> GateResult:
    kw.setdefault("expected_features", FEATURES)
    kw.setdefault("batch_size", 200)
    return run_gate(uri, df, LABEL, **kw)


@pytest.mark.parametrize("variant", ["good", "frame"])
def test_good_model_passes_every_check(model_uris, eval_df, variant):
    result = gate(model_uris[variant], eval_df)
    assert result.passed, result.summary()
    assert [c.name for c in result.checks] == list(CHECK_NAMES)
    assert result.failed() == []
    assert result.check("no_regression").reason == "no champion yet"
    assert result.check("min_auc").value > 0.7
    assert "top-" in result.check("fairness").reason


@pytest.mark.parametrize(
    ("variant", "failing", "words"),
    [
        ("random", "min_auc", ["AUC", "minimum 0.65"]),
        ("biased", "fairness", ["demographic parity", "age_band", "18-34="]),
        ("no_rule", "compliance", ["invasive", "above 0.0"]),
        ("null_is_safe", "compliance", ["flag unknown", "above 0.0"]),
    ],
)
def test_broken_model_fails_the_named_check(model_uris, eval_df, variant, failing, words):
    result = gate(model_uris[variant], eval_df)
    assert not result.passed
    assert failing in [c.name for c in result.failed()]
    reason = result.check(failing).reason
    for word in words:
        assert word in reason, reason
    assert result.check("signature").passed  # the breakage is in behaviour, not in the interface
    assert failing in result.to_dict()["failed"]


def test_signature_mismatch_names_missing_extra_and_mistyped_columns(model_uris, eval_df):
    result = gate(model_uris["other_signature"], eval_df)
    sig = result.check("signature")
    assert not sig.passed and not result.passed
    assert sig.value == {"missing": ["invasive"], "extra": ["colour"], "mistyped": ["price"]}
    for col in ("invasive", "colour", "price (model long"):
        assert col in sig.reason, sig.reason
    # it cannot score production rows either, and every other check says so instead of crashing
    assert all("cannot score" in c.reason for c in result.checks[1:])


def test_signature_checked_against_eval_frame_without_expected_schema(model_uris, eval_df):
    assert gate(model_uris["good"], eval_df, expected_features=None).check("signature").passed
    wrong = gate(model_uris["good"], eval_df, expected_features={**FEATURES, "price": "string"})
    assert not wrong.check("signature").passed and "price" in wrong.check("signature").reason


def test_no_regression_against_champion(model_uris, eval_df):
    worse = gate(model_uris["random"], eval_df, champion_uri=model_uris["good"])
    check = worse.check("no_regression")
    assert not check.passed
    assert check.value["champion_auc"] > check.value["auc"] + 0.1
    same = gate(model_uris["frame"], eval_df, champion_uri=model_uris["good"])
    assert same.check("no_regression").passed
    assert same.check("no_regression").value["champion_auc"] == pytest.approx(same.check("min_auc").value)


def test_latency_budget_is_enforced(model_uris, eval_df):
    result = gate(model_uris["good"], eval_df, latency_budget_ms=1e-6, batch_size=1000)
    check = result.check("latency")
    assert not check.passed and check.value > 1e-6
    assert "1000 rows" in check.reason
    assert [c.name for c in result.failed()] == ["latency"]


def test_fixed_decision_threshold_is_stated(model_uris, eval_df):
    result = gate(model_uris["good"], eval_df, decision_threshold=0.5)
    assert "score >= 0.5" in result.check("fairness").reason


def test_compliance_probes_rows_even_without_invasive_plants(model_uris, eval_df):
    df = eval_df.assign(invasive=False)
    assert not gate(model_uris["no_rule"], df).check("compliance").passed
    assert gate(model_uris["good"], df).check("compliance").passed


def test_compliance_probes_unknown_flags_too(model_uris, eval_df):
    # No invasive and no unknown flag in the frame: only the null probes can catch a model reading null as False.
    df = eval_df.assign(invasive=False)
    check = gate(model_uris["null_is_safe"], df).check("compliance")
    assert not check.passed and check.value > 0.0
    assert gate(model_uris["good"], df).check("compliance").passed


def test_rows_with_an_unknown_flag_in_the_frame_are_checked(model_uris, eval_df):
    flags = eval_df["invasive"].astype(object)
    flags[eval_df.index % 10 == 3] = None
    check = gate(model_uris["good"], eval_df.assign(invasive=flags)).check("compliance")
    assert check.passed
    frame_rows = int(eval_df["invasive"].sum() + (eval_df.index % 10 == 3).sum()
                     - (eval_df["invasive"] & (eval_df.index % 10 == 3)).sum())
    assert f"({frame_rows} in the frame" in check.reason


def test_single_group_fairness_is_not_measured_and_says_so(model_uris, eval_df):
    check = gate(model_uris["good"], eval_df.assign(age_band="35-54")).check("fairness")
    assert check.passed and check.value is None
    assert "not measured" in check.reason and "only one age_band group" in check.reason


def test_an_undefined_metric_fails_its_check_saying_so():
    from utils.gate import CheckResult, _refuse_undefined

    nan_check = _refuse_undefined(CheckResult("min_auc", True, float("nan"), 0.65, "AUC nan"))
    assert not nan_check.passed and nan_check.reason.startswith("undefined metric (NaN)")
    nested = _refuse_undefined(CheckResult("no_regression", True, {"auc": 0.8, "champion_auc": float("nan")}, 0.01, "x"))
    assert not nested.passed
    fine = CheckResult("latency", True, 12.0, 2000.0, "ok")
    assert _refuse_undefined(fine) is fine
    unmeasured = CheckResult("fairness", True, None, 0.25, "not measured")
    assert _refuse_undefined(unmeasured) is unmeasured


def test_result_serialises_and_summarises(model_uris, eval_df):
    result = gate(model_uris["biased"], eval_df)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["passed"] is False and "fairness" in data["failed"]
    assert {c["name"] for c in data["checks"]} == set(CHECK_NAMES)
    lines = result.summary().splitlines()
    assert len(lines) == 1 + len(CHECK_NAMES)
    assert any(line.startswith("FAIL fairness") for line in lines)


def test_summary_shows_the_signature_as_column_counts_not_the_schema():
    from utils.gate import CheckResult

    schema = {f"feature_number_{i:02d}": "double" for i in range(15)}
    ok = CheckResult("signature", True, {"missing": [], "extra": [], "mistyped": []}, schema,
                     "all 15 model inputs match the production feature schema")
    bad = CheckResult("signature", False, {"missing": ["a"], "extra": ["b", "c"], "mistyped": []}, schema,
                      "signature does not match the production feature schema: missing from the model signature: ['a']; "
                      "not in the production feature schema: ['b', 'c']")
    lines = GateResult("m", "1", False, [ok, bad]).summary().splitlines()
    assert all("feature_number_00" not in line and len(line) < 300 for line in lines), lines
    assert "threshold=15 columns of the production feature schema" in lines[1]
    assert "value=1 missing, 2 extra " in lines[2]


def test_summary_says_n_a_never_none(model_uris, eval_df):
    result = gate(model_uris["good"], eval_df.assign(age_band="35-54"))  # no champion, a single age band
    summary = result.summary()
    assert result.check("no_regression").value is None and result.check("fairness").value is None
    assert "None" not in summary, summary
    lines = {line.split(":")[0]: line for line in summary.splitlines()[1:]}
    assert "value=n/a" in lines["PASS no_regression"] and "no champion yet" in lines["PASS no_regression"]
    assert "value=n/a" in lines["PASS fairness"] and "not measured" in lines["PASS fairness"]
    assert str(FEATURES) not in summary


def test_summary_prints_whole_numbers_without_decimals(model_uris, eval_df):
    from utils.gate import CheckResult

    result = gate(model_uris["good"], eval_df, latency_budget_ms=2000.0)
    latency = next(line for line in result.summary().splitlines() if "latency" in line)
    assert "threshold=2000 ms" in latency and "2000.0" not in latency, latency
    assert "budget 2000 ms" in result.check("latency").reason
    counted = GateResult("m", None, True, [CheckResult("latency", True, 5.0, np.float64(30000.0), "ok")]).summary()
    assert "value=5 ms threshold=30000 ms" in counted, counted


def test_a_model_that_cannot_score_keeps_its_whole_error_message(model_uris, eval_df):
    result = gate(model_uris["raises"], eval_df)
    assert not result.passed and result.check("signature").passed
    for check in result.checks[1:]:
        assert not check.passed and check.reason.endswith(f"ValueError: {LONG_ERROR}"), check.reason[-80:]
    summary = result.summary()
    assert summary.count("END-OF-MESSAGE") == 1, summary  # in full once; the other checks refer to it
    assert "ValueError: price column rejected: see below" in summary
    assert "same reason as min_auc above" in summary


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.iloc[0:0], "empty"),
        (lambda df: df.drop(columns=[LABEL]), "label column 'purchased'"),
        (lambda df: df.assign(purchased=True), "both classes"),
        (lambda df: df.assign(purchased=np.where(df[LABEL], "yes", "no")), "booleans or 0/1"),
        (lambda df: df.assign(purchased=df[LABEL].astype(object).where(df.index > 0)), "missing values"),
        (lambda df: df.drop(columns=["age_band"]), "sensitive_col 'age_band'"),
    ],
)
def test_bad_input_raises_before_loading_the_model(eval_df, mutate, message):
    # the URI does not exist: a ValueError (not an MLflow error) proves nothing was loaded
    with pytest.raises(ValueError, match=message):
        run_gate("models:/no.such.model/1", mutate(eval_df), LABEL)


@pytest.mark.parametrize(
    "output",
    [
        np.array([0.1, 0.9]),
        pd.Series([0.1, 0.9]),
        pd.DataFrame({"probability": [0.1, 0.9], "other": [5, 6]}),
        pd.DataFrame({"prediction": [0.1, 0.9]}),
        np.array([[0.9, 0.1], [0.1, 0.9]]),
        [[0.1], [0.9]],
    ],
)
def test_scores_from_output_accepts_common_pyfunc_shapes(output):
    assert scores_from_output(output, 2).tolist() == pytest.approx([0.1, 0.9])


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (np.array([0.1, 0.9, 0.5]), "3"),
        (np.array([0.1, 1.7]), r"\[0, 1\]"),
        (np.array([0.1, np.nan]), "NaN"),
        (pd.DataFrame({"a": [0.1, 0.2], "b": [0.3, 0.4]}), "probability"),
    ],
)
def test_scores_from_output_rejects_what_is_not_a_probability_per_row(output, message):
    with pytest.raises(ValueError, match=message):
        scores_from_output(output, 2)


def test_champion_trained_on_the_evaluation_window_is_not_compared(model_uris, eval_df):
    from utils.gate import champion_overlap

    with mlflow.start_run(run_name="champion-with-train-end") as run:
        mlflow.log_param("train_end", "2026-03-10T00:00:00+00:00")
    with mlflow.start_run(run_name="champion-without-train-end") as old:
        pass
    assert champion_overlap(run.info.run_id, pd.Timestamp("2026-03-10T00:00:01Z")) is None  # evaluated after it
    assert champion_overlap(old.info.run_id, pd.Timestamp("2026-01-01", tz="UTC")) is None  # nothing known: compare
    assert champion_overlap(run.info.run_id, None) is None
    note = champion_overlap(run.info.run_id, pd.Timestamp("2026-03-01", tz="UTC"))
    assert note and "trained on rows up to 2026-03-10" in note
    skipped = gate(model_uris["random"], eval_df, champion_uri=None, champion_note=note)
    assert skipped.check("no_regression").passed and skipped.check("no_regression").reason == note
    assert not skipped.passed, "the absolute checks still decide: a random model fails them"


# ---------------------------------------------------------------- fairness metrics (utils.evaluation)


def test_undefined_rate_is_nan_with_a_warning_naming_the_group():
    """The issue's example: perfect predictions, group b has no positives, so its TPR is undefined (not 0)."""
    from utils.evaluation import UndefinedRateWarning, fairness_by_group

    with pytest.warns(UndefinedRateWarning, match=r"tpr is undefined for group\(s\) \['b'\]") as record:
        by_group, summary = fairness_by_group(np.array([1, 1, 0, 0, 0, 0, 0, 0]), np.array([1, 1, 0, 0, 0, 0, 0, 0]),
                                              pd.Series(["a"] * 4 + ["b"] * 4))
    assert len(record) == 1, "FPR is defined in both groups: one warning, for TPR"
    assert by_group.loc["a", "tpr"] == 1.0 and np.isnan(by_group.loc["b", "tpr"])
    assert by_group["fpr"].tolist() == [0.0, 0.0]
    assert by_group["accuracy"].tolist() == [1.0, 1.0]
    assert summary["equalized_odds_difference"] == 0.0
    assert summary["tpr_groups_defined"] == 1 and summary["fpr_groups_defined"] == 2 and summary["groups"] == 2
    assert all(type(summary[k]) is int for k in ("groups", "tpr_groups_defined", "fpr_groups_defined"))  # counts print as 5, not 5.000
    assert summary["demographic_parity_difference"] == 0.5


def test_defined_rates_keep_fairlearns_values():
    import warnings

    from fairlearn.metrics import equalized_odds_difference

    from utils.evaluation import fairness_by_group

    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    groups = pd.Series(BANDS[rng.integers(0, 3, 300)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every rate is defined: no warning
        _, summary = fairness_by_group(y, pred, groups)
    assert summary["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=groups))


def test_a_rate_defined_in_one_group_only_gives_an_undefined_difference():
    from utils.evaluation import UndefinedRateWarning, fairness_by_group

    with pytest.warns(UndefinedRateWarning) as record:
        _, summary = fairness_by_group(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), pd.Series(["a", "a", "b", "b"]))
    assert {str(w.message).split(" ")[0] for w in record} == {"tpr", "fpr"}
    assert np.isnan(summary["equalized_odds_difference"])
