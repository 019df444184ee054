"""The validation gate: every check a model version must pass before it may become ``challenger``.

``run_gate`` loads a pyfunc model, scores an evaluation frame and returns a ``GateResult`` holding
each check with its value, threshold and reason:

1. ``min_auc`` — ROC AUC on the evaluation rows the model may recommend (plants not flagged invasive:
   the compliance rule scores the others 0 whatever the model, so they say nothing of its ranking)
   is at least ``thresholds.gate_min_auc``;
2. ``no_regression`` — that AUC is no more than ``thresholds.gate_max_auc_regression`` below the
   champion's on the same rows (passes with "no champion yet" when there is none);
3. ``fairness`` — demographic parity difference of the *top-k selection* across
   ``sensitive_col`` is at most ``thresholds.gate_max_dp_difference``. The k highest-scored rows are
   selected, k being the number of positive labels (ties at the cut are all selected), because a
   recommender acts on its top picks and a 0.5 cut on a rare-event probability selects almost
   nobody, which would make any model look fair. Pass ``decision_threshold=0.5`` for a fixed cut;
4. ``latency`` — the median of 3 predictions of a ``batch_size``-row batch takes at most
   ``latency_budget_ms``;
5. ``compliance`` — no row flagged invasive, or whose flag is unknown (null: the rule reads it as
   invasive), scores above ``thresholds.gate_max_invasive_score``. Besides those rows of the frame, up
   to 200 other rows are scored again with the flag set and again with it null, so the rule is tested
   even when the frame holds few invasive plants;
6. ``signature`` — the model's input signature matches the production feature schema
   (``expected_features``: column -> MLflow type such as "double", "long", "string", "boolean"); a
   column the signature declares ``Any`` is compared by the type in the model's ``input_types`` metadata;
   missing, extra and mistyped columns are named. Without ``expected_features`` the signature is
   checked against the evaluation frame's columns (every model input present, with a compatible type).

A check whose measured value is undefined (NaN) fails with a reason that says so; a check that cannot
be measured at all (no sensitive column, a single group) passes with value None and a reason saying it
was not measured.

``gate_and_set_challenger`` runs the gate on a registered version against the current champion and,
only when it passes, moves the ``challenger`` alias (audited). It is what the deployment job's
evaluation task calls (``utils.deployment_job``), fired by registration on both platforms.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any

from utils import registry
from utils.config import Thresholds, get_config
from utils.verdict import (  # noqa: F401 - re-exported: the verdict's types and where it is recorded
    GATE_TAGS,
    UNITS,
    VERDICT_ARTIFACT,
    CheckResult,
    GateResult,
    _display,
    _plain,
    _short,
    recorded_verdict,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CHECK_NAMES = ("signature", "min_auc", "no_regression", "fairness", "latency", "compliance")
LATENCY_RUNS = 3
COMPLIANCE_PROBES = 200
SCORE_COLUMNS = ("probability", "prediction", "score")
# (production type, model signature type) pairs MLflow's schema enforcement converts safely.
SAFE_UPCASTS = {("integer", "long"), ("integer", "float"), ("integer", "double"), ("float", "double")}


# ---------------------------------------------------------------- inputs and scores


def _validate_inputs(eval_df: pd.DataFrame, label_col: str, sensitive_col: str | None, invasive_col: str) -> None:
    import pandas as pd

    if not isinstance(eval_df, pd.DataFrame):
        raise TypeError(f"eval_df must be a pandas DataFrame, got {type(eval_df).__name__}: call .toPandas() first")
    if eval_df.empty:
        raise ValueError("eval_df is empty: the gate needs labelled evaluation rows (e.g. the held-out time split)")
    if label_col not in eval_df.columns:
        raise ValueError(f"label column {label_col!r} is not in eval_df (columns: {list(eval_df.columns)}): "
                         "pass label_col= the column holding the outcome")
    labels = eval_df[label_col]
    if labels.isna().any():
        raise ValueError(f"label column {label_col!r} has {int(labels.isna().sum())} missing values: "
                         "drop or label those rows first")
    values = set(labels.unique().tolist())
    if not values <= {0, 1}:  # True/False compare equal to 1/0
        raise ValueError(f"label column {label_col!r} holds {sorted(map(str, values))[:5]}: "
                         "expected booleans or 0/1 (1 = the positive class)")
    if labels.nunique() < 2:
        raise ValueError(f"label column {label_col!r} holds only {labels.unique().tolist()}: "
                         "AUC needs both classes in the evaluation rows")
    for role, col in (("sensitive_col", sensitive_col), ("invasive_col", invasive_col)):
        if col is not None and col not in eval_df.columns:
            raise ValueError(f"{role} {col!r} is not in eval_df (columns: {list(eval_df.columns)}): "
                             f"add it or pass {role}=" + ("None to skip the fairness check" if role == "sensitive_col" else "the flag column"))


def scores_from_output(output: Any, n_rows: int) -> np.ndarray:
    """The positive-class probability per row from a pyfunc ``predict`` output (array, Series or DataFrame)."""
    import numpy as np
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        cols = [c for c in SCORE_COLUMNS if c in output.columns]
        if cols:
            output = output[cols[0]]
        elif output.shape[1] == 1:
            output = output.iloc[:, 0]
        else:
            raise ValueError(f"model output has columns {list(output.columns)}; expected one named "
                             f"{' or '.join(SCORE_COLUMNS)} holding the positive-class probability")
    arr = np.asarray(output)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 1]  # predict_proba-style output: column 1 is the positive class
    if arr.ndim != 1 or len(arr) != n_rows:
        raise ValueError(f"model returned shape {arr.shape} for {n_rows} rows; expected one probability per row")
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model returned non-numeric scores ({arr.dtype}): {exc}") from exc
    if np.isnan(arr).any():
        raise ValueError(f"model returned {int(np.isnan(arr).sum())} NaN scores")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"model scores range over [{arr.min():.3g}, {arr.max():.3g}]; expected probabilities in [0, 1]")
    return arr


def _predict(model: Any, features: pd.DataFrame) -> np.ndarray:
    return scores_from_output(model.predict(features), len(features))


def _mlflow_type(dtype: Any) -> str:
    import pandas as pd

    api = pd.api.types
    if api.is_bool_dtype(dtype):
        return "boolean"
    if api.is_integer_dtype(dtype):
        return "long" if getattr(dtype, "itemsize", 8) >= 8 else "integer"
    if api.is_float_dtype(dtype):
        return "double" if getattr(dtype, "itemsize", 8) >= 8 else "float"
    if api.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


# ---------------------------------------------------------------- the checks


def _check_signature(model: Any, expected: dict[str, str] | None, eval_features: pd.DataFrame) -> CheckResult:
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return CheckResult("signature", False, None, expected,
                           "model has no named input signature: log it with signature=infer_signature(X, y)")
    model_cols = {spec.name: str(getattr(spec.type, "name", spec.type)) for spec in schema.inputs}
    # A column declared Any reaches the model as sent and the model converts it itself; the type it
    # converts to is in the model's metadata (utils.training.log_recommender records it there).
    declared = (getattr(model.metadata, "metadata", None) or {}).get("input_types") or {}
    model_cols = {c: str(declared.get(c, t)).lower() if t == "Any" else t for c, t in model_cols.items()}
    if expected is not None:
        basis = "production feature schema"
        want = {str(k): str(v).lower() for k, v in expected.items()}
        missing = sorted(set(want) - set(model_cols))
    else:
        basis = "evaluation frame columns"
        want = {c: _mlflow_type(eval_features[c].dtype) for c in eval_features.columns}
        missing = []  # the frame may hold keys and labels the model does not take
    extra = sorted(set(model_cols) - set(want))
    mistyped = sorted(c for c in set(model_cols) & set(want)
                      if model_cols[c] not in (want[c], "any") and (want[c], model_cols[c]) not in SAFE_UPCASTS)
    problems = []
    if missing:
        problems.append(f"missing from the model signature: {missing}")
    if extra:
        problems.append(f"not in the {basis}: {extra}")
    if mistyped:
        problems.append("mistyped: " + ", ".join(f"{c} (model {model_cols[c]}, {basis} {want[c]})" for c in mistyped))
    value = {"missing": missing, "extra": extra, "mistyped": mistyped}
    if problems:
        return CheckResult("signature", False, value, expected, f"signature does not match the {basis}: " + "; ".join(problems))
    return CheckResult("signature", True, value, expected, f"all {len(model_cols)} model inputs match the {basis}")


def _check_auc(auc: float, th: Thresholds) -> CheckResult:
    ok = auc >= th.gate_min_auc
    return CheckResult("min_auc", ok, auc, th.gate_min_auc,
                       f"AUC {auc:.4f} {'>=' if ok else '<'} minimum {th.gate_min_auc}")


def _check_regression(auc: float, champion_uri: str | None, features: pd.DataFrame, y: np.ndarray,
                      th: Thresholds, champion_note: str | None = None) -> CheckResult:
    import mlflow
    from sklearn.metrics import roc_auc_score

    from utils.training import scoring_model_uri

    if champion_uri is None:
        return CheckResult("no_regression", True, None, th.gate_max_auc_regression, champion_note or "no champion yet")
    try:
        champion_auc = float(roc_auc_score(y, _predict(mlflow.pyfunc.load_model(scoring_model_uri(champion_uri)), features)))
    except Exception as exc:  # noqa: BLE001 - any failure becomes a failed check, never a crash
        return CheckResult("no_regression", False, None, th.gate_max_auc_regression,
                           f"cannot score the champion {champion_uri}: {type(exc).__name__}: {exc}")
    floor = champion_auc - th.gate_max_auc_regression
    ok = auc >= floor
    return CheckResult("no_regression", ok, {"auc": auc, "champion_auc": champion_auc}, th.gate_max_auc_regression,
                       f"AUC {auc:.4f} {'>=' if ok else '<'} champion AUC {champion_auc:.4f} - "
                       f"{th.gate_max_auc_regression} = {floor:.4f}")


def _selection(scores: np.ndarray, y: np.ndarray, decision_threshold: float | None) -> tuple[np.ndarray, str]:
    import numpy as np

    if decision_threshold is not None:
        return scores >= decision_threshold, f"score >= {decision_threshold}"
    k = int(np.asarray(y, dtype=bool).sum())
    cut = np.sort(scores)[::-1][k - 1]
    return scores >= cut, f"top-{k} selection (k = positive labels)"


def _check_fairness(scores: np.ndarray, y: np.ndarray, groups: pd.Series | None, th: Thresholds,
                    decision_threshold: float | None, sensitive_col: str | None) -> CheckResult:
    from fairlearn.metrics import demographic_parity_difference

    limit = th.gate_max_dp_difference
    if groups is None:
        return CheckResult("fairness", True, None, limit, "no sensitive column given: fairness not checked")
    selected, how = _selection(scores, y, decision_threshold)
    import pandas as pd

    groups = groups.fillna("<missing>").astype(str)
    if groups.nunique() < 2:
        return CheckResult("fairness", True, None, limit,
                           f"not measured: only one {sensitive_col} group in the evaluation rows, so no difference "
                           "between groups is defined; passed without a fairness measurement")
    dp = float(demographic_parity_difference(y, selected, sensitive_features=groups))
    rates = pd.Series(selected.astype(float)).groupby(groups.to_numpy()).mean()
    ok = dp <= limit
    return CheckResult("fairness", ok, dp, limit,
                       f"demographic parity difference across {sensitive_col} on {how} is {dp:.3f} "
                       f"{'<=' if ok else '>'} {limit} (selection rates: "
                       + ", ".join(f"{g}={r:.2f}" for g, r in rates.items()) + ")")


def _check_latency(model: Any, features: pd.DataFrame, budget_ms: float, batch_size: int) -> CheckResult:
    import statistics

    batch = features.sample(n=batch_size, replace=len(features) < batch_size, random_state=0).reset_index(drop=True)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        model.predict(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    median = statistics.median(times)
    ok = median <= budget_ms
    return CheckResult("latency", ok, median, budget_ms,
                       f"median of {LATENCY_RUNS} predictions of {batch_size} rows took {median:.1f} ms "
                       f"{'<=' if ok else '>'} budget {_short(budget_ms)} ms")


def _invasive_mask(col: pd.Series) -> np.ndarray:
    """True where a row is flagged invasive or its flag is unknown (null, or text other than false/0/no)."""
    import pandas as pd

    unknown = col.isna().to_numpy()
    if pd.api.types.is_bool_dtype(col):
        return unknown | col.fillna(True).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(col):
        return unknown | (col.fillna(1).to_numpy() != 0)
    clear_false = col.map(lambda v: v is False or v == 0 or str(v).strip().lower() in {"false", "0", "no"})
    return unknown | ~clear_false.to_numpy(dtype=bool)


def _probe_flags(probes: pd.DataFrame, col: pd.Series, invasive_col: str) -> list[pd.DataFrame]:
    """``probes`` re-flagged invasive, and again with the flag unknown (null), in the column's own dtype."""
    import numpy as np
    import pandas as pd

    flagged, unknown = probes.copy(), probes.copy()
    if pd.api.types.is_bool_dtype(col):
        flagged[invasive_col] = np.ones(len(probes), dtype=bool)
        unknown[invasive_col] = pd.Series([None] * len(probes), index=probes.index, dtype=object)
    elif pd.api.types.is_numeric_dtype(col):
        flagged[invasive_col] = pd.Series(1, index=probes.index).astype(col.dtype)
        unknown[invasive_col] = np.nan
    else:
        flagged[invasive_col] = "true"
        unknown[invasive_col] = None
    return [flagged, unknown]


def _check_compliance(model: Any, features: pd.DataFrame, scores: np.ndarray, invasive_col: str,
                      th: Thresholds) -> CheckResult:
    import numpy as np

    limit = th.gate_max_invasive_score
    mask = _invasive_mask(features[invasive_col])
    flagged = scores[mask]
    probes = features.loc[~mask].head(COMPLIANCE_PROBES)
    if len(probes):
        for probe in _probe_flags(probes, features[invasive_col], invasive_col):
            try:
                flagged = np.concatenate([flagged, _predict(model, probe)])
            except Exception as exc:  # noqa: BLE001 - any failure becomes a failed check
                return CheckResult("compliance", False, None, limit,
                                   f"cannot score rows whose {invasive_col} flag is "
                                   f"{'unknown' if probe[invasive_col].isna().all() else 'set'}: {type(exc).__name__}: {exc}")
    if not len(flagged):
        return CheckResult("compliance", False, None, limit, "not measured: no row to check the invasive rule on")
    top = float(flagged.max())
    n_over = int((flagged > limit).sum())
    ok = n_over == 0
    return CheckResult("compliance", ok, top, limit,
                       f"max score over {len(flagged)} rows flagged {invasive_col} or with the flag unknown "
                       f"({int(mask.sum())} in the frame, {len(probes)} probes re-flagged invasive and again unknown) "
                       f"is {top:.4g}; {n_over} above {limit}")


def _failed_all(names: tuple[str, ...], why: str, th: Thresholds, budget_ms: float) -> list[CheckResult]:
    limits = {"min_auc": th.gate_min_auc, "no_regression": th.gate_max_auc_regression,
              "fairness": th.gate_max_dp_difference, "latency": budget_ms, "compliance": th.gate_max_invasive_score}
    return [CheckResult(n, False, None, limits.get(n), why) for n in names]


def _parse_models_uri(model_uri: str) -> tuple[str, str | None]:
    if model_uri.startswith("models:/"):
        rest = model_uri[len("models:/"):]
        if "/" in rest:
            name, ref = rest.rsplit("/", 1)
            if ref.isdigit():
                return name, ref
            if not ref.startswith("@"):
                return name, None
        if "@" in rest:
            return rest.split("@", 1)[0], None
    return model_uri, None


def run_gate(
    model_uri: str,
    eval_df: pd.DataFrame,
    label_col: str,
    *,
    thresholds: Thresholds | None = None,
    champion_uri: str | None = None,
    sensitive_col: str | None = "age_band",
    invasive_col: str = "invasive",
    expected_features: dict[str, str] | None = None,
    latency_budget_ms: float = 2000.0,
    batch_size: int = 1000,
    decision_threshold: float | None = None,
    champion_note: str | None = None,
) -> GateResult:
    """Run every gate check on the model at ``model_uri`` over ``eval_df``.

    A model that loads but misbehaves (wrong schema, errors, bad scores) fails checks, it does not
    raise. Bad input (empty frame, missing label/sensitive/invasive column, one-class label) raises
    ValueError before anything is loaded. ``decision_threshold`` switches the fairness selection from
    top-k (default) to ``score >= decision_threshold``. ``champion_note`` says why there is no
    champion to compare with (default: "no champion yet").
    """
    import mlflow
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from utils.training import scoring_model_uri

    _validate_inputs(eval_df, label_col, sensitive_col, invasive_col)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    th = thresholds or get_config().thresholds
    name, version = _parse_models_uri(model_uri)
    if model_uri.startswith(("models:/", "runs:/")):
        registry.check_mlflow_configured()
    features = eval_df.drop(columns=[label_col]).reset_index(drop=True)
    y = eval_df[label_col].to_numpy().astype(int)
    result = GateResult(name, version, False, [], model_uri, champion_uri)

    model = mlflow.pyfunc.load_model(scoring_model_uri(model_uri))  # a feature-store model: its raw model
    result.checks.append(_check_signature(model, expected_features, features))
    try:
        scores = _predict(model, features)
    except Exception as exc:  # noqa: BLE001 - a model that cannot score fails the gate, it does not crash it
        why = f"the model cannot score the evaluation rows: {type(exc).__name__}: {exc}"
        result.checks.extend(_failed_all(CHECK_NAMES[1:], why, th, latency_budget_ms))
        return result
    eligible = _recommendable(features, y, invasive_col)
    auc = float(roc_auc_score(y[eligible], np.asarray(scores)[eligible]))
    result.checks.append(_check_auc(auc, th))
    result.checks.append(_check_regression(auc, champion_uri, features[eligible].reset_index(drop=True), y[eligible], th,
                                           champion_note))
    groups = features[sensitive_col] if sensitive_col else None
    result.checks.append(_check_fairness(scores, y, groups, th, decision_threshold, sensitive_col))
    result.checks.append(_check_latency(model, features, latency_budget_ms, batch_size))
    result.checks.append(_check_compliance(model, features, np.asarray(scores), invasive_col, th))
    result.checks = [_refuse_undefined(c) for c in result.checks]
    result.passed = all(c.passed for c in result.checks)
    return result


def _undefined(value: Any) -> bool:
    """True when a measured value is, or holds, NaN (an undefined metric)."""
    if isinstance(value, dict):
        return any(_undefined(v) for v in value.values())
    try:
        return math.isnan(value)
    except TypeError:
        return False


def _refuse_undefined(check: CheckResult) -> CheckResult:
    """A check whose measurement is undefined (NaN) fails, saying so: a NaN never passes or fails a model silently."""
    if not _undefined(check.value):
        return check
    return CheckResult(check.name, False, check.value, check.threshold,
                       f"undefined metric (NaN): the gate does not pass a model on a value it could not measure; {check.reason}")


def _recommendable(features: pd.DataFrame, y: Any, invasive_col: str | None) -> Any:
    """Mask of rows the model may recommend (not flagged invasive); all rows if that leaves one class."""
    import numpy as np

    if not invasive_col or invasive_col not in features:
        return np.ones(len(features), dtype=bool)
    flag = features[invasive_col]
    mask = ~(flag.isna().to_numpy() | flag.where(flag.notna(), False).astype(bool).to_numpy())
    return mask if len(set(np.asarray(y)[mask])) == 2 else np.ones(len(features), dtype=bool)


# ---------------------------------------------------------------- gate a registered version


def champion_overlap(champion_run_id: str | None, eval_start: Any) -> str | None:
    """Why comparing with the champion on rows from ``eval_start`` on would be unfair, or None when it is fair.

    The champion's run logs ``train_end``, the newest row it was fitted on; rows up to then may be
    its own training data, on which it scores better than on unseen rows.
    """
    import mlflow
    import pandas as pd

    if champion_run_id is None or eval_start is None:
        return None
    train_end = mlflow.get_run(champion_run_id).data.params.get("train_end")
    if train_end is None or pd.Timestamp(train_end) < pd.Timestamp(eval_start):
        return None
    return (f"not compared: the champion was trained on rows up to {train_end}, inside this evaluation window "
            f"(from {pd.Timestamp(eval_start).isoformat()}), so it would be judged on its own training data; "
            "the absolute checks decide")


def gate_and_set_challenger(name: str, version: str | int, eval_df: pd.DataFrame, label_col: str,
                            eval_start: Any = None, **kw: Any) -> GateResult:
    """Gate ``models:/name/version`` against the current champion; only a pass moves ``challenger``.

    ``eval_start`` is the first event time of ``eval_df``; when the champion trained on rows from
    then on, the champion comparison is skipped with that reason (see ``champion_overlap``).
    The verdict is always recorded as version tags (``gate_passed``, ``gate_failed``, ``gate_summary``,
    ``gate_checked_at``) and, when the version names its training run, in full as that run's artifact
    ``gate/version-<n>.json`` (:func:`recorded_verdict`); a failure changes no alias. ``gate_checked_at``
    is written last, after ``challenger`` moved: whoever waits for the verdict (``recorded_verdict``) then
    finds everything it implies done. ``kw`` goes to ``run_gate``.
    """
    from datetime import datetime

    cfg = get_config()
    version = str(version)
    if "champion_uri" not in kw:
        champion = registry.get_alias_version(name, cfg.champion_alias)
        other = champion is not None and str(champion.version) != version
        kw["champion_uri"] = f"models:/{name}/{champion.version}" if other else None
        overlap = champion_overlap(champion.run_id, eval_start) if other else None
        if overlap:
            kw["champion_uri"], kw["champion_note"] = None, overlap
    result = run_gate(f"models:/{name}/{version}", eval_df, label_col, **kw)
    run_id = registry.get_version(name, version).run_id
    if run_id:  # the whole result, every check, beside the run that trained the version (recorded_verdict reads it)
        import mlflow

        mlflow.MlflowClient().log_dict(run_id, result.to_dict(), VERDICT_ARTIFACT.format(version=version))
    registry.set_version_tags(name, version, {
        "gate_passed": str(result.passed).lower(),
        "gate_failed": ",".join(c.name for c in result.failed()),
        "gate_summary": "; ".join(f"{c.name}: {c.reason}" for c in result.failed()) or "all checks passed",
    })
    if result.passed:
        registry.set_alias(name, cfg.challenger_alias, version, "passed the validation gate",
                           gate_result=result, action="gate_pass")
    registry.set_version_tags(name, version, {"gate_checked_at": datetime.now(UTC).isoformat(timespec="seconds")})
    return result
