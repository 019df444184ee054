"""The synthetic plantly.shop's fixed facts (vocabularies, plant species, scenario knobs) and what to generate
(``GeneratorSpec``, its windows ``window_bounds``). The data dictionary is ``data/raw/README.md``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
