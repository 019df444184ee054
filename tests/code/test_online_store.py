"""The SQLite online store: publish the latest row per key, look keys up, never fail on a bad key."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import table
from utils.local import online_store as online
from utils.local.feature_spec import FeatureSpec, LookupSpec
from utils.local.online_publish import publish


def _name() -> str:
    return table("test", f"online_{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def store(tmp_path: Path) -> online.SqliteOnlineStore:
    return online.SqliteOnlineStore(tmp_path / "online.db")


def _history(seed: int = 0, customers: int = 20, rows: int = 200) -> pd.DataFrame:
    """A time series feature table with several rows per customer."""
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2024-01-01")
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(0, customers, rows),
            "ts": base + pd.to_timedelta(rng.choice(10_000, rows, replace=False), unit="min"),
            "spend": rng.normal(50, 10, rows).round(2),
            "orders": rng.integers(0, 9, rows),
            "segment": rng.choice(["new", "loyal", "lapsed"], rows),
            "vip": rng.random(rows) > 0.5,
        }
    )
    return frame


def test_publish_keeps_the_latest_row_per_key(store):
    name = _name()
    history = _history()
    written = publish(history, name, ["customer_id", "ts"], "ts", store=store, source_version=3)
    expected = history.sort_values("ts").groupby("customer_id").tail(1).set_index("customer_id").sort_index()
    got = pd.DataFrame(online.lookup(name, [{"customer_id": int(k)} for k in expected.index], store=store))
    got = got.set_index("customer_id")
    assert written == len(expected)
    pd.testing.assert_series_equal(got["spend"], expected["spend"], check_names=False)
    assert list(got["ts"]) == list(expected["ts"])
    assert got["vip"].map(type).eq(bool).all()
    assert online.online_table_info(name, store).source_version == 3
    assert online.source_versions([name, name], store) == {name: 3}
    never = table("test", "never_published")
    with pytest.raises(online.OnlineTableNotFoundError, match=never):
        online.source_versions([name, never], store)


def test_lookup_returns_python_values_in_input_order(store):
    name = _name()
    history = _history(1)
    publish(history, name, ["customer_id", "ts"], "ts", store=store)
    latest = history.sort_values("ts").groupby("customer_id").tail(1).set_index("customer_id")
    ids = [int(i) for i in latest.index[:5]][::-1]
    got = online.lookup(name, [{"customer_id": i} for i in ids], store=store)
    assert [g["customer_id"] for g in got] == ids
    for g in got:
        row = latest.loc[g["customer_id"]]
        assert g["spend"] == pytest.approx(row["spend"])
        assert g["orders"] == row["orders"] and isinstance(g["orders"], int)
        assert g["segment"] == row["segment"]
        assert g["vip"] is bool(row["vip"])
        assert g["ts"] == row["ts"].to_pydatetime()


def test_unknown_or_malformed_keys_get_defaults_never_an_exception(store):
    name = _name()
    publish(_history(2, customers=5), name, ["customer_id", "ts"], "ts", store=store)
    requests = [{"customer_id": 10_000}, {"customer_id": "not-a-number"}, {}, {"customer_id": None},
                {"customer_id": [1, 2]}, {"customer_id": float("nan")}]
    got = online.lookup(name, requests, feature_names=["spend", "segment"],
                        default={"spend": 0.0, "segment": "unknown"}, store=store)
    assert len(got) == len(requests)
    assert all(g["spend"] == 0.0 and g["segment"] == "unknown" for g in got)
    single = online.lookup(name, {"customer_id": -1}, store=store)
    assert single[0]["spend"] is None and single[0]["customer_id"] == -1


def test_key_values_are_coerced_to_the_key_type(store):
    name = _name()
    frame = pd.DataFrame({"customer_id": [1, 2], "spend": [10.0, 20.0]})
    publish(frame, name, ["customer_id"], store=store)
    got = online.lookup(name, [{"customer_id": "2"}, {"customer_id": np.int64(1)}, {"customer_id": 1.0}], store=store)
    assert [g["spend"] for g in got] == [20.0, 10.0, 10.0]


def test_batch_lookup_with_a_composite_key(store):
    name = _name()
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"customer_id": np.repeat(np.arange(10), 10), "plant_id": np.tile([f"p{i}" for i in range(10)], 10)})
    frame["affinity"] = rng.random(len(frame))
    publish(frame, name, ["customer_id", "plant_id"], store=store)
    picks = frame.sample(50, random_state=3)
    requests = picks[["customer_id", "plant_id"]].to_dict("records") + [{"customer_id": 1, "plant_id": "nope"}]
    got = online.lookup(name, requests, default=-1.0, store=store)
    assert [g["affinity"] for g in got[:-1]] == pytest.approx(list(picks["affinity"]))
    assert got[-1]["affinity"] == -1.0


def test_republishing_is_idempotent_and_never_goes_back_in_time(store):
    name = _name()
    history = _history(4)
    publish(history, name, ["customer_id", "ts"], "ts", store=store)
    keys = [{"customer_id": int(k)} for k in sorted(history["customer_id"].unique())]
    first = online.lookup(name, keys, store=store)
    publish(history, name, ["customer_id", "ts"], "ts", store=store)
    older = history.sort_values("ts").groupby("customer_id").head(1)  # each customer's oldest row
    publish(older, name, ["customer_id", "ts"], "ts", store=store)
    assert online.lookup(name, keys, store=store) == first


def test_publish_updates_changed_rows_and_adds_new_columns(store):
    name = _name()
    publish(pd.DataFrame({"plant_id": [1, 2], "price": [5.0, 6.0]}), name, ["plant_id"], store=store)
    publish(pd.DataFrame({"plant_id": [2, 3], "price": [7.5, 8.0], "care": ["easy", "hard"]}), name,
                   ["plant_id"], store=store)
    got = online.lookup(name, [{"plant_id": 1}, {"plant_id": 2}, {"plant_id": 3}], store=store)
    assert [g["price"] for g in got] == [5.0, 7.5, 8.0]
    assert [g["care"] for g in got] == [None, "easy", "hard"]


@pytest.mark.parametrize("keys", [{"plant_id": [1, 2]}, {"plant_id": ["a", "b"], "region": ["eu", "us"]}])
def test_store_uses_wal_and_searches_by_key(store, keys):
    name = _name()
    publish(pd.DataFrame({**keys, "price": [5.0, 6.0]}), name, list(keys), store=store)
    conn = sqlite3.connect(store.db_path())
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    where = " AND ".join(f"{k} = ?" for k in keys)
    plan = conn.execute(f'EXPLAIN QUERY PLAN SELECT price FROM "{name}" WHERE {where}', [v[0] for v in keys.values()])
    steps = [str(step) for step in plan.fetchall()]
    assert steps and all("SEARCH" in s and ("PRIMARY KEY" in s or "INDEX" in s) for s in steps), steps
    conn.close()


def test_unpublished_table_is_a_clear_error(store):
    with pytest.raises(online.OnlineTableNotFoundError, match="publish"):
        online.lookup(table("test", "never_published"), {"customer_id": 1}, store=store)


def test_default_store_lives_in_the_state_dir(isolated_state):
    assert online.SqliteOnlineStore().db_path() == isolated_state.resolve() / "online" / online.DEFAULT_DB_NAME


def test_the_online_lookup_builds_the_model_frame_from_keys(store):
    customers, plants = _name(), _name()
    history = _history(5, customers=6)
    publish(history, customers, ["customer_id", "ts"], "ts", store=store)
    publish(pd.DataFrame({"plant_id": [1, 2], "price": [5.0, 6.0]}), plants, ["plant_id"], store=store)
    spec = FeatureSpec(
        lookups=[
            LookupSpec(customers, ["customer_id"], ["spend", "orders"], rename_outputs={"spend": "customer_spend"},
                       timestamp_lookup_key="event_ts", default_values={"customer_spend": 0.0},
                       primary_keys=["customer_id"], timeseries_column="ts"),
            LookupSpec(plants, ["plant_id"], ["price"], primary_keys=["plant_id"]),
        ],
        source_columns=["customer_id", "plant_id", "event_ts", "label"],
        labels=["label"],
        exclude_columns=["customer_id", "plant_id", "event_ts"],
        output_columns=["customer_spend", "orders", "price", "label"],
        data_types={"customer_spend": "double", "orders": "bigint", "price": "double"},
    )
    records = [{"customer_id": 0, "plant_id": 2}, {"customer_id": 999, "plant_id": 7}]
    frame = online.OnlineFeatureLookup(spec.to_dict(), store)(records)
    latest = history.sort_values("ts").groupby("customer_id").tail(1).set_index("customer_id")
    assert frame.loc[0, "customer_spend"] == pytest.approx(latest.loc[0, "spend"])
    assert frame.loc[0, "price"] == 6.0
    assert frame.loc[1, "customer_spend"] == 0.0  # default for an unknown customer
    assert pd.isna(frame.loc[1, "price"]) and pd.isna(frame.loc[1, "orders"])
    assert frame["customer_spend"].dtype == np.float64
    overridden = online.OnlineFeatureLookup(spec, store)([{"customer_id": 0, "plant_id": 1, "price": 99.0}])
    assert overridden.loc[0, "price"] == 99.0  # a feature sent with the request wins
    same, misses = online.OnlineFeatureLookup(spec, store).lookup(records)
    pd.testing.assert_frame_equal(same, frame)
    # record 1's keys are in neither table; each lookup with a feature lacking a default names its key
    assert misses == {1: ["unknown customer_id 999", "unknown plant_id 7"]}
    columns, column_misses = online.OnlineFeatureLookup(spec, store).lookup_records(records)  # the serving path
    pd.testing.assert_frame_equal(pd.DataFrame(columns), frame)
    assert column_misses == misses


def test_the_online_lookup_names_an_unpublished_table(store):
    publish(pd.DataFrame({"plant_id": [1], "price": [5.0]}), _name(), ["plant_id"], store=store)
    missing = table("test", "missing")
    spec = FeatureSpec(lookups=[LookupSpec(missing, ["plant_id"], ["price"], primary_keys=["plant_id"])],
                       source_columns=["plant_id"], labels=[], exclude_columns=[], output_columns=["price"])
    with pytest.raises(online.OnlineTableNotFoundError, match=missing):
        online.OnlineFeatureLookup(spec, store)([{"plant_id": 1}])


def test_timestamps_and_dates_round_trip(store):
    name = _name()
    frame = pd.DataFrame({
        "k": ["a", "b"],
        "seen": pd.to_datetime(["2024-03-01 10:00:00.123456", None]).tz_localize("UTC"),
        "day": [dt.date(2024, 3, 1), dt.date(2024, 3, 2)],
        "tags": [["x", "y"], []],
    })
    publish(frame, name, ["k"], store=store)
    got = {g["k"]: g for g in online.lookup(name, [{"k": "a"}, {"k": "b"}], store=store)}
    assert got["a"]["seen"] == dt.datetime(2024, 3, 1, 10, 0, 0, 123456)
    assert got["b"]["seen"] is None
    assert got["a"]["day"] == dt.date(2024, 3, 1)
    assert got["a"]["tags"] == ["x", "y"]


def test_served_model_finds_its_store(tmp_path, monkeypatch):
    recorded = tmp_path / "logged" / "online.db"
    recorded.parent.mkdir()
    recorded.touch()
    data = tmp_path / "model_data"
    data.mkdir()
    (data / online.SERVING_FILE).write_text(f'{{"online_store": "{recorded}"}}')
    monkeypatch.setenv("MLOPS_ONLINE_STORE", str(tmp_path / "explicit.db"))
    assert online.serving_store(data).db_path() == (tmp_path / "explicit.db").resolve()
    monkeypatch.delenv("MLOPS_ONLINE_STORE")
    assert online.serving_store(data).db_path() == online.SqliteOnlineStore().db_path()  # MLOPS_STATE_DIR is set
    monkeypatch.delenv("MLOPS_STATE_DIR")
    assert online.serving_store(data).db_path() == recorded.resolve()  # a server that knows no state folder
