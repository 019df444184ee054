"""The plantly.shop example's columns: the label, the model's features by kind, and the inference log built on them.

Part of the example (with ``utils.plantly_features``, ``utils.datagen`` and ``utils.recommender_model``): a team
making the template its own replaces these names. ``utils.plantly_features``, ``utils.scoring`` and
``utils.retraining`` re-export them; the data-profiling monitor ``utils.platform`` sets up on Databricks
(``utils.data_profiling``) reads them too, so this module imports nothing from ``utils``. Nothing happens at import
time (pyarrow is imported when the inference log's schema is asked for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

LABEL = "purchased"
SPINE_COLUMNS = ["event_id", "customer_id", "plant_id", "event_ts", "page", "position", "price", LABEL]
CATEGORICAL = ["region", "age_band", "device", "category", "care_level", "light_needs", "page"]
NUMERIC = ["tenure_days", "cust_impressions_30d", "cust_purchase_rate_30d", "plant_impressions_30d",
           "plant_purchase_rate_30d", "position", "price"]
BOOLEAN = ["invasive"]
FEATURES = CATEGORICAL + NUMERIC + BOOLEAN
MONITORED_NUMERIC = [c for c in NUMERIC if c != "position"]
MONITORED_CATEGORICAL = [c for c in CATEGORICAL if c != "page"]
PREDICTION_COL = "prediction"


def _feature_type(col: str) -> pa.DataType:
    import pyarrow as pa

    if col in CATEGORICAL:
        return pa.string()
    if col in NUMERIC:
        return pa.float64()
    return pa.bool_()


def inference_log_schema() -> pa.Schema:
    """Arrow schema of the inference log: ids, time, source, model, keys, the 15 features, versions, prediction."""
    import pyarrow as pa

    head = [
        ("request_id", pa.string()), ("event_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
        ("source", pa.string()), ("model_name", pa.string()), ("model_version", pa.string()),
        ("arm", pa.string()), ("customer_id", pa.string()), ("plant_id", pa.string()),
    ]
    tail = [("feature_versions", pa.string()), (PREDICTION_COL, pa.float64())]
    return pa.schema([pa.field(n, t) for n, t in head]
                     + [pa.field(c, _feature_type(c)) for c in FEATURES]
                     + [pa.field(n, t) for n, t in tail])
