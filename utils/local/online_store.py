"""The local online feature store: the latest feature row per key in a SQLite file, and the served model's lookup.

Layout of the store (one SQLite database, WAL mode, so readers never wait for a publish):

- one table per published feature table, named after it (``"catalog.schema.table"``, quoted),
  holding the lookup keys (the primary keys without the timeseries column) as its PRIMARY KEY,
  the timeseries column if any, and the features;
- ``_online_tables``: per published table its keys, timeseries column, the kind of every column
  (``utils.local.online_values``), the Delta version it came from and when it was published.

``utils.local.online_publish`` writes it. Serving never raises for a bad request: an unknown key, a key of
the wrong type or a record without the key gets the defaults (or ``None``). A missing online *table* is a
deployment error and is raised when a lookup is built, naming the table and the fix.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.local.online_values import from_sql, is_missing, key_value, typed_column
from utils.platform.environment import state_dir  # the served model ships this module: see feature_models._BUNDLED_MODULES

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


def connect(store: SqliteOnlineStore | str | Path | None, create: bool = False) -> sqlite3.Connection:
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


def quoted(name: str) -> str:
    """A quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


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


def table_meta(conn: sqlite3.Connection, table_name: str) -> OnlineTableInfo | None:
    """What the store behind ``conn`` records about ``table_name``, or None if it was never published."""
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
        conn = connect(store)
    except OnlineTableNotFoundError:
        conn = None
    info = table_meta(conn, table_name) if conn is not None else None
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
    conn = connect(store)
    found = dict(conn.execute(f"SELECT name, source_version FROM {META_TABLE} WHERE name IN "
                              f"({', '.join('?' * len(names))})", names).fetchall())
    for name in names:
        if name not in found:
            online_table_info(name, store)  # raises, naming the table and how to publish it
    return {name: found[name] for name in names}


def list_online_tables(store: SqliteOnlineStore | str | Path | None = None) -> list[str]:
    """Names of the feature tables published to the store."""
    try:
        conn = connect(store)
    except OnlineTableNotFoundError:
        return []
    return [r[0] for r in conn.execute(f"SELECT name FROM {META_TABLE} ORDER BY name")]


# ---------------------------------------------------------------- lookup


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
    defaults = {f: default.get(f) if isinstance(default, Mapping) else default for f in wanted}
    return _lookup(connect(store), info, records, wanted, defaults)


def _lookup(conn: sqlite3.Connection, info: OnlineTableInfo, records: Sequence[Mapping[str, Any]], wanted: list[str],
            defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """``lookup`` once the table's metadata is known (the serving path caches it)."""
    key_kinds = [info.kinds[k] for k in info.keys]
    wanted_keys: list[tuple[Any, ...] | None] = []
    for rec in records:
        if any(k not in rec for k in info.keys):
            wanted_keys.append(None)
        else:
            wanted_keys.append(tuple(key_value(rec[k], kind) for k, kind in zip(info.keys, key_kinds)))
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
            row.update({f: from_sql(v, kind) for f, v, kind in zip(wanted, values, kinds)})
        out.append(row)
    return out


def _select(conn: sqlite3.Connection, table_name: str, keys: list[str], features: list[str],
            key_values: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Stored feature tuples by key tuple for the keys present in the table."""
    key_list = list(key_values)
    cols = ", ".join(map(quoted, keys + features))
    result: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    n = len(keys)
    for start in range(0, len(key_list), _BATCH):
        chunk = key_list[start : start + _BATCH]
        if n == 1:
            where = f"{quoted(keys[0])} IN ({', '.join('?' * len(chunk))})"
            params: list[Any] = [k[0] for k in chunk]
        else:
            row = "(" + ", ".join("?" * n) + ")"
            where = f"({', '.join(map(quoted, keys))}) IN (VALUES {', '.join([row] * len(chunk))})"
            params = [v for k in chunk for v in k]
        try:
            rows = conn.execute(f"SELECT {cols} FROM {quoted(table_name)} WHERE {where}", params).fetchall()
        except sqlite3.InterfaceError:  # an unbindable key value (e.g. a list): treat as unknown
            continue
        for r in rows:
            result[tuple(r[:n])] = tuple(r[n:])
    return result


# ---------------------------------------------------------------- serving: feature spec -> feature frame


class OnlineFeatureLookup:
    """Looks a model's features up in the online store from request records holding only keys.

    The online tables are checked once, when the lookup is built (a missing table or feature is
    raised then, naming it); each call then costs one indexed SELECT per feature table.
    """

    def __init__(self, spec: FeatureSpec | Mapping[str, Any], store: SqliteOnlineStore | str | Path | None = None):
        from utils.local.feature_spec import FeatureSpec

        self.spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(dict(spec))
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
        conn = connect(self.store)
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
                {tk: v for tk, v in zip(info.keys, values) if not is_missing(v)} for values in zip(*key_columns)
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
        return {name: typed_column(values, self.spec.data_types.get(name)) for name, values in added.items()}, misses


_ABSENT = object()  # what a key the online table does not hold gets, for features without a default


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
        full = self.online_lookup()(model_input)
        return full[self._model_inputs(full.columns)]

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

        frame = pd.DataFrame({c: columns[c] for c in self._model_inputs(columns)})
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
        return self.raw_model.predict(full[self._model_inputs(full.columns)])

    def _model_inputs(self, present: Any) -> list[str]:
        """The model's input columns; raises ``ValueError`` naming those not in ``present``."""
        missing = [c for c in self.spec.model_input_columns if c not in present]
        if missing:
            raise ValueError(f"request lacks columns {missing} that the model needs (they are not looked up)")
        return self.spec.model_input_columns

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
    """MLflow's ``loader_module`` entry point: every model logged with the local ``log_model`` names this module."""
    return serving_model(data_path)
