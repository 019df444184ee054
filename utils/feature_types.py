"""The model's input columns as exact, stable types: the one conversion training, serving and scoring share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from utils.plantly_columns import BOOLEAN, CATEGORICAL, FEATURES, NUMERIC

# Numeric inputs whose values are whole numbers (counts, days, a list position): a fraction there is refused.
WHOLE_NUMBER = ("tenure_days", "cust_impressions_30d", "plant_impressions_30d", "position")
MAX_EXACT_INT = 2**53  # every integer up to this magnitude is exactly a float64, the numeric input type
_TRUE_WORDS, _FALSE_WORDS = {"true", "t", "yes", "1"}, {"false", "f", "no", "0"}


class FeatureTypeError(ValueError):
    """A model input column holds a value of the wrong type, or one the model input cannot hold exactly.

    ``column`` names the column; the message names it too, with an example value and the row count.
    """

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _refuse(column: str, bad: pd.Series, why: str) -> FeatureTypeError:
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in bad.head(3))
    return FeatureTypeError(column, f"model input column {column!r}: {len(bad)} value(s) {why} (e.g. {shown})")


def numeric_column(values: pd.Series, column: str) -> pd.Series:
    """``values`` as float64 (null -> NaN) when that is exact; raises ``FeatureTypeError`` naming ``column`` otherwise.

    Accepted: integers of any width (signed, unsigned, nullable) up to 2**53 in magnitude, floats,
    decimals, and numbers written as text; for ``WHOLE_NUMBER`` columns only whole values (``3.0`` is 3).
    Refused: booleans, text that is no number, infinities, integers beyond 2**53 (float64 would round
    them) and fractions in a whole-number column.
    """
    api = pd.api.types
    if api.is_bool_dtype(values.dtype):
        raise _refuse(column, values, "are booleans, not numbers")
    if api.is_integer_dtype(values.dtype):
        present = values.dropna()
        too_big = present[(present > MAX_EXACT_INT) | (present < -MAX_EXACT_INT)]
        if len(too_big):
            raise _refuse(column, too_big, "exceed 2**53 in magnitude and would be rounded as float64")
        return pd.Series(values.to_numpy(dtype=float, na_value=np.nan), index=values.index, name=column)
    if api.is_float_dtype(values.dtype):
        out = pd.Series(values.to_numpy(dtype=float, na_value=np.nan), index=values.index, name=column)
    else:  # object or text: check each value
        out = pd.Series([_number(v, column) for v in values], index=values.index, dtype=float, name=column)
    infinite = out[np.isinf(out.to_numpy())]
    if len(infinite):
        raise _refuse(column, infinite, "are infinite")
    if column in WHOLE_NUMBER:
        present = out.dropna()
        fractional = present[present != np.floor(present)]
        if len(fractional):
            raise _refuse(column, fractional, "are not whole numbers")
        too_big = present[present.abs() > MAX_EXACT_INT]
        if len(too_big):
            raise _refuse(column, too_big, "exceed 2**53 in magnitude and would be rounded as float64")
    return out


def _number(value: Any, column: str) -> float:
    """One value of a numeric column as a float (NaN for null); raises ``FeatureTypeError`` if not exactly a number."""
    import decimal
    import numbers

    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        raise _refuse(column, pd.Series([value]), "are booleans, not numbers")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise _refuse(column, pd.Series([value]), "are not numbers") from None
    if isinstance(value, numbers.Integral):
        if abs(int(value)) > MAX_EXACT_INT:
            raise _refuse(column, pd.Series([value]), "exceed 2**53 in magnitude and would be rounded as float64")
        return float(value)
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        return float(value)
    raise _refuse(column, pd.Series([value], dtype=object), f"are {type(value).__name__}, not numbers")


def _category_column(values: pd.Series, column: str) -> pd.Series:
    """Text column: null -> ``"unknown"``; refuses values that are not text (a number where a category belongs)."""
    present = values.dropna()
    if not (pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype)):
        wrong = present[[not isinstance(v, str) for v in present]]
        if len(wrong):
            raise _refuse(column, wrong, "are not text")
    return values.astype("object").where(values.notna(), "unknown").astype(str)


def flag_column(values: pd.Series, column: str = "invasive") -> pd.Series:
    """A yes/no column as nullable booleans (``pd.NA`` = unknown); raises ``FeatureTypeError`` naming ``column``.

    Accepted: booleans, 0/1 (any numeric dtype), the words true/false, t/f, yes/no, 1/0 (any case), null.
    """
    api = pd.api.types
    if api.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    out = pd.Series(pd.NA, index=values.index, dtype="boolean", name=column)
    bad = []
    for i, v in zip(values.index, values):
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1)):
            out[i] = bool(v)
        elif isinstance(v, str) and v.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            out[i] = v.strip().lower() in _TRUE_WORDS
        else:
            bad.append(v)
    if bad:
        raise _refuse(column, pd.Series(bad, dtype=object), "are not true/false (or 0/1)")
    return out


def invasive_or_unknown(values: pd.Series) -> np.ndarray:
    """True where the ``invasive`` flag is set or unknown (null): the compliance rule's reading of the flag."""
    return flag_column(values, "invasive").fillna(True).to_numpy(dtype=bool)


def features_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns with stable dtypes: categoricals as str, numerics as float64, flags as bool.

    Nulls become ``"unknown"`` (categoricals), NaN (numerics, imputed by the pipeline) and True (flags:
    an unknown ``invasive`` flag is read as invasive). Every path into a model goes through here, so
    every model family sees the same inputs. Values of the wrong type, or that float64 cannot hold
    exactly, raise ``FeatureTypeError`` naming the column (see ``numeric_column`` and ``flag_column``).
    """
    missing = [c for c in FEATURES if c not in df.columns]
    if missing:
        raise ValueError(f"training frame lacks feature columns {missing}")
    cols: dict[str, pd.Series] = {}  # built first, framed once: inserting column by column costs ~1 ms each
    for c in CATEGORICAL:
        cols[c] = _category_column(df[c], c)
    for c in NUMERIC:
        cols[c] = numeric_column(df[c], c)
    for c in BOOLEAN:
        cols[c] = flag_column(df[c], c).fillna(True).astype(bool)
    return pd.DataFrame(cols, index=df.index)
