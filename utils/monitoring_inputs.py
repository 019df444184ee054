"""Checks of the Spark DataFrames ``utils.monitoring``, ``utils.drift`` and ``utils.model_quality`` read (columns
present, numeric or flat types, a timestamp window column); each raises ``ValueError`` naming the column and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def require_columns(df: DataFrame, cols: Iterable[str], side: str) -> None:
    """Raise ``ValueError`` naming the columns of ``cols`` missing from ``df`` (the ``side`` data)."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"column(s) {missing} not found in the {side} data (it has {df.columns}); "
            "pass the right column names or select/rename them first"
        )


def column_type(df: DataFrame, col: str) -> Any:
    """The Spark data type of column ``col``."""
    return df.schema[col].dataType


def is_numeric(dtype: Any) -> bool:
    """Numbers and booleans."""
    from pyspark.sql import types as T

    return isinstance(dtype, (T.NumericType, T.BooleanType))


def is_atomic(dtype: Any) -> bool:
    """Not an array, map or struct."""
    from pyspark.sql import types as T

    return not isinstance(dtype, (T.ArrayType, T.MapType, T.StructType))


def window_column(df: DataFrame, window_col: str) -> Column:
    """Column ``window_col`` as a timestamp (a date is cast); ``ValueError`` for any other type."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    require_columns(df, [window_col], "monitored")
    dtype = column_type(df, window_col)
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return F.col(window_col)
    if isinstance(dtype, T.DateType):
        return F.col(window_col).cast("timestamp")
    raise ValueError(
        f"window column {window_col!r} has type {dtype.simpleString()}, not a timestamp or date; "
        f"convert it with F.to_timestamp({window_col!r}) first"
    )
