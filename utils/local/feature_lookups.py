"""The local feature store's lookups: ``FeatureLookup`` objects checked against the tables, and training sets.

:func:`resolve_lookups` validates every lookup before any data is read and turns it into a
``utils.local.feature_spec.LookupSpec``; :func:`training_spec` adds the labels and column checks of
``create_training_set``; :class:`LocalTrainingSet` joins them in (``utils.local.point_in_time``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from utils.local.feature_registry import TableMeta, require_table
from utils.local.feature_spec import FeatureSpec, LookupSpec, yaml_safe
from utils.local.point_in_time import apply_lookups

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

_INTEGRAL = {"tinyint", "smallint", "int", "bigint"}
TIME_TYPES = {"timestamp", "timestamp_ntz", "date"}
"""Spark types a timeseries column or timestamp lookup key may have."""


class FeatureLookupError(ValueError):
    """A FeatureLookup (or the training DataFrame it is applied to) is invalid."""


def as_list(value: str | Sequence[str] | None) -> list[str]:
    """``value`` as a list of names: None is empty, one string is a list of one."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _compatible(left: str, right: str) -> bool:
    return left == right or (left in _INTEGRAL and right in _INTEGRAL)


def _check_lookup_keys(where: str, lookup_key: list[str], meta: TableMeta, available: dict[str, str],
                       source_cols: set[str]) -> None:
    if len(lookup_key) != len(meta.primary_keys):
        raise FeatureLookupError(
            f"{where}: lookup_key {lookup_key} has {len(lookup_key)} column(s) but the table's primary keys "
            f"are {meta.primary_keys}: give one spine column per primary key, in that order"
        )
    for lk, pk in zip(lookup_key, meta.primary_keys):
        if lk not in available:
            raise FeatureLookupError(f"{where}: lookup key {lk!r} is not a column of the training DataFrame "
                                     f"(columns: {sorted(source_cols)}): add it to df or fix lookup_key")
        if not _compatible(available[lk], meta.schema[pk]):
            raise FeatureLookupError(
                f"{where}: lookup key {lk!r} is {available[lk]} in the DataFrame but primary key {pk!r} is "
                f"{meta.schema[pk]} in the table: cast it, e.g. df.withColumn({lk!r}, F.col({lk!r}).cast("
                f"{meta.schema[pk]!r}))"
            )


def _check_timestamp_key(where: str, ts_key: str | None, meta: TableMeta, available: dict[str, str],
                         source_cols: set[str]) -> None:
    if ts_key is None:
        return
    if meta.timeseries_column is None:
        raise FeatureLookupError(
            f"{where}: timestamp_lookup_key={ts_key!r} given but the table has no timeseries column: "
            "drop timestamp_lookup_key for an exact key lookup"
        )
    if ts_key not in available:
        raise FeatureLookupError(f"{where}: timestamp lookup key {ts_key!r} is not a column of the training DataFrame "
                                 f"(columns: {sorted(source_cols)})")
    if available[ts_key] not in TIME_TYPES:
        raise FeatureLookupError(
            f"{where}: timestamp lookup key {ts_key!r} is {available[ts_key]}, expected a timestamp or "
            f"date: convert it with F.to_timestamp({ts_key!r})"
        )


def _feature_names(where: str, fl: Any, meta: TableMeta) -> list[str]:
    names = list(fl.feature_names) if fl.feature_names else list(meta.features)
    for name in names:
        if name in meta.keys:
            raise FeatureLookupError(f"{where}: {name!r} is a key of the table, not a feature")
        if name not in meta.schema:
            raise FeatureLookupError(
                f"{where}: feature {name!r} is not in the table (features: {meta.features}): fix feature_names"
            )
    return names


def _outputs(where: str, fl: Any, names: list[str], source_cols: set[str], seen: dict[str, str]) -> dict[str, str]:
    """Feature → output column of one lookup; records its outputs in ``seen`` (output → lookup)."""
    rename = dict(getattr(fl, "_rename_outputs", None) or {})
    unknown_renames = [f for f in rename if f not in names]
    if unknown_renames:
        raise FeatureLookupError(f"{where}: rename_outputs names {unknown_renames}, which are not looked up")
    outputs = {n: rename.get(n, n) for n in names}
    for out in outputs.values():
        if out in source_cols:
            raise FeatureLookupError(f"{where}: output column {out!r} is already a column of the training DataFrame: "
                                     "drop it from df or rename the feature with rename_outputs")
        if out in seen:
            raise FeatureLookupError(f"{where}: output column {out!r} is also produced by {seen[out]}: "
                                     "use rename_outputs")
        seen[out] = where
    defaults = dict(fl.default_values or {})
    stray = [d for d in defaults if d not in outputs.values()]
    if stray:
        raise FeatureLookupError(f"{where}: default_values for {stray}, which are not output columns of this lookup "
                                 f"({list(outputs.values())})")
    return outputs


def _resolve_one(i: int, fl: Any, available: dict[str, str], source_cols: set[str], seen: dict[str, str]) -> LookupSpec:
    """One FeatureLookup checked and resolved (version not pinned); adds its outputs' types to ``available``."""
    if not hasattr(fl, "table_name") or not hasattr(fl, "lookup_key"):
        raise TypeError(f"feature_lookups[{i}] is a {type(fl).__name__}, not a FeatureLookup")
    where = f"FeatureLookup(table_name={fl.table_name!r})"
    meta = require_table(fl.table_name, with_version=False)  # versions once all lookups are valid
    lookup_key = as_list(fl.lookup_key)
    _check_lookup_keys(where, lookup_key, meta, available, source_cols)
    _check_timestamp_key(where, fl.timestamp_lookup_key, meta, available, source_cols)
    names = _feature_names(where, fl, meta)
    outputs = _outputs(where, fl, names, source_cols, seen)
    for f, out in outputs.items():
        available[out] = meta.schema[f]
    window = fl.lookback_window
    return LookupSpec(table_name=fl.table_name, lookup_key=lookup_key, feature_names=names,
                      rename_outputs={f: o for f, o in outputs.items() if f != o},
                      timestamp_lookup_key=fl.timestamp_lookup_key,
                      lookback_window_seconds=window.total_seconds() if window is not None else None,
                      default_values={k: yaml_safe(v) for k, v in dict(fl.default_values or {}).items()},
                      table_version=None, table_id=meta.table_id, primary_keys=list(meta.primary_keys),
                      timeseries_column=meta.timeseries_column)


def resolve_lookups(
    df_schema: StructType, feature_lookups: Sequence[Any], pin_versions: bool = True
) -> tuple[list[LookupSpec], dict[str, str]]:
    """Validate ``feature_lookups`` against the feature tables and ``df``; raise naming the first problem.

    Checks, before any data is read: every table exists, every feature is a column of its table,
    every lookup key (and timestamp lookup key) is a column of ``df`` (or an output of an earlier
    lookup) of a type matching the table's key, output names are unique and do not shadow ``df``.
    No Spark job runs until all of that passed; then, with ``pin_versions``, each table's current
    Delta version is pinned. Returns the resolved lookups and the Spark type of every column they produce.

    Raises:
        TypeError: ``feature_lookups`` is not a list (or tuple) of FeatureLookup objects.
        FeatureTableNotFoundError: a lookup's table is not a feature table.
        FeatureLookupError: any other problem of a lookup.
    """
    if not isinstance(feature_lookups, (list, tuple)):
        raise TypeError("feature_lookups must be a list of FeatureLookup objects")
    available = {f.name: f.dataType.simpleString() for f in df_schema.fields}
    source_cols = set(available)
    seen: dict[str, str] = {}
    specs = [_resolve_one(i, fl, available, source_cols, seen) for i, fl in enumerate(feature_lookups)]
    if pin_versions:  # reading a Delta version runs a Spark job: only now that the input is known good
        from utils import lakehouse

        versions = {t: lakehouse.current_version(t) for t in dict.fromkeys(lk.table_name for lk in specs)}
        for lk in specs:
            lk.table_version = versions[lk.table_name]
    return specs, {c: t for c, t in available.items() if c not in source_cols}


def training_spec(df: DataFrame, feature_lookups: Sequence[Any], label: str | list[str] | None,
                  exclude_columns: list[str] | None) -> FeatureSpec:
    """The feature spec of a training set of ``df`` (a Spark DataFrame), its lookups pinned; nothing joined yet.

    Raises ``ValueError`` for duplicate columns, a label missing, excluded or shadowed by a feature, or an
    excluded column that is neither a column nor an output; the lookups raise as :func:`resolve_lookups`.
    """
    columns = list(df.columns)
    if len(set(columns)) != len(columns):
        raise ValueError(f"Found duplicate DataFrame column names {columns}.")
    labels = as_list(label)
    exclude = list(exclude_columns or [])
    for lab in labels:
        if lab not in columns:
            raise ValueError(f"Label column '{lab}' was not found in DataFrame (columns: {columns})")
        if lab in exclude:
            raise ValueError(f"Label column '{lab}' cannot be excluded")
    lookups, feature_types = resolve_lookups(df.schema, feature_lookups)
    outputs = [o for lk in lookups for o in lk.outputs.values()]
    for lab in labels:
        if lab in outputs:
            raise ValueError(f"Feature cannot have same output name as label '{lab}'.")
    unknown = [c for c in exclude if c not in columns and c not in outputs]
    if unknown:
        raise ValueError(f"exclude_columns {unknown} are neither DataFrame columns nor feature outputs")
    output = [c for c in [*columns, *outputs] if c not in exclude]
    data_types = {**{f.name: f.dataType.simpleString() for f in df.schema.fields}, **feature_types}
    return FeatureSpec(lookups=lookups, source_columns=columns, labels=labels, exclude_columns=exclude,
                       output_columns=output, data_types={c: t for c, t in data_types.items() if c in output},
                       created_at=dt.datetime.now(dt.UTC).isoformat())


class LocalTrainingSet:
    """A training set: the spine, the resolved lookups, and ``load_df()`` to build it."""

    def __init__(self, df: DataFrame, feature_spec: FeatureSpec, use_timeseries_filtering: bool = False):
        self._df = df
        self._spec = feature_spec
        self._use_timeseries_filtering = use_timeseries_filtering

    @property
    def feature_spec(self) -> FeatureSpec:
        """Tables, Delta versions, keys and features this training set uses (its lineage)."""
        return self._spec

    @property
    def labels(self) -> list[str]:
        """Label column names."""
        return list(self._spec.labels)

    def load_df(self) -> DataFrame:
        """The training DataFrame: spine columns, looked-up features and labels, minus excluded columns."""
        from pyspark.sql import functions as F

        joined = apply_lookups(self._df, self._spec.lookups, use_pinned_versions=True,
                               use_timeseries_filtering=self._use_timeseries_filtering)
        return joined.select(*[F.col(f"`{c}`") for c in self._spec.output_columns])
