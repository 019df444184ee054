"""Unit tests of utils.datagen: determinism, sizes, scenario effects, malformed records, argument checks."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import utils.plantly_shop as shop
from utils.datagen import BAD_KINDS, RAW_FILES, land_raw_files, raw_manifest
from utils.plantly_shop import SCENARIOS, GeneratorSpec, window_bounds
from utils.plantly_simulation import generate

SMALL = GeneratorSpec(rows=2_000, seed=7)


@pytest.fixture(scope="module")
def by_scenario() -> dict[str, dict[str, pd.DataFrame]]:
    """Frames of every scenario for the same seed and size."""
    return {s: generate(GeneratorSpec(rows=20_000, seed=11, scenario=s)) for s in SCENARIOS}


def _split(imp: pd.DataFrame, spec: GeneratorSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    _, current_start, _ = window_bounds(spec)
    return imp[imp.event_ts < current_start], imp[imp.event_ts >= current_start]


# ---------------------------------------------------------------- determinism and size


def test_same_seed_gives_identical_frames() -> None:
    a, b = generate(SMALL), generate(SMALL)
    for name in ("customers", "plants", "impressions", "orders"):
        pd.testing.assert_frame_equal(a[name], b[name])


def test_different_seed_gives_different_frames() -> None:
    a = generate(SMALL)
    b = generate(GeneratorSpec(rows=SMALL.rows, seed=SMALL.seed + 1))
    assert not a["impressions"].equals(b["impressions"])
    assert not a["customers"].equals(b["customers"])
    assert not a["plants"]["price"].equals(b["plants"]["price"])


def test_same_spec_lands_byte_identical_files(tmp_path: Path) -> None:
    one = land_raw_files(SMALL, tmp_path / "one")
    two = land_raw_files(SMALL, tmp_path / "two", force=True)
    for key in RAW_FILES:
        assert one[key].read_bytes() == two[key].read_bytes(), key
    m1, m2 = raw_manifest(tmp_path / "one"), raw_manifest(tmp_path / "two")
    for m in (m1, m2):
        m.pop("generated_at"), m.pop("generation_seconds")
    assert m1 == m2


def test_different_seed_lands_different_files(tmp_path: Path) -> None:
    one = land_raw_files(SMALL, tmp_path / "one")
    two = land_raw_files(GeneratorSpec(rows=SMALL.rows, seed=SMALL.seed + 1), tmp_path / "two")
    assert one["clickstream"].read_bytes() != two["clickstream"].read_bytes()


def test_relanding_keeps_matching_files_and_repairs_changed_ones(tmp_path: Path) -> None:
    paths = land_raw_files(SMALL, tmp_path)
    original = paths["orders"].read_bytes()
    stamps = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    assert land_raw_files(SMALL, tmp_path) == paths
    assert {k: p.stat().st_mtime_ns for k, p in paths.items()} == stamps  # nothing rewritten

    paths["orders"].write_text("tampered\n")
    land_raw_files(SMALL, tmp_path)
    assert paths["orders"].read_bytes() == original

    land_raw_files(GeneratorSpec(rows=SMALL.rows, seed=SMALL.seed, scenario="late_labels"), tmp_path)
    assert raw_manifest(tmp_path)["spec"]["scenario"] == "late_labels"


def test_default_folder_is_the_platform_raw_dir() -> None:
    from utils.platform import raw_data_dir

    paths = land_raw_files(GeneratorSpec(rows=300, seed=3))
    assert paths["clickstream"].parent == raw_data_dir()
    assert raw_manifest()["spec"]["rows"] == 300


def test_raw_manifest_is_none_without_files(tmp_path: Path) -> None:
    assert raw_manifest(tmp_path) is None


@pytest.mark.parametrize("rows", [500, 5_000, 50_000])
def test_sizes_scale_with_rows(rows: int) -> None:
    spec = GeneratorSpec(rows=rows, seed=1)
    frames = generate(spec)
    assert len(frames["impressions"]) == rows
    assert len(frames["customers"]) == spec.customer_count == max(20, rows // 20)
    assert len(frames["plants"]) == spec.plant_count == min(500, max(40, rows // 100))
    assert len(frames["orders"]) == frames["impressions"]["purchased"].sum()


def test_explicit_entity_counts_are_used() -> None:
    frames = generate(GeneratorSpec(rows=1_000, n_customers=30, n_plants=12))
    assert len(frames["customers"]) == 30
    assert len(frames["plants"]) == 12
    assert frames["impressions"]["customer_id"].nunique() <= 30


def test_tiny_specs_work() -> None:
    frames = generate(GeneratorSpec(rows=1, n_customers=1, n_plants=1, days=1))
    assert len(frames["impressions"]) == 1
    assert frames["plants"]["invasive"].sum() == 1  # at least one invasive plant, whatever the size


def test_window_bounds_split_the_range() -> None:
    spec = GeneratorSpec(days=90, end_date="2026-06-30")
    start, current_start, end = window_bounds(spec)
    assert end == pd.Timestamp("2026-07-01", tz="UTC")
    assert end - start == pd.Timedelta(days=90)
    assert end - current_start == pd.Timedelta(days=18)  # the last 20%


# ---------------------------------------------------------------- scenarios


@pytest.mark.parametrize("scenario", SCENARIOS[1:])
def test_reference_window_is_identical_across_scenarios(by_scenario: dict, scenario: str) -> None:
    spec = GeneratorSpec(rows=20_000, seed=11)
    base_ref, base_cur = _split(by_scenario["baseline"]["impressions"], spec)
    ref, cur = _split(by_scenario[scenario]["impressions"], spec)
    pd.testing.assert_frame_equal(ref, base_ref)
    assert len(cur) == len(base_cur) > 0
    assert not cur.equals(base_cur)  # the scenario did something


def test_demand_spike_raises_traffic_and_purchases_of_spiked_categories(by_scenario: dict) -> None:
    spec = GeneratorSpec(rows=20_000, seed=11)
    stats = {}
    for name in ("baseline", "demand_spike"):
        _, cur = _split(by_scenario[name]["impressions"], spec)
        cur = cur.merge(by_scenario[name]["plants"][["plant_id", "category"]], on="plant_id")
        spiked = cur["category"].isin(shop.SPIKE_CATEGORIES)
        stats[name] = (spiked.mean(), cur.loc[spiked, "purchased"].mean(), cur["purchased"].mean())
    (share0, rate0, all0), (share1, rate1, all1) = stats["baseline"], stats["demand_spike"]
    assert share1 > share0 + 0.15  # covariate drift: more traffic on the spiked categories
    assert rate1 > rate0 * 1.3  # label drift: they convert better
    assert all1 > all0


def test_price_change_raises_prices_and_lowers_their_conversion(by_scenario: dict) -> None:
    spec = GeneratorSpec(rows=20_000, seed=11)
    base_p, new_p = by_scenario["baseline"]["plants"], by_scenario["price_change"]["plants"]
    ratio = new_p["price"] / base_p["price"]
    raised = ratio > 1.0
    assert raised.mean() == pytest.approx(shop.PRICE_CHANGE_SHARE, abs=0.02)
    assert ratio[raised].between(1.24, 1.51).all() and (ratio[~raised] == 1.0).all()
    raised_ids = set(new_p.loc[raised, "plant_id"])

    _, base_cur = _split(by_scenario["baseline"]["impressions"], spec)
    _, cur = _split(by_scenario["price_change"]["impressions"], spec)
    hit = cur["plant_id"].isin(raised_ids).to_numpy()
    assert (cur["price"].to_numpy()[hit] > base_cur["price"].to_numpy()[hit]).all()
    assert cur["purchased"][hit].mean() < 0.8 * base_cur["purchased"][hit].mean()
    # plants whose price did not change sell exactly as before (common random numbers)
    assert (cur["purchased"].to_numpy()[~hit] == base_cur["purchased"].to_numpy()[~hit]).all()
    orders = by_scenario["price_change"]["orders"]
    late_orders = orders[(orders.order_ts >= window_bounds(spec)[1] + pd.Timedelta(hours=1))
                         & orders.plant_id.isin(raised_ids)]
    prices = new_p.set_index("plant_id")["price"]
    assert np.allclose(late_orders["unit_price"], prices[late_orders["plant_id"]].to_numpy())


def test_new_segment_appears_only_late_with_different_preferences(by_scenario: dict) -> None:
    spec = GeneratorSpec(rows=20_000, seed=11, scenario="new_segment")
    _, current_start, _ = window_bounds(spec)
    base_c, seg = by_scenario["baseline"]["customers"], by_scenario["new_segment"]
    customers, imp = seg["customers"], seg["impressions"]
    new = customers[customers["region"] == shop.NEW_SEGMENT_REGION]
    assert (base_c["region"] != shop.NEW_SEGMENT_REGION).all()
    assert len(new) == round(spec.customer_count * shop.NEW_SEGMENT_CUSTOMER_SHARE)
    pd.testing.assert_frame_equal(customers.iloc[: len(base_c)], base_c)  # existing customers unchanged
    assert (pd.to_datetime(new["signup_date"]).dt.tz_localize("UTC") > current_start - pd.Timedelta(days=8)).all()

    from_new = imp["customer_id"].isin(new["customer_id"])
    assert (imp.loc[from_new, "event_ts"] >= current_start).all()
    assert from_new[imp["event_ts"] >= current_start].mean() > 0.2

    bought = imp[imp["purchased"]].merge(seg["plants"][["plant_id", "category"]], on="plant_id")
    dry = bought["category"].isin(["succulent", "cactus"])
    new_buyer = bought["customer_id"].isin(new["customer_id"])
    assert dry[new_buyer].mean() > dry[~new_buyer].mean() + 0.2  # concept drift: different tastes


def test_late_labels_delay_label_ts_only_in_the_current_window(by_scenario: dict) -> None:
    spec = GeneratorSpec(rows=20_000, seed=11)
    base, late = by_scenario["baseline"]["impressions"], by_scenario["late_labels"]["impressions"]
    assert (base["purchased"] == late["purchased"]).all()
    delay = (late["label_ts"] - late["event_ts"]).dt.total_seconds() / 86400
    base_delay = (base["label_ts"] - base["event_ts"]).dt.total_seconds() / 86400
    current = late["event_ts"] >= window_bounds(spec)[1]
    bought = late["purchased"]
    assert base_delay.max() <= shop.ATTRIBUTION_MINUTES / 1440
    assert delay[~current].max() <= shop.ATTRIBUTION_MINUTES / 1440
    late_share = (delay[current & bought] > 1).mean()
    assert late_share > 0.2  # monitoring sees a real gap in ground truth
    assert late_share == pytest.approx(shop.LATE_LABEL_SHARE, abs=0.1)
    assert delay.max() <= shop.LATE_LABEL_DAYS[1] + 1
    assert (delay[current & ~bought] <= shop.ATTRIBUTION_MINUTES / 1440).all()


# ---------------------------------------------------------------- malformed records

_ISO_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _is_num(v: object, positive: bool = True) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)


def _is_ts(v: object) -> bool:
    return isinstance(v, str) and bool(_ISO_TS.match(v))


def _valid_customer(f: list[str]) -> bool:
    if len(f) != 7 or not re.fullmatch(r"C\d{6,}", f[0]) or f[6].count("@") != 1:
        return False
    try:
        dt.date.fromisoformat(f[1])
    except ValueError:
        return False
    return (f[2] in (*shop.REGIONS, shop.NEW_SEGMENT_REGION) and f[3] in shop.AGE_BANDS
            and f[4] in shop.DEVICES and f[5].isdigit())


def _valid_plant(r: dict) -> bool:
    keys = ["plant_id", "name", "species", "category", "price", "care_level", "light_needs", "invasive", "stock"]
    return (list(r) == keys and isinstance(r["plant_id"], str) and bool(re.fullmatch(r"P\d{4,}", r["plant_id"]))
            and r["category"] in shop.CATEGORIES and _is_num(r["price"])
            and r["care_level"] in shop.CARE_LEVELS and r["light_needs"] in shop.LIGHT_NEEDS
            and isinstance(r["invasive"], bool) and _is_num(r["stock"], positive=False))


def _valid_event(r: dict, customers: set[str], plants: set[str]) -> bool:
    keys = ["event_id", "session_id", "customer_id", "plant_id", "event_ts", "page", "position", "price",
            "clicked", "purchased", "label_ts"]
    return (list(r) == keys and isinstance(r["event_id"], str) and r["customer_id"] in customers
            and r["plant_id"] in plants and _is_ts(r["event_ts"]) and _is_ts(r["label_ts"])
            and r["page"] in shop.PAGES and _is_num(r["position"]) and isinstance(r["position"], int)
            and _is_num(r["price"]) and isinstance(r["clicked"], bool) and isinstance(r["purchased"], bool))


def _valid_order(f: list[str], customers: set[str], plants: set[str]) -> bool:
    if len(f) != 6 or not f[0] or f[1] not in customers or f[2] not in plants or not f[3].isdigit():
        return False
    try:
        price = float(f[4])
    except ValueError:
        return False
    return price > 0 and int(f[3]) >= 1 and _is_ts(f[5])


def _json_or_none(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _split_raw(paths: dict[str, Path]) -> dict[str, tuple[int, int]]:
    """(valid, invalid) record counts per raw file, judged the way silver would judge them."""
    counts = {}
    cust_rows = list(csv.reader(paths["customers"].read_text().splitlines()[1:]))
    ok = [_valid_customer(f) for f in cust_rows]
    counts["customers"] = (sum(ok), len(ok) - sum(ok))
    customers = {f[0] for f, good in zip(cust_rows, ok) if good}
    plant_recs = [_json_or_none(line) for line in paths["plants"].read_text().splitlines()]
    ok = [r is not None and _valid_plant(r) for r in plant_recs]
    counts["plants"] = (sum(ok), len(ok) - sum(ok))
    plants = {r["plant_id"] for r, good in zip(plant_recs, ok) if good}
    events = [_json_or_none(line) for line in paths["clickstream"].read_text().splitlines()]
    ok = [r is not None and _valid_event(r, customers, plants) for r in events]
    counts["clickstream"] = (sum(ok), len(ok) - sum(ok))
    order_rows = list(csv.reader(paths["orders"].read_text().splitlines()[1:]))
    ok = [_valid_order(f, customers, plants) for f in order_rows]
    counts["orders"] = (sum(ok), len(ok) - sum(ok))
    return counts


def test_bad_record_counts_match_the_manifest(tmp_path: Path) -> None:
    spec = GeneratorSpec(rows=3_000, seed=5, bad_fraction=0.05)
    paths = land_raw_files(spec, tmp_path)
    manifest = raw_manifest(tmp_path)
    frames = generate(spec)
    sizes = {"customers": len(frames["customers"]), "plants": len(frames["plants"]),
             "clickstream": len(frames["impressions"]), "orders": len(frames["orders"])}
    for key, (valid, invalid) in _split_raw(paths).items():
        info = manifest["files"][RAW_FILES[key]]
        assert valid == info["clean_records"] == sizes[key], key
        assert invalid == info["bad_records"] == max(1, round(0.05 * sizes[key])), key
        assert sum(info["bad_by_kind"].values()) == invalid
        assert set(info["bad_by_kind"]) == set(BAD_KINDS[key])
        assert valid + invalid == info["records"]
    assert manifest["entities"] == {"customers": sizes["customers"], "plants": sizes["plants"],
                                    "impressions": sizes["clickstream"], "orders": sizes["orders"]}


def test_every_kind_of_malformed_record_is_injected(tmp_path: Path) -> None:
    land_raw_files(GeneratorSpec(rows=3_000, seed=5, bad_fraction=0.2), tmp_path)
    for name in RAW_FILES.values():
        kinds = raw_manifest(tmp_path)["files"][name]["bad_by_kind"]
        assert all(n > 0 for n in kinds.values()), (name, kinds)
    text = (tmp_path / "plants.json").read_text()
    assert '"price":"abc"' in text and '"plant_id":null' in text and re.search(r'"price":-\d', text)


def test_zero_bad_fraction_lands_exactly_the_clean_frames(tmp_path: Path) -> None:
    spec = GeneratorSpec(rows=2_000, seed=9, bad_fraction=0.0)
    paths = land_raw_files(spec, tmp_path)
    frames = generate(spec)
    assert all(v[1] == 0 for v in _split_raw(paths).values())
    assert all(f["bad_records"] == 0 for f in raw_manifest(tmp_path)["files"].values())

    customers = pd.read_csv(paths["customers"], dtype={"signup_date": str})
    expected = frames["customers"].assign(signup_date=[d.isoformat() for d in frames["customers"]["signup_date"]])
    pd.testing.assert_frame_equal(customers, expected)
    plants = pd.read_json(paths["plants"], lines=True, dtype=False)
    pd.testing.assert_frame_equal(plants, frames["plants"])
    events = pd.read_json(paths["clickstream"], lines=True, dtype=False, convert_dates=False)
    for col in ("event_ts", "label_ts"):
        events[col] = pd.to_datetime(events[col], utc=True).astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(events, frames["impressions"])
    orders = pd.read_csv(paths["orders"])
    orders["order_ts"] = pd.to_datetime(orders["order_ts"], utc=True).astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(orders, frames["orders"])


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "spike"}, r"scenario 'spike' is unknown: use one of baseline"),
        ({"rows": 0}, r"rows must be a positive integer.*pass rows >= 1"),
        ({"rows": -5}, r"rows must be a positive integer"),
        ({"rows": 2.5}, r"rows must be a positive integer"),
        ({"bad_fraction": -0.1}, r"bad_fraction must lie in \[0, 0.5\].*or 0 for clean files"),
        ({"bad_fraction": 0.6}, r"bad_fraction must lie in \[0, 0.5\]"),
        ({"n_customers": 0}, r"n_customers must be a positive integer or None"),
        ({"days": 0}, r"days must be a positive integer"),
        ({"end_date": "yesterday"}, r"end_date 'yesterday' is not a date: pass 'YYYY-MM-DD'"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
    ],
)
def test_invalid_spec_raises_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorSpec(**kwargs)


def test_spec_values_are_normalised_for_the_manifest(tmp_path: Path) -> None:
    spec = GeneratorSpec(rows=np.int64(200), seed=np.int32(3), bad_fraction=0, end_date=dt.date(2026, 1, 31))
    assert (type(spec.rows), type(spec.seed), type(spec.bad_fraction), spec.end_date) == (int, int, float, "2026-01-31")
    land_raw_files(spec, tmp_path)
    assert raw_manifest(tmp_path)["spec"]["end_date"] == "2026-01-31"
    assert spec == GeneratorSpec(rows=200, seed=3, bad_fraction=0.0, end_date="2026-01-31")


def test_corrupt_manifest_raises_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="delete it and call land_raw_files"):
        raw_manifest(tmp_path)
