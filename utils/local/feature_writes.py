"""The local feature store's write checks: what ``create_table`` and ``write_table`` accept, before anything is written.

Data is checked as one Arrow table (computed once): keys present, not null, not duplicated; a write's
columns must match the table's (or widen to its types). A rejected write leaves the table unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from utils.local.feature_lookups import TIME_TYPES
from utils.local.feature_registry import TableMeta, schema_items

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


class FeatureTableWriteError(ValueError):
    """Data cannot be written to a feature table as given; the table was left unchanged."""


def spark_df(df: Any) -> DataFrame:
    """``df`` as a Spark DataFrame: a Spark DataFrame as is, a pandas DataFrame or Arrow table converted.

    Raises:
        TypeError: ``df`` is none of those.
    """
    from pyspark.sql import DataFrame

    if isinstance(df, DataFrame):
        return df
    try:
        import pandas as pd
        import pyarrow as pa
    except ImportError:  # pragma: no cover
        pd = pa = None
    if pd is not None and isinstance(df, (pd.DataFrame, pa.Table)):
        from utils.platform.runtime import get_spark

        if len(df) == 0:  # Spark Connect infers no schema from no rows: take Arrow's
            from pyspark.sql.pandas.types import from_arrow_schema

            table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
            return get_spark().createDataFrame(table, schema=from_arrow_schema(table.schema))
        return get_spark().createDataFrame(df)
    raise TypeError(f"expected a Spark DataFrame, got {type(df).__name__}")


def to_arrow(df: Any) -> Any:
    """A Spark or pandas DataFrame (or Arrow table) as an Arrow table, computed once."""
    import pyarrow as pa

    if isinstance(df, pa.Table):
        return df
    return spark_df(df).toArrow()


def empty_arrow(schema: StructType) -> Any:
    """An Arrow table of no rows with Spark ``schema``."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema).empty_table()


def timeseries_argument(timeseries_column: Any, kwargs: dict[str, Any]) -> str | None:
    """``create_table``'s timeseries column, also given as ``timestamp_keys=``/``timeseries_columns=`` (popped
    from ``kwargs``), possibly as a list of one; raises ``ValueError`` for a list of more."""
    timeseries_column = timeseries_column or kwargs.pop("timestamp_keys", None) or kwargs.pop(
        "timeseries_columns", None
    )
    if isinstance(timeseries_column, list):
        if len(timeseries_column) > 1:
            raise ValueError("Setting multiple timeseries keys is not supported.")
        timeseries_column = timeseries_column[0] if timeseries_column else None
    return timeseries_column


def _check_keys_argument(name: str, pks: list[str], timeseries_column: str | None) -> None:
    if not pks:
        raise ValueError(f"feature table {name!r} needs primary_keys")
    if len(set(pks)) != len(pks):
        raise ValueError(f"primary_keys {pks} has duplicates")
    if timeseries_column is not None and timeseries_column not in pks:
        raise ValueError(
            f"Timeseries column '{timeseries_column}' is not in primary_keys. Timeseries columns must be primary keys."
        )
    if timeseries_column is not None and len(pks) < 2:
        raise ValueError(f"feature table {name!r} needs a primary key besides the timeseries column")


def new_table_schema(name: str, pks: list[str], timeseries_column: str | None, partition_columns: list[str],
                     df: Any, schema: StructType | None) -> tuple[DataFrame | None, StructType]:
    """``create_table``'s arguments checked: ``df`` as a Spark DataFrame (or None) and the table's schema.

    Raises ``ValueError`` for missing or duplicate keys, a timeseries column that is not a key or not a
    time, neither or mismatched ``df``/``schema``, and key or partition columns the schema lacks.
    """
    _check_keys_argument(name, pks, timeseries_column)
    if df is None and schema is None:
        raise ValueError("Either schema or df must be provided")
    if df is not None:
        df = spark_df(df)
        if schema is not None and schema_items(schema) != schema_items(df.schema):
            raise ValueError(
                "Provide either 'schema' or 'df' arguments. If both arguments are provided, their schemas must match."
            )
    spark_schema = schema if schema is not None else df.schema
    cols = {f.name for f in spark_schema.fields}
    missing = [k for k in pks + partition_columns if k not in cols]
    if missing:
        raise ValueError(f"feature table {name!r}: key/partition columns {missing} are not in the schema")
    if timeseries_column is not None and spark_schema[timeseries_column].dataType.simpleString() not in TIME_TYPES:
        raise ValueError(
            f"timeseries column {timeseries_column!r} is {spark_schema[timeseries_column].dataType.simpleString()}, "
            "expected a timestamp or date"
        )
    return df, spark_schema


def _writable(incoming: str, table: str) -> bool:
    """Whether a column of Spark type ``incoming`` can be written to a table column of type ``table``."""
    widening = {"tinyint": 0, "smallint": 1, "int": 2, "bigint": 3}
    if incoming == table:
        return True
    if incoming in widening and table in widening:
        return widening[incoming] <= widening[table]
    return (incoming, table) in {("float", "double"), ("timestamp_ntz", "timestamp"), ("date", "date")}


def conform(df: DataFrame, meta: TableMeta) -> tuple[DataFrame, list[str]]:
    """``df`` with the table's columns first, cast to the table's types, then its new columns (also returned).

    Raises:
        FeatureTableWriteError: ``df`` lacks a column of the table, or has one of a type that does not widen to it.
    """
    from pyspark.sql import functions as F

    name = meta.name
    incoming = dict(schema_items(df.schema))
    missing = [c for c in meta.schema if c not in incoming]
    if missing:
        raise FeatureTableWriteError(f"cannot write to {name!r}: df lacks columns {missing} of the feature table; "
                                     "include every column (the table was not changed)")
    wrong = {c: (incoming[c], t) for c, t in meta.schema.items() if not _writable(incoming[c], t)}
    if wrong:
        details = ", ".join(f"{c!r} is {got} but the table has {want}" for c, (got, want) in wrong.items())
        raise FeatureTableWriteError(f"cannot write to {name!r}: schema mismatch: {details}; cast those columns "
                                     "(the table was not changed)")
    new_columns = [c for c in incoming if c not in meta.schema]
    conformed = df.select(
        *[F.col(f"`{c}`").cast(t).alias(c) if incoming[c] != t else F.col(f"`{c}`") for c, t in meta.schema.items()],
        *[F.col(f"`{c}`") for c in new_columns],
    )
    return conformed, new_columns


def check_keys(data: Any, name: str, keys: Sequence[str]) -> None:
    """Raise ``FeatureTableWriteError`` if the Arrow table ``data`` lacks a key column or has a null or
    duplicate primary key (nothing is written)."""
    import pyarrow.compute as pc

    missing = [k for k in keys if k not in data.column_names]
    if missing:
        raise FeatureTableWriteError(f"cannot write to {name!r}: df lacks primary key columns {missing}")
    nulls = [k for k in keys if data.column(k).null_count]
    if nulls:
        raise FeatureTableWriteError(f"cannot write to {name!r}: df has rows with a null primary key in {nulls}; "
                                     "drop or fix them (the table was not changed)")
    counts = data.select(list(keys)).group_by(list(keys)).aggregate([([], "count_all")])
    dups = counts.filter(pc.greater(counts.column("count_all"), 1))
    if dups.num_rows:
        examples = dups.slice(0, 3).select(list(keys)).to_pylist()
        raise FeatureTableWriteError(
            f"cannot write to {name!r}: df has {dups.num_rows} duplicate primary key value(s) of {list(keys)}, "
            f"e.g. {examples}; deduplicate it first, e.g. keep the latest row per key (the table was not changed)"
        )

