"""Record-level validation: typed parsing of raw lines, with every rejected record kept with its reason.

A :class:`SourceSpec` says what a good record of one raw feed looks like (columns and types,
key, required columns, non-negative columns, references to other tables).
:func:`validate` turns a bronze DataFrame of raw lines into ``(silver, quarantine)`` with Spark
expressions only, so it runs unchanged on a cluster. Every input row lands in exactly one of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QUARANTINE_COLUMNS = ["source", "source_file", "line_no", "raw", "reason", "ingested_at"]


@dataclass(frozen=True)
class SourceSpec:
    """What a valid record of one raw feed looks like."""

    name: str
    file: str
    format: str  # "csv" or "jsonl"
    columns: dict[str, str]  # column -> Spark SQL type, in file order for CSV
    key: list[str]
    required: list[str] = field(default_factory=list)
    non_negative: list[str] = field(default_factory=list)
    positive: list[str] = field(default_factory=list)
    references: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (source name, column)
    drop: list[str] = field(default_factory=list)  # PII columns replaced by a sha256 hash
    timestamp: str | None = None


def _parse_strings(bronze: Any, spec: SourceSpec) -> Any:
    """Parse ``raw`` into one string column per spec column, plus ``_malformed``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    string_schema = StructType([StructField(c, StringType(), True) for c in spec.columns])
    if spec.format == "jsonl":
        parsed = F.from_json(F.col("raw"), string_schema, {"mode": "PERMISSIVE"})
        # from_json gives a struct of nulls for text that is not a JSON object: detect that on the raw text.
        is_object = F.coalesce(F.expr("try_parse_json(raw)").isNotNull(), F.lit(False)) & F.trim(
            F.col("raw")
        ).startswith("{")
    elif spec.format == "csv":
        parsed = F.from_csv(F.col("raw"), string_schema.simpleString(), {"mode": "PERMISSIVE"})
        n_fields = F.size(F.split(F.col("raw"), ",(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)"))
        is_object = n_fields == F.lit(len(spec.columns))
    else:
        raise ValueError(f"unknown raw format {spec.format!r} for source {spec.name!r}: use 'csv' or 'jsonl'")
    out = bronze.withColumn("_p", parsed).withColumn("_malformed", ~is_object)
    for c in spec.columns:
        out = out.withColumn(f"_s_{c}", F.col(f"_p.{c}"))
    return out.drop("_p")


def _reason_expr(spec: SourceSpec) -> Any:
    """A Spark column holding the first reason a record is invalid, or null when it is valid."""
    from pyspark.sql import functions as F

    checks: list[tuple[Any, Any]] = [(F.col("_malformed"), F.lit(f"malformed {spec.format} record"))]
    for c in dict.fromkeys(spec.key + spec.required):
        s = F.col(f"_s_{c}")
        checks.append((s.isNull() | (F.trim(s) == ""), F.lit(f"missing value: {c}")))
    for c, typ in spec.columns.items():
        if typ == "string":
            continue
        s = F.col(f"_s_{c}")
        checks.append((s.isNotNull() & (F.trim(s) != "") & F.col(c).isNull(), F.concat(F.lit(f"bad type: {c} is not {typ}: "), s)))
    for c in spec.non_negative:
        checks.append((F.col(c) < 0, F.concat(F.lit(f"negative value: {c}="), F.col(c).cast("string"))))
    for c in spec.positive:
        checks.append((F.col(c) <= 0, F.concat(F.lit(f"non-positive value: {c}="), F.col(c).cast("string"))))
    reason = F.lit(None).cast("string")
    for cond, text in reversed(checks):
        reason = F.when(cond, text).otherwise(reason)
    return reason


def _typed(df: Any, spec: SourceSpec) -> Any:
    from pyspark.sql import functions as F

    for c, typ in spec.columns.items():
        s = F.trim(F.col(f"_s_{c}"))
        if typ == "timestamp":
            df = df.withColumn(c, F.expr(f"try_to_timestamp(trim(`_s_{c}`))"))
        elif typ == "boolean":
            low = F.lower(s)
            df = df.withColumn(
                c,
                F.when(low.isin("true", "1", "yes"), F.lit(True)).when(low.isin("false", "0", "no"), F.lit(False)),
            )
        elif typ == "string":
            df = df.withColumn(c, F.col(f"_s_{c}"))
        else:
            df = df.withColumn(c, F.expr(f"try_cast(trim(`_s_{c}`) AS {typ})"))
    return df


def validate(bronze: Any, spec: SourceSpec, references: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Split a bronze frame (``source_file, line_no, raw, ingested_at``) into (silver, quarantine).

    ``references`` maps a source name to its *valid* silver DataFrame, for referential checks.
    Duplicate keys keep the first line of the file; later ones are quarantined as duplicates.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    references = references or {}
    df = _typed(_parse_strings(bronze, spec), spec)
    df = df.withColumn("_reason", _reason_expr(spec))
    for col, (ref_name, ref_col) in spec.references.items():
        if ref_name not in references:
            raise ValueError(f"source {spec.name!r} references {ref_name!r}: pass its silver frame in `references`")
        known = references[ref_name].select(F.col(ref_col).alias(f"_ref_{col}")).distinct().withColumn(f"_ok_{col}", F.lit(True))
        df = df.join(known, df[col] == known[f"_ref_{col}"], "left").drop(f"_ref_{col}")
        df = df.withColumn(
            "_reason",
            F.when(F.col("_reason").isNull() & F.col(f"_ok_{col}").isNull(), F.concat(F.lit(f"unknown {col}: "), F.col(col))).otherwise(F.col("_reason")),
        ).drop(f"_ok_{col}")
    order = Window.partitionBy(*[F.col(k) for k in spec.key]).orderBy("source_file", "line_no")
    df = df.withColumn("_rank", F.when(F.col("_reason").isNull(), F.row_number().over(order)))
    df = df.withColumn(
        "_reason",
        F.when(F.col("_rank") > 1, F.concat(F.lit("duplicate key: "), F.concat_ws("|", *[F.col(k).cast("string") for k in spec.key]))).otherwise(F.col("_reason")),
    )
    quarantine = df.where(F.col("_reason").isNotNull()).select(
        F.lit(spec.name).alias("source"), "source_file", "line_no", "raw", F.col("_reason").alias("reason"), "ingested_at"
    )
    good = df.where(F.col("_reason").isNull())
    cols = [F.col(c) for c in spec.columns if c not in spec.drop]
    cols += [F.sha2(F.lower(F.trim(F.col(c))), 256).alias(f"{c}_sha256") for c in spec.drop]
    silver = good.select(*cols, "source_file", "line_no", "ingested_at")
    return silver, quarantine
