"""The local online feature store: the latest feature row per key in a SQLite file, for serving.

Layout of the store (one SQLite database, WAL mode, so readers never wait for a publish):

- one table per published feature table, named after it (``"catalog.schema.table"``, quoted),
  holding the lookup keys (the primary keys without the timeseries column) as its PRIMARY KEY,
  the timeseries column if any, and the features;
- ``_online_tables``: per published table its keys, timeseries column, the kind of every column
  (to give lookups back the Python types they were published with), the Delta version it came
  from and when it was published.

Serving never raises for a bad request: an unknown key, a key of the wrong type or a record
without the key gets the defaults (or ``None``). A missing online *table* is a deployment error
and is raised when a lookup is built, naming the table and the fix.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.environment import state_dir  # the served model ships this module: see feature_store._BUNDLED_MODULES

if TYPE_CHECKING:
    import pandas as pd

    from utils.local.feature_spec import FeatureSpec

DEFAULT_DB_NAME = "online_store.db"
META_TABLE = "_online_tables"
_BATCH = 500  # keys per SELECT, well under SQLite's bound-variable limit


class OnlineTableNotFoundError(LookupError):
    """A feature table was looked up online before it was published."""


# ---------------------------------------------------------------- where the store lives


def online_dir() -> Path:
    """Folder holding the local online store database."""
    return state_dir() / "online"


@dataclass(frozen=True)
class SqliteOnlineStore:
    """Local counterpart of an online store spec: a SQLite file (default under ``online_dir()``)."""

    path: str | Path | None = None
    store_type: str = "sqlite"

    def db_path(self) -> Path:
        """Absolute path of the SQLite database file."""
        if not self.path:
            return online_dir() / DEFAULT_DB_NAME
        return _resolved(str(self.path)) if Path(self.path).is_absolute() else Path(self.path).resolve()


@functools.lru_cache(maxsize=256)
def _resolved(path: str) -> Path:
    """``Path(path).resolve()`` of an absolute path, once: every lookup of a served model names the same file."""
    return Path(path).resolve()


_local = threading.local()


def _store(store: SqliteOnlineStore | str | Path | None) -> SqliteOnlineStore:
    if store is None:
        return SqliteOnlineStore()
    if isinstance(store, SqliteOnlineStore):
        return store
    if isinstance(store, (str, Path)):
        return SqliteOnlineStore(path=store)
    raise TypeError(
        f"online_store={store!r} is not a local online store: pass utils.local.online_store.SqliteOnlineStore(path=...) "
        "or None for the default SQLite file"
    )


def _connect(store: SqliteOnlineStore | str | Path | None, create: bool = False) -> sqlite3.Connection:
    """This thread's connection to the store (opened once, WAL mode)."""
    path = _store(store).db_path()
    conns: dict[Path, sqlite3.Connection] = getattr(_local, "conns", None) or {}
    _local.conns = conns
    conn = conns.get(path)
    if conn is not None and path.exists():
        return conn
    if conn is not None:  # the file was deleted under us (e.g. a test reset): reopen
        conn.close()
    if not path.exists() and not create:
        raise OnlineTableNotFoundError(
            f"online store {path} does not exist: publish a feature table first "
            "(feature_client().publish_table(online_store=online_store_spec(), source_table_name=...))"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name TEXT PRIMARY KEY, keys TEXT NOT NULL, "
        "timeseries_column TEXT, kinds TEXT NOT NULL, source_version INTEGER, published_at TEXT NOT NULL)"
    )
    conns[path] = conn
    return conn


def _q(name: str) -> str:
    """A quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- value conversion


def _kind_of(series: pd.Series) -> str:
    """How a pandas column is stored: int, float, bool, str, datetime, date, decimal, bytes or json."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "str"
    sample = series.dropna()
    if sample.empty:
        return "str"
    first = sample.iloc[0]
    if isinstance(first, bool):
        return "bool"
    if isinstance(first, int):
        return "int"
    if isinstance(first, float):
        return "float"
    if isinstance(first, (dt.datetime, pd.Timestamp)):
        return "datetime"
    if isinstance(first, dt.date):
        return "date"
    if isinstance(first, Decimal):
        return "decimal"
    if isinstance(first, (bytes, bytearray)):
        return "bytes"
    if isinstance(first, str):
        return "str"
    return "json"


_SQL_TYPE = {"int": "INTEGER", "bool": "INTEGER", "float": "REAL", "bytes": "BLOB"}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _is_missing(value: Any) -> bool:
    """True for None, NaN, NaT and pandas' NA (never for containers)."""
    import pandas as pd

    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, set, bytes, str)) or hasattr(value, "__len__"):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _to_sql(value: Any, kind: str) -> Any:
    """A Python value as SQLite stores it for a column of ``kind`` (``None`` for missing)."""
    import pandas as pd

    if _is_missing(value):
        return None
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()  # numpy scalar
    if kind == "datetime":
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.isoformat(sep=" ")
    if kind == "date":
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if kind == "bool":
        return int(bool(value))
    if kind == "decimal":
        return str(value)
    if kind == "json":
        return json.dumps(_jsonable(value))
    return value


def _column_to_sql(series: pd.Series, kind: str) -> list[Any]:
    """A pandas column as a list of SQLite values."""
    if kind in {"int", "float", "str"}:
        return series.astype(object).where(series.notna(), None).tolist()
    return [_to_sql(v, kind) for v in series.tolist()]


def _from_sql(value: Any, kind: str) -> Any:
    """The Python value for a stored SQLite value of a column of ``kind``."""
    if value is None:
        return None
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "bool":
        return bool(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "json":
        return json.loads(value)
    if kind == "float":
        return float(value)
    return value


def _key_value(value: Any, kind: str) -> Any:
    """A request's key value coerced to the key column's kind; None when it cannot match any key."""
    try:
        if kind == "int" and isinstance(value, str):
            value = int(value.strip())
        elif kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif kind == "str" and not isinstance(value, str) and not _is_missing(value):
            value = str(value.item() if hasattr(value, "item") else value)
        value = _to_sql(value, kind)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if isinstance(value, (int, float, str, bytes)) else None


# ---------------------------------------------------------------- metadata


@dataclass(frozen=True)
class OnlineTableInfo:
    """What the store knows about one published table."""

    name: str
    keys: list[str]
    timeseries_column: str | None
    kinds: dict[str, str]
    source_version: int | None
    published_at: str

    @property
    def features(self) -> list[str]:
        """Columns other than the lookup keys and the timeseries column."""
        return [c for c in self.kinds if c not in self.keys and c != self.timeseries_column]


def _meta(conn: sqlite3.Connection, table_name: str) -> OnlineTableInfo | None:
    row = conn.execute(
        f"SELECT keys, timeseries_column, kinds, source_version, published_at FROM {META_TABLE} WHERE name = ?",
        (table_name,),
    ).fetchone()
    if row is None:
        return None
    return OnlineTableInfo(table_name, json.loads(row[0]), row[1], json.loads(row[2]), row[3], row[4])


def online_table_info(table_name: str, store: SqliteOnlineStore | str | Path | None = None) -> OnlineTableInfo:
    """Keys, columns and source version of a published table; raises if it was never published."""
    try:
        conn = _connect(store)
    except OnlineTableNotFoundError:
        conn = None
    info = _meta(conn, table_name) if conn is not None else None
    if info is None:
        raise OnlineTableNotFoundError(
            f"feature table {table_name!r} is not in the online store {_store(store).db_path()}: "
            "publish it first with feature_client().publish_table(online_store=online_store_spec(), "
            f"source_table_name={table_name!r})"
        )
    return info


def source_versions(table_names: Sequence[str], store: SqliteOnlineStore | str | Path | None = None,
                    ) -> dict[str, int | None]:
    """The Delta version each of ``table_names`` was last published from, in one query (the serving path).

    Raises ``OnlineTableNotFoundError`` naming a table that was never published, as :func:`online_table_info`.
    """
    names = list(dict.fromkeys(table_names))
    if not names:
        return {}
    conn = _connect(store)
    found = dict(conn.execute(f"SELECT name, source_version FROM {META_TABLE} WHERE name IN "
                              f"({', '.join('?' * len(names))})", names).fetchall())
    for name in names:
        if name not in found:
            online_table_info(name, store)  # raises, naming the table and how to publish it
    return {name: found[name] for name in names}


def list_online_tables(store: SqliteOnlineStore | str | Path | None = None) -> list[str]:
    """Names of the feature tables published to the store."""
    try:
        conn = _connect(store)
    except OnlineTableNotFoundError:
        return []
    return [r[0] for r in conn.execute(f"SELECT name FROM {META_TABLE} ORDER BY name")]


# ---------------------------------------------------------------- publish


def latest_per_key(df: pd.DataFrame, keys: Sequence[str], timeseries_column: str | None) -> pd.DataFrame:
    """The row with the latest ``timeseries_column`` for each key (all rows when there is none)."""
    if timeseries_column is None:
        return df
    ordered = df.sort_values(list(keys) + [timeseries_column], kind="stable")
    return ordered.drop_duplicates(list(keys), keep="last").reset_index(drop=True)


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

    Idempotent: publishing the same data twice leaves the store unchanged. For a time series
    table a row replaces the stored one only if its timestamp is not older, so publishing an old
    table version never moves the online value back in time.
    """
    keys = [k for k in primary_keys if k != timeseries_column]
    if not keys:
        raise ValueError(f"feature table {table_name!r} has no primary key besides its timeseries column")
    missing = [c for c in [*keys, *([timeseries_column] if timeseries_column else [])] if c not in df.columns]
    if missing:
        raise ValueError(f"cannot publish {table_name!r}: key columns {missing} are not in the data")
    if features is not None:
        unknown = [f for f in features if f not in df.columns]
        if unknown:
            raise ValueError(f"cannot publish {table_name!r}: features {unknown} are not columns of the table")
        ts_cols = [timeseries_column] if timeseries_column else []
        df = df[keys + ts_cols + [f for f in features if f not in keys and f not in ts_cols]]
    latest = latest_per_key(df, keys, timeseries_column)
    kinds = {c: _kind_of(latest[c]) for c in latest.columns}

    conn = _connect(store, create=True)
    existing = _meta(conn, table_name)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if existing is None:
            cols = ", ".join(f"{_q(c)} {_SQL_TYPE.get(k, 'TEXT')}" for c, k in kinds.items())
            conn.execute(f"CREATE TABLE {_q(table_name)} ({cols}, PRIMARY KEY ({', '.join(map(_q, keys))}))")
        else:
            if existing.keys != keys or existing.timeseries_column != timeseries_column:
                raise ValueError(
                    f"online table {table_name!r} was published with keys {existing.keys} and timeseries column "
                    f"{existing.timeseries_column!r}, not {keys} / {timeseries_column!r}: drop it first with "
                    "utils.local.online_store.drop_online_table(...)"
                )
            for c, k in kinds.items():
                if c not in existing.kinds:
                    conn.execute(f"ALTER TABLE {_q(table_name)} ADD COLUMN {_q(c)} {_SQL_TYPE.get(k, 'TEXT')}")
            kinds = {**existing.kinds, **{c: existing.kinds.get(c, k) for c, k in kinds.items()}}
        cols = list(latest.columns)
        updates = [c for c in cols if c not in keys]
        sql = (
            f"INSERT INTO {_q(table_name)} ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(map(_q, keys))}) DO "
        )
        if updates:
            sql += "UPDATE SET " + ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in updates)
            if timeseries_column:
                sql += f" WHERE excluded.{_q(timeseries_column)} >= {_q(table_name)}.{_q(timeseries_column)}"
        else:
            sql += "NOTHING"
        columns = [_column_to_sql(latest[c], kinds[c]) for c in cols]
        conn.executemany(sql, zip(*columns))
        conn.execute(
            f"INSERT INTO {META_TABLE} (name, keys, timeseries_column, kinds, source_version, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET kinds = excluded.kinds, "
            "source_version = excluded.source_version, published_at = excluded.published_at",
            (
                table_name,
                json.dumps(keys),
                timeseries_column,
                json.dumps(kinds),
                source_version,
                dt.datetime.now(dt.UTC).isoformat(),
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(latest)


def drop_online_table(table_name: str, store: SqliteOnlineStore | str | Path | None = None) -> bool:
    """Remove a table from the online store; returns whether it was there."""
    try:
        conn = _connect(store)
    except OnlineTableNotFoundError:
        return False
    if _meta(conn, table_name) is None:
        return False
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"DROP TABLE IF EXISTS {_q(table_name)}")
    conn.execute(f"DELETE FROM {META_TABLE} WHERE name = ?", (table_name,))
    conn.execute("COMMIT")
    return True


def read_online_table(table_name: str, store: SqliteOnlineStore | str | Path | None = None) -> pd.DataFrame:
    """The whole online table as a pandas DataFrame (for checks and exploration)."""
    import pandas as pd

    info = online_table_info(table_name, store)
    conn = _connect(store)
    cols = list(info.kinds)
    rows = conn.execute(f"SELECT {', '.join(map(_q, cols))} FROM {_q(table_name)}").fetchall()
    data = {c: [_from_sql(r[i], info.kinds[c]) for r in rows] for i, c in enumerate(cols)}
    return pd.DataFrame(data, columns=cols)


# ---------------------------------------------------------------- lookup


def _defaults_for(features: Sequence[str], default: Any) -> dict[str, Any]:
    if isinstance(default, Mapping):
        return {f: default.get(f) for f in features}
    return {f: default for f in features}


def lookup(
    table_name: str,
    keys: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    feature_names: Sequence[str] | None = None,
    default: Any = None,
    store: SqliteOnlineStore | str | Path | None = None,
) -> list[dict[str, Any]]:
    """Latest feature values for each key record, in input order, as ``{key..., feature...}`` dicts.

    Without ``feature_names`` every feature is returned, with the timeseries column (when the table
    has one) telling how fresh the values are.

    ``default`` is a value for every feature or a ``{feature: value}`` dict; it is used for keys
    the store does not hold and for records lacking a key column, never an exception.
    """
    info = online_table_info(table_name, store)
    if feature_names is None:  # every feature, and the timestamp the values are as of
        wanted = info.features + ([info.timeseries_column] if info.timeseries_column else [])
    else:
        wanted = list(feature_names)
    unknown = [f for f in wanted if f not in info.kinds]
    if unknown:
        raise ValueError(
            f"features {unknown} are not in online table {table_name!r} (it has {info.features}): "
            "republish the table or fix feature_names"
        )
    records = [keys] if isinstance(keys, Mapping) else list(keys)
    return _lookup(_connect(store), info, records, wanted, _defaults_for(wanted, default))


def _lookup(
    conn: sqlite3.Connection,
    info: OnlineTableInfo,
    records: Sequence[Mapping[str, Any]],
    wanted: list[str],
    defaults: dict[str, Any],
) -> list[dict[str, Any]]:
    """``lookup`` once the table's metadata is known (the serving path caches it)."""
    key_kinds = [info.kinds[k] for k in info.keys]
    wanted_keys: list[tuple[Any, ...] | None] = []
    for rec in records:
        if any(k not in rec for k in info.keys):
            wanted_keys.append(None)
        else:
            wanted_keys.append(tuple(_key_value(rec[k], kind) for k, kind in zip(info.keys, key_kinds)))
    found = _select(conn, info.name, info.keys, wanted, {k for k in wanted_keys if k is not None and None not in k})
    kinds = [info.kinds[f] for f in wanted]
    plain = all(k in {"int", "float", "str"} for k in kinds)
    out: list[dict[str, Any]] = []
    for rec, key in zip(records, wanted_keys):
        row = {k: rec.get(k) for k in info.keys}
        values = found.get(key) if key is not None else None
        if values is None:
            row.update(defaults)
        elif plain:
            row.update(zip(wanted, values))
        else:
            row.update({f: _from_sql(v, kind) for f, v, kind in zip(wanted, values, kinds)})
        out.append(row)
    return out


def _select(
    conn: sqlite3.Connection,
    table_name: str,
    keys: list[str],
    features: list[str],
    key_values: Iterable[tuple[Any, ...]],
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Stored feature tuples by key tuple for the keys present in the table."""
    key_list = list(key_values)
    cols = ", ".join(map(_q, keys + features))
    result: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    n = len(keys)
    for start in range(0, len(key_list), _BATCH):
        chunk = key_list[start : start + _BATCH]
        if n == 1:
            where = f"{_q(keys[0])} IN ({', '.join('?' * len(chunk))})"
            params: list[Any] = [k[0] for k in chunk]
        else:
            row = "(" + ", ".join("?" * n) + ")"
            where = f"({', '.join(map(_q, keys))}) IN (VALUES {', '.join([row] * len(chunk))})"
            params = [v for k in chunk for v in k]
        try:
            rows = conn.execute(f"SELECT {cols} FROM {_q(table_name)} WHERE {where}", params).fetchall()
        except sqlite3.InterfaceError:  # an unbindable key value (e.g. a list): treat as unknown
            continue
        for r in rows:
            result[tuple(r[:n])] = tuple(r[n:])
    return result


# ---------------------------------------------------------------- serving: feature spec -> feature frame


def _as_spec(spec: FeatureSpec | Mapping[str, Any]) -> FeatureSpec:
    from utils.local.feature_spec import FeatureSpec

    return spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(dict(spec))


class OnlineFeatureLookup:
    """Looks a model's features up in the online store from request records holding only keys.

    The online tables are checked once, when the lookup is built (a missing table or feature is
    raised then, naming it); each call then costs one indexed SELECT per feature table.
    """

    def __init__(self, spec: FeatureSpec | Mapping[str, Any], store: SqliteOnlineStore | str | Path | None = None):
        self.spec = _as_spec(spec)
        self.store = SqliteOnlineStore(_store(store).db_path())  # resolved once: a served model reads one store
        self._infos: dict[str, OnlineTableInfo] = {}
        for lk in self.spec.lookups:
            info = self._infos.get(lk.table_name) or online_table_info(lk.table_name, self.store)
            self._infos[lk.table_name] = info
            absent = [f for f in lk.feature_names if f not in info.kinds]
            if absent:
                raise OnlineTableNotFoundError(
                    f"online table {lk.table_name!r} lacks features {absent} the model needs: "
                    "republish it with feature_client().publish_table(online_store=online_store_spec(), "
                    f"source_table_name={lk.table_name!r})"
                )

    def __call__(self, records: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> pd.DataFrame:
        """``records`` with every looked-up feature column added (columns already present win)."""
        return self.lookup(records)[0]

    def lookup(self, records: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any],
               ) -> tuple[pd.DataFrame, dict[int, list[str]]]:
        """``(frame, misses)``: ``records`` with the looked-up features, and the keys the store did not hold.

        ``misses`` maps a record's position to one ``"unknown <key> <value>"`` entry per lookup that
        found no row for it *and* has a feature without a default value (a profile table): those
        features are ``None`` in the frame, as Databricks' automatic feature lookup leaves them. A
        lookup whose features all have defaults (an activity table) fills them and reports nothing.
        """
        import pandas as pd

        if isinstance(records, pd.DataFrame):
            frame = records.reset_index(drop=True)
        else:
            frame = pd.DataFrame([records] if isinstance(records, Mapping) else list(records))
        added, misses = self._features(lambda name: frame[name].tolist(), set(frame.columns), len(frame))
        if not added:
            return frame, misses
        return pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1), misses

    def lookup_records(self, records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[int, list[str]]]:
        """``(columns, misses)`` as :meth:`lookup`, for records as dicts, with no DataFrame built (the serving path).

        ``columns`` maps every field the records hold to a list of their values (``None`` where a record
        lacks it) and every looked-up feature to a typed column (a NumPy array or a pandas Series), one
        value per record, in record order: ``pandas.DataFrame(columns)`` is :meth:`lookup`'s frame, with
        the same dtypes for the looked-up features. ``misses`` is :meth:`lookup`'s.
        """
        fields = list(dict.fromkeys(k for r in records for k in r))
        columns: dict[str, Any] = {f: [r.get(f) for r in records] for f in fields}
        added, misses = self._features(columns.__getitem__, set(columns), len(records))
        columns.update(added)
        return columns, misses

    def _features(self, request_column: Any, present: set[str], n: int) -> tuple[dict[str, Any], dict[int, list[str]]]:
        """The typed feature columns the request (fields ``present``; ``request_column(name)``: a list) lacks, and misses."""
        conn = _connect(self.store)
        added: dict[str, list[Any]] = {}
        misses: dict[int, list[str]] = {}

        def column(name: str) -> list[Any]:
            if name in added:
                return added[name]
            return request_column(name) if name in present else [None] * n

        for lk in self.spec.lookups:
            todo = [(f, lk.output_name(f)) for f in lk.feature_names
                    if lk.output_name(f) not in added and lk.output_name(f) not in present]
            if not todo:
                continue
            info = self._infos[lk.table_name]
            key_columns = [column(k) for k in lk.lookup_key]
            requests = [
                {tk: v for tk, v in zip(info.keys, values) if not _is_missing(v)} for values in zip(*key_columns)
            ]
            defaults = {f: lk.default_values.get(o) for f, o in todo}
            required = [f for f, o in todo if o not in lk.default_values]
            got = _lookup(conn, info, requests, [f for f, _ in todo], {**defaults, **dict.fromkeys(required, _ABSENT)})
            for i, g in enumerate(got):
                if required and g[required[0]] is _ABSENT:
                    key = ", ".join(f"{k} {v!r}" for k, v in zip(lk.lookup_key, (c[i] for c in key_columns)))
                    misses.setdefault(i, []).append(f"unknown {key}")
            for f, o in todo:
                default = defaults[f]
                added[o] = [default if g[f] is None or g[f] is _ABSENT else g[f] for g in got]
        return {name: _typed(values, self.spec.data_types.get(name)) for name, values in added.items()}, misses


_ABSENT = object()  # what a key the online table does not hold gets, for features without a default


_INTEGER_TYPES = {"tinyint", "smallint", "int", "bigint", "integer", "long", "short", "byte"}
_FLOAT_TYPES = {"float", "double"}


def _typed(values: list[Any], data_type: str | None) -> Any:
    """A column of looked-up values with the dtype the training frame had (int, float, datetime, ...)."""
    import numpy as np
    import pandas as pd

    t = (data_type or "").lower()
    has_null = any(v is None for v in values)
    try:
        if t in _INTEGER_TYPES and not has_null:
            return np.array(values, dtype=np.int64)
        if t in _INTEGER_TYPES or t in _FLOAT_TYPES or t.startswith("decimal"):
            return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        if t.startswith("timestamp"):
            return pd.to_datetime(pd.Series(values, dtype=object), errors="coerce")
        if t == "boolean" and not has_null:
            return np.array(values, dtype=bool)
        if t == "string" and all(v is None or isinstance(v, str) for v in values):
            return np.array(values, dtype=object)  # what infer_objects gives text, without a Series
    except (TypeError, ValueError):  # a value of another type (e.g. a request override): keep it as sent
        pass
    return pd.Series(values, dtype=object).infer_objects()


def fetch_features(
    spec: FeatureSpec | Mapping[str, Any],
    records: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    store: SqliteOnlineStore | str | Path | None = None,
) -> pd.DataFrame:
    """The feature frame for request ``records`` holding only keys, looked up online per ``spec``."""
    return OnlineFeatureLookup(spec, store)(records)


# ---------------------------------------------------------------- MLflow pyfunc loader


SERVING_FILE = "serving.json"  # written next to feature_spec.yaml by log_model


class FeatureServingModel:
    """A model logged by ``log_model``: looks its features up online, then calls the raw model."""

    def __init__(self, raw_model: Any, spec: FeatureSpec, store: SqliteOnlineStore | None = None):
        self.raw_model = raw_model
        self.spec = spec
        self.store = store
        self._lookup: OnlineFeatureLookup | None = None

    def features(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """The raw model's input frame for ``model_input`` (keys, plus any overriding features)."""
        if self._lookup is None:
            self._lookup = OnlineFeatureLookup(self.spec, self.store)
        full = self._lookup(model_input)
        missing = [c for c in self.spec.model_input_columns if c not in full.columns]
        if missing:
            raise ValueError(f"request lacks columns {missing} that the model needs (they are not looked up)")
        return full[self.spec.model_input_columns]

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Predictions for request records holding the lookup keys."""
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.raw_model.predict(self.features(frame))

    def lookup_records(self, records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[int, list[str]]]:
        """``(columns, misses)`` of :meth:`OnlineFeatureLookup.lookup_records`: no DataFrame is built."""
        return self.online_lookup().lookup_records(records)

    def predict_columns(self, columns: Mapping[str, Any], rows: Sequence[int] | None = None) -> Any:
        """The raw model's predictions for the records of ``columns`` (a :meth:`lookup_records` result).

        ``rows`` (positions) limits them to those records, in that order; default all. The model-input
        frame is built once, from the columns the model needs. Raises ``ValueError`` naming model inputs
        that ``columns`` lacks.
        """
        import pandas as pd

        missing = [c for c in self.spec.model_input_columns if c not in columns]
        if missing:
            raise ValueError(f"request lacks columns {missing} that the model needs (they are not looked up)")
        frame = pd.DataFrame({c: columns[c] for c in self.spec.model_input_columns})
        return self.raw_model.predict(frame if rows is None else frame.iloc[list(rows)])

    def online_lookup(self) -> OnlineFeatureLookup:
        """The lookup of this model's features, built on first use.

        Raises ``OnlineTableNotFoundError`` naming a feature table that is not published online (or lacks
        a feature the model needs), with the command that publishes it.
        """
        if self._lookup is None:
            self._lookup = OnlineFeatureLookup(self.spec, self.store)
        return self._lookup

    def predict_features(self, full: pd.DataFrame) -> Any:
        """The raw model's predictions for a frame that already holds every model input (a :meth:`lookup` result)."""
        missing = [c for c in self.spec.model_input_columns if c not in full.columns]
        if missing:
            raise ValueError(f"request lacks columns {missing} that the model needs (they are not looked up)")
        return self.raw_model.predict(full[self.spec.model_input_columns])

    def feature_versions(self) -> dict[str, int | None]:
        """The Delta version each online table this model reads was published from."""
        return source_versions(list(self.spec.tables), self.online_lookup().store)

    def get_raw_model(self) -> Any:
        """The raw model (MLflow's ``PyFuncModel.get_raw_model`` hook)."""
        return self.raw_model


def serving_store(model_data_path: str | Path | None = None) -> SqliteOnlineStore:
    """The online store a served model reads.

    ``MLOPS_ONLINE_STORE`` (a SQLite file) if set; else the default store under ``MLOPS_STATE_DIR``
    if that is set; else the store the model was logged next to (recorded in ``serving.json``:
    a model server does not know the notebook's state folder); else the default store.
    """
    import os

    explicit = os.environ.get("MLOPS_ONLINE_STORE")
    if explicit:
        return SqliteOnlineStore(explicit)
    if os.environ.get("MLOPS_STATE_DIR"):
        return SqliteOnlineStore()
    recorded = Path(model_data_path) / SERVING_FILE if model_data_path else None
    if recorded is not None and recorded.exists():
        path = json.loads(recorded.read_text()).get("online_store")
        if path and Path(path).exists():
            return SqliteOnlineStore(path)
    return SqliteOnlineStore()


def serving_model(data_path: str | Path, store: SqliteOnlineStore | None = None) -> FeatureServingModel:
    """The served form of a feature-store model: its raw model behind an online lookup of its feature spec.

    ``data_path`` is the model's ``data/feature_store`` folder (``feature_spec.yaml``, ``raw_model/``);
    ``store`` defaults to :func:`serving_store`. What a Model Serving container builds for a model logged
    with ``FeatureEngineeringClient.log_model`` (automatic feature lookup).
    """
    import mlflow.pyfunc

    from utils.local.feature_spec import FeatureSpec

    root = Path(data_path)
    spec = FeatureSpec.load(root / "feature_spec.yaml")
    raw = mlflow.pyfunc.load_model(str(root / "raw_model"))
    return FeatureServingModel(raw, spec, store or serving_store(root))


def _load_pyfunc(data_path: str) -> FeatureServingModel:
    """MLflow ``loader_module`` entry point for models logged with the local ``log_model``."""
    return serving_model(data_path)
