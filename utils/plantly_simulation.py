"""The plantly.shop simulation: customers, plants, sessions, impressions and orders, as clean frames.

Deterministic for a seed, sized by ``rows`` (the number of impressions), vectorised numpy/pandas.
Purchases follow a logistic model of hidden customer preferences (category affinity, price
sensitivity, green thumb, home light) and observable context (position, page, device, age band,
region), so a model has something to learn and SHAP/fairness have something to show.

Scenarios change only the final "current" window (the last 20% of the date range); the reference
window is identical across scenarios for the same seed, so monitoring compares like with like.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils import plantly_shop as shop

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
# Mean category affinity by region and by age band (rows follow shop.REGIONS / shop.AGE_BANDS, columns shop.CATEGORIES).
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



def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per part of the simulation (and ``corrupt`` for the malformed records)."""
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
    rng: np.random.Generator, n: int, first_number: int, spec: shop.GeneratorSpec, new_segment: bool
) -> dict[str, np.ndarray]:
    """Observable attributes and hidden preferences of ``n`` customers as column arrays."""
    start, current_start, end = shop.window_bounds(spec)
    end_day = (end - pd.Timedelta(days=1)).date()
    if new_segment:
        region = np.full(n, len(shop.REGIONS))  # index of shop.NEW_SEGMENT_REGION
        age = rng.choice(5, size=n, p=[0.55, 0.35, 0.07, 0.02, 0.01])
        device = rng.choice(3, size=n, p=[0.85, 0.10, 0.05])
        cur_day = current_start.date()
        signup_offset = (end_day - cur_day).days + rng.integers(1, 8, size=n)  # the week before they appear
        affinity = _NEW_SEGMENT_AFFINITY + rng.normal(0, 0.5, size=(n, len(shop.CATEGORIES)))
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
        affinity = _REGION_AFFINITY[region] + _AGE_AFFINITY[age] + rng.normal(0, 0.8, size=(n, len(shop.CATEGORIES)))
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


def _make_plants(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plant attributes as column arrays; exactly ``round(8%)`` (at least one) are invasive."""
    species = np.array(shop.SPECIES, dtype=object)
    invasive_sp = np.flatnonzero(species[:, 3].astype(bool))
    native_sp = np.flatnonzero(~species[:, 3].astype(bool))
    n_inv = max(1, round(shop.INVASIVE_FRACTION * n))
    invasive = np.zeros(n, dtype=bool)
    invasive[rng.choice(n, size=min(n_inv, n), replace=False)] = True
    sp = np.where(invasive, rng.choice(invasive_sp, size=n), rng.choice(native_sp, size=n))
    cultivar = np.array(_CULTIVARS, dtype=object)[rng.integers(0, len(_CULTIVARS), size=n)]
    common = species[sp, 1]
    name = np.where(cultivar == "", common, common + " '" + cultivar + "'")
    price = np.maximum(1.99, np.round(species[sp, 4].astype(float) * rng.lognormal(0, 0.25, size=n), 2))
    care = np.array([shop.CARE_LEVELS.index(c) for c in species[sp, 5]]) + rng.choice([-1, 0, 0, 0, 0, 1], size=n)
    stock = np.where(rng.random(n) < 0.05, 0, rng.integers(1, 300, size=n))
    return {
        "species": species[sp, 0],
        "name": name,
        "category": np.array([shop.CATEGORIES.index(c) for c in species[sp, 2]]),
        "price": price,
        "care": np.clip(care, 0, 2),
        "light": np.array([shop.LIGHT_NEEDS.index(v) for v in species[sp, 6]]),
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
    for c in range(len(shop.CATEGORIES)):
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
    r: np.random.Generator, spec: shop.GeneratorSpec, cust: dict[str, np.ndarray], n_core: int
) -> dict[str, np.ndarray]:
    """Sessions (ordered by start time): length, start second, customer, page and topic category."""
    n_rows = spec.rows
    start, current_start, end = shop.window_bounds(spec)
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
    spec: shop.GeneratorSpec,
    cust: dict[str, np.ndarray],
    plants: dict[str, np.ndarray],
    sess: dict[str, np.ndarray],
    imp: dict[str, np.ndarray],
    n_core: int,
) -> None:
    """Who sees what in the current window: new-segment sessions, spiked categories (in place)."""
    if spec.scenario == "new_segment":
        takeover = sess["current"] & (s.random(len(sess["start"])) < shop.NEW_SEGMENT_SESSION_SHARE)
        new_idx = np.arange(n_core, len(cust["number"]))
        sess["customer"][takeover] = new_idx[_sample_index(s, cust["activity"][new_idx], int(takeover.sum()))]
        sess["topic"][takeover] = _session_category(s, cust["affinity"][sess["customer"][takeover]])
        rows = np.flatnonzero(takeover[imp["session"]])
        wanted = np.where(imp["targeted"][rows], sess["topic"][imp["session"][rows]], -1)
        imp["plant"][rows] = _draw_plants(s, wanted, plants)
    if spec.scenario == "demand_spike":
        rows = np.flatnonzero(imp["current"] & (s.random(len(imp["plant"])) < shop.SPIKE_TRAFFIC_SHARE))
        spiked = np.array([shop.CATEGORIES.index(c) for c in shop.SPIKE_CATEGORIES])
        imp["plant"][rows] = _draw_plants(s, spiked[s.integers(0, spiked.size, size=rows.size)], plants)


def _apply_price_scenario(
    s: np.random.Generator, spec: shop.GeneratorSpec, plants: dict[str, np.ndarray], imp: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Price shown per impression, and which plants were raised (catalogue updated in place)."""
    price = plants["price"][imp["plant"]]
    raised = np.zeros(len(plants["price"]), dtype=bool)
    if spec.scenario == "price_change":
        raised[s.choice(len(raised), size=max(1, round(shop.PRICE_CHANGE_SHARE * len(raised))), replace=False)] = True
        factor = np.where(raised, s.uniform(*shop.PRICE_RAISE_RANGE, size=len(raised)), 1.0)
        new_price = np.round(plants["price"] * factor, 2)
        price = np.where(imp["current"], new_price[imp["plant"]], price)
        plants["price"] = new_price  # the catalogue is a snapshot as of end_date
    return price, raised


def _purchase_logit(
    spec: shop.GeneratorSpec,
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
        _AGE_EFFECT[cust["age"][customer]] + _REGION_EFFECT[np.minimum(cust["region"][customer], len(shop.REGIONS) - 1)],
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
        spiked = np.isin(cat, [shop.CATEGORIES.index(c) for c in shop.SPIKE_CATEGORIES])
        logit = logit + shop.SPIKE_LOGIT * (imp["current"] & spiked)
    if spec.scenario == "price_change":
        logit = logit + shop.STICKER_SHOCK_LOGIT * (imp["current"] & raised[plant])
    return logit


def _outcomes(o: np.random.Generator, spec: shop.GeneratorSpec, logit: np.ndarray, imp: dict[str, np.ndarray]) -> dict:
    """Click, purchase, order time, quantity and label time per impression.

    The random numbers are drawn for every impression whatever the scenario (common random
    numbers), so the reference window is identical across scenarios.
    """
    n = len(logit)
    u_buy, u_click, u_late = o.random(n), o.random(n), o.random(n)
    delay_s = o.integers(60, shop.ATTRIBUTION_MINUTES * 60, size=n)
    late_s = o.integers(shop.LATE_LABEL_DAYS[0] * 86400, shop.LATE_LABEL_DAYS[1] * 86400, size=n)
    quantity = 1 + (o.random(n)[:, None] > np.array([0.75, 0.93])).sum(axis=1)
    purchased = u_buy < 1.0 / (1.0 + np.exp(-logit))
    p_click = 1.0 / (1.0 + np.exp(-(-1.5 + 0.6 * (logit - _INTERCEPT))))
    order_s = imp["event_s"] + delay_s
    label_s = np.where(purchased, order_s, imp["event_s"] + shop.ATTRIBUTION_MINUTES * 60)
    if spec.scenario == "late_labels":
        late = purchased & imp["current"] & (u_late < shop.LATE_LABEL_SHARE)
        label_s = np.where(late, order_s + late_s, label_s)
    return {"purchased": purchased, "clicked": purchased | (u_click < p_click), "order_s": order_s,
            "label_s": label_s, "quantity": quantity}


def _simulate(spec: shop.GeneratorSpec) -> dict[str, pd.DataFrame]:
    """Run the whole simulation for ``spec``: the clean frames of :func:`generate` plus ``latent``."""
    rng = random_streams(spec.seed)
    n_core = spec.customer_count
    cust = _make_customers(rng["customers"], n_core, 1, spec, new_segment=False)
    if spec.scenario == "new_segment":
        n_new = max(5, round(n_core * shop.NEW_SEGMENT_CUSTOMER_SHARE))
        new = _make_customers(rng["new_segment"], n_new, n_core + 1, spec, new_segment=True)
        cust = {k: np.concatenate([cust[k], new[k]]) for k in cust}
    plants = _make_plants(rng["plants"], spec.plant_count)
    cat_ref = np.array([np.median(plants["price"][plants["category"] == c]) if (plants["category"] == c).any()
                        else 1.0 for c in range(len(shop.CATEGORIES))])  # list prices before any change
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
) -> dict[str, pd.DataFrame]:
    """The simulation as data frames, impressions and orders in time order and numbered that way."""
    n_cust, n_plant, n_sess, n_rows = len(cust["number"]), len(plants["price"]), len(sess["start"]), len(price)
    cust_ids = _ids("C", 1, n_cust + 1, max(6, len(str(n_cust))))
    plant_ids = _ids("P", 1, n_plant + 1, max(4, len(str(n_plant))))
    sess_ids = _ids("S", 1, n_sess + 1, max(7, len(str(n_sess))))
    customers = pd.DataFrame({
        "customer_id": cust_ids,
        "signup_date": [d.item() for d in cust["signup"]],
        "region": np.array((*shop.REGIONS, shop.NEW_SEGMENT_REGION), dtype=object)[cust["region"]],
        "age_band": np.array(shop.AGE_BANDS, dtype=object)[cust["age"]],
        "device": np.array(shop.DEVICES, dtype=object)[cust["device"]],
        "tenure_days": cust["tenure"],
        "email": cust["email"],
    })
    plants_df = pd.DataFrame({
        "plant_id": plant_ids,
        "name": plants["name"],
        "species": plants["species"],
        "category": np.array(shop.CATEGORIES, dtype=object)[plants["category"]],
        "price": plants["price"].astype(float),
        "care_level": np.array(shop.CARE_LEVELS, dtype=object)[plants["care"]],
        "light_needs": np.array(shop.LIGHT_NEEDS, dtype=object)[plants["light"]],
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
        "page": np.array(shop.PAGES, dtype=object)[sess["page"][imp["session"][ro]]],
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
    return {"customers": customers, "plants": plants_df, "impressions": impressions, "orders": orders,
            "latent": _latent_frame(cust, cust_ids)}


def _latent_frame(cust: dict[str, np.ndarray], cust_ids: np.ndarray) -> pd.DataFrame:
    """The hidden preferences per customer: segment, category affinities, price sensitivity, green thumb, light."""
    latent = pd.DataFrame({"customer_id": cust_ids, "segment": np.where(cust["new"], "new", "core")})
    for j, c in enumerate(shop.CATEGORIES):
        latent[f"affinity_{c}"] = cust["affinity"][:, j]
    latent["price_sensitivity"] = cust["price_sens"]
    latent["green_thumb"] = cust["green"]
    latent["home_light"] = np.array(shop.LIGHT_NEEDS, dtype=object)[cust["light"]]
    return latent


def _ts(seconds: np.ndarray) -> pd.Series:
    """UTC timestamps (microsecond precision) from epoch seconds."""
    return pd.Series(seconds.astype("datetime64[s]").astype("datetime64[us]")).dt.tz_localize("UTC")


def generate(spec: shop.GeneratorSpec) -> dict[str, pd.DataFrame]:
    """Clean frames ``customers``, ``plants``, ``impressions``, ``orders`` for ``spec`` (no malformed rows)."""
    frames = _simulate(spec)
    del frames["latent"]
    return frames


def latent_preferences(spec: shop.GeneratorSpec) -> pd.DataFrame:
    """The hidden per-customer preferences behind the labels (never written to the raw files)."""
    return _simulate(spec)["latent"]

