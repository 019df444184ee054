"""The local twin of Databricks Feature Engineering in Unity Catalog (``FeatureEngineeringClient``).

``utils.platform.feature_client()`` returns :class:`LocalFeatureEngineeringClient` outside Databricks.
It has the real client's method names and keyword arguments and accepts the package's real
``FeatureLookup`` objects, so notebook code is the same in both places.

Feature tables are Delta tables (``utils.lakehouse``), with history and time travel as on Unity Catalog.
Built on ``feature_registry`` (metadata and lineage in SQLite), ``feature_writes`` (what a write accepts),
``feature_lookups`` and ``point_in_time`` (lookups checked, then joined point in time in Spark) and
``feature_models`` (a model logged with its feature spec), all in ``utils.local``.

Every public method the real client also has takes exactly the real client's parameters (names,
kinds, order, defaults; ``tests/code/test_feature_client_conformance.py`` checks it), and
``get_table``/``create_table`` return the real package's ``FeatureTable`` entity, filled as the real
client fills it for a Unity Catalog table (``primary_keys`` include the timestamp key, ``features``
are all the table's columns). A parameter the local client cannot honour (streaming, Photon joins,
Databricks online stores) raises naming it when given a non-default value; none is ignored.

Where the local client goes beyond (or differs from) Databricks, it says so: ``write_table`` also
takes ``mode="overwrite"`` and ``read_table`` also ``version=``; a lookup on a time series table
without ``timestamp_lookup_key`` gets the latest value per key (what the online store serves);
``default_values`` also replace nulls stored in the table (as Databricks' ``fillna`` does).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from utils.local import feature_models, online_publish
from utils.local import feature_registry as registry
from utils.local import online_store as online
from utils.local.feature_lookups import LocalTrainingSet, as_list, training_spec
from utils.local.feature_registry import require_table
from utils.local.feature_writes import (
    check_keys,
    conform,
    empty_arrow,
    new_table_schema,
    spark_df,
    timeseries_argument,
    to_arrow,
)
from utils.local.point_in_time import apply_lookups

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

MERGE = "merge"
OVERWRITE = "overwrite"
# Defaults of the real client's parameters, copied: the local client runs without the Databricks packages.
PUBLISH_MODE_TRIGGERED = "TRIGGERED"
DEFAULT_WRITE_TRIGGER: dict[str, Any] = {"processingTime": "5 seconds"}  # never mutated
DEFAULT_PUBLISH_TRIGGER: dict[str, Any] = {"processingTime": "5 minutes"}  # never mutated


class _Unset:
    """Type of :data:`AWAIT_REGISTRATION_FOR_UNSET` (the real client's sentinel of the same name)."""

    def __repr__(self) -> str:
        return "AWAIT_REGISTRATION_FOR_UNSET"


AWAIT_REGISTRATION_FOR_UNSET: Any = _Unset()
"""``log_model``'s default ``await_registration_for``: not given, so MLflow's own default applies."""


class LocalFeatureEngineeringClient:
    """The local twin of ``databricks.feature_engineering.FeatureEngineeringClient``.

    Its public methods are the real client's, with the same signatures; tables come back as the
    real ``FeatureTable`` entity (see ``utils.local.feature_registry.TableMeta.to_feature_table``).
    """

    # -------------------------------------------------------- tables

    def create_table(self, *, name: str, primary_keys: str | list[str], df: DataFrame | None = None,
                     timeseries_column: str | None = None, partition_columns: str | list[str] | None = None,
                     schema: StructType | None = None, description: str | None = None,
                     tags: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """Create a feature table (and write ``df`` to it); returns it as Databricks' ``FeatureTable``.

        As on Databricks, if the feature table already exists it is returned unchanged (``df`` is
        not written: use ``write_table`` for that, a warning says so). ``timestamp_keys=`` and
        ``timeseries_columns=`` are accepted for ``timeseries_column``, as by the real client.
        Raises ``ValueError`` for a bad name, keys or schema, or a Delta table of that name that is
        not a feature table; ``FeatureTableWriteError`` for null or duplicate keys in ``df``.
        """
        from utils import lakehouse

        registry.check_name(name)
        timeseries_column = timeseries_argument(timeseries_column, kwargs)
        if kwargs:
            raise TypeError(f"create_table() got unexpected keyword arguments {sorted(kwargs)}")
        pks, partitions = as_list(primary_keys), as_list(partition_columns)
        df, spark_schema = new_table_schema(name, pks, timeseries_column, partitions, df, schema)
        existing = registry.load_table_meta(name)
        if existing is not None and lakehouse.exists(name):
            if df is not None:
                warnings.warn(
                    f"feature table {name!r} already exists: returned as is and df NOT written "
                    "(use write_table(name=..., df=...) to add data, or drop_table first)",
                    stacklevel=2,
                )
            return require_table(name, with_version=False).to_feature_table()
        if existing is None and lakehouse.exists(name):
            raise ValueError(f"Data table {name} already exists. Use a different name.")
        if existing is not None:  # stale registry entry whose Delta table was dropped elsewhere
            registry.forget(name)
        data = to_arrow(df) if df is not None else empty_arrow(spark_schema)
        check_keys(data, name, pks)
        version = lakehouse.write(data, name, mode="overwrite", partition_by=partitions or None,
                                  description=description)
        registry.register_table(name, pks, timeseries_column, partitions, description, tags)
        registry.record_write(name, version, "create", data.num_rows)
        return require_table(name, with_version=False).to_feature_table()

    def write_table(self, *, name: str, df: DataFrame, mode: str = MERGE, checkpoint_location: str | None = None,
                    trigger: dict[str, Any] = DEFAULT_WRITE_TRIGGER) -> None:
        """Upsert ``df`` into the feature table by its primary keys (``mode="merge"``) or replace it (``"overwrite"``).

        Rejected with ``FeatureTableWriteError``, leaving the table unchanged: duplicate or null primary
        keys in ``df``, a missing or differently typed column. Columns ``df`` adds are added as new
        features (as on Databricks). ``"overwrite"`` is a local extra: the Databricks client only merges.
        Streaming writes are not supported locally: a streaming ``df``, ``checkpoint_location`` and
        ``trigger`` raise ``NotImplementedError``.
        """
        from utils import lakehouse

        if mode not in (MERGE, OVERWRITE):
            raise ValueError(f"Unsupported mode {mode!r}: use 'merge' (upsert by primary keys) or 'overwrite'")
        _reject_streaming_options("write_table", checkpoint_location, trigger, DEFAULT_WRITE_TRIGGER)
        meta = require_table(name)
        df = spark_df(df)
        if df.isStreaming:
            raise NotImplementedError(
                "write_table: streaming DataFrames are not supported by the local feature store: write a batch "
                "DataFrame (e.g. from spark.read instead of spark.readStream)"
            )
        conformed, new_columns = conform(df, meta)
        data = to_arrow(conformed)
        check_keys(data, name, meta.keys)
        if mode == OVERWRITE:
            if new_columns:  # replace the schema: existing columns keep their types (cast above)
                version = lakehouse.write(data, name, mode="overwrite", merge_schema=True)
            else:
                version = lakehouse.write(data, name, mode="overwrite")
        else:
            version = lakehouse.merge(data, name, keys=meta.keys, merge_schema=bool(new_columns))["version"]
        registry.record_write(name, version, mode, data.num_rows)

    def read_table(self, *, name: str, **kwargs: Any) -> DataFrame:
        """The feature table as a Spark DataFrame (``as_of_delta_timestamp=`` or ``version=`` time-travel)."""
        from utils import lakehouse

        require_table(name, with_version=False)
        version = kwargs.pop("version", None)
        timestamp = kwargs.pop("as_of_delta_timestamp", None)
        if kwargs:
            raise TypeError(f"read_table() got unexpected keyword arguments {sorted(kwargs)}")
        return lakehouse.read(name, version=version, timestamp=timestamp)

    def get_table(self, *, name: str) -> Any:
        """A feature table's metadata as Databricks' ``FeatureTable`` (keys, timestamp keys, features, tags, sources).

        As on Databricks, ``primary_keys`` include the timestamp key: the table's timeseries column
        is ``timestamp_keys[0]`` (``timestamp_keys`` is empty for a table without one).
        """
        return require_table(name, with_version=False).to_feature_table()

    def drop_table(self, *, name: str) -> None:
        """Delete the feature table and its Delta table (published online tables are kept, as on Databricks)."""
        from utils import lakehouse

        if registry.load_table_meta(name) is None:
            require_table(name)  # raises the not-found error with its hint
        if lakehouse.exists(name):
            lakehouse.drop(name)
        registry.forget(name)

    def set_feature_table_tag(self, *, name: str, key: str, value: str) -> None:
        """Create or overwrite one tag of a feature table."""
        meta = require_table(name)
        registry.set_tags(name, {**meta.tags, key: value})

    def delete_feature_table_tag(self, *, name: str, key: str) -> None:
        """Remove one tag of a feature table (a warning if it was not set)."""
        meta = require_table(name)
        if key not in meta.tags:
            warnings.warn(f"feature table {name!r} has no tag {key!r}", stacklevel=2)
            return
        registry.set_tags(name, {k: v for k, v in meta.tags.items() if k != key})

    # -------------------------------------------------------- training sets

    def create_training_set(self, *, df: DataFrame, feature_lookups: list[Any] | None = None,
                            feature_spec: str | None = None, features: list[Any] | None = None,
                            label: str | list[str] | None, exclude_columns: list[str] | None = None,
                            use_spark_native_join: bool = False, use_timeseries_filtering: bool = False,
                            **kwargs: Any) -> LocalTrainingSet:
        """A training set joining ``feature_lookups`` into ``df`` (point in time where a timestamp key is given).

        Everything is validated first (tables, features, keys, labels, names); no join runs on bad input.
        The feature tables' current Delta versions are pinned: ``load_df()`` reads those versions.
        ``use_timeseries_filtering=True`` reads, for each point-in-time lookup, only the feature rows
        the time range of ``df`` can match (same result, less data). Not available locally, and
        raising when given: ``feature_spec`` and ``features`` (Unity Catalog feature specs and
        declarative features) and the Photon join hints ``use_spark_native_join``,
        ``hint_low_cardinality_columns`` and ``use_scalable_native_join``.
        """
        unknown_kwargs = sorted(set(kwargs) - {"hint_low_cardinality_columns", "use_scalable_native_join"})
        if unknown_kwargs:
            raise TypeError(f"create_training_set() got unexpected keyword arguments {unknown_kwargs}")
        _reject_hints("create_training_set", use_spark_native_join=use_spark_native_join, **kwargs)
        if not isinstance(use_timeseries_filtering, bool):
            raise TypeError(f"'use_timeseries_filtering' must be a bool, got {use_timeseries_filtering!r}")
        options = {"feature_lookups": feature_lookups, "feature_spec": feature_spec, "features": features}
        given = [n for n, v in options.items() if v is not None]
        if not given:
            raise ValueError("One of 'feature_lookups', 'feature_spec', or 'features' must be provided.")
        if len(given) > 1:
            raise ValueError("Only one of 'feature_lookups', 'feature_spec', or 'features' can be provided.")
        if feature_lookups is None:
            raise NotImplementedError(
                f"create_training_set: {given[0]}= (a Unity Catalog feature spec or declarative features) is not "
                "supported by the local feature store: pass feature_lookups=[FeatureLookup(...), ...] instead"
            )
        df = spark_df(df)
        spec = training_spec(df, feature_lookups, label, exclude_columns)
        return LocalTrainingSet(df, spec, use_timeseries_filtering=use_timeseries_filtering)

    # -------------------------------------------------------- models

    def log_model(self, *, model: Any, artifact_path: str, flavor: ModuleType,
                  training_set: LocalTrainingSet | None = None, registered_model_name: str | None = None,
                  await_registration_for: int | None = AWAIT_REGISTRATION_FOR_UNSET, infer_input_example: bool = False,
                  extra_pip_requirements: list[str] | None = None, **kwargs: Any) -> Any:
        """Log ``model`` with MLflow packaged with its feature spec; returns MLflow's ``ModelInfo``.

        The logged model is a pyfunc: given only the lookup keys it fetches its features from the
        online store, as a Databricks feature-store model does when served (``utils.local.feature_models``
        has the layout). ``score_batch`` instead looks the features up offline, point in time.
        ``kwargs`` go to ``flavor.save_model`` (e.g. ``skops_trusted_types`` for ``mlflow.sklearn``), except
        ``output_schema`` (an MLflow ``Schema``), which, as on Databricks, becomes the logged model's output
        schema in place of the one Databricks infers from the label's type.
        ``await_registration_for`` is forwarded to MLflow only when given (MLflow's default otherwise),
        as by the real client. ``infer_input_example=True`` is not supported locally (it raises): pass
        ``input_example=...`` instead, which goes to ``flavor.save_model``. Raises ``ValueError`` without
        a ``training_set`` from :meth:`create_training_set` or for a flavor without a pyfunc.
        """
        if infer_input_example:
            raise NotImplementedError(
                "log_model: infer_input_example=True is not supported by the local feature store: pass "
                "input_example=<a row of the model's inputs> instead (it goes to flavor.save_model)"
            )
        if training_set is None or not isinstance(training_set, LocalTrainingSet):
            raise ValueError(
                "log_model needs the training_set= returned by create_training_set (it records which features "
                "to look up); to log a model without features use the MLflow flavor's log_model"
            )
        output_schema = kwargs.pop("output_schema", None)
        signature = None
        if output_schema is not None:  # inputs stay unchecked: a request holds keys, context and any overrides
            from mlflow.models import ModelSignature

            signature = ModelSignature(inputs=None, outputs=output_schema)
        registration = {"await_registration_for": await_registration_for}
        if await_registration_for is AWAIT_REGISTRATION_FOR_UNSET:
            registration = {}  # MLflow's own default, as the real client does
        return feature_models.log_feature_model(
            model=model, artifact_path=artifact_path, flavor=flavor, spec=training_set.feature_spec,
            registered_model_name=registered_model_name, registration=registration,
            extra_pip_requirements=extra_pip_requirements, signature=signature, flavor_kwargs=kwargs,
        )

    def score_batch(self, *, model_uri: str, df: DataFrame, result_type: str = "double", env_manager: str = "local",
                    params: dict[str, Any] | None = None, use_spark_native_join: bool = False,
                    **kwargs: Any) -> DataFrame:
        """``df`` plus its looked-up features and a ``prediction`` column, from the lookup keys alone.

        Features are read from the feature tables' latest versions, point in time where the model's
        lookups have a timestamp key; feature columns already in ``df`` are used as given.
        ``use_spark_native_join=True`` (a Photon join) is not available locally and raises.
        Raises ``ValueError`` for a model not logged by :meth:`log_model`, a ``df`` with a ``prediction``
        column, or one lacking lookup keys or model inputs that are not looked up.
        """
        import mlflow.pyfunc
        from pyspark.sql import functions as F

        from utils.platform.runtime import get_spark

        if kwargs:
            raise TypeError(f"score_batch() got unexpected keyword arguments {sorted(kwargs)} (the local client has no "
                            "Databricks-only options such as prebuilt_env_uri)")
        _reject_hints("score_batch", use_spark_native_join=use_spark_native_join)
        df = spark_df(df)
        if "prediction" in df.columns:
            raise ValueError("df must not have a 'prediction' column: score_batch adds it")
        root, spec = feature_models.downloaded_spec(model_uri)
        missing = [c for c in spec.required_input_columns if c not in df.columns]
        if missing:
            raise ValueError(
                f"df lacks columns {missing} that the model's feature lookups need (lookup and timestamp keys)"
            )
        for lk in spec.lookups:
            require_table(lk.table_name, with_version=False)
        features = apply_lookups(df, spec.lookups, use_pinned_versions=False)
        absent = [c for c in spec.model_input_columns if c not in features.columns]
        if absent:
            raise ValueError(f"df lacks columns {absent} that the model was trained on (they are not looked up)")
        predict = mlflow.pyfunc.spark_udf(
            get_spark(), str(feature_models.raw_model_path(root)), result_type=result_type, env_manager=env_manager,
            params=params,
        )
        inputs = F.struct(*[F.col(f"`{c}`") for c in spec.model_input_columns])
        return features.withColumn("prediction", predict(inputs))

    # -------------------------------------------------------- online store

    def publish_table(self, *, online_store: Any, source_table_name: str | None = None,
                      online_table_name: str | None = None, publish_mode: str = PUBLISH_MODE_TRIGGERED,
                      filter_condition: str | None = None, mode: str = MERGE, streaming: bool = False,
                      checkpoint_location: str | None = None, trigger: dict[str, Any] = DEFAULT_PUBLISH_TRIGGER,
                      features: str | list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Publish the latest row per primary key of a feature table to the local online store (SQLite).

        Idempotent upsert; ``name=`` is accepted for ``source_table_name`` as on Databricks, and
        ``online_store`` is required as there (locally: ``online_store_spec()`` or a
        ``utils.local.online_store.SqliteOnlineStore``). ``filter_condition`` and ``features`` are honoured.
        The online table is named after the feature table, so ``online_table_name`` may only repeat
        that name. Streaming and continuous publishing are not available locally: ``streaming``,
        ``checkpoint_location``, ``trigger`` and a ``publish_mode`` other than ``"TRIGGERED"`` raise.
        Returns what was published: ``table_name``, ``rows``, ``store_type``, ``path`` (the store's file),
        ``online_table_name``, ``version`` (the Delta version) and ``published_at`` (ISO 8601, UTC).
        """
        name = source_table_name if source_table_name is not None else kwargs.pop("name", None)
        kwargs.pop("name", None)  # source_table_name wins over name=, as on Databricks
        if kwargs:
            raise TypeError(f"publish_table() got unexpected keyword arguments {sorted(kwargs)}")
        _check_publish_arguments(name, online_store, mode, streaming, publish_mode, online_table_name,
                                 checkpoint_location, trigger)
        meta = require_table(name)
        rows = _publish_rows(meta, online_store, filter_condition, features)
        entry = {
            "store_type": "sqlite",
            "path": str(online._store(online_store).db_path()),
            "online_table_name": name,
            "version": meta.version,
            "published_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        registry.set_online_stores(name, [s for s in meta.online_stores if s["path"] != entry["path"]] + [entry])
        return {"table_name": name, "rows": rows, **entry}

    def drop_online_table(self, name: str, online_store: Any) -> None:
        """Remove a feature table's online table from ``online_store`` (e.g. ``online_store_spec()``) and its record."""
        if online_store is None:
            raise ValueError("drop_online_table: online_store is required: pass online_store=online_store_spec() "
                             "(from utils.features) for the local SQLite store")
        online_publish.drop_online_table(name, online_store)
        path = str(online._store(online_store).db_path())
        meta = registry.load_table_meta(name)
        if meta is not None and any(s.get("path") == path for s in meta.online_stores):
            registry.set_online_stores(name, [s for s in meta.online_stores if s.get("path") != path])


def _check_publish_arguments(name: str | None, online_store: Any, mode: str, streaming: bool, publish_mode: str,
                             online_table_name: str | None, checkpoint_location: str | None,
                             trigger: Mapping[str, Any]) -> None:
    """Raise naming the ``publish_table`` argument the local online store cannot honour."""
    if name is None:
        raise ValueError("source_table_name is required")
    if online_store is None:
        raise ValueError("publish_table: online_store is required: pass online_store=online_store_spec() "
                         "(from utils.features) for the local SQLite store")
    if mode != MERGE:
        raise ValueError(f"Unsupported mode '{mode}'. 'merge' is the only supported mode.")
    if streaming:
        raise NotImplementedError(
            "publish_table: streaming=True is not supported by the local online store: leave streaming out "
            "and publish again after each write"
        )
    if publish_mode != PUBLISH_MODE_TRIGGERED:
        raise NotImplementedError(
            f"publish_table: publish_mode={publish_mode!r} is not supported by the local online store: leave "
            f"publish_mode out ({PUBLISH_MODE_TRIGGERED!r}, an upsert of the latest row per key)"
        )
    _reject_streaming_options("publish_table", checkpoint_location, trigger, DEFAULT_PUBLISH_TRIGGER)
    if online_table_name is not None and online_table_name != name:
        raise ValueError(
            f"publish_table: online_table_name={online_table_name!r} differs from the feature table {name!r}: "
            "the local online table always has the feature table's name: leave online_table_name out or "
            "pass the same name"
        )


def _publish_rows(meta: registry.TableMeta, store: Any, filter_condition: str | None,
                  features: str | list[str] | None) -> int:
    """Publish table ``meta`` at its version (rows matching ``filter_condition``) to ``store``; rows published."""
    from utils import lakehouse

    if filter_condition:
        data = lakehouse.read(meta.name, version=meta.version).where(filter_condition).toPandas()
    else:
        data = lakehouse.read_pandas(meta.name, version=meta.version)
    return online_publish.publish(data, meta.name, meta.keys, meta.timeseries_column, store=store,
                                  source_version=meta.version, features=as_list(features) or None)


def _reject_streaming_options(
    method: str, checkpoint_location: str | None, trigger: Mapping[str, Any], default_trigger: Mapping[str, Any]
) -> None:
    """Raise naming ``checkpoint_location``/``trigger`` when given: the local feature store does not stream."""
    if checkpoint_location is not None:
        raise NotImplementedError(
            f"{method}: checkpoint_location={checkpoint_location!r} is a Structured Streaming option and the local "
            "feature store does not stream: leave checkpoint_location out"
        )
    if trigger != default_trigger:
        raise NotImplementedError(
            f"{method}: trigger={trigger!r} is a Structured Streaming option and the local feature store does not "
            "stream: leave trigger out"
        )


def _reject_hints(method: str, **hints: Any) -> None:
    """Raise naming a Databricks join hint set to True (the local client has no Photon or native join to use)."""
    for hint, value in hints.items():
        if not isinstance(value, bool):
            raise TypeError(f"'{hint}' must be a bool, got {value!r}")
        if value:
            raise NotImplementedError(
                f"{method}: {hint}=True selects a Databricks (Photon) join the local client does not have: "
                f"leave {hint} out (the local join is already a Spark join; results are the same)"
            )
