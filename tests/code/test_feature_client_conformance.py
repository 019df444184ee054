"""The local Feature Engineering client against the real ``databricks-feature-engineering`` package.

Notebook code runs unchanged on Databricks only if the local stand-in has the real client's
signatures and returns the real entities: every public method of ``LocalFeatureEngineeringClient``
must exist on ``FeatureEngineeringClient`` with the same parameters (names, kinds, order,
defaults), and ``get_table``/``create_table`` must return the real ``FeatureTable`` with nothing
on it the real class lacks.
"""

from __future__ import annotations

import datetime as dt
import inspect
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from databricks.feature_engineering import FeatureEngineeringClient, FeatureLookup
from databricks.ml_features.entities.feature_table import FeatureTable
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from tests import support
from utils.local.feature_lookups import resolve_lookups
from utils.local.feature_store import LocalFeatureEngineeringClient

LOCAL_METHODS = sorted(
    name for name, member in vars(LocalFeatureEngineeringClient).items()
    if not name.startswith("_") and callable(member)
)


# ---------------------------------------------------------------- signature comparison


def _is_sentinel(value: Any) -> bool:
    """Whether a default is a marker object (``object()``-like: compared by identity only, no value)."""
    return (
        value is not None
        and value is not inspect.Parameter.empty
        and not isinstance(value, type)
        and type(value).__eq__ is object.__eq__
        and not callable(value)
    )


def _default(value: Any) -> Any:
    """A parameter default as something comparable: sentinels by presence, everything else by type and value."""
    if value is inspect.Parameter.empty:
        return ("no default",)
    if _is_sentinel(value):
        return ("sentinel",)
    return ("default", type(value), value)


def signature_differences(local: Callable[..., Any], real: Callable[..., Any]) -> list[str]:
    """Every way ``local``'s parameters differ from ``real``'s (names, kinds, order, defaults); [] when identical.

    Annotations are ignored; a default that is a sentinel object in ``real`` only needs a
    sentinel in ``local`` (the real package's private marker cannot be shared).
    """
    def shape(fn: Callable[..., Any]) -> list[tuple[str, str, Any]]:
        return [(p.name, p.kind.description, _default(p.default)) for p in inspect.signature(fn).parameters.values()]

    mine, theirs = shape(local), shape(real)
    problems = []
    if [p[0] for p in mine] != [p[0] for p in theirs]:
        problems.append(f"parameters {[p[0] for p in mine]} != real {[p[0] for p in theirs]}")
    for (name, kind, default), (real_name, real_kind, real_default) in zip(mine, theirs):
        if name != real_name:
            continue  # already reported as a name/order difference
        if kind != real_kind:
            problems.append(f"{name}: kind {kind} != real {real_kind}")
        if default != real_default:
            problems.append(f"{name}: default {default[1:] or default} != real {real_default[1:] or real_default}")
    return problems


@pytest.mark.parametrize("method", LOCAL_METHODS)
def test_local_method_has_the_real_signature(method):
    assert hasattr(FeatureEngineeringClient, method), (
        f"LocalFeatureEngineeringClient.{method} is public but the real FeatureEngineeringClient has no {method}: "
        "make it private (a leading underscore) or a module function, so notebooks cannot rely on it"
    )
    problems = signature_differences(getattr(LocalFeatureEngineeringClient, method),
                                     getattr(FeatureEngineeringClient, method))
    assert problems == [], f"{method}: {problems}"


def test_the_methods_checked_include_the_ones_notebooks_use():
    assert {"create_table", "write_table", "read_table", "get_table", "create_training_set", "log_model",
            "score_batch", "publish_table", "drop_online_table"} <= set(LOCAL_METHODS)


MARKER, OTHER_MARKER = object(), object()
T = {"processingTime": "5 seconds"}
T_COPY = dict(T)


def test_signature_comparison_detects_every_kind_of_difference():
    """The comparison must be able to fail: each deliberate difference from ``real`` is reported."""

    def real(self, name, *, df=None, mode="merge", trigger=T, wait=MARKER, **kwargs):
        """Reference."""

    def same(self, name: str, *, df: Any = None, mode="merge", trigger=T_COPY, wait=OTHER_MARKER, **kwargs):
        """Identical but for annotations, an equal (not identical) dict and another sentinel object."""

    def renamed(self, table, *, df=None, mode="merge", trigger=T, wait=MARKER, **kwargs):
        """``name`` is called ``table``."""

    def positional(self, name, df=None, *, mode="merge", trigger=T, wait=MARKER, **kwargs):
        """``df`` is not keyword-only."""

    def reordered(self, name, *, mode="merge", df=None, trigger=T, wait=MARKER, **kwargs):
        """Same parameters in another order."""

    def other_default(self, name, *, df=None, mode="merge", trigger=None, wait=MARKER, **kwargs):
        """``trigger`` defaults to None."""

    def required(self, name, *, df=None, mode="merge", trigger=T, wait, **kwargs):
        """``wait`` has no default."""

    def plain_default(self, name, *, df=None, mode="merge", trigger=T, wait=None, **kwargs):
        """``wait`` defaults to None where the real one has a sentinel."""

    def no_kwargs(self, name, *, df=None, mode="merge", trigger=T, wait=MARKER):
        """No ``**kwargs``."""

    def extra(self, name, *, df=None, mode="merge", trigger=T, wait=MARKER, limit=10, **kwargs):
        """One parameter more."""

    assert signature_differences(same, real) == []
    for different in (renamed, positional, reordered, other_default, required, plain_default, no_kwargs, extra):
        assert signature_differences(different, real), f"{different.__name__} was not detected"
    assert signature_differences(lambda x=0: None, lambda x=False: None)  # equal values, different types


# ---------------------------------------------------------------- FeatureTable


def _name(prefix: str) -> str:
    return support.table("fs_conformance", f"{prefix}_{uuid.uuid4().hex[:8]}")


def _reference(table: Any) -> FeatureTable:
    """A ``FeatureTable`` built by the real class from ``table``'s values for every ``__init__`` parameter."""
    params = [p for p in inspect.signature(FeatureTable.__init__).parameters if p != "self"]
    return FeatureTable(**{p: getattr(table, p) for p in params})


def extra_attributes(table: Any) -> set[str]:
    """Attributes set on ``table`` that a real ``FeatureTable`` built from the same arguments does not have."""
    return set(vars(table)) - set(vars(_reference(table)))


@pytest.fixture(scope="module")
def module_spark(spark):
    """The shared Spark session, for module-scoped fixtures."""
    return spark


@pytest.fixture(scope="module")
def tables(module_spark):
    """A time-series feature table and a plain one, as returned by create_table and by get_table."""
    spark = module_spark
    fe = LocalFeatureEngineeringClient()
    ts_schema = StructType([StructField("customer_id", LongType()), StructField("ts", TimestampType()),
                            StructField("spend", DoubleType())])
    plain_schema = StructType([StructField("plant_id", IntegerType()), StructField("price", DoubleType()),
                               StructField("care", StringType())])
    ts_name, plain_name = _name("spend"), _name("plants")
    created_ts = fe.create_table(
        name=ts_name, primary_keys=["ts", "customer_id"], timeseries_column="ts",
        df=spark.createDataFrame([(1, dt.datetime(2024, 1, 1), 5.0)], ts_schema),
        description="spend per customer", tags={"team": "growth"},
    )
    created_plain = fe.create_table(name=plain_name, primary_keys="plant_id",
                                    df=spark.createDataFrame([(1, 5.0, "easy")], plain_schema))
    return {
        "fe": fe, "ts_name": ts_name, "plain_name": plain_name,
        "returned": {
            "create_table(time series)": created_ts,
            "get_table(time series)": fe.get_table(name=ts_name),
            "create_table(plain)": created_plain,
            "get_table(plain)": fe.get_table(name=plain_name),
        },
    }


def test_tables_are_returned_as_the_real_feature_table_with_nothing_extra(tables):
    for how, table in tables["returned"].items():
        assert isinstance(table, FeatureTable), f"{how} returned a {type(table).__name__}"
        assert extra_attributes(table) == set(), f"{how} sets attributes the real FeatureTable lacks"
        assert set(vars(table)) == set(vars(_reference(table))), how
        assert not hasattr(table, "timeseries_column"), f"{how}: the real FeatureTable has no timeseries_column"


def test_extra_attribute_check_can_fail(tables):
    table = tables["returned"]["get_table(plain)"]
    table.timeseries_column = None  # what the old LocalFeatureTable exposed
    try:
        assert extra_attributes(table) == {"timeseries_column"}
    finally:
        del table.timeseries_column


def test_primary_keys_include_the_timestamp_key_as_on_databricks(tables):
    returned = tables["returned"]
    for how in ("create_table(time series)", "get_table(time series)"):
        table = returned[how]
        assert table.primary_keys == ["customer_id", "ts"], how  # non-time keys first, then the timestamp key
        assert table.timestamp_keys == ["ts"], how
        assert table.features == ["customer_id", "ts", "spend"], how  # a UC table's features are all its columns
        assert (table.description, table.tags) == ("spend per customer", {"team": "growth"}), how
    for how in ("create_table(plain)", "get_table(plain)"):
        table = returned[how]
        assert (table.primary_keys, table.timestamp_keys) == (["plant_id"], []), how
        assert table.description == "", how  # no description: "" as from Unity Catalog, not None


def test_feature_table_values_are_filled(tables):
    table = tables["returned"]["get_table(time series)"]
    assert table.name == tables["ts_name"]
    assert isinstance(table.table_id, str) and table.table_id
    assert isinstance(table.creation_timestamp, int) and table.creation_timestamp > 0
    assert table.partition_columns == [] and table.path_data_sources == [] and table.online_stores == []
    assert table.table_id == tables["returned"]["create_table(time series)"].table_id


# ---------------------------------------------------------------- FeatureLookup


def test_the_real_feature_lookup_is_accepted_as_is(tables, spark):
    """The local client builds no lookup class of its own: it reads the real FeatureLookup's attributes."""
    lookup = FeatureLookup(table_name=tables["ts_name"], lookup_key="customer_id", feature_names=["spend"],
                           rename_outputs={"spend": "customer_spend"}, timestamp_lookup_key="event_ts",
                           lookback_window=dt.timedelta(days=2), default_values={"customer_spend": 0.0})
    spine = StructType([StructField("customer_id", LongType()), StructField("event_ts", TimestampType())])
    (spec,), types = resolve_lookups(spine, [lookup])
    assert (spec.table_name, spec.lookup_key, spec.feature_names) == (tables["ts_name"], ["customer_id"], ["spend"])
    assert spec.rename_outputs == {"spend": "customer_spend"} and spec.outputs == {"spend": "customer_spend"}
    assert (spec.timestamp_lookup_key, spec.lookback_window_seconds) == ("event_ts", 2 * 86400.0)
    assert spec.default_values == {"customer_spend": 0.0} and types == {"customer_spend": "double"}
    assert (spec.primary_keys, spec.timeseries_column) == (["customer_id"], "ts")


# ---------------------------------------------------------------- parameters the local client cannot honour


@pytest.mark.parametrize(
    "method, kwargs, match",
    [
        ("create_training_set", {"use_spark_native_join": True}, "use_spark_native_join"),
        ("create_training_set", {"hint_low_cardinality_columns": True}, "hint_low_cardinality_columns"),
        ("create_training_set", {"feature_spec": "main.ml.spec"}, "feature_spec"),
        ("score_batch", {"use_spark_native_join": True}, "use_spark_native_join"),
        ("write_table", {"trigger": {"once": True}}, "trigger"),
        ("write_table", {"checkpoint_location": "/tmp/cp"}, "checkpoint_location"),
        ("publish_table", {"streaming": True}, "streaming"),
        ("publish_table", {"publish_mode": "CONTINUOUS"}, "publish_mode"),
        ("publish_table", {"trigger": {"once": True}}, "trigger"),
        ("publish_table", {"checkpoint_location": "/tmp/cp"}, "checkpoint_location"),
        ("publish_table", {"online_table_name": "main.online.other"}, "online_table_name"),
        ("publish_table", {"online_store": None}, "online_store"),
        ("log_model", {"infer_input_example": True}, "infer_input_example"),
    ],
)
def test_unsupported_parameters_raise_naming_themselves(tables, spark, method, kwargs, match):
    import mlflow.sklearn

    fe, name = tables["fe"], tables["plain_name"]
    spine = spark.createDataFrame([(1, 0)], "plant_id int, label int")
    base = {
        "create_training_set": {"df": spine, "label": "label",
                                "feature_lookups": [FeatureLookup(table_name=name, lookup_key="plant_id")]},
        "score_batch": {"model_uri": "models:/absent/1", "df": spine},
        "write_table": {"name": name, "df": spine},
        "publish_table": {"source_table_name": name, "online_store": object()},
        "log_model": {"model": None, "artifact_path": "model", "flavor": mlflow.sklearn},
    }[method]
    call = {**base, **kwargs}
    if "feature_spec" in kwargs:
        call.pop("feature_lookups")
    with pytest.raises((NotImplementedError, ValueError), match=match):
        getattr(fe, method)(**call)


def test_defaults_equal_to_the_real_ones_are_accepted(tables, spark):
    """Passing the real client's default values explicitly is not 'a non-default value'."""
    fe, name = tables["fe"], tables["plain_name"]
    trigger = inspect.signature(FeatureEngineeringClient.write_table).parameters["trigger"].default
    row = spark.createDataFrame([(2, 6.0, "hard")], "plant_id int, price double, care string")
    fe.write_table(name=name, df=row, mode="merge", checkpoint_location=None, trigger=dict(trigger))
    assert fe.read_table(name=name).count() == 2
