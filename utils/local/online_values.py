"""How the local online store keeps values: the *kind* of a published column, SQLite values and back.

A column's kind (int, float, bool, str, datetime, date, decimal, bytes or json) is recorded when it is
published, so lookups give back the Python types it was published with. The served model ships this
module (see ``feature_models._BUNDLED_MODULES``): it imports nothing from ``utils``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_SQL_TYPE = {"int": "INTEGER", "bool": "INTEGER", "float": "REAL", "bytes": "BLOB"}
_INTEGER_TYPES = {"tinyint", "smallint", "int", "bigint", "integer", "long", "short", "byte"}
_FLOAT_TYPES = {"float", "double"}


def kind_of(series: pd.Series) -> str:
    """How a pandas column is stored: int, float, bool, str, datetime, date, decimal, bytes or json."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "str"
    sample = series.dropna()
    if sample.empty:
        return "str"
    first = sample.iloc[0]
    for kind, types in (("bool", bool), ("int", int), ("float", float), ("datetime", (dt.datetime, pd.Timestamp)),
                        ("date", dt.date), ("decimal", Decimal), ("bytes", (bytes, bytearray)), ("str", str)):
        if isinstance(first, types):
            return kind
    return "json"


def sql_type(kind: str) -> str:
    """The SQLite column type of a column of ``kind``."""
    return _SQL_TYPE.get(kind, "TEXT")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def is_missing(value: Any) -> bool:
    """True for None, NaN, NaT and pandas' NA (never for containers)."""
    import pandas as pd

    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, set, bytes, str)) or hasattr(value, "__len__"):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def to_sql(value: Any, kind: str) -> Any:
    """A Python value as SQLite stores it for a column of ``kind`` (``None`` for missing)."""
    import pandas as pd

    if is_missing(value):
        return None
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()  # numpy scalar
    if kind == "datetime":
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.isoformat(sep=" ")
    if kind == "date":
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if kind == "bool":
        return int(bool(value))
    if kind == "decimal":
        return str(value)
    if kind == "json":
        return json.dumps(_jsonable(value))
    return value


def column_to_sql(series: pd.Series, kind: str) -> list[Any]:
    """A pandas column as a list of SQLite values."""
    if kind in {"int", "float", "str"}:
        return series.astype(object).where(series.notna(), None).tolist()
    return [to_sql(v, kind) for v in series.tolist()]


def from_sql(value: Any, kind: str) -> Any:
    """The Python value for a stored SQLite value of a column of ``kind``."""
    if value is None:
        return None
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "bool":
        return bool(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "json":
        return json.loads(value)
    if kind == "float":
        return float(value)
    return value


def key_value(value: Any, kind: str) -> Any:
    """A request's key value coerced to the key column's kind; None when it cannot match any key."""
    try:
        if kind == "int" and isinstance(value, str):
            value = int(value.strip())
        elif kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif kind == "str" and not isinstance(value, str) and not is_missing(value):
            value = str(value.item() if hasattr(value, "item") else value)
        value = to_sql(value, kind)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if isinstance(value, (int, float, str, bytes)) else None


def typed_column(values: list[Any], data_type: str | None) -> Any:
    """A column of looked-up values with the dtype the training frame had (int, float, datetime, ...)."""
    import numpy as np
    import pandas as pd

    t = (data_type or "").lower()
    has_null = any(v is None for v in values)
    try:
        if t in _INTEGER_TYPES and not has_null:
            return np.array(values, dtype=np.int64)
        if t in _INTEGER_TYPES or t in _FLOAT_TYPES or t.startswith("decimal"):
            return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        if t.startswith("timestamp"):
            return pd.to_datetime(pd.Series(values, dtype=object), errors="coerce")
        if t == "boolean" and not has_null:
            return np.array(values, dtype=bool)
        if t == "string" and all(v is None or isinstance(v, str) for v in values):
            return np.array(values, dtype=object)  # what infer_objects gives text, without a Series
    except (TypeError, ValueError):  # a value of another type (e.g. a request override): keep it as sent
        pass
    return pd.Series(values, dtype=object).infer_objects()
