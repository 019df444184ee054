"""Notebook parameters and settings read as their declared types, whatever source supplies them.

A leaf module (it imports no other ``utils`` module) so that both the config (``MLOPS_<FIELD>``
settings) and the platform layer (papermill, environment, widgets) parse values the same way.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

T = TypeVar("T")


class ParameterError(ValueError):
    """A parameter value that does not parse as its declared type; the message names parameter, value and source."""


PARAMETER_TYPES = (int, float, bool, str)


TYPE_WORDS = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text"}
"""How each declared type is described to a user whose value did not parse."""


UNIT = (0.0, 1.0)
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "rows": (2000, None), "seed": (0, None), "bad_fraction": UNIT,
    "psi": (0.0, None), "prediction_psi": (0.0, None), "js_distance": UNIT, "ks_pvalue": UNIT, "chi2_pvalue": UNIT,
    "min_auc_drop": UNIT, "gate_min_auc": UNIT, "gate_max_dp_difference": UNIT, "gate_max_invasive_score": UNIT,
    "gate_max_auc_regression": UNIT,
}
"""Inclusive (low, high) range of each numeric parameter and threshold (None: unbounded), checked by ``cast_param``.

Rows are impressions, at least 2,000: fewer leave the raw files, the time splits and the gate's slices with too
few rows or conversions to train and evaluate (1 row stops notebook 00). Seeds are non-negative (numpy); fractions, p-values, AUCs, the Jensen-Shannon
distance (base 2) and demographic-parity differences lie in [0, 1]; PSI is non-negative and unbounded."""


IDENTIFIER = r"[A-Za-z0-9_]+"  # as utils.lakehouse checks table names
PATTERNS: dict[str, str] = {"catalog": IDENTIFIER, "schema": IDENTIFIER}
"""Text settings that must match a pattern: the catalog and schema make three-level table names
(``utils.lakehouse`` refuses any other), so a name with a space, dot or dash is refused before anything runs."""
PATTERN_EXAMPLES: dict[str, str] = {"catalog": "workspace", "schema": "mlops"}
"""A good value of each of :data:`PATTERNS`, shown in the error when a value does not match."""


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def example_of(declared: type, default: Any = None) -> Any:
    """A value of type ``declared`` to show in an error: ``default`` when it is one, else a typical one (5000, 0.05, True)."""
    if type(default) is declared and default != "":
        return default
    return {int: 5000, float: 0.05, bool: True, str: "baseline"}[declared]


def as_text(value: Any) -> str:
    """``value`` as an environment variable, widget or command-line flag takes it (booleans as ``true``/``false``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def cast_param(name: str, value: Any, declared: type[T], source: str, what: str = "parameter",
               example: str | None = None) -> T:
    """``value`` as the ``declared`` type (int, float, bool or str); raises ``ParameterError`` if it does not parse.

    Parsing is pydantic's lax mode with finite floats: ``"5000"`` and ``5000.0`` are the int 5000,
    ``"0.05"`` and ``0`` the floats 0.05 and 0.0, ``"true"/"yes"/"on"/"1"`` and ``"false"/"no"/"off"/"0"``
    booleans; ``5000.5`` as an int, ``"nan"`` as a float, ``"ture"`` as a bool and a boolean given for a
    number are refused. ``source`` says where the value came from and ``what`` what it is (``parameter``,
    ``setting``); ``example`` is a valid setting written as that source takes it (``MLOPS_ROWS=20000``,
    ``--rows 20000``), else ``name = <typical value>``. All are part of the one-line message.
    A number outside its :data:`BOUNDS` (``rows`` below 1, a p-value above 1), or text not matching its
    :data:`PATTERNS` (a catalog name with a space), raises ``ParameterError`` too.
    """
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    if declared not in PARAMETER_TYPES:
        raise TypeError(f"parameter {name!r}: declared type must be one of "
                        f"{[t.__name__ for t in PARAMETER_TYPES]}, got {declared!r}")
    problem = None
    if value is None:
        problem = "no value"
    elif isinstance(value, bool) and declared in (int, float):
        problem = f"a boolean is not a {declared.__name__}"
    else:
        adapter = TypeAdapter(declared, config=ConfigDict(allow_inf_nan=False, str_strip_whitespace=True,
                                                          coerce_numbers_to_str=True))
        try:
            parsed = adapter.validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
        else:
            if name in PATTERNS and isinstance(parsed, str) and not re.fullmatch(PATTERNS[name], parsed):
                example = example or f"{name} = {example_of(declared, PATTERN_EXAMPLES[name])!r}"
                raise ParameterError(f"{what} {name!r}: value {value!r} from {source} is not a name a three-level "
                                     f"table name can use; give letters, digits and underscores only, e.g. {example}")
            low, high = BOUNDS.get(name, (None, None)) if declared in (int, float) else (None, None)
            if (low is None or parsed >= low) and (high is None or parsed <= high):
                return parsed
            example = example or f"{name} = {example_of(declared)!r}"
            raise ParameterError(f"{what} {name!r}: value {value!r} from {source} is out of range; give "
                                 f"{TYPE_WORDS[declared]} {_range_text(low, high)}, e.g. {example}")
    example = example or f"{name} = {example_of(declared)!r}"
    raise ParameterError(f"{what} {name!r}: value {value!r} from {source} cannot be read as "
                         f"{declared.__name__} ({problem}); give {TYPE_WORDS[declared]}, e.g. {example}")


JOB_CONFIG_OPTIONS = ("catalog", "schema", "endpoint", "experiment_name")
"""Config fields a bundle job passes a Python wheel task as options (``--catalog``, ..., ``--experiment-name``)."""


def add_job_config_options(parser: Any) -> None:
    """Add ``--catalog``, ``--schema``, ``--endpoint`` and ``--experiment-name`` (default ``""``) to an ``argparse`` parser."""
    for name in JOB_CONFIG_OPTIONS:
        option = name.replace("_", "-")
        parser.add_argument(f"--{option}", default="", help=f"sets MLOPS_{name.upper()} (a job's parameter)")


def apply_job_config(args: Any, environ: Any = None) -> None:
    """Set ``MLOPS_<FIELD>`` in ``environ`` (default ``os.environ``) from each job-config option given non-empty."""
    import os

    environ = os.environ if environ is None else environ
    for name in JOB_CONFIG_OPTIONS:
        if getattr(args, name, ""):
            environ[f"MLOPS_{name.upper()}"] = getattr(args, name)
