"""Data tests on the example's generated data (utils.datagen): schema, ranges, keys, integrity, leakage, PII, learnability."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

import utils.plantly_shop as shop
from utils.datagen import land_raw_files
from utils.plantly_shop import GeneratorSpec, window_bounds
from utils.plantly_simulation import generate, latent_preferences
from utils.platform import REPO_ROOT

SPEC = GeneratorSpec(rows=20_000, seed=42)

SCHEMA: dict[str, dict[str, str]] = {
    "customers": {"customer_id": "object", "signup_date": "object", "region": "object", "age_band": "object",
                  "device": "object", "tenure_days": "int64", "email": "object"},
    "plants": {"plant_id": "object", "name": "object", "species": "object", "category": "object",
               "price": "float64", "care_level": "object", "light_needs": "object", "invasive": "bool",
               "stock": "int64"},
    "impressions": {"event_id": "object", "session_id": "object", "customer_id": "object", "plant_id": "object",
                    "event_ts": "datetime64[us, UTC]", "page": "object", "position": "int64", "price": "float64",
                    "clicked": "bool", "purchased": "bool", "label_ts": "datetime64[us, UTC]"},
    "orders": {"order_id": "object", "customer_id": "object", "plant_id": "object", "quantity": "int64",
               "unit_price": "float64", "order_ts": "datetime64[us, UTC]"},
}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return generate(SPEC)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    land_raw_files(GeneratorSpec(rows=3_000, seed=42, bad_fraction=0.05), out)
    return out


@pytest.fixture(scope="module")
def joined(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Impressions with the customer and plant attributes known at impression time."""
    plants = frames["plants"].drop(columns=["price"])  # the impression carries the price shown then
    return frames["impressions"].merge(frames["customers"], on="customer_id").merge(plants, on="plant_id")


# ---------------------------------------------------------------- schema and values


@pytest.mark.parametrize("name", list(SCHEMA))
def test_schema_and_dtypes(frames: dict[str, pd.DataFrame], name: str) -> None:
    assert {c: str(t) for c, t in frames[name].dtypes.items()} == SCHEMA[name]
    assert not frames[name].isna().any().any()


def test_string_columns_hold_strings_and_dates_hold_dates(frames: dict[str, pd.DataFrame]) -> None:
    for name, cols in SCHEMA.items():
        for col, dtype in cols.items():
            if dtype == "object" and col != "signup_date":
                assert frames[name][col].map(type).eq(str).all(), (name, col)
    assert frames["customers"]["signup_date"].map(type).eq(dt.date).all()


def test_categorical_values_are_in_the_vocabulary(frames: dict[str, pd.DataFrame]) -> None:
    c, p, i = frames["customers"], frames["plants"], frames["impressions"]
    assert set(c["region"]) <= set(shop.REGIONS)
    assert set(c["age_band"]) == set(shop.AGE_BANDS)
    assert set(c["device"]) == set(shop.DEVICES)
    assert set(p["category"]) == set(shop.CATEGORIES)
    assert set(p["care_level"]) == set(shop.CARE_LEVELS)
    assert set(p["light_needs"]) == set(shop.LIGHT_NEEDS)
    assert set(i["page"]) == set(shop.PAGES)


def test_id_formats(frames: dict[str, pd.DataFrame]) -> None:
    for name, col, pattern in [("customers", "customer_id", r"C\d{6}"), ("plants", "plant_id", r"P\d{4}"),
                               ("impressions", "event_id", r"E\d{8}"), ("impressions", "session_id", r"S\d{7}"),
                               ("orders", "order_id", r"O\d{7}")]:
        assert frames[name][col].str.fullmatch(pattern).all(), col


def test_ranges(frames: dict[str, pd.DataFrame]) -> None:
    c, p, i, o = frames["customers"], frames["plants"], frames["impressions"], frames["orders"]
    start, _, end = window_bounds(SPEC)
    assert (p["price"] > 0).all() and (i["price"] > 0).all() and (o["unit_price"] > 0).all()
    assert (p["stock"] >= 0).all()
    assert (i["position"] >= 1).all() and (i["position"] <= 20).all()
    assert o["quantity"].between(1, 3).all()
    assert (i["event_ts"] >= start).all() and (i["event_ts"] < end).all()
    assert (i["label_ts"] > i["event_ts"]).all()
    assert (i["label_ts"] - i["event_ts"]).max() <= pd.Timedelta(minutes=shop.ATTRIBUTION_MINUTES)
    assert (o["order_ts"] >= start).all() and (o["order_ts"] < end + pd.Timedelta(hours=1)).all()
    end_day = (end - pd.Timedelta(days=1)).date()
    assert (c["tenure_days"] == [(end_day - d).days for d in c["signup_date"]]).all()
    assert (c["signup_date"] < start.date()).all()  # baseline customers signed up before the window


def test_rates_are_realistic(frames: dict[str, pd.DataFrame]) -> None:
    i, p = frames["impressions"], frames["plants"]
    assert 0.05 <= i["purchased"].mean() <= 0.12
    assert i["purchased"].mean() < i["clicked"].mean() < 0.5
    assert p["invasive"].mean() == pytest.approx(shop.INVASIVE_FRACTION, abs=0.01)
    assert i.groupby("session_id")["position"].max().mean() > 3  # sessions show several plants


# ---------------------------------------------------------------- keys and integrity


def test_ids_are_unique(frames: dict[str, pd.DataFrame]) -> None:
    assert frames["customers"]["customer_id"].is_unique
    assert frames["customers"]["email"].is_unique
    assert frames["plants"]["plant_id"].is_unique
    assert frames["impressions"]["event_id"].is_unique
    assert frames["orders"]["order_id"].is_unique
    assert not frames["impressions"].duplicated(["session_id", "position"]).any()


def test_referential_integrity(frames: dict[str, pd.DataFrame]) -> None:
    customers, plants = set(frames["customers"]["customer_id"]), set(frames["plants"]["plant_id"])
    for name in ("impressions", "orders"):
        assert frames[name]["customer_id"].isin(customers).all()
        assert frames[name]["plant_id"].isin(plants).all()
    assert frames["impressions"].groupby("session_id")["customer_id"].nunique().eq(1).all()


def test_orders_are_the_purchased_impressions(frames: dict[str, pd.DataFrame]) -> None:
    bought = frames["impressions"][frames["impressions"]["purchased"]]
    key = ["customer_id", "plant_id", "unit_price"]
    left = bought.rename(columns={"price": "unit_price"})[key].sort_values(key).reset_index(drop=True)
    right = frames["orders"][key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)
    assert frames["orders"]["order_ts"].is_monotonic_increasing


def test_purchase_implies_click(frames: dict[str, pd.DataFrame]) -> None:
    i = frames["impressions"]
    assert i.loc[i["purchased"], "clicked"].all()
    assert (i["clicked"] & ~i["purchased"]).any()  # clicks without purchase exist too


# ---------------------------------------------------------------- leakage


def _single_column_auc(x: pd.Series, y: pd.Series) -> float:
    """AUC on the second half of a column's target-mean encoding learnt on the first half."""
    half = len(x) // 2
    means = y.iloc[:half].groupby(x.iloc[:half]).mean()
    score = x.iloc[half:].map(means).fillna(y.iloc[:half].mean())
    return roc_auc_score(y.iloc[half:], score)


def test_only_declared_outcome_columns_carry_the_label(joined: pd.DataFrame) -> None:
    y = joined[shop.LABEL_COLUMN]
    label_delay = (joined["label_ts"] - joined["event_ts"]).dt.total_seconds()
    # the check can fail: the declared outcomes do reveal the label
    assert _single_column_auc(joined["clicked"], y) > 0.8
    assert _single_column_auc(label_delay.round(), y) > 0.8
    features = [c for c in joined.columns if c not in shop.OUTCOME_COLUMNS]
    for col in features:
        x = joined[col]
        if pd.api.types.is_datetime64_any_dtype(x):
            x = x.dt.floor("D")
        elif pd.api.types.is_float_dtype(x):
            x = pd.qcut(x, 10, duplicates="drop")
        assert _single_column_auc(x.astype(str), y) < 0.7, f"{col} predicts the label too well: leakage?"


def test_impression_columns_are_ids_features_or_declared_outcomes(frames: dict[str, pd.DataFrame]) -> None:
    known_at_impression = {"event_id", "session_id", "customer_id", "plant_id", "event_ts", "page", "position",
                           "price"}
    assert set(frames["impressions"].columns) == known_at_impression | set(shop.OUTCOME_COLUMNS)
    assert shop.LABEL_COLUMN in shop.OUTCOME_COLUMNS


def test_hidden_preferences_are_not_in_the_data(frames: dict[str, pd.DataFrame], raw_dir: Path) -> None:
    latent = latent_preferences(SPEC)
    hidden = set(latent.columns) - {"customer_id"}
    assert "price_sensitivity" in hidden and "affinity_fern" in hidden
    for name, frame in frames.items():
        assert not hidden & set(frame.columns), name
    for path in raw_dir.iterdir():
        if path.suffix in (".csv", ".json", ".jsonl"):
            text = path.read_text()
            assert not any(h in text for h in hidden if h != "segment"), path.name


# ---------------------------------------------------------------- PII


def test_email_is_the_only_pii_and_lives_only_in_customers(frames: dict[str, pd.DataFrame], raw_dir: Path) -> None:
    assert shop.PII_COLUMNS == {"customers": ("email",)}
    emails = frames["customers"]["email"]
    assert emails.str.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.com").all()  # fake, reserved domain
    for name, frame in frames.items():
        has_at = frame.select_dtypes("object").apply(lambda s: s.astype(str).str.contains("@")).any().any()
        assert has_at == (name == "customers"), name
    assert "email" in (raw_dir / "customers.csv").read_text().splitlines()[0].split(",")
    for name in ("plants.json", "clickstream.jsonl", "orders.csv"):
        assert "@" not in (raw_dir / name).read_text(), name
    readme = REPO_ROOT / "data" / "raw" / "README.md"
    assert re.search(r"silver.*(drop|hash).*email|email.*silver.*(drop|hash)", readme.read_text(), re.IGNORECASE | re.DOTALL)


# ---------------------------------------------------------------- learnability and groups


def test_label_is_learnable_from_simple_features(joined: pd.DataFrame) -> None:
    x = joined.assign(
        position_bucket=joined["position"].clip(upper=8).astype(str),
        price_bucket=pd.qcut(np.log(joined["price"]), 5, labels=False).astype(str),
    )
    cols = ["category", "care_level", "light_needs", "invasive", "device", "age_band", "region", "page",
            "position_bucket", "price_bucket"]
    features = OneHotEncoder(handle_unknown="ignore").fit_transform(x[cols].astype(str))
    y = x["purchased"].to_numpy()
    cut = int(len(x) * 0.7)
    model = LogisticRegression(max_iter=1000).fit(features[:cut], y[:cut])
    auc = roc_auc_score(y[cut:], model.predict_proba(features[cut:])[:, 1])
    assert auc > 0.6, f"AUC {auc:.3f}: the label carries too little signal"


def test_groups_differ_moderately(joined: pd.DataFrame) -> None:
    for group in ("age_band", "region", "device"):
        rates = joined.groupby(group)["purchased"].mean()
        assert 1.1 < rates.max() / rates.min() < 2.5, (group, rates.round(3).to_dict())


def test_invasive_plants_sell_so_the_compliance_rule_matters(joined: pd.DataFrame) -> None:
    rates = joined.groupby("invasive")["purchased"].mean()
    assert rates[True] > rates[False]
