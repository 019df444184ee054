"""Publishing to the local online store (the latest row per key of a feature table) and dropping from it.

The write side of ``utils.local.online_store`` (the store's layout is described there). Served models
never publish, so this module is not shipped inside them.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from utils.local.online_store import (META_TABLE, OnlineTableInfo, OnlineTableNotFoundError, SqliteOnlineStore, connect,
                                      quoted, table_meta)
from utils.local.online_values import column_to_sql, kind_of, sql_type

if TYPE_CHECKING:
    import pandas as pd


def publish(
    df: pd.DataFrame,
    table_name: str,
    primary_keys: Sequence[str],
    timeseries_column: str | None = None,
    store: SqliteOnlineStore | str | Path | None = None,
    source_version: int | None = None,
    features: Sequence[str] | None = None,
) -> int:
    """Upsert the latest row per key of ``df`` into the online table; returns the rows written.

    The lookup keys are ``primary_keys`` without ``timeseries_column``; ``features`` (default: every other
    column) limits what is published. Idempotent: publishing the same data twice leaves the store unchanged.
    For a time series table a row replaces the stored one only if its timestamp is not older, so publishing
    an old table version never moves the online value back in time.

    Raises ``ValueError`` when there is no key besides the timeseries column, a key column or feature is not
    in ``df``, or the table was published before with other keys or another timeseries column.
    """
    keys = [k for k in primary_keys if k != timeseries_column]
    latest = _latest_rows(df, table_name, keys, timeseries_column, features)
    kinds = {c: kind_of(latest[c]) for c in latest.columns}

    conn = connect(store, create=True)
    existing = table_meta(conn, table_name)
    conn.execute("BEGIN IMMEDIATE")
    try:
        kinds = _create_or_extend(conn, table_name, existing, kinds, keys, timeseries_column)
        cols = list(latest.columns)
        columns = [column_to_sql(latest[c], kinds[c]) for c in cols]
        conn.executemany(_upsert_sql(table_name, cols, keys, timeseries_column), zip(*columns))
        conn.execute(
            f"INSERT INTO {META_TABLE} (name, keys, timeseries_column, kinds, source_version, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET kinds = excluded.kinds, "
            "source_version = excluded.source_version, published_at = excluded.published_at",
            (table_name, json.dumps(keys), timeseries_column, json.dumps(kinds), source_version,
             dt.datetime.now(dt.UTC).isoformat()),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(latest)


def drop_online_table(table_name: str, store: SqliteOnlineStore | str | Path | None = None) -> bool:
    """Remove a table from the online store; returns whether it was there."""
    try:
        conn = connect(store)
    except OnlineTableNotFoundError:
        return False
    if table_meta(conn, table_name) is None:
        return False
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"DROP TABLE IF EXISTS {quoted(table_name)}")
    conn.execute(f"DELETE FROM {META_TABLE} WHERE name = ?", (table_name,))
    conn.execute("COMMIT")
    return True


def _latest_rows(df: pd.DataFrame, table_name: str, keys: list[str], timeseries_column: str | None,
                 features: Sequence[str] | None) -> pd.DataFrame:
    """The keys, timeseries column and ``features`` of ``df``, the latest row per key (all rows without a series)."""
    if not keys:
        raise ValueError(f"feature table {table_name!r} has no primary key besides its timeseries column")
    ts_cols = [timeseries_column] if timeseries_column else []
    missing = [c for c in [*keys, *ts_cols] if c not in df.columns]
    if missing:
        raise ValueError(f"cannot publish {table_name!r}: key columns {missing} are not in the data")
    if features is not None:
        unknown = [f for f in features if f not in df.columns]
        if unknown:
            raise ValueError(f"cannot publish {table_name!r}: features {unknown} are not columns of the table")
        df = df[keys + ts_cols + [f for f in features if f not in keys and f not in ts_cols]]
    if timeseries_column is None:
        return df
    ordered = df.sort_values(list(keys) + [timeseries_column], kind="stable")
    return ordered.drop_duplicates(list(keys), keep="last").reset_index(drop=True)


def _create_or_extend(conn: sqlite3.Connection, table_name: str, existing: OnlineTableInfo | None,
                      kinds: dict[str, str], keys: list[str], timeseries_column: str | None) -> dict[str, str]:
    """Create the online table, or add the columns it lacks; returns the kind of every column it holds."""
    if existing is None:
        cols = ", ".join(f"{quoted(c)} {sql_type(k)}" for c, k in kinds.items())
        conn.execute(f"CREATE TABLE {quoted(table_name)} ({cols}, PRIMARY KEY ({', '.join(map(quoted, keys))}))")
        return kinds
    if existing.keys != keys or existing.timeseries_column != timeseries_column:
        raise ValueError(
            f"online table {table_name!r} was published with keys {existing.keys} and timeseries column "
            f"{existing.timeseries_column!r}, not {keys} / {timeseries_column!r}: drop it first with "
            "utils.local.online_publish.drop_online_table(...)"
        )
    for c, k in kinds.items():
        if c not in existing.kinds:
            conn.execute(f"ALTER TABLE {quoted(table_name)} ADD COLUMN {quoted(c)} {sql_type(k)}")
    return {**existing.kinds, **{c: existing.kinds.get(c, k) for c, k in kinds.items()}}


def _upsert_sql(table_name: str, cols: list[str], keys: list[str], timeseries_column: str | None) -> str:
    """The INSERT that adds new keys and updates stored ones (only from a row not older, for a time series)."""
    updates = [c for c in cols if c not in keys]
    sql = (
        f"INSERT INTO {quoted(table_name)} ({', '.join(map(quoted, cols))}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT ({', '.join(map(quoted, keys))}) DO "
    )
    if not updates:
        return sql + "NOTHING"
    sql += "UPDATE SET " + ", ".join(f"{quoted(c)} = excluded.{quoted(c)}" for c in updates)
    if timeseries_column:
        sql += f" WHERE excluded.{quoted(timeseries_column)} >= {quoted(table_name)}.{quoted(timeseries_column)}"
    return sql
