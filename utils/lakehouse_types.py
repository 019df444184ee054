"""Data as Spark and Delta take it: pandas and Arrow input normalised, and a frame's schema against a table's.

Type normalisation of pandas and Arrow input: timestamps of any unit or zone become
``timestamp[us, tz=UTC]`` (naive ones are taken to be UTC); ``large_string``/``string_view`` become
``string``; dictionaries their value type; unsigned integers the next wider signed integer;
``float16`` -> ``float32``; ``date64`` -> ``date32``; every column nullable; the pandas index is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from utils.platform.runtime import get_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

_WIDENING = {
    "tinyint": ("smallint", "int", "bigint"), "smallint": ("int", "bigint"), "int": ("bigint",),
    "float": ("double",),
}


def _normal_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type Spark and Delta agree on for ``t`` (see the module docstring)."""
    types = pa.types
    if types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC")
    if types.is_dictionary(t):
        return _normal_type(t.value_type)
    if types.is_large_string(t) or types.is_string_view(t):
        return pa.string()
    if types.is_large_binary(t) or types.is_binary_view(t):
        return pa.binary()
    if types.is_unsigned_integer(t):
        return {8: pa.int16(), 16: pa.int32()}.get(t.bit_width, pa.int64())
    if types.is_float16(t):
        return pa.float32()
    if types.is_date64(t):
        return pa.date32()
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t) or types.is_list_view(t) \
            or types.is_large_list_view(t):
        return pa.list_(_normal_type(t.value_type))
    if types.is_map(t):
        return pa.map_(_normal_type(t.key_type), _normal_type(t.item_type))
    if types.is_struct(t):
        return pa.struct([pa.field(f.name, _normal_type(f.type)) for f in t])
    return t


def _cast(col: pa.ChunkedArray, target: pa.DataType, column: str) -> pa.ChunkedArray:
    if col.type == target:
        return col
    try:
        return col.cast(target, safe=True)
    except pa.ArrowInvalid as exc:
        if "timestamp" in str(col.type) and "would lose data" in str(exc):
            return col.cast(target, safe=False)  # nanoseconds -> microseconds
        raise ValueError(f"column {column!r}: cannot convert {col.type} to {target}: {exc}") from exc


def normalize_arrow(table: pa.Table) -> pa.Table:
    """``table`` with normalised, nullable types and no pandas metadata."""
    names = table.column_names
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise ValueError(f"duplicate column names {dupes}: rename them before writing")
    fields = [pa.field(f.name, _normal_type(f.type), nullable=True) for f in table.schema]
    columns = [_cast(col, f.type, f.name) for col, f in zip(table.columns, fields)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def to_arrow(df: Any) -> pa.Table:
    """A pandas DataFrame or Arrow table as a normalised Arrow table."""
    if isinstance(df, pa.Table):
        table = df
    elif isinstance(df, pd.DataFrame):
        table = pa.Table.from_pandas(df, preserve_index=False)
    elif isinstance(df, pa.RecordBatch) or hasattr(df, "__arrow_c_stream__"):
        table = pa.table(df)
    else:
        raise TypeError(
            f"cannot write a {type(df).__name__}: pass a Spark DataFrame, a pandas DataFrame or a pyarrow Table"
        )
    return normalize_arrow(table)


def is_spark(df: Any) -> bool:
    """True for a Spark DataFrame (classic or Spark Connect)."""
    return hasattr(df, "sparkSession") and hasattr(df, "schema") and hasattr(df, "write")


def spark_frame(df: Any) -> SparkDataFrame:
    """``df`` (Spark, pandas or Arrow) as a Spark DataFrame."""
    if is_spark(df):
        return df
    from pyspark.sql.pandas.types import from_arrow_schema

    table = to_arrow(df)  # the schema given: Spark Connect infers none from an empty table
    return get_spark().createDataFrame(table, schema=from_arrow_schema(table.schema))


def column_types(sdf: SparkDataFrame) -> dict[str, str]:
    """Column name -> Spark SQL type (``bigint``, ``string``, ...)."""
    return {f.name: f.dataType.simpleString() for f in sdf.schema.fields}


def _same_type(data: str, table: str) -> bool:
    return data == table or data == "void" or table in _WIDENING.get(data, ())


def schema_problem(data: dict[str, str], table: dict[str, str], merge_schema: bool) -> str | None:
    """What keeps columns of types ``data`` from a table of types ``table``, and the fix; None when they fit.

    Missing and extra columns fit with ``merge_schema``; type changes other than widening never do.
    """
    missing = [c for c in table if c not in data]
    extra = [c for c in data if c not in table]
    changed = [f"{c}: table {table[c]} -> data {data[c]}" for c in data if c in table and not _same_type(data[c], table[c])]
    if not (missing or extra or changed) or (merge_schema and not changed):
        return None
    parts = [f"{label} {cols}" for label, cols in
             (("missing columns", missing), ("extra columns", extra), ("type changes", changed)) if cols]
    fix = (
        "Type changes cannot be merged: cast the columns, or replace the schema with mode='overwrite', "
        "merge_schema=True" if merge_schema else
        "Pass merge_schema=True to evolve the table schema (adds new columns, fills missing ones with null), "
        "or select and cast the columns to match"
    )
    return f"{'; '.join(parts)}. {fix}"
