"""The plantly.shop features: customer and plant feature tables, and the training spine.

Time-windowed features are point-in-time safe: the row stamped ``feature_ts = T`` only uses
events (and labels) known before ``T``. Daily rows are stamped at the *end* of their day, so a
lookup for an impression at time ``t`` finds the latest day that had fully ended by ``t``.
Purchases count on the day their label became known (``label_ts``), not the day of the impression.
"""

from __future__ import annotations

from typing import Any

from utils.config import Config, get_config
from utils.plantly_columns import (  # noqa: F401 - re-exported: the example's columns
    BOOLEAN,
    CATEGORICAL,
    FEATURES,
    LABEL,
    NUMERIC,
    SPINE_COLUMNS,
)

WINDOW_DAYS = 30


def feature_schema() -> dict[str, str]:
    """The production feature schema: model input column -> MLflow type name."""
    return {**{c: "string" for c in CATEGORICAL}, **{c: "double" for c in NUMERIC}, **{c: "boolean" for c in BOOLEAN}}


def feature_table_names(cfg: Config | None = None) -> dict[str, str]:
    """Names of the four feature tables: static profiles and time-series activity of customers and plants."""
    cfg = cfg or get_config()
    return {
        "customer": cfg.table("customer_features"),
        "customer_activity": cfg.table("customer_activity_features"),
        "plant": cfg.table("plant_features"),
        "plant_activity": cfg.table("plant_activity_features"),
    }


def _daily_activity(clicks: Any, key: str) -> Any:
    """Per ``key`` and day: impressions (by event day) and purchases (by label day)."""
    from pyspark.sql import functions as F

    shown = clicks.groupBy(key, F.to_date("event_ts").alias("day")).agg(F.count("*").alias("impressions"))
    bought = (
        clicks.where(F.col(LABEL))
        .groupBy(key, F.to_date(F.coalesce("label_ts", "event_ts")).alias("day"))
        .agg(F.count("*").alias("purchases"))
    )
    return shown.join(bought, [key, "day"], "full").fillna(0, ["impressions", "purchases"])


def _rolling(daily: Any, key: str, prefix: str) -> Any:
    """Trailing ``WINDOW_DAYS`` sums per key, stamped at the end of each day."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    day_no = F.datediff(F.col("day"), F.lit("1970-01-01"))
    w = Window.partitionBy(key).orderBy(day_no).rangeBetween(-(WINDOW_DAYS - 1), 0)
    impressions = F.sum("impressions").over(w)
    purchases = F.sum("purchases").over(w)
    stamp = F.to_timestamp(F.date_add("day", 1))
    return daily.select(
        key,
        stamp.alias("feature_ts"),
        stamp.alias(f"{prefix}_activity_as_of"),  # a copy of the timestamp, so lookups can show how fresh they are
        impressions.cast("long").alias(f"{prefix}_impressions_30d"),
        F.when(impressions > 0, purchases / impressions).otherwise(F.lit(0.0)).alias(f"{prefix}_purchase_rate_30d"),
    )


def customer_features(customers: Any) -> Any:
    """Customer profile features keyed by ``customer_id`` (no time dimension)."""
    return customers.select("customer_id", "region", "age_band", "device", "tenure_days")


def customer_activity_features(clicks: Any) -> Any:
    """Customer activity rows keyed by ``customer_id, feature_ts``: 30-day impressions and purchase rate."""
    return _rolling(_daily_activity(clicks, "customer_id"), "customer_id", "cust")


def plant_features(plants: Any) -> Any:
    """Plant catalogue features keyed by ``plant_id`` (no time dimension)."""
    from pyspark.sql import functions as F

    return plants.select("plant_id", "category", "care_level", "light_needs", "invasive",
                         F.col("price").alias("list_price"))


def plant_activity_features(clicks: Any) -> Any:
    """Plant popularity rows keyed by ``plant_id, feature_ts``: 30-day impressions and purchase rate."""
    return _rolling(_daily_activity(clicks, "plant_id"), "plant_id", "plant")


def training_spine(clicks: Any) -> Any:
    """The impressions to learn from: keys, timestamp, request context and the label."""
    return clicks.select(*SPINE_COLUMNS)


def feature_lookups(cfg: Config | None = None) -> list[Any]:
    """The ``FeatureLookup``s that join the four feature tables onto the spine, point in time."""
    import datetime as dt

    from databricks.feature_engineering import FeatureLookup

    names = feature_table_names(cfg)
    return [
        FeatureLookup(
            table_name=names["customer"], lookup_key="customer_id",
            feature_names=["region", "age_band", "device", "tenure_days"],
        ),
        FeatureLookup(
            table_name=names["customer_activity"], lookup_key="customer_id", timestamp_lookup_key="event_ts",
            feature_names=["cust_impressions_30d", "cust_purchase_rate_30d"],
            lookback_window=dt.timedelta(days=WINDOW_DAYS),
            default_values={"cust_impressions_30d": 0, "cust_purchase_rate_30d": 0.0},
        ),
        FeatureLookup(
            table_name=names["plant"], lookup_key="plant_id",
            feature_names=["category", "care_level", "light_needs", "invasive"],
        ),
        FeatureLookup(
            table_name=names["plant_activity"], lookup_key="plant_id", timestamp_lookup_key="event_ts",
            feature_names=["plant_impressions_30d", "plant_purchase_rate_30d"],
            lookback_window=dt.timedelta(days=WINDOW_DAYS),
            default_values={"plant_impressions_30d": 0, "plant_purchase_rate_30d": 0.0},
        ),
    ]


def feature_table_specs(cfg: Config | None = None) -> list[dict[str, Any]]:
    """Keys, timestamp column, description and source tables of each feature table."""
    cfg = cfg or get_config()
    names = feature_table_names(cfg)
    clicks, customers, plants = (cfg.table(f"silver_{s}") for s in ("clickstream", "customers", "plants"))
    return [
        {"name": names["customer"], "primary_keys": ["customer_id"], "timeseries_column": None, "sources": [customers],
         "build": lambda t: customer_features(t[customers]), "description": "Customer profile: region, age band, device, tenure."},
        {"name": names["customer_activity"], "primary_keys": ["customer_id", "feature_ts"], "timeseries_column": "feature_ts",
         "sources": [clicks], "build": lambda t: customer_activity_features(t[clicks]),
         "description": f"Customer activity over the trailing {WINDOW_DAYS} days, stamped at the end of each day."},
        {"name": names["plant"], "primary_keys": ["plant_id"], "timeseries_column": None, "sources": [plants],
         "build": lambda t: plant_features(t[plants]), "description": "Plant catalogue: category, care level, light needs, invasive flag, list price."},
        {"name": names["plant_activity"], "primary_keys": ["plant_id", "feature_ts"], "timeseries_column": "feature_ts",
         "sources": [clicks], "build": lambda t: plant_activity_features(t[clicks]),
         "description": f"Plant popularity over the trailing {WINDOW_DAYS} days, stamped at the end of each day."},
    ]


def build_feature_tables(fe: Any, cfg: Config | None = None) -> dict[str, int]:
    """Create (or MERGE into) every feature table from the silver tables; returns each table's version."""
    from utils import lakehouse
    from utils.platform import record_lineage
    from utils.progress import progress

    cfg = cfg or get_config()
    versions = {}
    specs = feature_table_specs(cfg)
    for spec in progress(specs, "feature tables", total=len(specs), unit="table"):
        sources = {s: lakehouse.current_version(s) for s in spec["sources"]}
        frames = {s: lakehouse.read(s, version=v) for s, v in sources.items()}
        df = spec["build"](frames)
        if lakehouse.exists(spec["name"]):
            fe.write_table(name=spec["name"], df=df, mode="merge")
        else:
            keys = spec["primary_keys"]
            fe.create_table(name=spec["name"], primary_keys=keys, df=df, timeseries_column=spec["timeseries_column"],
                            description=spec["description"], tags={"project": cfg.project, "stage": "01_explore"})
        record_lineage(spec["name"], sources)
        versions[spec["name"]] = lakehouse.current_version(spec["name"])
    return versions


def training_set_table(cfg: Config | None = None) -> str:
    """Name of the Delta table holding the materialised training set."""
    return (cfg or get_config()).table("training_set")


def materialize_training_set(fe: Any, cfg: Config | None = None) -> dict[str, int]:
    """Build the point-in-time training set and write it as a new version of the training-set table.

    Returns every table the set was built from with its Delta version, the training-set table
    included: the exact inputs a run records so it can be reproduced.
    """
    from utils import lakehouse

    cfg = cfg or get_config()
    clicks = cfg.table("silver_clickstream")
    clicks_version = lakehouse.current_version(clicks)
    spine = training_spine(lakehouse.read(clicks, version=clicks_version))
    training_set = fe.create_training_set(df=spine, feature_lookups=feature_lookups(cfg), label=LABEL, exclude_columns=[])
    name = training_set_table(cfg)
    version = lakehouse.write(training_set.load_df(), name, mode="overwrite", merge_schema=True,
                              description="point-in-time training set: impressions with the features known at the time")
    inputs = {clicks: clicks_version}
    inputs.update({t: lakehouse.current_version(t) for t in feature_table_names(cfg).values()})
    inputs[name] = version
    return inputs


MODEL_EXCLUDED = ["event_id", "customer_id", "plant_id", "event_ts"]
"""Spine columns a logged model does not take: the lookup keys, the event id and its time (features are looked up by them)."""


def model_training_set(fe: Any, inputs: dict[str, int], cfg: Config | None = None) -> Any:
    """The training set a model is logged with (``fe.log_model(training_set=...)``), or None where nothing serves it.

    None when the platform's serving cannot look features up (``utils.platform.automatic_feature_lookup``:
    on Databricks, no Online Feature Store); the model is then logged plain and takes full feature rows.

    The same spine (the clickstream at the version ``inputs`` records) and the same feature lookups as
    :func:`materialize_training_set`, with :data:`MODEL_EXCLUDED` excluded, so the logged feature spec's
    model inputs are the 15 :data:`FEATURES` and a request needs only the keys and the request context
    (``page``, ``position``, ``price``). Locally nothing is joined (``log_model`` reads only the lookups);
    Databricks' ``log_model`` joins the first rows to infer the model's signature. Raises ``KeyError`` when
    ``inputs`` lacks the clickstream table.
    """
    from utils import lakehouse
    from utils.platform import automatic_feature_lookup

    if not automatic_feature_lookup():
        return None
    cfg = cfg or get_config()
    clicks = cfg.table("silver_clickstream")
    spine = training_spine(lakehouse.read(clicks, version=int(inputs[clicks])))
    return fe.create_training_set(df=spine, feature_lookups=feature_lookups(cfg), label=LABEL,
                                  exclude_columns=MODEL_EXCLUDED)


def load_training_frame(version: int | None = None, cfg: Config | None = None) -> Any:
    """The training set at ``version`` (default latest) as pandas, ordered deterministically."""
    from utils import lakehouse

    frame = lakehouse.read_pandas(training_set_table(cfg), version=version)
    return frame.sort_values(["event_ts", "event_id"], kind="stable").reset_index(drop=True)
