"""The packaged recommender at its boundary, for every model family: nulls, the invasive rule, number types.

Real models: each family is fitted, logged to the session's MLflow store and loaded back as the pyfunc
package (classifier + invasive rule). The same rows go in process, over REST (`mlflow models serve`)
and through Spark, and must give the same answers.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.support import pandas_training_frames
from utils.feature_types import features_frame
from utils.plantly_features import CATEGORICAL, FEATURES, NUMERIC
from utils.training import FAMILIES

FLAGS = [None, False, None, False]  # the four rows: unknown, safe, unknown, safe


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return pandas_training_frames(rows=4000, seed=5)


@pytest.fixture(scope="module")
def packages(frames, isolated_state) -> dict[str, dict]:
    """family -> {"uri", "model" (loaded pyfunc), "classifier"} for every family."""
    import mlflow

    from utils.platform import configure_mlflow
    from utils.training import (
        TrainResult,
        fit,
        log_recommender,
        pinned_requirements,
        skops_trusted_types,
    )

    configure_mlflow("model-boundary-tests")
    train, test = frames
    out = {}
    for family in FAMILIES:
        clf, threshold = fit(train, family, {"n_estimators": 30} if family == "random_forest" else None, seed=5)
        with mlflow.start_run(run_name=f"boundary-{family}") as run:
            info = mlflow.sklearn.log_model(clf, name="classifier", skops_trusted_types=skops_trusted_types(clf),
                                            pip_requirements=pinned_requirements())
        uri = log_recommender(TrainResult(run.info.run_id, family, {}, {}, clf, threshold, info.model_uri),
                              example=test.head(20))
        out[family] = {"uri": uri, "model": mlflow.pyfunc.load_model(uri), "classifier": clf}
    return out


@pytest.fixture(scope="module")
def rows(frames) -> pd.DataFrame:
    """Four held-out rows as a client sends them: the raw columns, `invasive` unknown in rows 0 and 2."""
    _, test = frames
    four = test[FEATURES].head(4).reset_index(drop=True).copy()
    four["invasive"] = pd.Series(FLAGS, dtype=object)
    return four


def expected_scores(package: dict, rows: pd.DataFrame) -> np.ndarray:
    """The right values: 0 where the flag is unknown, else the classifier's probability for the row."""
    clf = package["classifier"]
    safe = clf.predict_proba(features_frame(rows.assign(invasive=False)))[:, 1]
    return np.where(pd.Series(FLAGS).isna().to_numpy(), 0.0, safe)


# ---------------------------------------------------------------- in process


@pytest.mark.parametrize("family", FAMILIES)
def test_unknown_invasive_flag_scores_zero_in_process(packages, rows, family) -> None:
    got = packages[family]["model"].predict(rows).to_numpy()
    want = expected_scores(packages[family], rows)
    assert got[0] == 0.0 and got[2] == 0.0
    assert got[1] > 0.0 and got[3] > 0.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("column", FEATURES)
def test_every_family_accepts_a_null_in_every_column(packages, rows, family, column) -> None:
    sent = rows.assign(invasive=False).astype({column: object})
    sent.loc[1, column] = None
    got = packages[family]["model"].predict(sent).to_numpy()
    assert np.isfinite(got).all() and ((got >= 0) & (got <= 1)).all()
    if column == "invasive":
        assert got[1] == 0.0, "an unknown flag is read as invasive"
    else:
        assert got[1] > 0.0
    filled = {**{c: "unknown" for c in CATEGORICAL}, **{c: np.nan for c in NUMERIC}}
    if column in filled:  # a null is the value the pipeline fills it with, for every family alike
        np.testing.assert_allclose(got, packages[family]["model"].predict(
            rows.assign(invasive=False).assign(**{column: [filled[column] if i == 1 else v for i, v in
                                                           enumerate(rows[column])]})).to_numpy(), atol=1e-12)


INTEGER_FORMS = {
    "int64": lambda s: s.astype("int64"),
    "int32": lambda s: s.astype("int32"),
    "int8": lambda s: s.astype("int8"),
    "uint16": lambda s: s.astype("uint16"),
    "nullable Int64": lambda s: s.astype("Int64"),
    "whole float64": lambda s: s.astype("float64"),
    "float32": lambda s: s.astype("float32"),
    "python ints": lambda s: pd.Series([int(v) for v in s], dtype=object),
    "numeric text": lambda s: pd.Series([str(int(v)) for v in s], dtype=object),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("form", INTEGER_FORMS, ids=list(INTEGER_FORMS))
def test_integer_widths_and_whole_floats_give_the_same_scores(packages, rows, family, form) -> None:
    model = packages[family]["model"]
    base = rows.assign(invasive=False)
    reference = model.predict(base.astype({c: "float64" for c in ("position", "tenure_days")})).to_numpy()
    sent = base.assign(position=INTEGER_FORMS[form](base["position"]))
    if form != "int8":  # tenures run past 127
        sent = sent.assign(tenure_days=INTEGER_FORMS[form](base["tenure_days"]))
    assert [float(v) for v in sent["tenure_days"]] == base["tenure_days"].astype(float).tolist()
    np.testing.assert_array_equal(model.predict(sent).to_numpy(), reference)


LOSSY = {
    "fraction in a whole-number column": ("position", [1.5, 2, 3, 4], "not whole numbers"),
    "int64 beyond 2**53": ("tenure_days", np.array([2**60, 1, 2, 3], dtype="int64"), "2**53"),
    "python int beyond 2**53": ("cust_impressions_30d", pd.Series([2**53 + 1, 1, 2, 3], dtype=object), "2**53"),
    "text that is no number": ("price", pd.Series(["cheap", 1.0, 2.0, 3.0], dtype=object), "not numbers"),
    "boolean for a number": ("price", [True, False, True, False], "booleans"),
    "infinity": ("price", [np.inf, 1.0, 2.0, 3.0], "infinite"),
    "flag that is no flag": ("invasive", pd.Series(["maybe", False, True, False], dtype=object), "true/false"),
    "number for a category": ("region", pd.Series([7, "north", "south", "east"], dtype=object), "not text"),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", LOSSY, ids=list(LOSSY))
def test_values_that_would_lose_information_are_refused_naming_the_column(packages, rows, family, case) -> None:
    from mlflow.exceptions import MlflowException

    column, values, words = LOSSY[case]
    sent = rows.assign(invasive=False).assign(**{column: values})
    with pytest.raises(MlflowException) as err:
        packages[family]["model"].predict(sent)
    assert f"'{column}'" in str(err.value) and words in str(err.value)


# ---------------------------------------------------------------- REST: mlflow models serve (what Model Serving runs)


@pytest.fixture(scope="module")
def served(packages):
    from utils.local.endpoints import LocalEndpoint

    ep = LocalEndpoint(packages["gboost"]["uri"], timeout_s=300)
    ep.start()
    yield ep
    ep.stop()


def _bodies(frame: pd.DataFrame) -> dict[str, dict]:
    records = json.loads(frame.to_json(orient="records"))
    split = json.loads(frame.to_json(orient="split", index=False))
    return {
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {"dataframe_split": split},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [r[c] for r in records] for c in frame.columns}},
    }


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["dataframe_records", "dataframe_split", "instances", "inputs"])
def test_unknown_invasive_flag_scores_zero_over_rest(served, packages, rows, fmt) -> None:
    import requests

    body = _bodies(rows)[fmt]
    assert [r.get("invasive") for r in body.get("dataframe_records") or body.get("instances") or []] in ([], FLAGS)
    resp = requests.post(served.invocations_url, json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    got = [p["probability"] if isinstance(p, dict) else p for p in resp.json()["predictions"]]
    np.testing.assert_allclose(got, expected_scores(packages["gboost"], rows), rtol=0, atol=1e-12)
    assert got[0] == 0.0 and got[2] == 0.0


@pytest.mark.slow
def test_number_types_over_rest_match_in_process(served, packages, rows) -> None:
    import requests

    base = rows.assign(invasive=False)
    want = packages["gboost"]["model"].predict(base).tolist()
    as_ints = json.loads(base.assign(position=base["position"].astype("int64")).to_json(orient="records"))
    as_floats = [{**r, "position": float(r["position"]), "tenure_days": float(r["tenure_days"])} for r in as_ints]
    for records in (as_ints, as_floats):
        resp = requests.post(served.invocations_url, json={"dataframe_records": records}, timeout=60)
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose([p["probability"] if isinstance(p, dict) else p for p in resp.json()["predictions"]],
                                   want, rtol=0, atol=1e-12)
    lossy = [{**as_ints[0], "position": 1.5}]
    resp = requests.post(served.invocations_url, json={"dataframe_records": lossy}, timeout=60)
    assert resp.status_code == 400 and "'position'" in resp.text, resp.text


# ---------------------------------------------------------------- batch: Spark


@pytest.mark.slow
def test_batch_paths_score_unknown_flags_zero_and_take_long_columns(spark, packages, rows) -> None:
    from pyspark.sql import functions as F

    from utils.scoring import spark_udf_scores

    frame = rows.assign(position=rows["position"].astype("int64"), tenure_days=rows["tenure_days"].astype("int64"))
    sdf = spark.createDataFrame(frame.astype({"invasive": object})).withColumn("row", F.monotonically_increasing_id())
    assert dict(sdf.dtypes)["position"] == "bigint" and dict(sdf.dtypes)["invasive"] == "boolean"
    want = expected_scores(packages["gboost"], rows)
    got = spark_udf_scores(sdf, packages["gboost"]["uri"]).orderBy("row").select("prediction").toPandas()["prediction"]
    np.testing.assert_allclose(got.to_numpy(), want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- the validation gate on the real package


@pytest.mark.parametrize("family", FAMILIES)
def test_gate_reads_the_declared_input_types_of_any_columns(packages, frames, family) -> None:
    from utils.gate import run_gate
    from utils.plantly_features import LABEL, feature_schema
    from utils.training import gate_frame

    _, test = frames
    result = run_gate(packages[family]["uri"], gate_frame(test.head(600)), LABEL, expected_features=feature_schema(),
                      batch_size=100)
    assert result.check("signature").passed, result.summary()
    assert result.check("compliance").passed and result.check("compliance").value == 0.0, result.summary()
    wrong = run_gate(packages[family]["uri"], gate_frame(test.head(600)), LABEL,
                     expected_features={**feature_schema(), "price": "string"}, batch_size=100)
    assert not wrong.check("signature").passed
    assert "price (model double, production feature schema string)" in wrong.check("signature").reason


@pytest.mark.slow
@pytest.mark.parametrize("column, value, words", [
    ("tenure_days", 2**53 + 1, "exceeds 2**53"),
    ("position", 1.5, "not a whole number"),
])
def test_batch_refuses_values_a_double_cannot_hold_naming_the_column(spark, packages, rows, column, value, words) -> None:
    from utils.scoring import spark_udf_scores

    frame = rows.assign(invasive=False, position=rows["position"].astype("int64"),
                        tenure_days=rows["tenure_days"].astype("int64"))
    frame[column] = frame[column].astype(type(value))
    frame.loc[0, column] = value
    sdf = spark.createDataFrame(frame)
    with pytest.raises(Exception, match=f"'{column}'.*{words.replace('*', '[*]')}"):
        spark_udf_scores(sdf, packages["gboost"]["uri"]).collect()


def test_unknown_flag_is_read_as_invasive_by_the_shared_model_input_step() -> None:
    """The inference log and calls to a remote served entity build model inputs with model_inputs (the streaming
    scorer with its Spark twin, model_input_columns, which also reads an unknown flag as invasive)."""
    from utils.scoring import model_inputs

    frame = pd.DataFrame({c: ["x"] * 3 for c in CATEGORICAL} | {c: [1.0] * 3 for c in NUMERIC}
                         | {"invasive": pd.Series([None, False, True], dtype=object)})
    assert model_inputs(frame)["invasive"].tolist() == [True, False, True]
