"""Where the code runs, known only in this package, and the picks of a backend by it: Databricks' or a stand-in.

``utils.platform.environment`` holds the facts of the place (paths, parameters, secrets, Java, MLflow's URIs),
``utils.platform.runtime`` what is built on them (the Spark session, MLflow's set-up), re-exported here so that
``from utils.platform import get_spark, get_param, state_dir, ...`` works; notebooks never branch on the platform.
Each pick imports its implementation inside the function, when called: on Databricks an adapter that imports only
base modules (``utils.serving``, ``utils.deployment_triggers``, ``utils.data_profiling``, ``utils.lakebase``),
elsewhere a stand-in of ``utils.local``. Nothing happens at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from utils.platform.environment import (  # noqa: F401 - re-exported: the facts of where the code runs
    JAVA_HINT,
    MIN_JAVA,
    MissingSecret,
    automatic_feature_lookup,
    get_param,
    get_secret,
    is_serverless,
    lakebase_enabled,
    lineage_is_immediate,
    online_table_name,
    output_dir,
    personal_schema,
    platform_name,
)
from utils.platform.runtime import (  # noqa: F401 - re-exported: the facts of where the code runs
    REPO_ROOT,
    VOLUMES,
    EnvironmentProblem,
    artifact_root,
    configure_mlflow,
    current_user,
    delete_table_files,
    ensure_dirs,
    ensure_model_schema,
    environment_report,
    experiment_path,
    files_dir,
    get_spark,
    install_on_databricks,
    is_databricks,
    java_version,
    lakehouse_dir,
    load_plot_backend,
    mlflow_dir,
    prod_catalog,
    raw_data_dir,
    refresh_tables,
    registry_uri,
    state_dir,
    stop_spark,
    tmp_dir,
    tracking_uri,
    use_catalog,
    workspace_client,
)


class _NoInbox:
    """No webhook inbox: what :func:`alert_inbox` gives on Databricks (``url`` None, no messages)."""

    url: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        return []

    def __enter__(self) -> _NoInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def alert_inbox() -> Any:
    """A context manager giving a webhook receiver to show alerts arriving, where there can be one.

    Locally: ``utils.local.webhook_inbox.LocalWebhookInbox`` on 127.0.0.1 (a stand-in for Slack, started on
    ``with`` and stopped after; ``url`` and ``messages()``). On Databricks: an inbox with ``url`` None and
    no messages, since a server on the driver is no stand-in for a chat tool there; alerts reach people
    through the webhook in the secret ``alert_webhook_url`` (``utils.alerts.alert_notifiers``).
    """
    if is_databricks():
        return _NoInbox()
    from utils.local.webhook_inbox import LocalWebhookInbox

    return LocalWebhookInbox()


def feature_client() -> Any:
    """The Feature Engineering client: Databricks' ``FeatureEngineeringClient`` there, its local twin elsewhere.

    The twin, ``utils.local.feature_store.LocalFeatureEngineeringClient``, has the real client's methods
    and keyword arguments and returns the real package's entities, so notebook code is the same.
    """
    if is_databricks():
        from databricks.feature_engineering import FeatureEngineeringClient

        return FeatureEngineeringClient()
    from utils.local.feature_store import LocalFeatureEngineeringClient

    return LocalFeatureEngineeringClient()


def online_store_spec(name: str | None = None, timeout_s: float = 900.0) -> Any:
    """The online store ``publish_table`` writes to: a Lakebase online store on Databricks, SQLite locally.

    Databricks: ``utils.lakebase.online_store(feature_client(), name, timeout_s)`` (got or created, then waited
    for until available; ``utils.features.lakebase_online_store``). Locally: ``utils.local.online_store.SqliteOnlineStore()``.
    """
    if is_databricks():
        from utils.lakebase import online_store

        return online_store(feature_client(), name, timeout_s)
    from utils.local.online_store import SqliteOnlineStore

    return SqliteOnlineStore()


def delete_online_store(name: str | None = None) -> bool:
    """Delete the Lakebase online store ``name`` so it stops billing; False if there is none.

    ``name`` defaults to ``get_config().online_store_name``, the store of this catalog and schema, so
    one attendee's clean-up never deletes another's store. Locally there is nothing to delete (the
    SQLite store is part of the state folder): returns False. On Databricks without ``MLOPS_LAKEBASE=true``
    nothing was published to a store, so the Lakebase API is not called (it may not be enabled there):
    one line says so and it returns False; a refusal of the API (``DatabricksError``: Lakebase not enabled,
    permission denied) is one line too, never a traceback at the end of notebook 06.
    """
    if not is_databricks():
        return False
    if not lakebase_enabled():
        print("no Lakebase online store to delete: MLOPS_LAKEBASE is not true, so nothing was published to one "
              "(a store made in another session: delete it in Compute → Lakebase)")
        return False
    from databricks.sdk.errors import DatabricksError

    from utils.config import get_config

    client = feature_client()
    store_name = name or get_config().online_store_name
    try:
        if client.get_online_store(name=store_name) is None:
            return False
        client.delete_online_store(name=store_name)
    except DatabricksError as exc:  # Lakebase not enabled or not in this region, permission denied, ...
        reason = (str(exc).split(". Config: ")[0].strip().splitlines() or [type(exc).__name__])[0]
        print(f"Lakebase online store {store_name!r} not deleted ({getattr(exc, 'error_code', '') or type(exc).__name__}: "
              f"{reason[:200]}); if it exists, delete it in Compute → Lakebase")
        return False
    return True


def record_lineage(name: str, sources: Mapping[str, int | None] | Sequence[str], version: int | None = None) -> None:
    """Record that feature table ``name`` (at ``version``, default its latest) was built from ``sources``.

    ``sources`` maps source table to the Delta version read (a list of names means their current
    versions). A no-op on Databricks, where Unity Catalog captures lineage itself from the queries that
    run (see :func:`feature_lineage`); locally the twin's registry keeps it
    (``utils.local.feature_registry.record_lineage``).
    """
    if is_databricks():
        return
    from utils.local import feature_registry

    feature_registry.record_lineage(name, sources, version)


LINEAGE_QUERY = """
SELECT DISTINCT target_table_full_name AS feature_table, source_table_full_name AS source_table, source_type,
       entity_type, entity_id, entity_run_id, created_by, event_time
FROM system.access.table_lineage
WHERE target_table_full_name = :table AND source_table_full_name IS NOT NULL AND source_table_full_name <> :table
ORDER BY event_time, source_table, entity_run_id
""".strip()
"""Unity Catalog's lineage of one table: its writes' sources, oldest first (named parameter ``:table``)."""


LINEAGE_COLUMNS = ["feature_table", "source_table", "source_type", "entity_type", "entity_id", "entity_run_id",
                   "created_by", "event_time"]
"""The columns :func:`feature_lineage` returns on Databricks."""


def feature_lineage(name: str) -> Any:
    """The sources of feature table ``name`` as a pandas DataFrame, one row per source table and write.

    Locally (``utils.local.feature_registry.feature_lineage``): ``feature_table``, ``feature_table_version``,
    ``mode``, ``source_table``, ``source_version``, ``written_at``, one row per version written and source,
    recorded with the write.

    Databricks: Unity Catalog's table lineage system table, ``system.access.table_lineage``, read with
    :data:`LINEAGE_QUERY` (named parameter markers, no string formatting): ``feature_table``
    (``target_table_full_name``), ``source_table`` (``source_table_full_name``), ``source_type``
    (TABLE, VIEW, PATH, STREAMING_TABLE), ``entity_type``/``entity_id``/``entity_run_id`` (the notebook,
    job or pipeline and its run), ``created_by`` and ``event_time``, oldest first; a table reading itself
    (a MERGE reads its target) and path reads without a table name are left out. Unity Catalog feature
    tables leave the client's ``table_data_sources`` empty, so the system table is where the lineage
    is. Sources: the lineage system tables reference (https://docs.databricks.com/aws/en/admin/system-tables/lineage),
    which says records are emitted only when lineage can be inferred and that the ``system.access``
    schema must be enabled; "View data lineage using Unity Catalog"
    (https://docs.databricks.com/aws/en/data-governance/unity-catalog/data-lineage) says Catalog
    Explorer shows lineage "in near real time". Neither page promises a latency for the system table,
    which is a Databricks-hosted analytical store filled after the fact: expect a write's rows minutes
    later, not at once (:func:`lineage_is_immediate` is False there). An empty result prints a one-line
    note saying so; a system table this user cannot read (schema not enabled, no ``SELECT``) prints one
    line naming the fix and returns the empty frame, never a traceback.
    """
    if not is_databricks():
        from utils.local import feature_registry

        return feature_registry.feature_lineage(name)
    import pandas as pd

    try:
        rows = get_spark().sql(LINEAGE_QUERY, args={"table": name.lower()}).collect()
    except Exception as exc:  # Spark Connect and classic Spark raise different types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"lineage of {name} unavailable: cannot read system.access.table_lineage ({first}); ask a workspace "
              "admin to enable the system.access schema and GRANT SELECT on it, or see Catalog Explorer > Lineage")
        return pd.DataFrame(columns=LINEAGE_COLUMNS)
    frame = pd.DataFrame([r.asDict() for r in rows], columns=LINEAGE_COLUMNS)
    if frame.empty:
        print(f"no lineage rows yet for {name}: Unity Catalog fills system.access.table_lineage minutes after "
              "a write; rerun later, or open the table's Lineage tab in Catalog Explorer")
    return frame


INFERENCE_TABLE_PREFIX = "endpoint"
"""Model Serving endpoints write their AI Gateway inference table to ``<catalog>.<schema>.endpoint_payload``."""


def serving_backend(model_name: str, endpoint_name: str, timeout_s: float = 300.0) -> Any:
    """What a router scores with: Model Serving on Databricks, models loaded in the router's process elsewhere.

    Returns ``utils.serving.ModelServingBackend`` (served entities of endpoint ``endpoint_name``, with the AI
    Gateway inference table ``<catalog>.<schema>.endpoint_payload``, scaling to zero on serverless only: review
    R18) or ``utils.local.served_models.LocalBackend`` (one in-memory served model per version, loaded once).
    """
    if is_databricks():
        from utils.config import get_config
        from utils.serving import ModelServingBackend

        cfg = get_config()
        return ModelServingBackend(endpoint_name, model_name, scale_to_zero=is_serverless(),
                                   inference_table=(cfg.catalog, cfg.schema, INFERENCE_TABLE_PREFIX))
    from utils.local.served_models import LocalBackend

    return LocalBackend(model_name, timeout_s)


def deployment_trigger(model_name: str, deployment_job_id: str = "") -> Any:
    """What makes registering a version run the deployment job's gate; a context manager around registration.

    Use as ``with deployment_trigger(name, job_id) as trigger: mv = registry.register(...);
    verdict = trigger.verdict(mv.version)``. Each trigger has ``how`` (one line to show), ``verdict(version)``
    (a ``utils.gate.GateResult``, waiting for it) and ``events()`` (what it saw judged, as pandas).

    - Databricks with ``deployment_job_id``: ``utils.deployment_triggers.JobTrigger`` links the MLflow 3
      deployment job to the model; Unity Catalog runs it on every new version.
    - Databricks without one (a notebook run by hand): ``utils.deployment_triggers.InlineTrigger`` runs the
      evaluation task in the notebook after registration.
    - Locally: ``utils.local.deployment_webhooks.WebhookTrigger``, the open-source MLflow server firing a
      ``model_version.created`` webhook at a receiver that runs the same evaluation task.
    """
    if is_databricks():
        from utils.deployment_triggers import InlineTrigger, JobTrigger

        return JobTrigger(model_name, deployment_job_id) if deployment_job_id else InlineTrigger(model_name)
    from utils.local.deployment_webhooks import WebhookTrigger

    return WebhookTrigger(model_name)


def data_profiling(cfg: Any = None, baseline_end: Any = None) -> dict[str, Any]:
    """Where the inference log's profile and drift metrics come from on this platform (notebook 06).

    Databricks: ``utils.data_profiling.ensure_monitor`` creates (or refreshes) a data-profiling monitor on
    ``inference_log``, writing its baseline table first when ``baseline_end`` is given; returns what it did.
    Locally no service profiles tables: returns where ``utils.monitoring.monitor`` wrote the metrics it computed
    (``monitored_predictions_profile_metrics`` / ``_drift_metrics``, the monitor's shape), ``action`` "local".
    """
    from utils.config import get_config, monitoring_tables

    cfg = cfg or get_config()
    if is_databricks():
        from utils.data_profiling import ensure_monitor

        return ensure_monitor(workspace_client(), cfg, baseline_end, get_spark() if baseline_end is not None else None)
    names = monitoring_tables(cfg)
    return {"table": names["scored"], "action": "local", "profile_metrics": names["profile"],
            "drift_metrics": names["drift"], "assets_dir": None}


def code_first_runner() -> str:
    """Where code-first retraining runs (``utils.code_first_retrain.retrain_with_wheel``): ``"job"`` or ``"subprocess"``.

    Databricks: ``"job"``, a one-time job run of the wheel (``utils.code_first_retrain.retrain_in_job``), because a
    child process of the notebook has neither its credentials nor its Spark session. Elsewhere:
    ``"subprocess"``, an isolated local process that imports only the unpacked wheel.
    """
    return "job" if is_databricks() else "subprocess"
