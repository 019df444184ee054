"""Databricks data profiling (the data-quality API's table monitor) on the inference log.

On Databricks, notebook 06 puts a data-profiling monitor on ``inference_log`` (every prediction the
endpoint, batch and streaming scoring made, one shape on both platforms): Databricks then computes
``inference_log_profile_metrics`` and ``inference_log_drift_metrics`` itself, shows them on the table's
Quality tab and a generated dashboard, and refreshes them when asked. Locally nothing manages such a
monitor; ``utils.monitoring``, ``utils.drift`` and ``utils.model_quality`` compute the same kinds of
metrics for the champion's scored training set, and ``utils.monitoring.monitor`` writes them as
``monitored_predictions_profile_metrics`` / ``_drift_metrics`` in the monitor's shape (the first two
modules' docstrings list the columns side by side), on both platforms: those tables, not the
monitor's, feed the alerts and the 360° page.

The monitor is an *inference log* profile of problem type regression: ``prediction`` is a probability in
[0, 1], and a classification monitor would read it as a predicted class, each distinct float a class of its
own (the API has no probability column: ``databricks.sdk.service.dataquality.InferenceLogConfig``). Timestamp
``ts``, prediction ``prediction``, model id ``model_version``, no label column (labels arrive later, in the local quality
table), weekly windows (the local monitoring's window), sliced by where the prediction was made
(``source``), the A/B arm and the monitored categorical features. Its baseline table
``inference_log_baseline`` holds the champion's scores of the rows before the current window, in the
inference log's columns (columns the scored rows lack are NULL).

API: ``WorkspaceClient().data_quality`` (``/api/data-quality/v1/monitors``), the successor of
``quality_monitors``; source: https://docs.databricks.com/aws/en/data-quality-monitoring/data-profiling/
"""

from __future__ import annotations

from typing import Any

from utils.config import Config, get_config

TIMESTAMP_COLUMN = "ts"
PREDICTION_COLUMN = "prediction"
MODEL_ID_COLUMN = "model_version"
BASELINE_SUFFIX = "_baseline"
SLICES = ["source", "arm"]


class ProfilingMonitorError(RuntimeError):
    """The monitor could not be created or refreshed; the message names the missing privilege or object."""


def monitor_spec(table_id: str, output_schema_id: str, assets_dir: str, baseline_table: str | None,
                 slicing_exprs: list[str], label_column: str | None = None) -> Any:
    """The ``dataquality.Monitor`` (object type ``table``) of an inference-log table ``table_id``.

    ``output_schema_id`` is the schema the metric tables go to (the same schema), ``assets_dir`` the workspace
    folder of its dashboard, ``baseline_table`` the full name of the baseline rows (None: no baseline).
    """
    from databricks.sdk.service.dataquality import (
        AggregationGranularity,
        DataProfilingConfig,
        InferenceLogConfig,
        InferenceProblemType,
        Monitor,
    )

    inference = InferenceLogConfig(
        problem_type=InferenceProblemType.INFERENCE_PROBLEM_TYPE_REGRESSION,  # a score, not a class
        timestamp_column=TIMESTAMP_COLUMN,
        granularities=[AggregationGranularity.AGGREGATION_GRANULARITY_1_WEEK],
        prediction_column=PREDICTION_COLUMN,
        model_id_column=MODEL_ID_COLUMN,
        label_column=label_column,
    )
    profiling = DataProfilingConfig(output_schema_id=output_schema_id, assets_dir=assets_dir,
                                    baseline_table_name=baseline_table, inference_log=inference,
                                    slicing_exprs=list(slicing_exprs))
    return Monitor(object_type="table", object_id=table_id, data_profiling_config=profiling)


def baseline_query(baseline: str, scored: str, cut: Any) -> str:
    """SQL writing ``baseline`` from the scored rows in ``scored`` before ``cut``, in the inference log's columns.

    ``cut`` is a timestamp (naive means UTC), written as a ``TIMESTAMP`` literal: Spark does not bind
    parameter markers inside ``CREATE OR REPLACE TABLE ... AS SELECT`` (``UNBOUND_SQL_PARAMETER``).

    Columns both have are cast to the inference log's types (the monitor requires the baseline table to have
    the monitored table's schema); ``ts`` is the scored rows' ``event_ts``, ``source`` is
    ``'baseline'``, ``model_version`` the version in ``model_uri`` (``models:/<name>/<version>`` or an alias);
    the rest are NULL of the inference log's type.
    """
    from utils.plantly_columns import FEATURES, inference_log_schema

    scored_columns = {"event_id", "event_ts", "model_uri", "prediction", "purchased"}
    scored_columns |= set(FEATURES)
    spark_types = {"string": "STRING", "double": "DOUBLE", "bool": "BOOLEAN", "timestamp[us, tz=UTC]": "TIMESTAMP"}
    select = []
    for field in inference_log_schema():
        if field.name == "ts":
            select.append("event_ts AS ts")
        elif field.name == "source":
            select.append("'baseline' AS source")
        elif field.name == "model_version":
            select.append("regexp_extract(model_uri, '[/@]([^/@]+)$', 1) AS model_version")
        elif field.name in scored_columns:  # cast: the monitor wants the baseline in the monitored table's types
            select.append(f"CAST(`{field.name}` AS {spark_types[str(field.type)]}) AS `{field.name}`")
        else:
            select.append(f"CAST(NULL AS {spark_types[str(field.type)]}) AS `{field.name}`")
    import pandas as pd

    stamp = pd.Timestamp(cut)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return (f"CREATE OR REPLACE TABLE {baseline} AS SELECT {', '.join(select)} FROM {scored} "
            f"WHERE event_ts < TIMESTAMP '{stamp.strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'")


def ensure_monitor(client: Any, cfg: Config | None = None, baseline_end: Any = None, spark: Any = None) -> dict[str, Any]:
    """Create the data-profiling monitor on ``inference_log``, or refresh the one that exists.

    ``client`` is a ``databricks.sdk.WorkspaceClient``. With ``baseline_end`` (a timestamp) and ``spark``,
    the baseline table is (re)written first from ``monitored_predictions`` (:func:`baseline_query`). Returns
    ``{"table", "action" ("created" or "refreshed"), "profile_metrics", "drift_metrics", "assets_dir"}``; where
    data profiling is not enabled in the workspace (a preview, a region, an edition), one line says so and
    ``action`` is ``"skipped"`` (the metric tables and folder None).

    Raises:
        ProfilingMonitorError: the table or schema does not exist, or a privilege is missing (the message
            names it: MANAGE on the table or schema, SELECT on the table).
    """
    from databricks.sdk.errors import DatabricksError, NotFound
    from databricks.sdk.service.dataquality import Refresh

    from utils.config import inference_log_table, monitoring_tables
    from utils.plantly_columns import MONITORED_CATEGORICAL

    cfg = cfg or get_config()
    table = inference_log_table(cfg)
    baseline = table + BASELINE_SUFFIX
    try:
        if baseline_end is not None and spark is not None:
            spark.sql(baseline_query(baseline, monitoring_tables(cfg)["scored"], baseline_end))
        table_id = client.tables.get(table).table_id
        schema_id = client.schemas.get(f"{cfg.catalog}.{cfg.schema}").schema_id
        user = client.current_user.me().user_name
        assets_dir = f"/Workspace/Users/{user}/data_profiling/{cfg.catalog}.{cfg.schema}"
        client.workspace.mkdirs(assets_dir)
        try:
            client.data_quality.get_monitor(object_type="table", object_id=table_id)
        except NotFound:
            spec = monitor_spec(table_id, schema_id, assets_dir, baseline, SLICES + list(MONITORED_CATEGORICAL))
            client.data_quality.create_monitor(spec)
            action = "created"
        else:
            client.data_quality.create_refresh(object_type="table", object_id=table_id,
                                               refresh=Refresh(object_type="table", object_id=table_id))
            action = "refreshed"
    except DatabricksError as exc:
        return _refused(exc, table, cfg)
    return {"table": table, "action": action, "profile_metrics": f"{table}_profile_metrics",
            "drift_metrics": f"{table}_drift_metrics", "assets_dir": assets_dir}


def _refused(exc: Exception, table: str, cfg: Config) -> dict[str, Any]:
    """A missing privilege or table raises ProfilingMonitorError (the user can fix it); any other refusal (first of all
    data profiling not enabled: ``FEATURE_DISABLED``, or 501) is one line and a skip, and 06 goes on (review R13)."""
    from databricks.sdk.errors import NotFound, PermissionDenied
    from databricks.sdk.errors import NotImplemented as NotEnabled

    first = (str(exc).split(". Config: ")[0].strip().splitlines() or [type(exc).__name__])[0][:200]
    if getattr(exc, "error_code", None) == "FEATURE_DISABLED" or isinstance(exc, NotEnabled):
        print(f"data-profiling monitor skipped: data profiling is not enabled in this workspace ({first}); 06's own "
              "profile, drift and quality tables (monitored_predictions_*) still feed the alerts and the 360° page")
        return {"table": table, "action": "skipped", "profile_metrics": None, "drift_metrics": None, "assets_dir": None}
    if isinstance(exc, PermissionDenied):
        raise ProfilingMonitorError(
            f"cannot put a data-profiling monitor on {table}: {first}. It needs MANAGE on the "
            f"table (or on {cfg.catalog}.{cfg.schema}) and SELECT on it; ask the schema's owner to "
            f"GRANT MANAGE ON TABLE {table} TO `<you>`") from None
    if isinstance(exc, NotFound):
        raise ProfilingMonitorError(f"cannot put a data-profiling monitor on {table}: {first} "
                                    "(notebook 05 writes the inference log, and 06's catch-up when it is missing)") from None
    # any other refusal (a quota, a baseline the service rejects, ...): one line, and 06 goes on with its own metrics
    print(f"data-profiling monitor skipped: the service refused it ({getattr(exc, 'error_code', None) or type(exc).__name__}: "
          f"{first}); 06's own profile, drift and quality tables still feed the alerts and the 360° page")
    return {"table": table, "action": "skipped", "profile_metrics": None, "drift_metrics": None, "assets_dir": None}
