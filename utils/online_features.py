"""Model inputs from keys: the recommender's input columns for keys-only records, from the online store.

A keys-only request or event carries a customer, a plant and the request context (page, position,
price); :class:`OnlineFeatures` looks the customer's and the plant's features up in the online store
and returns the model's input columns, for the router (``utils.deploy``). The streaming scorer joins the same
columns from the feature tables' latest rows in Spark (``utils.scoring.StreamScorer``): its callback runs off the driver.
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


def online_and_offline_versions(cfg: Config | None = None) -> dict[str, tuple[int | None, int]]:
    """Per feature table: the Delta version its online copy was published from (None if never) and the offline table's current one."""
    from utils import lakehouse
    from utils.local import online_store

    present = set(online_store.list_online_tables())
    return {table: (online_store.online_table_info(table).source_version if table in present else None,
                    lakehouse.current_version(table))
            for table in feature_table_names(cfg).values()}


def ensure_online_features(cfg: Config | None = None) -> dict[str, int | None]:
    """Publish every feature table that is missing online or older there than offline; returns the published versions.

    A table is stale when the Delta version its online copy came from is behind the offline table's current
    version (e.g. 06 landed new customers after 05 published): it is republished, so a re-run serves them.
    """
    from utils.features import publish_online
    from utils.local import online_store
    from utils.platform import feature_client

    fe = None
    for table, (online, offline) in online_and_offline_versions(cfg).items():
        if online is None or online < offline:
            fe = fe or feature_client()
            publish_online(table, fe)
    return {table: online_store.online_table_info(table).source_version for table in feature_table_names(cfg).values()}


def unknown_key_hint(message: str, cfg: Config | None = None) -> str:
    """For a refusal naming an unknown ``customer_id`` or ``plant_id``: its profile table's online and offline versions
    and the call that publishes it (``""`` when ``message`` names neither).

    Off the request path (it asks the lakehouse for the offline version): the client helper adds it to a 422.
    """
    from utils import lakehouse
    from utils.local import online_store

    names = feature_table_names(cfg)
    notes = []
    for key, table in (("customer_id", names["customer"]), ("plant_id", names["plant"])):
        if f"unknown {key}" not in message:
            continue
        try:
            online: int | None | str = online_store.online_table_info(table).source_version
        except online_store.OnlineTableNotFoundError:
            online = "none (never published)"
        try:
            offline: int | str = lakehouse.current_version(table)
        except Exception as exc:  # noqa: BLE001 - the hint must not hide the refusal it explains
            offline = f"unknown ({type(exc).__name__})"
        state = ("cannot be compared with it" if isinstance(offline, str)
                 else "is current: the key is not in the offline table either" if online == offline
                 else "is behind: publish it with utils.online_features.ensure_online_features(cfg)")
        notes.append(f"{table} is online from Delta version {online} and offline at version {offline}; "
                     f"the online copy {state}")
    return "; ".join(notes)


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

    def build(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """The records with their features (a row per record); raises ``UnknownKeyError`` naming unknown customers/plants."""
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
        if unknown:
            raise UnknownKeyError(unknown_keys_message(unknown))
        return pd.DataFrame(rows, columns=[*REQUEST_COLUMNS, *[f for f in FEATURES if f not in REQUEST_COLUMNS]])
