"""The training pipeline as reusable functions: split → fit → evaluate → log.

Notebooks 02 and 03 and the retraining loop of 06 call the same functions, so a model retrained
by the monitor is built exactly like the one a data scientist developed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from utils.feature_types import WHOLE_NUMBER, features_frame
from utils.plantly_features import BOOLEAN, CATEGORICAL, FEATURES, LABEL, NUMERIC

FAMILIES = ("logreg", "gboost", "random_forest")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logreg": {"C": 1.0},
    "gboost": {"learning_rate": 0.1, "max_iter": 150, "max_leaf_nodes": 15},
    "random_forest": {"n_estimators": 150, "max_depth": 10, "min_samples_leaf": 5},
}
RUN_RECORDS = ("family", "seed", "train_rows", "test_rows", "train_end", "threshold", "test_fraction")
"""What :func:`train_and_log` and :func:`develop` record on a run besides the family's hyper-parameters."""
PACKAGE_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops", "cloudpickle", "pyarrow")


@dataclass
class TrainResult:
    """What one training run produced."""

    run_id: str
    family: str
    params: dict[str, Any]
    metrics: dict[str, float]
    model: Any
    threshold: float
    model_uri: str | None = None
    inputs: dict[str, int] = field(default_factory=dict)


def family_params(family: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hyper-parameters ``family`` is fitted with: ``DEFAULT_PARAMS[family]`` updated by ``params``.

    ``params`` may be what an MLflow run recorded (``mlflow.get_run(run_id).data.params``, every value a
    string): a value of a default's key is cast to the default's type (``"None"`` to None, a whole number
    to an int), and the run's other records are left out: ``RUN_RECORDS`` (family, seed, row counts...) and
    what ``mlflow.sklearn.autolog`` records of the whole pipeline (its ``get_params(deep=True)`` keys; 02
    trains with autolog on). Any other key is kept, so the estimator refuses a misspelt one by name.
    Raises ``ValueError`` for an unknown family or a value the cast refuses (``max_iter="8.5"``).
    """
    if family not in DEFAULT_PARAMS:
        raise ValueError(f"unknown model family {family!r}: choose one of {FAMILIES}")
    defaults = DEFAULT_PARAMS[family]
    given = {k: v for k, v in (params or {}).items() if k not in RUN_RECORDS}
    if set(given) - set(defaults):
        autologged = set(build_pipeline(family, None, 0).get_params(deep=True))
        given = {k: v for k, v in given.items() if k not in autologged}
    return {**defaults, **{k: _cast_param(defaults[k], v, k) if k in defaults else v for k, v in given.items()}}


def _cast_param(default: Any, value: Any, name: str) -> Any:
    if value is None or value == "None":
        return None
    if isinstance(default, int):
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return type(default)(value)


def time_split(df: pd.DataFrame, ts_col: str = "event_ts", test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the past, evaluate on the future: rows before / from the ``1 - test_fraction`` time quantile."""
    if df.empty:
        raise ValueError("cannot split an empty training set: build it first (notebook 01 / utils.catchup)")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    ordered = df.sort_values([ts_col, "event_id"] if "event_id" in df else [ts_col], kind="stable")
    cutoff = ordered[ts_col].quantile(1 - test_fraction)
    train, test = ordered[ordered[ts_col] < cutoff], ordered[ordered[ts_col] >= cutoff]
    if train.empty or test.empty:
        raise ValueError(f"time split at {cutoff} left an empty side: use more rows")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def build_pipeline(family: str, params: dict[str, Any] | None = None, seed: int = 42) -> Any:
    """An sklearn pipeline: one-hot categoricals, impute+scale numerics, then the ``family`` classifier."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    params = family_params(family, params)
    pre = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), NUMERIC),
        ("flag", "passthrough", BOOLEAN),
    ])
    if family == "logreg":
        clf = LogisticRegression(max_iter=1000, random_state=seed, **params)
    elif family == "gboost":
        clf = HistGradientBoostingClassifier(random_state=seed, **params)
    else:
        clf = RandomForestClassifier(random_state=seed, n_jobs=1, **params)
    return Pipeline([("features", pre), ("classifier", clf)])


def prevalence_threshold(model: Any, X: pd.DataFrame, y: pd.Series) -> float:
    """Score threshold that flags as many training rows as there are purchases."""
    scores = model.predict_proba(X)[:, 1]
    return float(np.quantile(scores, 1 - float(np.mean(y))))


def skops_trusted_types(model: Any) -> list[str]:
    """Types skops must trust to load ``model`` (MLflow 3 saves sklearn models with skops)."""
    import skops.io as sio

    return list(sio.get_untrusted_types(data=sio.dumps(model)))


def pinned_requirements(packages: tuple[str, ...] = PACKAGE_REQUIREMENTS) -> list[str]:
    """``name==version`` for each of ``packages`` as installed where the model is trained.

    The model is trained and gated with these versions, so serving and a fresh environment must get the
    same: locally the lock's (``make install`` syncs the lock exactly), on Databricks the runtime's, which
    ``requirements-databricks.txt`` leaves as they are (review R11: pins copied from the local lock would
    serve a model with versions it was never trained with). Raises ``ValueError`` naming a package that is
    not installed.
    """
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            raise ValueError(f"{package} is not installed here, so a model cannot pin it: install the project "
                             "(make install locally, install_on_databricks() on Databricks)") from None
    return pins


def fit(train: pd.DataFrame, family: str, params: dict[str, Any] | None = None, seed: int = 42) -> tuple[Any, float]:
    """Fit the ``family`` pipeline on ``train``; returns the model and its decision threshold."""
    X, y = features_frame(train), train[LABEL].astype(int)
    if y.nunique() < 2:
        raise ValueError("the training labels have a single class: use more rows or another time range")
    model = build_pipeline(family, params, seed).fit(X, y)
    return model, prevalence_threshold(model, X, y)


def train_and_log(
    train: pd.DataFrame,
    test: pd.DataFrame,
    family: str,
    params: dict[str, Any] | None = None,
    seed: int = 42,
    input_tables: dict[str, int] | None = None,
    run_name: str | None = None,
    nested: bool = False,
    log_model: bool = True,
) -> TrainResult:
    """Fit, evaluate (MLflow evaluate + business metrics) and log one candidate as an MLflow run.

    ``input_tables`` maps every Delta table read to its version; they are logged as dataset inputs
    and ``input.<table>`` tags, so the run can be reproduced from exactly the same data.
    A failure inside the run ends it with status FAILED, never left RUNNING.
    """
    import mlflow

    from utils.evaluation import evaluate_scores

    params = family_params(family, params)
    if test.empty or LABEL not in test.columns:
        raise ValueError(f"evaluation frame is empty or has no {LABEL!r} label column")
    with mlflow.start_run(run_name=run_name or family, nested=nested) as run, warnings.catch_warnings():
        # Integer columns (position, the 0/1 label) are intended; MLflow's schema hint about them is noise here.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        mlflow.set_tags({"model_family": family, "seed": str(seed)})
        mlflow.log_params({**params, "family": family, "seed": seed, "train_rows": len(train), "test_rows": len(test)})
        if "event_ts" in train and len(train):  # the gate compares with this model only on rows after it
            mlflow.log_param("train_end", pd.Timestamp(train["event_ts"].max()).isoformat())
        log_inputs(input_tables or {}, train)
        started = time.perf_counter()
        model, threshold = fit(train, family, params, seed)
        mlflow.log_metric("fit_seconds", time.perf_counter() - started)
        mlflow.log_param("threshold", round(threshold, 6))
        scores = model.predict_proba(features_frame(test))[:, 1]
        metrics = evaluate_scores(test[FEATURES + [LABEL]], LABEL, scores, threshold)
        uri = None
        if log_model:
            X = features_frame(test.head(5))
            info = mlflow.sklearn.log_model(
                model, name="classifier", input_example=X, skops_trusted_types=skops_trusted_types(model),
                pip_requirements=pinned_requirements(),
            )
            uri = info.model_uri
    return TrainResult(run.info.run_id, family, params, metrics, model, threshold, uri, dict(input_tables or {}))


SIMPLICITY = {"logreg": 0, "gboost": 1, "random_forest": 2}


def choose_candidate(results: list[TrainResult], metric: str = "roc_auc", tolerance: float = 0.005) -> TrainResult:
    """The best ``metric`` wins, unless a simpler family is within ``tolerance`` of it."""
    if not results:
        raise ValueError("no candidates to choose from")
    best = max(r.metrics[metric] for r in results)
    eligible = [r for r in results if r.metrics[metric] >= best - tolerance]
    return min(eligible, key=lambda r: (SIMPLICITY.get(r.family, 99), -r.metrics[metric]))


def select_family(train: pd.DataFrame, seed: int = 42, tolerance: float = 0.005,
                  validation_fraction: float = 0.25) -> tuple[str, dict[str, Any]]:
    """The family (and its default parameters) to train when notebook 02 has not chosen one.

    Each family in ``DEFAULT_PARAMS`` is fitted on the older ``1 - validation_fraction`` of ``train`` (split by
    time, as ``time_split``) and scored by ROC AUC on the newer rest; the pick follows ``choose_candidate``
    (best AUC, a simpler family within ``tolerance``). The test rows are never looked at. Gradient boosting
    wins on tens of thousands of impressions and over-fits a few thousand, where logistic regression wins, so
    a fixed family would fail the gate's minimum AUC at small sizes. Raises ``ValueError`` when either part has
    a single class (too few rows).
    """
    fit_part, validation = time_split(train, test_fraction=validation_fraction)
    y_fit, y_val = fit_part[LABEL].astype(int), validation[LABEL].astype(int)
    if y_fit.nunique() < 2 or y_val.nunique() < 2:
        raise ValueError(f"cannot choose a family: {len(train)} training rows leave a part with one class; use more rows")
    from sklearn.metrics import roc_auc_score

    results = []
    for family, params in DEFAULT_PARAMS.items():
        model = build_pipeline(family, params, seed).fit(features_frame(fit_part), y_fit)
        auc = float(roc_auc_score(y_val, model.predict_proba(features_frame(validation))[:, 1]))
        results.append(TrainResult(run_id="", family=family, params=dict(params), metrics={"roc_auc": auc},
                                   model=model, threshold=0.5))
    chosen = choose_candidate(results, "roc_auc", tolerance)
    return chosen.family, chosen.params


def input_versions(run_id: str) -> dict[str, int]:
    """The Delta tables and versions a run recorded as its inputs (``input.<table>`` tags)."""
    import mlflow

    tags = mlflow.get_run(run_id).data.tags
    return {k[len("input."):]: int(v) for k, v in tags.items() if k.startswith("input.")}


def log_inputs(input_tables: dict[str, int], sample: pd.DataFrame | None = None) -> None:
    """Record each Delta table and version read, as an MLflow dataset input and an ``input.<table>`` tag."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    for table, version in input_tables.items():
        mlflow.set_tag(f"input.{table}", str(version))
        source = DeltaDatasetSource(delta_table_name=table, delta_table_version=int(version))
        frame = sample if sample is not None else pd.DataFrame()
        dataset = mlflow.data.from_pandas(frame.head(0), source=source, name=f"{table}@v{version}")
        mlflow.log_input(dataset, context="training")


def recommender_signature() -> Any:
    """The packaged recommender's signature: text columns typed ``string``, numeric and flag columns ``Any``.

    MLflow converts a request to the signature's types before the model sees it, and two of its
    conversions break this model's contract: a null ``boolean`` becomes False over REST (so an unknown
    ``invasive`` flag would be scored as safe), and an ``int64`` column is refused in process for a
    ``double`` input. Declared ``Any``, these columns reach the model as sent, and ``features_frame``
    (inside the model) converts them exactly or refuses them naming the column. Their production types
    are recorded in the model's metadata (``input_types``), where the validation gate reads them.
    Output: one ``double`` column, ``probability``.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = [ColSpec("string", c) for c in CATEGORICAL] + [ColSpec(AnyType(), c) for c in NUMERIC + BOOLEAN]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", "probability")]))


def log_recommender(result: TrainResult, example: pd.DataFrame, registered_model_name: str | None = None,
                    training_set: Any = None) -> str:
    """Log the packaged recommender (classifier + invasive rule + ``utils`` code) in the result's run; returns its URI.

    The signature is ``recommender_signature()``; the metadata records each input's production type
    (``input_types``, from ``feature_schema()``) and the whole-number inputs (``whole_number_inputs``).
    With ``training_set`` (``utils.plantly_features.model_training_set``) it is logged through the
    feature client (``FeatureEngineeringClient.log_model(flavor=mlflow.pyfunc)``), its feature lookups
    around the same recommender (:func:`raw_model_dir`), so Model Serving looks its features up from the keys.
    """
    import mlflow

    from utils.plantly_features import feature_schema
    from utils.platform import REPO_ROOT

    if result.model_uri is None:
        raise ValueError("the classifier was not logged: call train_and_log(log_model=True) first")
    X = features_frame(example)
    recommender = {
        "artifacts": {"classifier": result.model_uri},
        "code_paths": [str(REPO_ROOT / "utils")],
        "signature": recommender_signature(),
        "input_example": X.head(3),
        "pip_requirements": pinned_requirements(),
        "metadata": {"input_types": feature_schema(), "whole_number_inputs": list(WHOLE_NUMBER)},
    }
    code = str(REPO_ROOT / "utils" / "recommender_model.py")
    with mlflow.start_run(run_id=result.run_id):
        if training_set is None:
            info = mlflow.pyfunc.log_model(name="recommender", python_model=code,
                                           registered_model_name=registered_model_name, **recommender)
        else:
            from utils.platform import feature_client

            info = feature_client().log_model(model=code, artifact_path="recommender", flavor=mlflow.pyfunc,
                                              training_set=training_set, registered_model_name=registered_model_name,
                                              output_schema=recommender["signature"].outputs,  # not the label's
                                              **recommender)  # type (boolean) Databricks would infer
        link_to_logged_model(info.model_id, result)
    return info.model_uri


FEATURE_STORE_LOADERS = ("databricks.feature_store.mlflow_model", "utils.local.online_store")
"""The pyfunc ``loader_module`` of a model logged with ``FeatureEngineeringClient.log_model`` (Databricks, local)."""


def raw_model_dir(model_dir: Path) -> Path:
    """The recommender inside a downloaded model folder: ``data/feature_store/raw_model`` of a feature-store model.

    A model logged with ``FeatureEngineeringClient.log_model`` wraps the model it was given (its code,
    requirements and artifacts) in ``data/feature_store/raw_model``, next to its ``feature_spec.yaml``;
    that inner folder is what takes full feature rows. Any other model folder is returned as it is.
    """
    raw = Path(model_dir) / "data" / "feature_store" / "raw_model"
    return raw if (raw / "MLmodel").exists() else Path(model_dir)


def scoring_model_uri(model_uri: str) -> str:
    """Where offline scoring loads ``model_uri`` from: a feature-store model's raw model, else the model itself.

    Code that already holds every feature row (the gate, batch and streaming scoring, the packaging checks)
    scores the raw model (:func:`raw_model_dir`), the same predictions on every platform. Returns
    ``model_uri`` unchanged for any other model, or a local folder holding the downloaded raw model.
    Raises MLflow's error when ``model_uri`` does not resolve.
    """
    import tempfile

    import mlflow
    from mlflow.models import get_model_info

    from utils.platform import tmp_dir

    key = (mlflow.get_registry_uri(), mlflow.get_tracking_uri(), model_uri)  # another state folder, another model
    cached = _RAW_MODELS.get(key)
    if cached and Path(cached).is_dir():
        return cached
    loader = get_model_info(model_uri).flavors.get("python_function", {}).get("loader_module")
    if loader not in FEATURE_STORE_LOADERS:
        return model_uri
    tmp_dir().mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tempfile.mkdtemp(prefix="raw-", dir=tmp_dir()))
    raw = str(raw_model_dir(Path(local)))
    if model_uri.startswith(("runs:/", "models:/m-")):  # a run's or a logged model's artifacts never change; a
        _RAW_MODELS[key] = raw  # registered version can be deleted and its number reused, and an alias moves
    return raw


_RAW_MODELS: dict[tuple[str, str, str], str] = {}


def link_to_logged_model(model_id: str, result: TrainResult) -> None:
    """Attach the run's held-out metrics and input tables to the MLflow 3 LoggedModel ``model_id``.

    The metrics are logged with ``model_id`` and, when the run recorded the training set, with that Delta
    table at its version as their dataset, so the model's page lists them per dataset; each input table
    and version becomes a LoggedModel tag ``input.<table>``. Non-finite metrics are left out.
    """
    import math

    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    from utils.plantly_features import training_set_table

    table = training_set_table()
    dataset = None
    if table in result.inputs:
        version = int(result.inputs[table])
        source = DeltaDatasetSource(delta_table_name=table, delta_table_version=version)
        dataset = mlflow.data.from_pandas(pd.DataFrame(columns=FEATURES + [LABEL]), source=source,
                                          name=f"{table}@v{version}")
    metrics = {k: float(v) for k, v in result.metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    if metrics:
        mlflow.log_metrics(metrics, run_id=result.run_id, model_id=model_id, dataset=dataset)
    if result.inputs:
        mlflow.set_logged_model_tags(model_id, {f"input.{t}": str(v) for t, v in result.inputs.items()})


def gate_frame(test: pd.DataFrame) -> pd.DataFrame:
    """The evaluation frame the validation gate scores: model inputs plus the 0/1 label."""
    return features_frame(test).assign(**{LABEL: test[LABEL].astype(int).to_numpy()})


def develop(
    family: str | None = "gboost",
    params: dict[str, Any] | None = None,
    seed: int = 42,
    run_name: str = "develop",
    cfg: Any = None,
    test_fraction: float = 0.2,
) -> tuple[TrainResult, str, pd.DataFrame]:
    """The whole training pipeline: materialise the training set, split by time, fit, evaluate, log the package.

    Returns the run's result, the packaged model's URI (logged through the feature client where the
    platform serves with automatic feature lookup, ``utils.platform.automatic_feature_lookup``) and the
    held-out frame. ``family=None`` picks the family on the training rows (``select_family``); ``params``
    may be what a run recorded (:func:`family_params` casts it).
    """
    import mlflow

    from utils.plantly_features import (
        load_training_frame,
        materialize_training_set,
        model_training_set,
        training_set_table,
    )
    from utils.platform import feature_client

    fe = feature_client()
    inputs = materialize_training_set(fe, cfg)
    train, test = time_split(load_training_frame(inputs[training_set_table(cfg)], cfg), test_fraction=test_fraction)
    if family is None:
        family, params = select_family(train, seed)
    result = train_and_log(train, test, family, params, seed=seed, input_tables=inputs, run_name=run_name)
    mlflow.MlflowClient().log_param(result.run_id, "test_fraction", test_fraction)  # a retrain re-splits the same way
    uri = log_recommender(result, example=test.head(50), training_set=model_training_set(fe, inputs, cfg))
    return result, uri, test
