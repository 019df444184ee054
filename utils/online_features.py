"""Model inputs from keys: the recommender's input columns for keys-only records, from the online store.

A keys-only request or event carries a customer, a plant and the request context (page, position,
price); :class:`OnlineFeatures` looks the customer's and the plant's features up in the online store
and returns the model's input columns. The router (``utils.deploy``) and the streaming scorer
(``utils.scoring.StreamScorer``) both build their inputs here, so a request and an event with the same
keys score alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utils.config import Config
from utils.plantly_features import FEATURES, feature_table_names

REQUEST_COLUMNS = ["customer_id", "plant_id", "page", "position", "price"]
"""What a keys-only record carries: the lookup keys and the request context."""
CUSTOMER_FEATURES = ["region", "age_band", "device", "tenure_days"]
CUSTOMER_ACTIVITY = {"cust_impressions_30d": 0.0, "cust_purchase_rate_30d": 0.0}
PLANT_FEATURES = ["category", "care_level", "light_needs", "invasive"]
PLANT_ACTIVITY = {"plant_impressions_30d": 0.0, "plant_purchase_rate_30d": 0.0}
_MISSING = object()


class UnknownKeyError(LookupError):
    """A record names a customer or plant the online store does not know."""


def ensure_online_features(cfg: Config | None = None) -> dict[str, int | None]:
    """Publish every feature table to the online store unless it is there already; returns the published versions."""
    from utils.features import feature_client, publish_online
    from utils.local import online_store

    present = set(online_store.list_online_tables())
    fe, versions = None, {}
    for table in feature_table_names(cfg).values():
        if table not in present:
            fe = fe or feature_client()
            publish_online(table, fe)
        versions[table] = online_store.online_table_info(table).source_version
    return versions


def unknown_keys_message(unknown: Mapping[int, str]) -> str:
    """One line for records whose keys the online store does not hold: ``{record position: "unknown <key> <value>"}``.

    The first five records are named; the line says when new customers and plants become servable.
    """
    shown = "; ".join(f"record {i}: {why}" for i, why in list(unknown.items())[:5])
    return (f"{shown}: the online store has no features for it "
            "(new customers and plants are served after the next feature publish)")


class OnlineFeatures:
    """Builds the model's 15 input columns for keys-only request records from the online store."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.tables = feature_table_names(cfg)

    def versions(self) -> dict[str, int | None]:
        """The Delta version each online table was published from (recorded with every prediction)."""
        from utils.local import online_store

        return {t: online_store.online_table_info(t).source_version for t in self.tables.values()}

    def build(self, records: Sequence[Mapping[str, Any]], strict: bool = True) -> tuple[pd.DataFrame, dict[int, str]]:
        """The records with their features; unknown customers/plants raise (``strict``) or are returned by index."""
        from utils.local import online_store

        t = self.tables
        cust = online_store.lookup(t["customer"], [{"customer_id": r["customer_id"]} for r in records],
                                   CUSTOMER_FEATURES, default=_MISSING)
        plant = online_store.lookup(t["plant"], [{"plant_id": r["plant_id"]} for r in records],
                                    PLANT_FEATURES, default=_MISSING)
        cust_act = online_store.lookup(t["customer_activity"], [{"customer_id": r["customer_id"]} for r in records],
                                       list(CUSTOMER_ACTIVITY), default=CUSTOMER_ACTIVITY)
        plant_act = online_store.lookup(t["plant_activity"], [{"plant_id": r["plant_id"]} for r in records],
                                        list(PLANT_ACTIVITY), default=PLANT_ACTIVITY)
        unknown: dict[int, str] = {}
        rows = []
        for i, rec in enumerate(records):
            problems = []
            if cust[i]["region"] is _MISSING:
                problems.append(f"unknown customer_id {rec['customer_id']!r}")
            if plant[i]["category"] is _MISSING:
                problems.append(f"unknown plant_id {rec['plant_id']!r}")
            if problems:
                unknown[i] = "; ".join(problems)
            row = {k: rec[k] for k in REQUEST_COLUMNS}
            for part in (cust[i], plant[i], cust_act[i], plant_act[i]):
                row.update({k: (None if v is _MISSING else v) for k, v in part.items()})
            rows.append(row)
        if unknown and strict:
            raise UnknownKeyError(unknown_keys_message(unknown))
        return pd.DataFrame(rows, columns=[*REQUEST_COLUMNS, *[f for f in FEATURES if f not in REQUEST_COLUMNS]]), unknown
