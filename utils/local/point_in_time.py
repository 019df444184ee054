"""The local feature store's join engine: point-in-time (as-of) and exact lookups, in Spark.

Point-in-time lookups run as a union + running window, one pass for all the lookups that share a
lookup key and timestamp (see :func:`point_in_time_join_tables`); :func:`apply_lookups` joins
resolved lookups (``utils.local.feature_spec.LookupSpec``) into a DataFrame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from utils.local.feature_spec import LookupSpec

_TS = "__fs_ts"
_SRC = "__fs_src"
_ROW = "__fs_row"
_FTS = "__fs_feature_ts"
_LO = "__fs_spine_lo"
_HI = "__fs_spine_hi"


def _seconds(window: dt.timedelta | float) -> float:
    return float(window.total_seconds() if isinstance(window, dt.timedelta) else window)


def _cols(names: Sequence[str]) -> list[Column]:
    from pyspark.sql import functions as F

    return [F.col(f"`{c}`") for c in names]


@dataclass(frozen=True)
class AsOfFeatures:
    """One feature table's part of a point-in-time join (see :func:`point_in_time_join_tables`).

    ``features`` holds keys ``feature_keys`` (in the order of the join's lookup keys) and the time
    ``timeseries_column``; ``outputs`` maps feature column to output column name;
    ``lookback_window`` (a ``timedelta`` or seconds) bounds how old a matched row may be.
    """

    features: DataFrame
    feature_keys: Sequence[str]
    timeseries_column: str
    outputs: Mapping[str, str]
    lookback_window: dt.timedelta | float | None = None


def _stack(df: DataFrame, lookup_key: Sequence[str], timestamp_lookup_key: str,
           tables: Sequence[AsOfFeatures], rows: Sequence[str]) -> DataFrame:
    """The spine rows (``_SRC`` 1) and every table's feature rows (``_SRC`` 0, one struct column each) in one frame."""
    from pyspark.sql import functions as F

    parts = [
        t.features.select(
            *[F.col(fk).cast(df.schema[lk].dataType).alias(lk) for fk, lk in zip(t.feature_keys, lookup_key)],
            F.col(t.timeseries_column).cast("timestamp").alias(_TS),
            F.lit(0).alias(_SRC),
            F.struct(F.col(t.timeseries_column).cast("timestamp").alias(_FTS),
                     *[F.col(f).alias(o) for f, o in t.outputs.items()]).alias(row),
        )
        for t, row in zip(tables, rows)
    ]
    stacked = df.select("*", F.col(timestamp_lookup_key).cast("timestamp").alias(_TS), F.lit(1).alias(_SRC),
                        *[F.lit(None).cast(part.schema[row].dataType).alias(row) for part, row in zip(parts, rows)])
    for part in parts:
        stacked = stacked.unionByName(part, allowMissingColumns=True)
    return stacked


def point_in_time_join_tables(df: DataFrame, lookup_key: Sequence[str], timestamp_lookup_key: str,
                              tables: Sequence[AsOfFeatures]) -> DataFrame:
    """``df`` plus, per row and per table of ``tables``, the features of that table's latest row at or before its time.

    A table's row matches when its keys equal the row's ``lookup_key`` values and its timeseries
    column is <= the row's ``timestamp_lookup_key`` (and >= that time minus the table's lookback
    window when given); no match gives nulls. Returns ``df``'s columns, then each table's outputs in order.

    How: the spine rows and every table's feature rows are stacked into one frame, partitioned by
    key and ordered by time (feature rows before spine rows at equal times), and each spine row
    takes, per table, the last non-null feature struct seen so far: ``last(..., ignorenulls)`` over
    a running window. That is one shuffle and one sort for all the tables, linear in the rows of
    every side, whatever the number of feature rows per key, with no row ids and no join back
    (duplicate spine rows stay).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = [f"{_ROW}{i}" for i in range(len(tables))]
    stacked = _stack(df, lookup_key, timestamp_lookup_key, tables, rows)
    window = (
        Window.partitionBy(*lookup_key)
        .orderBy(F.col(_TS).asc_nulls_first(), F.col(_SRC))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    matched = stacked.withColumns({row: F.last(row, ignorenulls=True).over(window) for row in rows})
    matched = matched.where(F.col(_SRC) == 1)
    for t, row in zip(tables, rows):
        if t.lookback_window is not None:
            age = F.col(_TS).cast("double") - F.col(f"{row}.{_FTS}").cast("double")
            matched = matched.withColumn(row, F.when(age <= F.lit(_seconds(t.lookback_window)), F.col(row)))
    return matched.select(*_cols(df.columns),
                          *[F.col(row)[o].alias(o) for t, row in zip(tables, rows) for o in t.outputs.values()])


def exact_join(df: DataFrame, features: DataFrame, lookup_key: Sequence[str], feature_keys: Sequence[str],
               outputs: Mapping[str, str]) -> DataFrame:
    """``df`` left-joined to the ``features`` row whose keys equal its ``lookup_key`` values."""
    from pyspark.sql import functions as F

    right = features.select(
        *[F.col(fk).cast(df.schema[lk].dataType).alias(lk) for fk, lk in zip(feature_keys, lookup_key)],
        *[F.col(f).alias(o) for f, o in outputs.items()],
    )
    joined = df.join(right, on=list(lookup_key), how="left")
    return joined.select(*_cols(df.columns), *_cols(list(outputs.values())))


def within_spine_time_range(features: DataFrame, spine: DataFrame, timeseries_column: str, timestamp_lookup_key: str,
                            lookback_window: dt.timedelta | float | None = None) -> DataFrame:
    """The ``features`` rows a point-in-time lookup from ``spine`` can match (``use_timeseries_filtering``).

    Rows stamped after the spine's latest ``timestamp_lookup_key`` can never match; with a
    ``lookback_window`` (a ``timedelta`` or seconds) neither can rows older than the spine's earliest
    time minus the window. The bounds are one aggregate of the spine, broadcast to the feature rows:
    nothing runs before the result is computed, and the join's result is the same as without the filter.
    """
    from pyspark.sql import functions as F

    spine_time = F.col(timestamp_lookup_key).cast("timestamp").cast("double")
    bounds = spine.agg(F.min(spine_time).alias(_LO), F.max(spine_time).alias(_HI))
    feature_time = F.col(timeseries_column).cast("timestamp").cast("double")
    keep = feature_time <= F.col(_HI)
    if lookback_window is not None:
        keep = keep & (feature_time >= F.col(_LO) - F.lit(_seconds(lookback_window)))
    return features.crossJoin(F.broadcast(bounds)).where(keep).drop(_LO, _HI)


def latest_rows(features: DataFrame, keys: Sequence[str], timeseries_column: str) -> DataFrame:
    """The row with the latest ``timeseries_column`` for each key."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy(*keys).orderBy(F.col(timeseries_column).desc())
    return features.withColumn("__fs_rank", F.row_number().over(window)).where("__fs_rank = 1").drop("__fs_rank")


# ---------------------------------------------------------------- applying resolved lookups


@dataclass
class _Group:
    """Lookups of one table version with the same keys, timestamp and window: read and joined once."""

    lookup: LookupSpec
    outputs: dict[str, str]
    defaults: dict[str, Any]

    @property
    def as_of(self) -> bool:
        return bool(self.lookup.timeseries_column and self.lookup.timestamp_lookup_key)


def _group_lookups(columns: Sequence[str], lookups: Sequence[LookupSpec], use_pinned_versions: bool) -> list[_Group]:
    """The lookups with outputs not already in ``columns``, merged where their keys are all in ``columns``."""
    groups: list[_Group] = []
    index: dict[tuple[Any, ...], int] = {}
    for lk in lookups:
        outputs = {f: o for f, o in lk.outputs.items() if o not in columns}
        if not outputs:
            continue
        version = lk.table_version if use_pinned_versions else None
        group_key = (lk.table_name, version, tuple(lk.lookup_key), lk.timestamp_lookup_key, lk.lookback_window_seconds)
        keys_from_source = all(k in columns for k in lk.lookup_key)
        if keys_from_source and group_key in index:
            group = groups[index[group_key]]
            group.outputs.update(outputs)
            group.defaults.update(lk.default_values)
            continue
        if keys_from_source:
            index[group_key] = len(groups)
        groups.append(_Group(lk, dict(outputs), dict(lk.default_values)))
    return groups


def _plan_passes(columns: Sequence[str], groups: Sequence[_Group]) -> list[list[int]]:
    """Indexes of ``groups`` joined in one pass: point-in-time groups whose keys and timestamp are
    ``columns`` share one pass per (keys, timestamp); every other group has a pass of its own."""
    passes: list[list[int]] = []
    by_key: dict[tuple[Any, ...], int] = {}
    for i, group in enumerate(groups):
        lk = group.lookup
        from_source = group.as_of and all(k in columns for k in [*lk.lookup_key, lk.timestamp_lookup_key])
        pass_key = (tuple(lk.lookup_key), lk.timestamp_lookup_key)
        if from_source and pass_key in by_key:
            passes[by_key[pass_key]].append(i)
            continue
        if from_source:
            by_key[pass_key] = len(passes)
        passes.append([i])
    return passes


def _table_reader(use_pinned_versions: bool) -> Callable[[LookupSpec], DataFrame]:
    """Reads a lookup's table (its pinned version, or the latest); each table version is read once."""
    from utils import lakehouse

    tables: dict[tuple[str, int | None], DataFrame] = {}

    def read(lk: LookupSpec) -> DataFrame:
        version = lk.table_version if use_pinned_versions else None
        if (lk.table_name, version) not in tables:
            tables[(lk.table_name, version)] = lakehouse.read(lk.table_name, version=version)
        return tables[(lk.table_name, version)]

    return read


def _join_pass(result: DataFrame, df: DataFrame, groups: Sequence[_Group], read: Callable[[LookupSpec], DataFrame],
               use_timeseries_filtering: bool) -> DataFrame:
    """``result`` with one pass of groups joined: point in time together, or one exact (latest-value) lookup."""
    first = groups[0].lookup
    if not groups[0].as_of:
        table = read(first)
        if first.timeseries_column:  # no timestamp to look up at: the latest value, as served online
            table = latest_rows(table, first.primary_keys, first.timeseries_column)
        return exact_join(result, table, first.lookup_key, first.primary_keys, groups[0].outputs)
    parts = []
    for group in groups:
        lk, table = group.lookup, read(group.lookup)
        if use_timeseries_filtering:
            spine = df if lk.timestamp_lookup_key in df.columns else result  # bounds from the cheaper plan
            table = within_spine_time_range(
                table, spine, lk.timeseries_column, lk.timestamp_lookup_key, lk.lookback_window_seconds
            )
        parts.append(
            AsOfFeatures(table, lk.primary_keys, lk.timeseries_column, group.outputs, lk.lookback_window_seconds)
        )
    return point_in_time_join_tables(result, first.lookup_key, first.timestamp_lookup_key, parts)


def _fill_defaults(result: DataFrame, group: _Group) -> DataFrame:
    """``result`` with the nulls of ``group``'s outputs replaced by their non-null default values."""
    from pyspark.sql import functions as F

    for out in group.outputs.values():
        if out in group.defaults and group.defaults[out] is not None:
            dtype = result.schema[out].dataType
            result = result.withColumn(out, F.coalesce(F.col(f"`{out}`"), F.lit(group.defaults[out]).cast(dtype)))
    return result


def apply_lookups(df: DataFrame, lookups: Sequence[LookupSpec], use_pinned_versions: bool = True,
                  use_timeseries_filtering: bool = False) -> DataFrame:
    """``df`` with every lookup's features joined in (columns already in ``df`` are kept, not looked up).

    Returns ``df``'s columns, then the lookups' outputs in order; nulls of an output with a default
    value get the default. ``use_pinned_versions`` reads each table at the lookup's ``table_version``
    (else its latest). ``use_timeseries_filtering`` first narrows each point-in-time lookup's table to
    the time range of ``df`` (see :func:`within_spine_time_range`); the result is the same.
    """
    groups = _group_lookups(df.columns, lookups, use_pinned_versions)
    read = _table_reader(use_pinned_versions)
    result = df
    for members in _plan_passes(df.columns, groups):
        result = _join_pass(result, df, [groups[i] for i in members], read, use_timeseries_filtering)
        for i in members:
            result = _fill_defaults(result, groups[i])
    return result.select(*_cols([*df.columns, *[out for g in groups for out in g.outputs.values()]]))
