"""What one streaming micro-batch runs: validate, add features, score, log. It imports nothing of ``utils``.

On serverless (and the local engine, both Spark Connect) the ``foreachBatch`` function runs in a Python process
next to Spark that cannot import this project: Spark ships the function pickled, and a module-level function of
an importable module is pickled *by reference*, so that process would fail with ``ModuleNotFoundError: utils``.
:func:`batch_scorer` therefore registers this module with Spark's cloudpickle to be pickled *by value*
(``cloudpickle.register_pickle_by_value``): the callback, and every function of this module it calls, travel as
code. For that to hold, this module imports only the standard library, numpy, pandas, pyarrow and pyspark, and
takes everything else (table names, feature columns, the model's ``spark_udf``) as plain arguments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

EVENT_FIELDS = {"event_id": "string", "customer_id": "string", "plant_id": "string", "event_ts": "string",
                "page": "string", "position": "string", "price": "string"}
CORRUPT_COL = "_corrupt_record"
MAX_EXACT_INT = 2**53  # position becomes a float64 model input: integers beyond this would be rounded
QUARANTINE_SCHEMA = pa.schema([("quarantine_id", pa.string()), ("batch_id", pa.int64()), ("event_id", pa.string()),
                               ("reason", pa.string()), ("raw", pa.string()), ("quarantined_at", pa.timestamp("us", tz="UTC"))])


def plain(value: Any) -> Any:
    """A JSON-ready Python value of a pandas/numpy scalar (timestamps as ISO text, NaN as None)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return None if isinstance(value, float) and np.isnan(value) else value


def validate_events(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split landed events into typed valid rows and quarantined rows with a ``reason``."""
    reasons: list[str | None] = []
    typed: list[dict[str, Any]] = []
    for rec in frame.to_dict(orient="records"):
        reason, row = _validate_event(rec)
        reasons.append(reason)
        typed.append(row)
    ok = [r is None for r in reasons]
    valid = pd.DataFrame([t for t, good in zip(typed, ok) if good], columns=list(EVENT_FIELDS))
    bad = frame.loc[[not g for g in ok]].copy()
    bad["reason"] = [r for r in reasons if r is not None]
    if not valid.empty:
        valid["position"] = valid["position"].astype("int64")
        valid["price"] = valid["price"].astype(float)
    return valid.reset_index(drop=True), bad.reset_index(drop=True)


def _validate_event(rec: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    if rec.get(CORRUPT_COL) is not None and not all(rec.get(k) for k in ("event_id", "customer_id", "plant_id")):
        return "malformed JSON", {}
    missing = [k for k in EVENT_FIELDS if rec.get(k) in (None, "")]
    if missing:
        return f"missing fields {missing}", {}
    row = {k: rec[k] for k in EVENT_FIELDS}
    try:  # "3" and "3.0" are 3; text is read as an integer first, so a long one is not rounded through a float
        text = str(rec["position"]).strip()
        try:
            row["position"] = int(text)
        except ValueError:
            position = float(text)
            if not position.is_integer():
                raise ValueError from None
            row["position"] = int(position)
    except (TypeError, ValueError, OverflowError):
        return f"position {rec['position']!r} is not an integer", {}
    if not 0 <= row["position"] <= MAX_EXACT_INT:
        return f"position {rec['position']!r} must be between 0 and 2**53 (a float64 model input holds it exactly)", {}
    try:
        row["price"] = float(rec["price"])
    except (TypeError, ValueError):
        return f"price {rec['price']!r} is not a number", {}
    if not np.isfinite(row["price"]) or row["price"] <= 0:
        return f"price {rec['price']!r} must be a positive number", {}
    if pd.isna(pd.to_datetime(rec["event_ts"], errors="coerce", utc=True)):
        return f"event_ts {rec['event_ts']!r} is not a timestamp", {}
    return None, row


def input_columns(df: Any, categorical: Sequence[str], numeric: Sequence[str], boolean: Sequence[str],
                  whole_number: Sequence[str]) -> list[Any]:
    """Spark column expressions casting ``df``'s model inputs to the model's types: categorical as text (null is
    ``"unknown"``), numeric as double, boolean (null is True: unknown = invasive, scored 0).

    Numeric columns become double exactly or the query fails naming the column: an integer beyond 2**53 in
    magnitude (a double would round it), or a fraction in a ``whole_number`` column. Raises ``ValueError`` when
    ``df`` lacks one of the columns.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DecimalType, DoubleType, FloatType, IntegralType

    missing = [c for c in [*categorical, *numeric, *boolean] if c not in df.columns]
    if missing:
        raise ValueError(f"DataFrame lacks the model's feature columns {missing}")
    types = {f.name: f.dataType for f in df.schema.fields}
    cols = [F.coalesce(F.col(c).cast("string"), F.lit("unknown")).alias(c) for c in categorical]
    for c in numeric:
        value = F.col(c).cast("double")
        if isinstance(types[c], (IntegralType, DecimalType)):
            value = F.when(F.abs(F.col(c)) > F.lit(MAX_EXACT_INT), F.raise_error(F.lit(
                f"model input column '{c}': a value exceeds 2**53 in magnitude and would be rounded as double"))
            ).otherwise(value)
        if c in whole_number and isinstance(types[c], (DoubleType, FloatType, DecimalType)):
            value = F.when(value != F.floor(value), F.raise_error(F.lit(
                f"model input column '{c}': a value is not a whole number"))).otherwise(value)
        cols.append(value.alias(c))
    cols += [F.coalesce(F.col(c).cast("boolean"), F.lit(True)).alias(c) for c in boolean]
    return cols


def insert_new(rows: Any, table: str, keys: Sequence[str]) -> int:
    """Insert the ``rows`` whose ``keys`` ``table`` lacks (SQL ``MERGE INTO``, on the rows' own session); returns how many."""
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    # {rows} is spark.sql's DataFrame argument, filled by Spark, so the query is not an f-string
    query = "MERGE INTO %s t USING {rows} s ON %s WHEN NOT MATCHED THEN INSERT *" % (table, on)  # noqa: UP031
    done = rows.sparkSession.sql(query, rows=rows).first()
    return int(done["num_inserted_rows"]) if done is not None else 0


def with_features(events: Any, feature_tables: Sequence[tuple[str, str, str, Sequence[str]]],
                  activity_defaults: Mapping[str, float]) -> tuple[Any, dict[str, int]]:
    """``events`` plus the feature columns, ``_<kind>`` match flags and a ``reason`` naming an unknown customer or
    plant ("" if none), from each feature table's latest row per key (as online; missing activity is its default);
    and the Delta version read of each table. ``feature_tables`` holds ``(kind, table, key, columns)``; a missing
    table fails the batch."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark, versions = events.sparkSession, {}
    for kind, name, key, cols in feature_tables:
        versions[name] = int(spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()["version"])
        table = spark.read.option("versionAsOf", versions[name]).table(name)
        if "feature_ts" in table.columns:  # a time series: its latest row per key
            latest = Window.partitionBy(key).orderBy(F.desc("feature_ts"))
            table = table.withColumn("_n", F.row_number().over(latest)).where("_n = 1")
        events = events.join(table.select(key, *cols, F.lit(True).alias(f"_{kind}")), key, "left")
    unknown = [F.when(F.col(f"_{kind}").isNull(), F.format_string(f"unknown {kind}_id '%s'", f"{kind}_id"))
               for kind in ("customer", "plant")]
    return events.fillna(dict(activity_defaults)).withColumn("reason", F.concat_ws("; ", *unknown)), versions


def quarantine(bad: pd.DataFrame, batch_id: int, spark: Any, table: str) -> int:
    """Merge the ``bad`` events (with their ``reason``) into the quarantine ``table``, once per batch and event;
    returns how many rows were new."""
    if bad.empty:
        return 0
    raw = bad.drop(columns=["reason"]).apply(
        lambda r: json.dumps({k: plain(v) for k, v in r.items() if v is not None and not pd.isna(v)}), axis=1)
    rows = pd.DataFrame({
        "quarantine_id": [f"{batch_id}:{i}:{r}" for i, r in enumerate(raw)], "batch_id": int(batch_id),
        "event_id": [None if v is None or pd.isna(v) else str(v) for v in bad.get("event_id", [None] * len(bad))],
        "reason": bad["reason"].astype(str), "raw": raw.astype(str), "quarantined_at": pd.Timestamp(datetime.now(UTC)),
    }).drop_duplicates("quarantine_id")
    return insert_new(spark.createDataFrame(pa.Table.from_pandas(rows, schema=QUARANTINE_SCHEMA, preserve_index=False)),
                      table, ["quarantine_id"])


def batch_scorer(*, model_name: str, model_version: str, score: Any, log_table: str, log_keys: Sequence[str],
                 quarantine_table: str, feature_tables: Sequence[tuple[str, str, str, Sequence[str]]],
                 activity_defaults: Mapping[str, float], inputs: Mapping[str, Sequence[str]],
                 prediction_col: str) -> Callable[[Any, int], dict[str, int]]:
    """The ``foreachBatch`` function ``(batch_df, batch_id) -> {"logged": n, "quarantined": m}``: validate one
    micro-batch, add features, score with ``score`` (the model's ``spark_udf``) and merge into ``log_table`` on
    ``log_keys`` (a replayed batch logs 0). ``inputs`` maps ``categorical`` / ``numeric`` / ``boolean`` /
    ``whole_number`` to the model's input columns. This module is registered to be pickled by value, so the
    function runs where ``utils`` cannot be imported."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def foreach_batch(batch_df: Any, batch_id: int) -> dict[str, int]:
        from pyspark.sql import functions as F

        spark, logged = batch_df.sparkSession, 0
        valid, bad = validate_events(batch_df.toPandas())
        if not valid.empty:
            joined, versions = with_features(spark.createDataFrame(valid), feature_tables, activity_defaults)
            rows = joined.toPandas()  # a micro-batch is small: the join runs once
            unknown = rows["reason"] != ""
            extra = rows.loc[unknown, [*EVENT_FIELDS, "reason"]].sort_values("event_id")
            bad = extra.reset_index(drop=True) if bad.empty else pd.concat([bad, extra], ignore_index=True)
            known = spark.createDataFrame(rows[~unknown].drop_duplicates("event_id"), schema=joined.schema)
            cols = input_columns(known, inputs["categorical"], inputs["numeric"], inputs["boolean"], inputs["whole_number"])
            logged = insert_new(known.select(
                F.lit(f"stream-batch-{batch_id}").alias("request_id"), "event_id", F.current_timestamp().alias("ts"),
                F.lit("streaming").alias("source"), F.lit(model_name).alias("model_name"),
                F.lit(str(model_version)).alias("model_version"), F.lit(None).cast("string").alias("arm"),
                "customer_id", "plant_id", *cols, F.lit(json.dumps(versions, sort_keys=True)).alias("feature_versions"),
                score(F.struct(*cols)).alias(prediction_col)), log_table, log_keys)
        return {"logged": logged, "quarantined": quarantine(bad, batch_id, spark, quarantine_table)}

    return foreach_batch
