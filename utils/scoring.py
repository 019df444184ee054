"""Scoring outside the endpoint: batch (Spark), streaming (Structured Streaming) and the inference log.

Every prediction, whichever path made it (``realtime``, ``batch``, ``streaming``), lands in one
Delta table, the inference log (``cfg.table("inference_log")``), with its request id, time, model
name and version, the keys, the 15 model inputs as real columns, the feature-table versions it was
computed from (JSON) and the prediction. Monitoring (notebook 06) reads it.

Batch scoring is ``spark_udf_scores``: ``mlflow.pyfunc.spark_udf``, what Databricks users write; at a million
rows it was faster than a hand-written ``mapInArrow`` scorer (``bench/results.md``), which needs the project
importable where the workers run, so it is not kept.

Streaming scoring reads JSON events from a landing folder; each micro-batch is validated (bad events
go to a quarantine table with the reason), joined in Spark to the feature tables' latest row per key, scored
with ``spark_udf`` and merged into the inference log on ``(source, event_id, model_version)``, so replaying a
batch after a restart neither loses nor duplicates a prediction. What a micro-batch runs is in
:mod:`utils.stream_batch`, which imports nothing of ``utils``: serverless runs it where ``utils`` is not importable.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from utils.config import Config, get_config, inference_log_table
from utils.plantly_columns import (
    BOOLEAN,
    CATEGORICAL,
    NUMERIC,
    PREDICTION_COL,
    inference_log_schema,
)
from utils.stream_batch import (
    CORRUPT_COL,
    EVENT_FIELDS,
    QUARANTINE_SCHEMA,
    batch_scorer,
    input_columns,
    plain,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql.streaming import StreamingQuery

SOURCES = ("realtime", "batch", "streaming")
LOG_KEYS = ["source", "event_id", "model_version"]  # a replay is skipped; a new version's score is kept

# ---------------------------------------------------------------- the inference log


def streaming_quarantine_table(cfg: Config | None = None) -> str:
    """Name of the table holding events the streaming scorer could not score, with the reason."""
    return (cfg or get_config()).table("streaming_quarantine")


INFERENCE_LOG_COLUMNS = inference_log_schema().names


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The 15 model input columns with the training dtypes (str / float / bool), as ``features_frame``."""
    from utils.feature_types import features_frame

    return features_frame(frame)


def inference_rows(
    frame: pd.DataFrame,
    predictions: Sequence[float] | np.ndarray,
    *,
    source: str,
    model_name: str,
    model_version: str | int | Sequence[str],
    feature_versions: Mapping[str, int | None] | str | None,
    request_id: str | None = None,
    arm: str | Sequence[str | None] | None = None,
    ts: datetime | None = None,
    inputs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Inference-log rows for ``frame`` (keys + features, optionally ``event_id``) and its predictions.

    ``inputs`` is ``model_inputs(frame)`` when the caller has it already (same rows, same order).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    n = len(frame)
    if len(predictions) != n:
        raise ValueError(f"{len(predictions)} predictions for {n} rows: they must match one to one")
    request_id = request_id or uuid.uuid4().hex
    frame = frame.reset_index(drop=True)
    events = (frame["event_id"].astype(str) if "event_id" in frame
              else pd.Series([f"{request_id}:{i}" for i in range(n)]))
    versions = feature_versions if isinstance(feature_versions, str) or feature_versions is None \
        else json.dumps(dict(feature_versions), sort_keys=True)
    out = pd.DataFrame({
        "request_id": request_id,
        "event_id": events,
        "ts": pd.Timestamp(ts or datetime.now(UTC)),
        "source": source,
        "model_name": model_name,
        "model_version": [str(v) for v in model_version] if isinstance(model_version, (list, tuple, pd.Series))
        else str(model_version),
        "arm": list(arm) if isinstance(arm, (list, tuple, pd.Series)) else arm,
        "customer_id": frame["customer_id"].astype(str),
        "plant_id": frame["plant_id"].astype(str),
    }, index=range(n))
    inputs = model_inputs(frame) if inputs is None else inputs
    if len(inputs) != n:
        raise ValueError(f"{len(inputs)} model-input rows for {n} rows: they must match one to one")
    out = pd.concat([out, inputs.reset_index(drop=True)], axis=1)
    out["feature_versions"] = versions
    out[PREDICTION_COL] = np.asarray(predictions, dtype=float)
    return out[INFERENCE_LOG_COLUMNS]


def _as_log_table(rows: pd.DataFrame) -> pa.Table:
    missing = [c for c in INFERENCE_LOG_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"inference log rows lack columns {missing}: build them with inference_rows()")
    return pa.Table.from_pandas(rows[INFERENCE_LOG_COLUMNS], schema=inference_log_schema(), preserve_index=False)


def append_inference_log(rows: pd.DataFrame, cfg: Config | None = None) -> int:
    """Add ``rows`` to the inference log, once: rows whose ``(source, event_id, model_version)`` is logged are skipped.

    Returns how many rows were inserted.
    """
    from utils import lakehouse

    if rows.empty:
        return 0
    dupes = rows.duplicated(LOG_KEYS)
    if dupes.any():
        raise ValueError(f"{int(dupes.sum())} rows repeat a {tuple(LOG_KEYS)}: each prediction is logged once")
    table = _as_log_table(rows)
    name = inference_log_table(cfg)
    if not lakehouse.exists(name):
        lakehouse.write(table, name, mode="append",
                        description="every prediction (realtime, batch, streaming) with its model and feature versions")
        return table.num_rows
    return lakehouse.merge(table, name, LOG_KEYS, update=False, insert=True)["num_inserted"]


def log_predictions(frame: pd.DataFrame, predictions: Sequence[float] | np.ndarray, *, source: str,
                    model_version: str | int, cfg: Config | None = None, request_id: str | None = None,
                    inputs: pd.DataFrame | None = None) -> int:
    """Log ``frame``'s ``predictions`` (one per row, probabilities) by the config's model ``model_version``.

    Each row gets the current Delta version of every feature table (:func:`feature_table_versions`): the
    versions batch scores are computed from. :func:`inference_rows` then :func:`append_inference_log`, so it
    raises what they raise (``ValueError`` for an unknown ``source`` or a count mismatch). Returns how many
    rows were inserted (a prediction already logged is skipped).
    """
    cfg = cfg or get_config()
    rows = inference_rows(frame, predictions, source=source, model_name=cfg.model_name, model_version=model_version,
                          feature_versions=feature_table_versions(cfg), request_id=request_id, inputs=inputs)
    return append_inference_log(rows, cfg)


def read_inference_log(cfg: Config | None = None) -> pd.DataFrame:
    """The inference log as pandas (empty, with the right columns, before the first prediction)."""
    from utils import lakehouse

    name = inference_log_table(cfg)
    if not lakehouse.exists(name):
        return inference_log_schema().empty_table().to_pandas()
    return lakehouse.read_pandas(name)


# ---------------------------------------------------------------- the request log (real-time endpoint)


def request_log_table(cfg: Config | None = None) -> str:
    """Name of the request log: one row per HTTP request to the router, answered or refused."""
    return (cfg or get_config()).table("request_log")


def request_log_schema() -> pa.Schema:
    """Arrow schema of the request log: id, time, path, status, latency, records, versions and error."""
    return pa.schema([
        ("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("model_name", pa.string()),
        ("path", pa.string()), ("status_code", pa.int32()), ("latency_ms", pa.float64()),
        ("records", pa.int32()), ("model_versions", pa.string()), ("error", pa.string()),
    ])


def append_request_log(rows: pd.DataFrame | Sequence[Mapping[str, Any]], cfg: Config | None = None) -> int:
    """Append request-log rows (see ``request_log_schema``); returns how many were written."""
    from utils import lakehouse

    frame = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    if frame.empty:
        return 0
    schema = request_log_schema()
    missing = [c for c in schema.names if c not in frame.columns]
    if missing:
        raise ValueError(f"request log rows lack columns {missing}")
    frame = frame[schema.names].assign(ts=pd.to_datetime(frame["ts"], utc=True))
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    lakehouse.write(table, request_log_table(cfg), mode="append",
                    description="every request to the real-time endpoint: status, latency, records, error")
    return table.num_rows


def read_request_log(cfg: Config | None = None) -> pd.DataFrame:
    """The request log as pandas (empty, with the right columns, before the first request)."""
    from utils import lakehouse

    name = request_log_table(cfg)
    if not lakehouse.exists(name):
        return request_log_schema().empty_table().to_pandas()
    return lakehouse.read_pandas(name)


def feature_table_versions(cfg: Config | None = None) -> dict[str, int]:
    """The current Delta version of every feature table (what batch and streaming scores are computed from)."""
    from utils import lakehouse
    from utils.plantly_features import feature_table_names

    return {t: lakehouse.current_version(t) for t in feature_table_names(cfg).values()}


# ---------------------------------------------------------------- batch scoring


def model_input_columns(df: SparkDataFrame) -> list[Any]:
    """Spark column expressions casting ``df``'s features to the model's input types (as ``features_frame``).

    Null categoricals become ``"unknown"`` and a null ``invasive`` flag True (unknown = invasive, scored 0).
    Numeric columns become double exactly or the query fails naming the column: an integer beyond 2**53
    in magnitude (a double would round it), or a fraction in a whole-number column (``WHOLE_NUMBER``).
    Raises ``ValueError`` when ``df`` lacks a feature column.
    """
    from utils.feature_types import WHOLE_NUMBER

    return input_columns(df, CATEGORICAL, NUMERIC, BOOLEAN, WHOLE_NUMBER)


def spark_udf_scores(df: SparkDataFrame, model_uri: str, output_col: str = PREDICTION_COL) -> SparkDataFrame:
    """``df`` plus ``output_col``, scored by ``mlflow.pyfunc.spark_udf`` (the way Databricks users score)."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    from utils.platform import get_spark
    from utils.training import scoring_model_uri

    udf = mlflow.pyfunc.spark_udf(get_spark(), scoring_model_uri(model_uri), result_type="double", env_manager="local")
    return df.withColumn(output_col, udf(F.struct(*model_input_columns(df))))


# ---------------------------------------------------------------- streaming scoring

def event_schema() -> Any:
    """Spark schema of a landed event (read as strings, validated per batch so a bad value is quarantined)."""
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([StructField(c, StringType(), True) for c in [*EVENT_FIELDS, CORRUPT_COL]])


def land_events(events: pd.DataFrame | Sequence[Mapping[str, Any]], folder: Path, name: str | None = None,
                raw_lines: Sequence[str] = ()) -> Path:
    """Write ``events`` (plus any ``raw_lines`` as they are) as one JSON-lines file in ``folder``; returns it."""
    frame = pd.DataFrame(list(events)) if not isinstance(events, pd.DataFrame) else events
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"events-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}.json")
    lines = [json.dumps({k: plain(v) for k, v in rec.items()}) for rec in frame.to_dict(orient="records")]
    tmp = path.with_name("." + path.name + ".tmp")  # write then rename: the stream never sees half a file
    tmp.write_text("\n".join([*lines, *raw_lines]) + "\n")
    tmp.rename(path)
    return path


@dataclass
class StreamScorer:
    """Scores landed events micro-batch by micro-batch (``foreach_batch``); idempotent per event, so replays add nothing.

    Made in the notebook: it creates the inference log and quarantine tables if missing, ``score``, the model's
    ``spark_udf`` (mlflow gets the model to Spark), and ``foreach_batch``, the function ``writeStream.foreachBatch``
    takes (:func:`utils.stream_batch.batch_scorer`). That function runs where the engine runs it: on Spark Connect
    (serverless, the local engine) in a Python process of the server's that sees no file or state of the notebook's
    and need not be able to import ``utils``; it travels pickled by value and reads tables only, on the micro-batch's
    session: features are the feature tables' latest rows, not the online store.
    """

    model_name: str
    model_version: str
    model_uri: str
    cfg: Config = field(default_factory=get_config)
    score: Any = field(default=None, repr=False)
    foreach_batch: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import mlflow.pyfunc

        from utils import lakehouse
        from utils.feature_types import WHOLE_NUMBER
        from utils.online_features import (
            CUSTOMER_ACTIVITY,
            CUSTOMER_FEATURES,
            PLANT_ACTIVITY,
            PLANT_FEATURES,
        )
        from utils.plantly_features import feature_table_names
        from utils.platform import get_spark
        from utils.training import scoring_model_uri

        for name, schema in ((inference_log_table(self.cfg), inference_log_schema()),
                             (streaming_quarantine_table(self.cfg), QUARANTINE_SCHEMA)):
            if not lakehouse.exists(name):
                lakehouse.write(schema.empty_table(), name)
        self.score = self.score or mlflow.pyfunc.spark_udf(get_spark(), scoring_model_uri(self.model_uri),
                                                           result_type="double", env_manager="local")
        names = feature_table_names(self.cfg)
        self.foreach_batch = batch_scorer(
            model_name=self.model_name, model_version=str(self.model_version), score=self.score,
            log_table=inference_log_table(self.cfg), log_keys=LOG_KEYS, quarantine_table=streaming_quarantine_table(self.cfg),
            feature_tables=[("customer", names["customer"], "customer_id", CUSTOMER_FEATURES),
                            ("plant", names["plant"], "plant_id", PLANT_FEATURES),
                            ("customer_activity", names["customer_activity"], "customer_id", list(CUSTOMER_ACTIVITY)),
                            ("plant_activity", names["plant_activity"], "plant_id", list(PLANT_ACTIVITY))],
            activity_defaults={**CUSTOMER_ACTIVITY, **PLANT_ACTIVITY},
            inputs={"categorical": CATEGORICAL, "numeric": NUMERIC, "boolean": BOOLEAN, "whole_number": WHOLE_NUMBER},
            prediction_col=PREDICTION_COL)


def start_stream(scorer: StreamScorer, folder: Path, checkpoint: Path, max_files_per_trigger: int = 1,
                 processing_time: str | None = None) -> StreamingQuery:
    """Run the streaming scorer on ``folder``; returns the query (its ``recentProgress`` says which batches had input).

    ``processing_time`` (e.g. ``"10 seconds"``) keeps it running, one micro-batch per interval, until ``query.stop()``.
    Without it the trigger is ``availableNow``: it scores what landed since the last run, stops, then returns;
    a failed micro-batch raises the query's ``StreamingQueryException``.
    """
    from utils.platform import get_spark

    folder.mkdir(parents=True, exist_ok=True)
    stream = (get_spark().readStream.schema(event_schema()).option("columnNameOfCorruptRecord", CORRUPT_COL)
              .option("maxFilesPerTrigger", max_files_per_trigger).option("pathGlobFilter", "*.json").json(str(folder)))
    writer = stream.writeStream.foreachBatch(scorer.foreach_batch).option("checkpointLocation", str(checkpoint))
    query = writer.trigger(**({"processingTime": processing_time} if processing_time else {"availableNow": True})).start()
    if not processing_time:
        query.awaitTermination()
    return query
