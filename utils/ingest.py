"""Raw → bronze → silver for the raw feeds, with a quarantine table for every rejected record.

Bronze keeps each raw line as landed (file, line number, text, ingest time), so nothing is lost.
Silver is typed and validated by :mod:`utils.quality`; every bronze row ends in silver or in the
quarantine table with its reason, so ``bronze = silver + quarantine`` for every source.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from utils.config import Config, get_config
from utils.quality import SourceSpec, validate

SOURCES: dict[str, SourceSpec] = {
    "customers": SourceSpec(
        name="customers",
        file="customers.csv",
        format="csv",
        columns={"customer_id": "string", "signup_date": "date", "region": "string", "age_band": "string",
                 "device": "string", "tenure_days": "int", "email": "string"},
        key=["customer_id"],
        required=["signup_date", "region", "age_band", "device", "tenure_days"],
        non_negative=["tenure_days"],
        drop=["email"],
    ),
    "plants": SourceSpec(
        name="plants",
        file="plants.json",
        format="jsonl",
        columns={"plant_id": "string", "name": "string", "species": "string", "category": "string",
                 "price": "double", "care_level": "string", "light_needs": "string", "invasive": "boolean",
                 "stock": "int"},
        key=["plant_id"],
        required=["category", "price", "care_level", "light_needs", "invasive"],
        positive=["price"],
        non_negative=["stock"],
    ),
    "clickstream": SourceSpec(
        name="clickstream",
        file="clickstream.jsonl",
        format="jsonl",
        columns={"event_id": "string", "session_id": "string", "customer_id": "string", "plant_id": "string",
                 "event_ts": "timestamp", "page": "string", "position": "int", "price": "double",
                 "clicked": "boolean", "purchased": "boolean", "label_ts": "timestamp"},
        key=["event_id"],
        required=["customer_id", "plant_id", "event_ts", "position", "price", "clicked", "purchased"],
        positive=["price"],
        references={"customer_id": ("customers", "customer_id"), "plant_id": ("plants", "plant_id")},
        timestamp="event_ts",
    ),
    "orders": SourceSpec(
        name="orders",
        file="orders.csv",
        format="csv",
        columns={"order_id": "string", "customer_id": "string", "plant_id": "string", "quantity": "int",
                 "unit_price": "double", "order_ts": "timestamp"},
        key=["order_id"],
        required=["customer_id", "plant_id", "quantity", "unit_price", "order_ts"],
        positive=["unit_price", "quantity"],
        references={"customer_id": ("customers", "customer_id"), "plant_id": ("plants", "plant_id")},
        timestamp="order_ts",
    ),
}
INGEST_ORDER = ("customers", "plants", "clickstream", "orders")  # referenced sources first


def bronze_table(source: str, cfg: Config | None = None) -> str:
    """Name of the bronze table of ``source``."""
    return (cfg or get_config()).table(f"bronze_{source}")


def silver_table(source: str, cfg: Config | None = None) -> str:
    """Name of the silver table of ``source``."""
    return (cfg or get_config()).table(f"silver_{source}")


def quarantine_table(cfg: Config | None = None) -> str:
    """Name of the table holding every rejected record with its reason."""
    return (cfg or get_config()).table("quarantine")


def read_raw_lines(path: Path, has_header: bool) -> Any:
    """A pyarrow table of a raw file's lines: ``source_file, line_no, raw, ingested_at`` (header skipped)."""
    import pyarrow as pa

    if not path.is_file():
        raise FileNotFoundError(f"raw file {path} is missing: run notebook 00 (or utils.catchup.ensure_raw) to land it")
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = 2 if has_header else 1
    body = lines[1:] if has_header else lines
    now = dt.datetime.now(dt.UTC)
    return pa.table({
        "source_file": pa.array([path.name] * len(body), pa.string()),
        "line_no": pa.array(range(first, first + len(body)), pa.int64()),
        "raw": pa.array([line.rstrip("\r") for line in body], pa.string()),
        "ingested_at": pa.array([now] * len(body), pa.timestamp("us", tz="UTC")),
    })


def land_bronze(raw_dir: Path, cfg: Config | None = None) -> dict[str, int]:
    """Write every raw file to its bronze table (overwrite: bronze mirrors the landed files); returns row counts."""
    from utils import lakehouse
    from utils.progress import progress

    counts = {}
    for name in progress(INGEST_ORDER, "raw files → bronze"):
        spec = SOURCES[name]
        lines = read_raw_lines(raw_dir / spec.file, has_header=spec.format == "csv")
        lakehouse.write(lines, bronze_table(name, cfg), mode="overwrite",
                        description=f"{spec.file} as landed, one row per raw line")
        counts[name] = lines.num_rows
    return counts


def build_silver(cfg: Config | None = None) -> dict[str, dict[str, int]]:
    """Validate every bronze table into silver + quarantine; returns bronze/silver/quarantine counts per source."""
    from utils import lakehouse
    from utils.progress import progress

    cfg = cfg or get_config()
    silver: dict[str, Any] = {}
    quarantined = []
    counts: dict[str, dict[str, int]] = {}
    for name in progress(INGEST_ORDER, "bronze → silver + quarantine"):
        spec = SOURCES[name]
        bronze = lakehouse.read(bronze_table(name, cfg))
        good, bad = validate(bronze, spec, references=silver)
        lakehouse.write(good, silver_table(name, cfg), mode="overwrite",
                        description=f"typed, validated {name}; rejected lines are in the quarantine table")
        silver[name] = lakehouse.read(silver_table(name, cfg))
        quarantined.append(bad)
        counts[name] = {"bronze": bronze.count(), "silver": silver[name].count(), "quarantine": bad.count()}
    all_bad = quarantined[0]
    for frame in quarantined[1:]:
        all_bad = all_bad.unionByName(frame)
    lakehouse.write(all_bad, quarantine_table(cfg), mode="overwrite",
                    description="every rejected raw record with the reason it was rejected")
    return counts


def ingest(raw_dir: Path | None = None, cfg: Config | None = None) -> dict[str, dict[str, int]]:
    """Raw files → bronze → silver + quarantine; returns the counts, checked to add up."""
    from utils.platform import raw_data_dir

    land_bronze(raw_dir or raw_data_dir(), cfg)
    counts = build_silver(cfg)
    for name, c in counts.items():
        if c["bronze"] != c["silver"] + c["quarantine"]:
            raise RuntimeError(f"{name}: {c['bronze']} bronze rows but {c['silver']} silver + {c['quarantine']} quarantined")
    return counts
