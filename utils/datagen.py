"""Synthetic plantly.shop data: customers, plants, impressions (clickstream) and orders.

Deterministic for a seed, sized by ``rows`` (the number of impressions), vectorised numpy/pandas.
Purchases follow a logistic model of hidden customer preferences (category affinity, price
sensitivity, green thumb, home light) and observable context (position, page, device, age band,
region), so a model has something to learn and SHAP/fairness have something to show.

Scenarios change only the final "current" window (the last 20% of the date range); the reference
window is identical across scenarios for the same seed, so monitoring compares like with like.
``land_raw_files`` writes the raw feed (``data/raw``) with injected malformed records and a manifest.
The data dictionary is ``data/raw/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

GENERATOR_VERSION = 1
SCENARIOS: tuple[str, ...] = ("baseline", "demand_spike", "price_change", "new_segment", "late_labels")

CATEGORIES: tuple[str, ...] = ("succulent", "fern", "palm", "herb", "flowering", "tree", "cactus", "vine")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
PAGES: tuple[str, ...] = ("home", "search", "category")
CARE_LEVELS: tuple[str, ...] = ("easy", "medium", "hard")
LIGHT_NEEDS: tuple[str, ...] = ("low", "medium", "bright")

LABEL_COLUMN = "purchased"
OUTCOME_COLUMNS: tuple[str, ...] = ("clicked", "purchased", "label_ts")  # known only after the impression
PII_COLUMNS: dict[str, tuple[str, ...]] = {"customers": ("email",)}
RAW_FILES: dict[str, str] = {
    "customers": "customers.csv",
    "plants": "plants.json",
    "clickstream": "clickstream.jsonl",
    "orders": "orders.csv",
}
MANIFEST_FILE = "manifest.json"

CURRENT_WINDOW_FRACTION = 0.2  # the last 20% of the date range is the "current" window
ATTRIBUTION_MINUTES = 30  # a purchase within 30 min of an impression is attributed to it
INVASIVE_FRACTION = 0.08

# Scenario knobs (documented in data/raw/README.md).
SPIKE_CATEGORIES: tuple[str, ...] = ("herb", "flowering")
SPIKE_TRAFFIC_SHARE = 0.35  # share of current-window impressions redirected to spiked categories
SPIKE_LOGIT = 0.9  # extra purchase propensity for spiked categories
PRICE_CHANGE_SHARE = 0.3  # share of plants whose price is raised
PRICE_RAISE_RANGE = (1.25, 1.5)
STICKER_SHOCK_LOGIT = -0.4  # extra aversion to a freshly raised price
NEW_SEGMENT_REGION = "coastal"
NEW_SEGMENT_CUSTOMER_SHARE = 0.125  # new customers, relative to n_customers
NEW_SEGMENT_SESSION_SHARE = 0.35  # share of current-window sessions made by the new segment
LATE_LABEL_SHARE = 0.4  # share of current-window purchases whose label arrives late
LATE_LABEL_DAYS = (2, 14)

BAD_KINDS: dict[str, tuple[str, ...]] = {
    "customers": ("malformed", "wrong_type", "missing_key", "negative_value", "null_id"),
    "plants": ("malformed", "wrong_type", "missing_key", "negative_value", "null_id"),
    "clickstream": ("malformed", "wrong_type", "missing_key", "negative_value", "unknown_id", "null_id"),
    "orders": ("malformed", "wrong_type", "missing_key", "negative_value", "unknown_id", "null_id"),
}

# (species, common name, category, invasive, base price, care level, light needs)
SPECIES: tuple[tuple[str, str, str, bool, float, str, str], ...] = (
    ("Echeveria elegans", "Mexican snowball", "succulent", False, 9.0, "easy", "bright"),
    ("Crassula ovata", "Jade plant", "succulent", False, 14.0, "easy", "bright"),
    ("Haworthiopsis fasciata", "Zebra haworthia", "succulent", False, 8.0, "easy", "medium"),
    ("Sedum morganianum", "Burro's tail", "succulent", False, 16.0, "medium", "bright"),
    ("Aloe vera", "Aloe vera", "succulent", False, 12.0, "easy", "bright"),
    ("Carpobrotus edulis", "Hottentot fig", "succulent", True, 7.0, "easy", "bright"),
    ("Nephrolepis exaltata", "Boston fern", "fern", False, 18.0, "medium", "medium"),
    ("Asplenium nidus", "Bird's nest fern", "fern", False, 22.0, "medium", "low"),
    ("Adiantum raddianum", "Maidenhair fern", "fern", False, 20.0, "hard", "medium"),
    ("Platycerium bifurcatum", "Staghorn fern", "fern", False, 35.0, "hard", "medium"),
    ("Nephrolepis cordifolia", "Fishbone fern", "fern", True, 12.0, "easy", "medium"),
    ("Chamaedorea elegans", "Parlour palm", "palm", False, 25.0, "easy", "low"),
    ("Dypsis lutescens", "Areca palm", "palm", False, 45.0, "medium", "bright"),
    ("Howea forsteriana", "Kentia palm", "palm", False, 80.0, "medium", "medium"),
    ("Rhapis excelsa", "Lady palm", "palm", False, 60.0, "medium", "low"),
    ("Washingtonia robusta", "Mexican fan palm", "palm", True, 55.0, "medium", "bright"),
    ("Ocimum basilicum", "Sweet basil", "herb", False, 5.0, "easy", "bright"),
    ("Mentha spicata", "Spearmint", "herb", False, 5.0, "easy", "medium"),
    ("Salvia rosmarinus", "Rosemary", "herb", False, 7.0, "medium", "bright"),
    ("Thymus vulgaris", "Thyme", "herb", False, 6.0, "medium", "bright"),
    ("Petroselinum crispum", "Parsley", "herb", False, 5.0, "easy", "medium"),
    ("Phalaenopsis amabilis", "Moth orchid", "flowering", False, 30.0, "hard", "medium"),
    ("Spathiphyllum wallisii", "Peace lily", "flowering", False, 20.0, "easy", "low"),
    ("Anthurium andraeanum", "Flamingo flower", "flowering", False, 28.0, "medium", "medium"),
    ("Streptocarpus ionanthus", "African violet", "flowering", False, 10.0, "medium", "medium"),
    ("Lantana camara", "Lantana", "flowering", True, 14.0, "easy", "bright"),
    ("Ficus lyrata", "Fiddle-leaf fig", "tree", False, 55.0, "hard", "bright"),
    ("Ficus elastica", "Rubber plant", "tree", False, 35.0, "easy", "medium"),
    ("Dracaena marginata", "Dragon tree", "tree", False, 30.0, "easy", "medium"),
    ("Olea europaea", "Olive tree", "tree", False, 65.0, "medium", "bright"),
    ("Heptapleurum actinophyllum", "Umbrella tree", "tree", True, 40.0, "easy", "medium"),
    ("Mammillaria elongata", "Ladyfinger cactus", "cactus", False, 9.0, "easy", "bright"),
    ("Echinocactus grusonii", "Golden barrel cactus", "cactus", False, 24.0, "easy", "bright"),
    ("Schlumbergera truncata", "Christmas cactus", "cactus", False, 15.0, "medium", "medium"),
    ("Cereus repandus", "Peruvian apple cactus", "cactus", False, 30.0, "easy", "bright"),
    ("Opuntia stricta", "Erect prickly pear", "cactus", True, 18.0, "easy", "bright"),
    ("Epipremnum aureum", "Golden pothos", "vine", False, 12.0, "easy", "low"),
    ("Philodendron hederaceum", "Heartleaf philodendron", "vine", False, 14.0, "easy", "low"),
    ("Hoya carnosa", "Wax plant", "vine", False, 18.0, "medium", "medium"),
    ("Monstera deliciosa", "Swiss cheese plant", "vine", False, 38.0, "easy", "medium"),
    ("Hedera helix", "English ivy", "vine", True, 9.0, "easy", "medium"),
)
_CULTIVARS = ("", "", "", "Variegata", "Compacta", "Gold", "Silver", "Nana", "Marble", "Midnight", "Sunrise")
_FIRST = ("ava", "liam", "mia", "noah", "zoe", "omar", "ines", "kai", "lena", "raj", "yuki", "sam", "ola", "ben")
_LAST = ("smith", "garcia", "chen", "okafor", "novak", "silva", "khan", "muller", "rossi", "tanaka", "jones")

# Purchase model (logit scale).
_INTERCEPT = -2.85
_REGION_EFFECT = np.array([-0.10, 0.15, -0.05, 0.20, -0.20])
_AGE_EFFECT = np.array([-0.35, 0.05, 0.15, 0.15, -0.05])
_DEVICE_EFFECT = np.array([-0.15, 0.20, 0.0])
_PAGE_EFFECT = np.array([0.0, 0.40, 0.20])
_INVASIVE_EFFECT = 0.35  # invasive plants are easy growers and sell well: the compliance rule matters
_NEW_SEGMENT_EFFECT = 0.45  # replaces the age/region effects for the new segment
# Mean category affinity by region and by age band (rows follow REGIONS / AGE_BANDS, columns CATEGORIES).
_REGION_AFFINITY = np.array([
    [-0.2, 0.5, -0.3, 0.1, 0.1, 0.2, -0.4, 0.3],
    [0.4, -0.3, 0.3, 0.0, 0.1, -0.1, 0.5, -0.1],
    [0.0, 0.2, 0.0, 0.3, 0.2, 0.0, -0.2, 0.1],
    [0.3, -0.1, 0.4, 0.2, -0.1, 0.1, 0.3, 0.0],
    [0.0, 0.0, -0.2, 0.3, 0.3, 0.3, 0.0, 0.0],
])
_AGE_AFFINITY = np.array([
    [0.4, -0.1, 0.0, -0.2, -0.3, -0.2, 0.4, 0.4],
    [0.3, 0.1, 0.1, 0.0, -0.1, 0.0, 0.2, 0.4],
    [0.0, 0.1, 0.1, 0.2, 0.1, 0.2, 0.0, 0.1],
    [-0.2, 0.1, 0.0, 0.3, 0.3, 0.2, -0.1, -0.1],
    [-0.4, 0.0, -0.1, 0.4, 0.5, 0.1, -0.2, -0.3],
])
_NEW_SEGMENT_AFFINITY = np.array([1.2, -1.0, 0.8, -0.8, -1.0, -0.5, 1.2, 0.3])
_DIURNAL = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4, 4.5, 4, 3.5, 3.5, 4, 4.5, 5.5, 6.5,
                     7, 6, 4, 2])


@dataclass(frozen=True)
class GeneratorSpec:
    """What to generate: size, seed, scenario, malformed share and date range."""

    rows: int = 20_000
    seed: int = 42
    scenario: str = "baseline"
    bad_fraction: float = 0.01
    n_customers: int | None = None
    n_plants: int | None = None
    days: int = 90
    end_date: str = "2026-06-30"

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r} is unknown: use one of {', '.join(SCENARIOS)}")
        if isinstance(self.rows, bool) or not isinstance(self.rows, (int, np.integer)) or self.rows <= 0:
            raise ValueError(f"rows must be a positive integer (got {self.rows!r}): pass rows >= 1, e.g. 20000")
        if not isinstance(self.bad_fraction, (int, float)) or not 0 <= self.bad_fraction <= 0.5:
            raise ValueError(
                f"bad_fraction must lie in [0, 0.5] (got {self.bad_fraction!r}): pass e.g. 0.01, or 0 for clean files"
            )
        for name in ("n_customers", "n_plants"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None (got {value!r}): pass None to derive it")
        if not isinstance(self.days, (int, np.integer)) or self.days < 1:
            raise ValueError(f"days must be a positive integer (got {self.days!r}): pass e.g. 90")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer (got {self.seed!r}): pass e.g. 42")
        try:
            dt.date.fromisoformat(str(self.end_date))
        except ValueError as exc:
            raise ValueError(f"end_date {self.end_date!r} is not a date: pass 'YYYY-MM-DD', e.g. '2026-06-30'") from exc
        # plain Python values, so the spec serialises into the manifest (numpy ints, date objects)
        for name in ("rows", "seed", "days", "n_customers", "n_plants"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "bad_fraction", float(self.bad_fraction))
        object.__setattr__(self, "end_date", str(self.end_date))

    @property
    def customer_count(self) -> int:
        """Core customers (``n_customers``, else one per 20 impressions, at least 20)."""
        return int(self.n_customers) if self.n_customers is not None else max(20, self.rows // 20)

    @property
    def plant_count(self) -> int:
        """Plants in the catalogue (``n_plants``, else one per 100 impressions, clipped to 40..500)."""
        return int(self.n_plants) if self.n_plants is not None else min(500, max(40, self.rows // 100))


def window_bounds(spec: GeneratorSpec) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """``(start, current_start, end)`` in UTC: events lie in ``[start, end)``; scenarios act from ``current_start``."""
    end = pd.Timestamp(spec.end_date, tz="UTC") + pd.Timedelta(days=1)
    start = end - pd.Timedelta(days=spec.days)
    current_start = end - pd.Timedelta(seconds=round(spec.days * 86400 * CURRENT_WINDOW_FRACTION))
    return start, current_start, end


# ---------------------------------------------------------------- simulation


@dataclass
class _World:
    """Everything the simulation draws, including the hidden preferences."""

    customers: pd.DataFrame
    plants: pd.DataFrame
    impressions: pd.DataFrame
    orders: pd.DataFrame
    latent: pd.DataFrame


def _streams(seed: int) -> dict[str, np.random.Generator]:
    names = ("customers", "plants", "sessions", "outcomes", "scenario", "new_segment", "corrupt")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children)}


def _sample_index(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with probability proportional to ``weights`` (vectorised, via the CDF)."""
    cdf = np.cumsum(weights, dtype=float)
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"), len(weights) - 1)


def _ids(prefix: str, start: int, stop: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}{i:0{width}d}" for i in range(start, stop)], dtype=object)


def _make_customers(
    rng: np.random.Generator, n: int, first_number: int, spec: GeneratorSpec, new_segment: bool
) -> dict[str, np.ndarray]:
    """Observable attributes and hidden preferences of ``n`` customers as column arrays."""
    start, current_start, end = window_bounds(spec)
    end_day = (end - pd.Timedelta(days=1)).date()
    if new_segment:
        region = np.full(n, len(REGIONS))  # index of NEW_SEGMENT_REGION
        age = rng.choice(5, size=n, p=[0.55, 0.35, 0.07, 0.02, 0.01])
        device = rng.choice(3, size=n, p=[0.85, 0.10, 0.05])
        cur_day = current_start.date()
        signup_offset = (end_day - cur_day).days + rng.integers(1, 8, size=n)  # the week before they appear
        affinity = _NEW_SEGMENT_AFFINITY + rng.normal(0, 0.5, size=(n, len(CATEGORIES)))
        price_sens = rng.lognormal(np.log(0.4), 0.3, size=n)
        green = rng.beta(5, 2, size=n)
        light = rng.choice(3, size=n, p=[0.1, 0.3, 0.6])
    else:
        region = rng.choice(5, size=n, p=[0.22, 0.24, 0.20, 0.20, 0.14])
        age = rng.choice(5, size=n, p=[0.14, 0.28, 0.24, 0.18, 0.16])
        mobile = np.array([0.75, 0.62, 0.52, 0.42, 0.35])[age]
        u = rng.random(n)
        device = np.where(u < mobile, 0, np.where(u < mobile + (1 - mobile) * 0.75, 1, 2))
        window_days = (end_day - start.date()).days + 1
        signup_offset = window_days + rng.integers(0, 3 * 365, size=n)  # signed up before the window
        affinity = _REGION_AFFINITY[region] + _AGE_AFFINITY[age] + rng.normal(0, 0.8, size=(n, len(CATEGORIES)))
        price_sens = rng.lognormal(0.0, 0.35, size=n) * np.array([1.3, 1.1, 1.0, 0.9, 0.8])[age]
        green = np.clip(rng.beta(2, 3, size=n) + np.array([-0.1, -0.05, 0.0, 0.05, 0.1])[age], 0, 1)
        light_p = np.array([[0.5, 0.35, 0.15], [0.15, 0.35, 0.5], [0.3, 0.4, 0.3], [0.2, 0.4, 0.4], [0.3, 0.4, 0.3]])
        light = (rng.random(n)[:, None] > np.cumsum(light_p[region], axis=1)).sum(axis=1)
    signup = np.datetime64(end_day) - signup_offset.astype("timedelta64[D]")
    numbers = np.arange(first_number, first_number + n)
    first = np.array(_FIRST, dtype=object)[rng.integers(0, len(_FIRST), size=n)]
    last = np.array(_LAST, dtype=object)[rng.integers(0, len(_LAST), size=n)]
    email = first + "." + last + numbers.astype(str).astype(object) + "@example.com"
    return {
        "number": numbers,
        "region": region,
        "age": age,
        "device": device,
        "signup": signup,
        "tenure": signup_offset.astype(np.int64),
        "email": email,
        "affinity": affinity,
        "price_sens": price_sens,
        "green": green,
        "light": light,
        "activity": rng.lognormal(0.0, 0.8, size=n),
        "new": np.full(n, new_segment),
    }


def _concat_customers(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _make_plants(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plant attributes as column arrays; exactly ``round(8%)`` (at least one) are invasive."""
    species = np.array(SPECIES, dtype=object)
    invasive_sp = np.flatnonzero(species[:, 3].astype(bool))
    native_sp = np.flatnonzero(~species[:, 3].astype(bool))
    n_inv = max(1, round(INVASIVE_FRACTION * n))
    invasive = np.zeros(n, dtype=bool)
    invasive[rng.choice(n, size=min(n_inv, n), replace=False)] = True
    sp = np.where(invasive, rng.choice(invasive_sp, size=n), rng.choice(native_sp, size=n))
    cultivar = np.array(_CULTIVARS, dtype=object)[rng.integers(0, len(_CULTIVARS), size=n)]
    common = species[sp, 1]
    name = np.where(cultivar == "", common, common + " '" + cultivar + "'")
    price = np.maximum(1.99, np.round(species[sp, 4].astype(float) * rng.lognormal(0, 0.25, size=n), 2))
    care = np.array([CARE_LEVELS.index(c) for c in species[sp, 5]]) + rng.choice([-1, 0, 0, 0, 0, 1], size=n)
    stock = np.where(rng.random(n) < 0.05, 0, rng.integers(1, 300, size=n))
    return {
        "species": species[sp, 0],
        "name": name,
        "category": np.array([CATEGORIES.index(c) for c in species[sp, 2]]),
        "price": price,
        "care": np.clip(care, 0, 2),
        "light": np.array([LIGHT_NEEDS.index(v) for v in species[sp, 6]]),
        "invasive": invasive,
        "stock": stock.astype(np.int64),
        "popularity": rng.lognormal(0.0, 0.6, size=n),
        "appeal": rng.normal(0.0, 0.3, size=n),
    }


def _draw_plants(
    rng: np.random.Generator, categories: np.ndarray, plants: dict[str, np.ndarray]
) -> np.ndarray:
    """A plant index per requested category (−1 = any category), by popularity."""
    out = np.empty(len(categories), dtype=np.int64)
    any_cat = categories < 0
    out[any_cat] = _sample_index(rng, plants["popularity"], int(any_cat.sum()))
    for c in range(len(CATEGORIES)):
        rows = np.flatnonzero(categories == c)
        if rows.size == 0:
            continue
        members = np.flatnonzero(plants["category"] == c)
        if members.size == 0:  # tiny catalogue without this category: fall back to any plant
            out[rows] = _sample_index(rng, plants["popularity"], rows.size)
        else:
            out[rows] = members[_sample_index(rng, plants["popularity"][members], rows.size)]
    return out


def _session_category(rng: np.random.Generator, affinity: np.ndarray) -> np.ndarray:
    """The category a session is about: softmax of the customer's affinities (Gumbel-max)."""
    return np.argmax(affinity + rng.gumbel(size=affinity.shape), axis=1)


def _make_sessions(
    r: np.random.Generator, spec: GeneratorSpec, cust: dict[str, np.ndarray], n_core: int
) -> dict[str, np.ndarray]:
    """Sessions (ordered by start time): length, start second, customer, page and topic category."""
    n_rows = spec.rows
    start, current_start, end = window_bounds(spec)
    lengths = np.minimum(1 + r.poisson(5.0, size=n_rows // 5 + 10), 20)
    while lengths.sum() < n_rows:
        lengths = np.concatenate([lengths, np.minimum(1 + r.poisson(5.0, size=n_rows // 5 + 10), 20)])
    cum = np.cumsum(lengths)
    n_sess = int(np.searchsorted(cum, n_rows) + 1)
    lengths = lengths[:n_sess].copy()
    lengths[-1] -= int(cum[n_sess - 1] - n_rows)  # the sessions hold exactly `rows` impressions
    day = r.integers(0, spec.days, size=n_sess)
    hour = _sample_index(r, _DIURNAL, n_sess)
    begin = int(start.timestamp()) + day * 86400 + hour * 3600 + r.integers(0, 3600, size=n_sess)
    sess = {
        "length": lengths,
        "start": np.minimum(begin, int(end.timestamp()) - 600),
        "customer": _sample_index(r, cust["activity"][:n_core], n_sess),
        "page": r.choice(3, size=n_sess, p=[0.45, 0.33, 0.22]),
    }
    sess["topic"] = _session_category(r, cust["affinity"][sess["customer"]])
    order = np.argsort(sess["start"], kind="stable")  # session ids follow start time
    sess = {k: v[order] for k, v in sess.items()}
    sess["current"] = sess["start"] >= int(current_start.timestamp())
    return sess


def _make_impressions(
    r: np.random.Generator, sess: dict[str, np.ndarray], plants: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Impressions of each session: session index, position, event second and plant shown."""
    n_rows = int(sess["length"].sum())
    sess_idx = np.repeat(np.arange(len(sess["length"])), sess["length"])
    first_row = np.cumsum(sess["length"]) - sess["length"]
    position = np.arange(n_rows) - first_row[sess_idx] + 1
    event_s = sess["start"][sess_idx] + (position - 1) * 8 + r.integers(0, 8, size=n_rows)
    targeted = r.random(n_rows) < np.array([0.25, 0.6, 1.0])[sess["page"][sess_idx]]  # home, search, category
    plant = _draw_plants(r, np.where(targeted, sess["topic"][sess_idx], -1), plants)
    return {"session": sess_idx, "position": position, "event_s": event_s, "targeted": targeted, "plant": plant,
            "current": sess["current"][sess_idx]}


def _apply_exposure_scenario(
    s: np.random.Generator,
    spec: GeneratorSpec,
    cust: dict[str, np.ndarray],
    plants: dict[str, np.ndarray],
    sess: dict[str, np.ndarray],
    imp: dict[str, np.ndarray],
    n_core: int,
) -> None:
    """Who sees what in the current window: new-segment sessions, spiked categories (in place)."""
    if spec.scenario == "new_segment":
        takeover = sess["current"] & (s.random(len(sess["start"])) < NEW_SEGMENT_SESSION_SHARE)
        new_idx = np.arange(n_core, len(cust["number"]))
        sess["customer"][takeover] = new_idx[_sample_index(s, cust["activity"][new_idx], int(takeover.sum()))]
        sess["topic"][takeover] = _session_category(s, cust["affinity"][sess["customer"][takeover]])
        rows = np.flatnonzero(takeover[imp["session"]])
        wanted = np.where(imp["targeted"][rows], sess["topic"][imp["session"][rows]], -1)
        imp["plant"][rows] = _draw_plants(s, wanted, plants)
    if spec.scenario == "demand_spike":
        rows = np.flatnonzero(imp["current"] & (s.random(len(imp["plant"])) < SPIKE_TRAFFIC_SHARE))
        spiked = np.array([CATEGORIES.index(c) for c in SPIKE_CATEGORIES])
        imp["plant"][rows] = _draw_plants(s, spiked[s.integers(0, spiked.size, size=rows.size)], plants)


def _apply_price_scenario(
    s: np.random.Generator, spec: GeneratorSpec, plants: dict[str, np.ndarray], imp: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Price shown per impression, and which plants were raised (catalogue updated in place)."""
    price = plants["price"][imp["plant"]]
    raised = np.zeros(len(plants["price"]), dtype=bool)
    if spec.scenario == "price_change":
        raised[s.choice(len(raised), size=max(1, round(PRICE_CHANGE_SHARE * len(raised))), replace=False)] = True
        factor = np.where(raised, s.uniform(*PRICE_RAISE_RANGE, size=len(raised)), 1.0)
        new_price = np.round(plants["price"] * factor, 2)
        price = np.where(imp["current"], new_price[imp["plant"]], price)
        plants["price"] = new_price  # the catalogue is a snapshot as of end_date
    return price, raised


def _purchase_logit(
    spec: GeneratorSpec,
    cust: dict[str, np.ndarray],
    plants: dict[str, np.ndarray],
    sess: dict[str, np.ndarray],
    imp: dict[str, np.ndarray],
    price: np.ndarray,
    cat_ref: np.ndarray,
    raised: np.ndarray,
) -> np.ndarray:
    """Log-odds of a purchase per impression: hidden preferences plus observable context."""
    customer, plant = sess["customer"][imp["session"]], imp["plant"]
    cat = plants["category"][plant]
    is_new = cust["new"][customer]
    care, green = plants["care"][plant], cust["green"][customer]
    care_term = np.where(is_new, care * (1.4 * green - 0.4), -care * (0.9 - 1.4 * green))
    group = np.where(
        is_new, _NEW_SEGMENT_EFFECT,
        _AGE_EFFECT[cust["age"][customer]] + _REGION_EFFECT[np.minimum(cust["region"][customer], len(REGIONS) - 1)],
    )
    logit = (
        _INTERCEPT
        + cust["affinity"][customer, cat]
        + plants["appeal"][plant]
        - cust["price_sens"][customer] * np.log(price / cat_ref[cat])
        - 0.15 * np.log(price / 20.0)
        + care_term
        - 0.4 * np.abs(plants["light"][plant] - cust["light"][customer])
        - np.where(is_new, 0.03, 0.1) * np.minimum(imp["position"] - 1, 12)
        + _PAGE_EFFECT[sess["page"][imp["session"]]]
        + _DEVICE_EFFECT[cust["device"][customer]]
        + group
        + _INVASIVE_EFFECT * plants["invasive"][plant]
    )
    if spec.scenario == "demand_spike":
        spiked = np.isin(cat, [CATEGORIES.index(c) for c in SPIKE_CATEGORIES])
        logit = logit + SPIKE_LOGIT * (imp["current"] & spiked)
    if spec.scenario == "price_change":
        logit = logit + STICKER_SHOCK_LOGIT * (imp["current"] & raised[plant])
    return logit


def _outcomes(o: np.random.Generator, spec: GeneratorSpec, logit: np.ndarray, imp: dict[str, np.ndarray]) -> dict:
    """Click, purchase, order time, quantity and label time per impression.

    The random numbers are drawn for every impression whatever the scenario (common random
    numbers), so the reference window is identical across scenarios.
    """
    n = len(logit)
    u_buy, u_click, u_late = o.random(n), o.random(n), o.random(n)
    delay_s = o.integers(60, ATTRIBUTION_MINUTES * 60, size=n)
    late_s = o.integers(LATE_LABEL_DAYS[0] * 86400, LATE_LABEL_DAYS[1] * 86400, size=n)
    quantity = 1 + (o.random(n)[:, None] > np.array([0.75, 0.93])).sum(axis=1)
    purchased = u_buy < 1.0 / (1.0 + np.exp(-logit))
    p_click = 1.0 / (1.0 + np.exp(-(-1.5 + 0.6 * (logit - _INTERCEPT))))
    order_s = imp["event_s"] + delay_s
    label_s = np.where(purchased, order_s, imp["event_s"] + ATTRIBUTION_MINUTES * 60)
    if spec.scenario == "late_labels":
        late = purchased & imp["current"] & (u_late < LATE_LABEL_SHARE)
        label_s = np.where(late, order_s + late_s, label_s)
    return {"purchased": purchased, "clicked": purchased | (u_click < p_click), "order_s": order_s,
            "label_s": label_s, "quantity": quantity}


def _simulate(spec: GeneratorSpec) -> _World:
    """Run the whole simulation for ``spec`` (clean data plus hidden preferences)."""
    rng = _streams(spec.seed)
    n_core = spec.customer_count
    cust = _make_customers(rng["customers"], n_core, 1, spec, new_segment=False)
    if spec.scenario == "new_segment":
        n_new = max(5, round(n_core * NEW_SEGMENT_CUSTOMER_SHARE))
        cust = _concat_customers(cust, _make_customers(rng["new_segment"], n_new, n_core + 1, spec, new_segment=True))
    plants = _make_plants(rng["plants"], spec.plant_count)
    cat_ref = np.array([np.median(plants["price"][plants["category"] == c]) if (plants["category"] == c).any()
                        else 1.0 for c in range(len(CATEGORIES))])  # list prices before any change
    sess = _make_sessions(rng["sessions"], spec, cust, n_core)
    imp = _make_impressions(rng["sessions"], sess, plants)
    _apply_exposure_scenario(rng["scenario"], spec, cust, plants, sess, imp, n_core)
    price, raised = _apply_price_scenario(rng["scenario"], spec, plants, imp)
    logit = _purchase_logit(spec, cust, plants, sess, imp, price, cat_ref, raised)
    out = _outcomes(rng["outcomes"], spec, logit, imp)
    return _frames(cust, plants, sess, imp, price, out)


def _frames(
    cust: dict[str, np.ndarray],
    plants: dict[str, np.ndarray],
    sess: dict[str, np.ndarray],
    imp: dict[str, np.ndarray],
    price: np.ndarray,
    out: dict[str, np.ndarray],
) -> _World:
    """The simulation as data frames, impressions and orders in time order and numbered that way."""
    n_cust, n_plant, n_sess, n_rows = len(cust["number"]), len(plants["price"]), len(sess["start"]), len(price)
    cust_ids = _ids("C", 1, n_cust + 1, max(6, len(str(n_cust))))
    plant_ids = _ids("P", 1, n_plant + 1, max(4, len(str(n_plant))))
    sess_ids = _ids("S", 1, n_sess + 1, max(7, len(str(n_sess))))
    customers = pd.DataFrame({
        "customer_id": cust_ids,
        "signup_date": [d.item() for d in cust["signup"]],
        "region": np.array((*REGIONS, NEW_SEGMENT_REGION), dtype=object)[cust["region"]],
        "age_band": np.array(AGE_BANDS, dtype=object)[cust["age"]],
        "device": np.array(DEVICES, dtype=object)[cust["device"]],
        "tenure_days": cust["tenure"],
        "email": cust["email"],
    })
    plants_df = pd.DataFrame({
        "plant_id": plant_ids,
        "name": plants["name"],
        "species": plants["species"],
        "category": np.array(CATEGORIES, dtype=object)[plants["category"]],
        "price": plants["price"].astype(float),
        "care_level": np.array(CARE_LEVELS, dtype=object)[plants["care"]],
        "light_needs": np.array(LIGHT_NEEDS, dtype=object)[plants["light"]],
        "invasive": plants["invasive"],
        "stock": plants["stock"],
    })
    ro = np.lexsort((imp["position"], imp["session"], imp["event_s"]))
    customer = sess["customer"][imp["session"]]
    impressions = pd.DataFrame({
        "event_id": _ids("E", 1, n_rows + 1, max(8, len(str(n_rows)))),
        "session_id": sess_ids[imp["session"][ro]],
        "customer_id": cust_ids[customer[ro]],
        "plant_id": plant_ids[imp["plant"][ro]],
        "event_ts": _ts(imp["event_s"][ro]),
        "page": np.array(PAGES, dtype=object)[sess["page"][imp["session"][ro]]],
        "position": imp["position"][ro].astype(np.int64),
        "price": price[ro].astype(float),
        "clicked": out["clicked"][ro],
        "purchased": out["purchased"][ro],
        "label_ts": _ts(out["label_s"][ro]),
    })
    bought = ro[out["purchased"][ro]]
    bought = bought[np.argsort(out["order_s"][bought], kind="stable")]
    orders = pd.DataFrame({
        "order_id": _ids("O", 1, bought.size + 1, max(7, len(str(bought.size)))),
        "customer_id": cust_ids[customer[bought]],
        "plant_id": plant_ids[imp["plant"][bought]],
        "quantity": out["quantity"][bought].astype(np.int64),
        "unit_price": price[bought].astype(float),
        "order_ts": _ts(out["order_s"][bought]),
    })
    latent = pd.DataFrame({"customer_id": cust_ids, "segment": np.where(cust["new"], "new", "core")})
    for j, c in enumerate(CATEGORIES):
        latent[f"affinity_{c}"] = cust["affinity"][:, j]
    latent["price_sensitivity"] = cust["price_sens"]
    latent["green_thumb"] = cust["green"]
    latent["home_light"] = np.array(LIGHT_NEEDS, dtype=object)[cust["light"]]
    return _World(customers, plants_df, impressions, orders, latent)


def _ts(seconds: np.ndarray) -> pd.Series:
    """UTC timestamps (microsecond precision) from epoch seconds."""
    return pd.Series(seconds.astype("datetime64[s]").astype("datetime64[us]")).dt.tz_localize("UTC")


def generate(spec: GeneratorSpec) -> dict[str, pd.DataFrame]:
    """Clean frames ``customers``, ``plants``, ``impressions``, ``orders`` for ``spec`` (no malformed rows)."""
    world = _simulate(spec)
    return {"customers": world.customers, "plants": world.plants, "impressions": world.impressions,
            "orders": world.orders}


def latent_preferences(spec: GeneratorSpec) -> pd.DataFrame:
    """The hidden per-customer preferences behind the labels (never written to the raw files)."""
    return _simulate(spec).latent


# ---------------------------------------------------------------- raw files


_CHUNK_ROWS = 250_000  # records formatted per Arrow batch while writing
_JSON_ESCAPE = r'["\\\x00-\x1f\x7f]'
_CSV_QUOTE = r'[",\r\n]'


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def _iso_strings(ts: pd.Series) -> pa.Array:
    """ISO-8601 UTC strings ``YYYY-MM-DDTHH:MM:SSZ`` (tables of days and times of day, no per-row Python)."""
    secs = _epoch_seconds(ts)
    days, day_idx = np.unique(secs // 86400, return_inverse=True)
    day_text = pa.array([f"{d}T" for d in np.datetime_as_string(days.astype("datetime64[D]"))], pa.string())
    tod = secs % 86400
    return pc.binary_join_element_wise(pc.take(day_text, pa.array(day_idx)), pc.take(_times_of_day(), pa.array(tod)), "")


@functools.lru_cache(maxsize=1)
def _times_of_day() -> pa.Array:
    """``HH:MM:SSZ`` for every second of a day."""
    return pa.array([f"{h:02d}:{m:02d}:{x:02d}Z" for h in range(24) for m in range(60) for x in range(60)])


def _text_values(values: pd.Series, fmt: str) -> pa.Array:
    """One column's values as JSON or CSV text (strings quoted/escaped as the format needs)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        text = _iso_strings(values)
        return pc.binary_join_element_wise('"', text, '"', "") if fmt == "json" else text
    if pd.api.types.is_bool_dtype(values.dtype):
        return pc.if_else(pa.array(values.to_numpy()), "true", "false")
    if pd.api.types.is_integer_dtype(values.dtype):
        return pc.cast(pa.array(values.to_numpy()), pa.string())
    if pd.api.types.is_float_dtype(values.dtype):
        num = values.to_numpy()
        if not np.isfinite(num).all():
            raise ValueError(f"column {values.name!r} holds NaN or infinity: clean frames must be finite")
        text = pc.cast(pa.array(num), pa.string())
        return pc.if_else(pc.match_substring_regex(text, r"^-?[0-9]+$"), pc.binary_join_element_wise(text, ".0", ""),
                          text)  # keep floats recognisable as floats
    obj = values.to_numpy(dtype=object)
    if len(obj) and isinstance(obj[0], dt.date):
        obj = np.array([d.isoformat() for d in obj], dtype=object)
    text = pa.array(obj, pa.string())
    if fmt == "json":
        if pc.any(pc.match_substring_regex(text, _JSON_ESCAPE)).as_py():
            return pa.array([json.dumps(v) for v in obj], pa.string())
        return pc.binary_join_element_wise('"', text, '"', "")
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(text, _CSV_QUOTE), quoted, text)


def _format_records(df: pd.DataFrame, fmt: str) -> pa.Array:
    """Each row of ``df`` as one JSON object or CSV line, newline included."""
    if fmt == "json":
        parts: list[Any] = []
        for i, col in enumerate(df.columns):
            parts += [("{" if i == 0 else ",") + json.dumps(col) + ":", _text_values(df[col], fmt)]
        lines = pc.binary_join_element_wise(*parts, "}\n", "")
    else:
        joined = pc.binary_join_element_wise(*(_text_values(df[c], fmt) for c in df.columns), ",")
        lines = pc.binary_join_element_wise(joined, "\n", "")
    if lines.null_count:
        raise ValueError("clean frames must not hold nulls: a generator column came out empty")
    return lines


def _template(record: dict[str, Any]) -> dict[str, Any]:
    """A clean record with plain JSON-able values (ISO timestamps and dates)."""
    out = {}
    for k, v in record.items():
        if isinstance(v, pd.Timestamp):
            v = v.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(v, dt.date):
            v = v.isoformat()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _csv_row(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().rstrip("\n")


def _json_row(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _bad_record(
    file: str, kind: str, variant: int, template: dict[str, Any], fresh_id: str, unknown: dict[str, str]
) -> str:
    """One malformed line of ``kind`` for ``file``, built from a clean ``template`` record."""
    rec = dict(template)
    id_col = {"customers": "customer_id", "plants": "plant_id", "clickstream": "event_id", "orders": "order_id"}[file]
    rec[id_col] = fresh_id
    is_json = file in ("plants", "clickstream")
    if kind == "malformed":
        if is_json:
            line = _json_row(rec)
            return line[: max(10, len(line) // 2)]  # truncated object: not valid JSON
        return ";".join(str(v) for v in rec.values())  # wrong delimiter: one field instead of many
    if kind == "wrong_type":
        choices = {
            "customers": [("tenure_days", "abc"), ("signup_date", "not-a-date")],
            "plants": [("price", "abc"), ("stock", "many"), ("invasive", "maybe")],
            "clickstream": [("position", "third"), ("event_ts", "not-a-timestamp"), ("price", "abc")],
            "orders": [("unit_price", "abc"), ("quantity", "two"), ("order_ts", "not-a-timestamp")],
        }[file]
        col, value = choices[variant % len(choices)]
        rec[col] = value
    elif kind == "missing_key":
        cols = {
            "customers": ["region", "signup_date"],
            "plants": ["price", "category"],
            "clickstream": ["event_ts", "purchased", "plant_id"],
            "orders": ["quantity", "order_ts"],
        }[file]
        col = cols[variant % len(cols)]
        if is_json:
            del rec[col]
        else:
            rec[col] = ""
    elif kind == "negative_value":
        col = {"customers": "tenure_days", "plants": "price", "clickstream": "price", "orders": "unit_price"}[file]
        rec[col] = -abs(int(rec[col]) or 1) if col == "tenure_days" else -abs(float(rec[col]) or 1.0)
    elif kind == "unknown_id":
        col = ("customer_id", "plant_id")[variant % 2]
        rec[col] = unknown[col]
    elif kind == "null_id":
        rec[id_col if variant % 2 == 0 or file in ("customers", "plants") else "customer_id"] = None
    if is_json:
        return _json_row(rec)
    return _csv_row(["" if v is None else v for v in rec.values()])


def _bad_lines(
    rng: np.random.Generator,
    file: str,
    clean: pd.DataFrame,
    fraction: float,
    fresh_ids: list[str],
    unknown_ids: dict[str, str],
) -> tuple[list[str], dict[str, int]]:
    """Malformed lines for ``file`` (``fraction`` of its clean records, at least one) and the count per kind."""
    kinds = BAD_KINDS[file]
    n_bad = 0 if fraction == 0 or clean.empty else max(1, round(fraction * len(clean)))
    if n_bad == 0:
        return [], dict.fromkeys(kinds, 0)
    kind_of = np.array(kinds, dtype=object)[rng.permutation((np.arange(n_bad) + rng.integers(len(kinds))) % len(kinds))]
    templates = clean.iloc[rng.integers(0, len(clean), size=n_bad)].to_dict("records")
    lines, seen = [], dict.fromkeys(kinds, 0)
    for kind, tmpl, fresh in zip(kind_of, templates, fresh_ids):
        lines.append(_bad_record(file, kind, seen[kind], _template(tmpl), fresh, unknown_ids))
        seen[kind] += 1
    return lines, seen


def _arrow_text_bytes(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, back to back (each value already ends in a newline)."""
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    data = lines.buffers()[2]
    return memoryview(data)[offsets[0]:offsets[-1]] if data is not None else memoryview(b"")


def _write_records(
    path: Path, clean: pd.DataFrame, fmt: str, bad: list[str], rng: np.random.Generator
) -> tuple[int, str]:
    """Write ``clean`` records with ``bad`` lines mixed in at random places; returns bytes and SHA-256."""
    total = len(clean) + len(bad)
    bad_pos = np.sort(rng.choice(total, size=len(bad), replace=False)) if bad else np.empty(0, dtype=np.int64)
    digest, size = hashlib.sha256(), 0
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:

        def emit(chunk: bytes | memoryview) -> None:
            nonlocal size
            fh.write(chunk)
            digest.update(chunk)
            size += len(chunk)

        if fmt == "csv":
            emit((",".join(clean.columns) + "\n").encode())
        for a in range(0, total, _CHUNK_ROWS):
            b = min(a + _CHUNK_ROWS, total)
            lo, hi = np.searchsorted(bad_pos, [a, b])
            lines = _format_records(clean.iloc[a - lo: b - hi], "json" if fmt == "jsonl" else "csv")
            if hi > lo:
                is_bad = np.zeros(b - a, dtype=bool)
                is_bad[bad_pos[lo:hi] - a] = True
                take = np.empty(b - a, dtype=np.int64)
                take[~is_bad] = np.arange(len(lines))
                take[is_bad] = len(lines) + np.arange(hi - lo)
                extra = pa.array([line + "\n" for line in bad[lo:hi]], pa.string())
                lines = pa.concat_arrays([lines, extra]).take(pa.array(take))
            emit(_arrow_text_bytes(lines))
    os.replace(tmp, path)
    return size, digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _manifest_matches(manifest: dict | None, spec: GeneratorSpec, out_dir: Path) -> bool:
    if not manifest or manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    if manifest.get("spec") != dataclasses.asdict(spec):
        return False
    for name, info in manifest.get("files", {}).items():
        path = out_dir / name
        if not path.is_file() or path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
            return False
    return set(manifest.get("files", {})) == set(RAW_FILES.values())


def land_raw_files(spec: GeneratorSpec, out_dir: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Write the raw feed for ``spec`` (with malformed records) and its ``manifest.json``; returns the paths.

    Files already there from the same spec and generator version are kept (checked by SHA-256)
    unless ``force``; regenerating the same spec writes byte-identical data files.
    """
    from utils.platform import ensure_dirs, raw_data_dir

    if out_dir is None:
        ensure_dirs()  # on Databricks: the schema and its volumes, `raw` among them
    out = Path(out_dir) if out_dir is not None else raw_data_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the raw folder {out} ({exc.strerror}): on Databricks create the volume first "
            "(CREATE VOLUME IF NOT EXISTS <catalog>.<schema>.raw), or pass out_dir"
        ) from exc
    paths = {k: out / v for k, v in RAW_FILES.items()} | {"manifest": out / MANIFEST_FILE}
    if not force and _manifest_matches(raw_manifest(out), spec, out):
        return paths
    paths["manifest"].unlink(missing_ok=True)  # no manifest describes half-written files

    t0 = time.perf_counter()
    frames = generate(spec)
    frames_by_file = {"customers": frames["customers"], "plants": frames["plants"],
                      "clickstream": frames["impressions"], "orders": frames["orders"]}
    rng = _streams(spec.seed)["corrupt"]
    n_bad_max = {k: round(spec.bad_fraction * len(v)) + 1 for k, v in frames_by_file.items()}
    n_cust, n_plant = len(frames["customers"]), len(frames["plants"])
    w_c = max(6, len(str(n_cust + n_bad_max["customers"] + 1)))
    w_p = max(4, len(str(n_plant + n_bad_max["plants"] + 1)))
    unknown = {"customer_id": f"C{n_cust + n_bad_max['customers'] + 1:0{w_c}d}",
               "plant_id": f"P{n_plant + n_bad_max['plants'] + 1:0{w_p}d}"}  # in no file
    n_imp, n_ord = len(frames["impressions"]), len(frames["orders"])
    fresh = {  # ids for malformed records, after every clean id
        "customers": [f"C{i:0{w_c}d}" for i in range(n_cust + 1, n_cust + n_bad_max["customers"] + 1)],
        "plants": [f"P{i:0{w_p}d}" for i in range(n_plant + 1, n_plant + n_bad_max["plants"] + 1)],
        "clickstream": [f"E{i:0{max(8, len(str(n_imp)))}d}" for i in range(n_imp + 1, n_imp + n_bad_max["clickstream"] + 1)],
        "orders": [f"O{i:0{max(7, len(str(n_ord)))}d}" for i in range(n_ord + 1, n_ord + n_bad_max["orders"] + 1)],
    }
    from utils.progress import progress

    files: dict[str, dict[str, Any]] = {}
    for key, name in progress(RAW_FILES.items(), "raw files", total=len(RAW_FILES), unit="file"):
        clean = frames_by_file[key]
        fmt = "csv" if name.endswith(".csv") else "jsonl"
        bad, by_kind = _bad_lines(rng, key, clean, spec.bad_fraction, fresh[key], unknown)
        size, sha = _write_records(paths[key], clean, fmt, bad, rng)
        files[name] = {
            "format": fmt,
            "records": len(clean) + len(bad),
            "clean_records": len(clean),
            "bad_records": len(bad),
            "bad_by_kind": by_kind,
            "bytes": size,
            "sha256": sha,
        }
    start, current_start, end = window_bounds(spec)
    manifest = {
        "generator": "utils.datagen",
        "generator_version": GENERATOR_VERSION,
        "spec": dataclasses.asdict(spec),
        "window": {"start": start.isoformat(), "current_start": current_start.isoformat(), "end": end.isoformat()},
        "entities": {k: len(v) for k, v in frames.items()},
        "files": files,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "generation_seconds": round(time.perf_counter() - t0, 3),
    }
    _write_atomic(paths["manifest"], json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return paths


def raw_manifest(out_dir: Path | None = None) -> dict | None:
    """The ``manifest.json`` of the raw folder, or None when no raw files were landed there."""
    from utils.platform import raw_data_dir

    path = (Path(out_dir) if out_dir is not None else raw_data_dir()) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: delete it and call land_raw_files() again") from exc


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m utils.datagen --rows 20000 --scenario baseline``."""
    p = argparse.ArgumentParser(description="Land the synthetic plantly.shop raw files.")
    defaults = GeneratorSpec()
    p.add_argument("--rows", type=int, default=defaults.rows)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--scenario", choices=SCENARIOS, default=defaults.scenario)
    p.add_argument("--bad-fraction", type=float, default=defaults.bad_fraction)
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    spec = GeneratorSpec(rows=a.rows, seed=a.seed, scenario=a.scenario, bad_fraction=a.bad_fraction)
    paths = land_raw_files(spec, a.out_dir, force=a.force)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))


if __name__ == "__main__":
    main()
