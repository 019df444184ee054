"""Record validation: every raw line ends in silver or in quarantine with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.ingest import INGEST_ORDER, SOURCES, read_raw_lines
from utils.quality import SourceSpec, validate

PLANTS = SourceSpec(
    name="plants", file="plants.json", format="jsonl",
    columns={"plant_id": "string", "price": "double", "invasive": "boolean"},
    key=["plant_id"], required=["price"], positive=["price"],
)


def _bronze(spark, lines: list[str]):
    import datetime as dt

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [("f", i + 1, line, now) for i, line in enumerate(lines)]
    return spark.createDataFrame(rows, "source_file string, line_no long, raw string, ingested_at timestamp")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"plant_id": "P1", "price": 3.5, "invasive": false', "malformed jsonl record"),
        ("not json at all", "malformed jsonl record"),
        ('["P1", 3.5]', "malformed jsonl record"),
        ('{"plant_id": "P1", "invasive": false}', "missing value: price"),
        ('{"plant_id": null, "price": 2.0, "invasive": false}', "missing value: plant_id"),
        ('{"plant_id": "P1", "price": "abc", "invasive": false}', "bad type: price is not double: abc"),
        ('{"plant_id": "P1", "price": -4.0, "invasive": false}', "non-positive value: price=-4.0"),
        ('{"plant_id": "P1", "price": 2.0, "invasive": "maybe"}', "bad type: invasive is not boolean: maybe"),
    ],
)
def test_bad_json_records_are_quarantined_with_reason(spark, line: str, reason: str) -> None:
    good = '{"plant_id": "P0", "price": 1.0, "invasive": true}'
    silver, quarantine = validate(_bronze(spark, [good, line]), PLANTS)
    assert [r.plant_id for r in silver.collect()] == ["P0"]
    rows = quarantine.collect()
    assert len(rows) == 1 and rows[0].reason == reason and rows[0].raw == line and rows[0].line_no == 2


def test_duplicate_keys_keep_first_and_quarantine_the_rest(spark) -> None:
    lines = ['{"plant_id": "P1", "price": 1.0}', '{"plant_id": "P1", "price": 2.0}', '{"plant_id": "P2", "price": 3.0}']
    silver, quarantine = validate(_bronze(spark, lines), PLANTS)
    assert sorted((r.plant_id, r.price) for r in silver.collect()) == [("P1", 1.0), ("P2", 3.0)]
    assert [r.reason for r in quarantine.collect()] == ["duplicate key: P1"]


def test_csv_wrong_field_count_and_unknown_reference(spark) -> None:
    orders = SourceSpec(
        name="orders", file="orders.csv", format="csv",
        columns={"order_id": "string", "customer_id": "string", "qty": "int"},
        key=["order_id"], required=["customer_id", "qty"], positive=["qty"],
        references={"customer_id": ("customers", "customer_id")},
    )
    customers = spark.createDataFrame([("C1",)], "customer_id string")
    lines = ["O1,C1,2", "O2;C1;2", "O3,C9,1", 'O4,"C1",0', "O5,C1,two"]
    silver, quarantine = validate(_bronze(spark, lines), orders, references={"customers": customers})
    assert [r.order_id for r in silver.collect()] == ["O1"]
    reasons = {r.line_no: r.reason for r in quarantine.collect()}
    assert reasons == {2: "malformed csv record", 3: "unknown customer_id: C9",
                       4: "non-positive value: qty=0", 5: "bad type: qty is not int: two"}


def test_missing_reference_frame_is_a_clear_error(spark) -> None:
    spec = SOURCES["orders"]
    with pytest.raises(ValueError, match="references 'customers'"):
        validate(_bronze(spark, ["O1,C1,P1,1,2.0,2026-01-01T00:00:00Z"]), spec)


def test_pii_is_hashed_not_kept(spark) -> None:
    lines = ["C1,2024-01-01,north,25-34,mobile,10,Jane@Example.com "]
    silver, _ = validate(_bronze(spark, lines), SOURCES["customers"])
    cols = silver.columns
    assert "email" not in cols and "email_sha256" in cols
    import hashlib

    assert silver.first().email_sha256 == hashlib.sha256(b"jane@example.com").hexdigest()


def test_generated_feed_raw_equals_silver_plus_quarantine(spark, tmp_path: Path) -> None:
    from utils.datagen import land_raw_files, raw_manifest
    from utils.plantly_shop import GeneratorSpec

    land_raw_files(GeneratorSpec(rows=3000, seed=3, bad_fraction=0.05), tmp_path)
    manifest = raw_manifest(tmp_path)
    silver: dict = {}
    for name in INGEST_ORDER:
        spec = SOURCES[name]
        lines = read_raw_lines(tmp_path / spec.file, has_header=spec.format == "csv")
        bronze = spark.createDataFrame(lines)
        good, bad = validate(bronze, spec, references=silver)
        silver[name] = good
        n_good, n_bad = good.count(), bad.count()
        info = manifest["files"][spec.file]
        assert n_good + n_bad == lines.num_rows == info["records"]
        assert n_bad == info["bad_records"], (name, bad.groupBy("reason").count().collect())
        assert n_good == info["clean_records"]
