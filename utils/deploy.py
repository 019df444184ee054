"""Deployment: a keys-only endpoint (router) over served model versions, blue/green and A/B traffic, A/B analysis.

The router is a real HTTP server on 127.0.0.1 (``utils.router_http``: the request formats it accepts, its
refusals, its ASGI application). Behind it, each served version is a *served entity*: locally a model loaded
once into this process (``utils.local.served_models.ServedModel``, no second HTTP hop), on Databricks a served
entity of a Model Serving endpoint (``utils.serving`` backends), called over HTTPS.

The router looks the customer's and the plant's features up in the online store, scores the 15 feature
columns with the version its routing table names, and answers
``{"predictions": [...], "model_version": "3", "model_versions": [...], "arms": [...], "request_id": "..."}``.

Unknown keys: a customer or plant absent from the online store's *profile* tables is refused with a
422 naming the key (the model cannot score an unknown plant safely: its ``invasive`` flag is unknown);
a known key without recent activity gets the activity defaults (0 impressions, rate 0.0), as in training.

Routing: the table maps an *arm* (a registry alias, e.g. ``champion``) to a model version and a weight.
``reload()`` re-reads the aliases from the registry and swaps the whole table under a lock, so a
blue/green switch is one alias move plus one reload, and every request sees either the old or the new
table, never a mix. A/B assignment hashes the customer id, so a customer always sees the same arm.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from utils.ab_statistics import ABResult, two_proportion_test
from utils.config import Config, get_config
from utils.online_features import OnlineFeatures, UnknownKeyError
from utils.platform import serving_backend
from utils.router_http import (
    MAX_BODY_BYTES,
    FeatureLookupError,
    RequestError,
    RouterApp,
    forward_http,
    json_default,
    parse_request,
)

BUCKETS = 10_000


# ---------------------------------------------------------------- traffic


def assign_arm(customer_id: str, weights: Mapping[str, int], salt: str = "") -> str:
    """The arm a customer is routed to: a stable hash bucket of ``customer_id`` split by ``weights``."""
    arms = sorted((a, w) for a, w in weights.items() if w > 0)
    if not arms:
        raise ValueError(f"traffic weights {dict(weights)} give no arm any traffic")
    total = sum(w for _, w in arms)
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % BUCKETS / BUCKETS * total
    upto = 0.0
    for arm, weight in arms:
        upto += weight
        if point < upto:
            return arm
    return arms[-1][0]


@dataclass(frozen=True)
class RoutingTable:
    """Arm (alias) -> model version, and arm -> traffic weight; replaced whole, never edited in place."""

    versions: Mapping[str, str]
    weights: Mapping[str, int]

    def __post_init__(self) -> None:
        if set(self.weights) - set(self.versions):
            raise ValueError(f"traffic names arms {sorted(set(self.weights) - set(self.versions))} with no version")
        bad = {a: w for a, w in self.weights.items() if not isinstance(w, int) or isinstance(w, bool) or w < 0}
        if bad or not any(self.weights.values()):
            raise ValueError(f"traffic weights must be whole numbers >= 0 with at least one > 0, got {dict(self.weights)}")


# ---------------------------------------------------------------- the router


@dataclass
class Router:
    """A keys-only HTTP front door that looks features up and forwards to the routed model version.

    Upstreams come from ``add_upstream`` or from a ``backend`` (``utils.local.served_models.LocalBackend`` or
    ``utils.serving.ModelServingBackend``, see ``utils.platform.serving_backend``), which ``reload`` asks to serve every version of the new table before
    the router switches to it.
    """

    model_name: str
    cfg: Config = field(default_factory=get_config)
    host: str = "127.0.0.1"
    port: int | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    reuse_port: bool = False
    log_predictions: bool = True
    upstream_timeout_s: float = 60.0
    upstreams: dict[str, Any] = field(default_factory=dict)
    backend: Any = None
    _table: RoutingTable | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _log: list[tuple[Any, ...]] = field(default_factory=list, init=False, repr=False)
    _requests: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    _server: Any = field(default=None, init=False, repr=False)
    _owned: list[Any] = field(default_factory=list, init=False, repr=False)
    _features: OnlineFeatures | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------ upstreams and routes

    def add_upstream(self, version: str | int, endpoint: Any, owned: bool = False) -> None:
        """Serve ``version`` from ``endpoint`` (a ``LocalEndpoint`` or an ``/invocations`` URL)."""
        self.upstreams[str(version)] = endpoint
        if owned:
            self._owned.append(endpoint)

    def set_routes(self, versions: Mapping[str, str | int], weights: Mapping[str, int]) -> RoutingTable:
        """Replace the routing table atomically; every routed version must have an upstream."""
        table = RoutingTable({a: str(v) for a, v in versions.items()}, dict(weights))
        unserved = sorted({v for a, v in table.versions.items() if table.weights.get(a, 0) > 0} - set(self.upstreams))
        if unserved:
            raise ValueError(f"versions {unserved} have no endpoint: add_upstream(version, endpoint) first")
        with self._lock:
            self._table = table
        return table

    def reload(self, weights: Mapping[str, int] | None = None) -> RoutingTable:
        """Re-resolve every arm's alias in the registry (optionally with new weights) and swap the table."""
        from utils import registry

        weights = dict(weights if weights is not None else (self._table.weights if self._table else {}))
        if not weights:
            raise ValueError("no traffic weights yet: reload({'champion': 100})")
        versions = {}
        for alias in weights:
            mv = registry.get_alias_version(self.model_name, alias)
            if mv is None:
                raise ValueError(f"alias {alias!r} of {self.model_name} points at no version: set it first")
            versions[alias] = str(mv.version)
        RoutingTable(versions, weights)  # refuse bad weights before any backend work
        if self.backend is not None:
            self.upstreams.update(self.backend.apply(_weights_by_version(versions, weights)))
        return self.set_routes(versions, weights)

    def scores_in_process(self) -> bool:
        """True when every routed version is a model loaded in this process (no network hop to wait on)."""
        table = self._table
        if table is None:
            return False
        return all(callable(getattr(self.upstreams.get(v), "predict_frame", None)) for v in table.versions.values())

    @property
    def routes(self) -> RoutingTable:
        """The current routing table."""
        if self._table is None:
            raise RuntimeError("no routes yet: call set_routes() or reload({'champion': 100})")
        return self._table

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Router:
        """Start the HTTP server (uvicorn, in a background thread); returns ``self``.

        Raises:
            RuntimeError: the server could not start (e.g. ``port`` is in use), with the reason.
        """
        if self._server is not None:
            return self
        from utils.http_server import BackgroundServer

        server = BackgroundServer(RouterApp(self), self.host, self.port or 0, name="router",
                                  reuse_port=self.reuse_port).start()
        self._server, self.port = server, server.port
        return self

    def stop(self, flush: bool = True) -> None:
        """Stop the server (requests in flight finish), flush the logs, stop what this router or its backend started.

        ``flush=False`` drops the buffered log rows instead of writing them (a benchmark's throwaway requests).
        """
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        try:
            if flush:
                self.flush_log()
            else:
                with self._lock:
                    self._log, self._requests = [], []
        finally:
            for ep in self._owned:
                ep.stop()
            self._owned.clear()
            if self.backend is not None:
                self.backend.stop()

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the router."""
        if self.port is None or self._server is None:
            raise RuntimeError("the router is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the HTTP server thread is alive."""
        return self._server is not None and self._server.running

    def endpoint_config(self) -> dict[str, Any]:
        """The routing table in the shape of a Model Serving endpoint config (served entities, traffic config).

        ``{"served_entities": [{"name", "entity_name", "entity_version"}], "traffic_config": {"routes":
        [{"served_entity_name", "traffic_percentage"}]}}``; percentages sum to 100 (largest remainder,
        ``utils.serving.traffic_percentages``). Unlike Model Serving, which splits requests at random, the
        router assigns each customer to an arm by a stable hash, so a customer always sees the same version.
        """
        from utils.serving import served_entity_name, traffic_percentages

        table = self._table
        if table is None:
            return {"served_entities": [], "traffic_config": {"routes": []}}
        by_version = _weights_by_version(table.versions, table.weights)
        names = {v: served_entity_name(self.model_name, v) for v in by_version}
        routes = traffic_percentages({names[v]: w for v, w in by_version.items()})
        return {"served_entities": [{"name": names[v], "entity_name": self.model_name, "entity_version": v}
                                    for v in sorted(by_version, key=_version_key)],
                "traffic_config": {"routes": [{"served_entity_name": n, "traffic_percentage": p}
                                              for n, p in routes.items()]}}

    # ------------------------------------------------------------ scoring

    def handle(self, body: bytes) -> dict[str, Any]:
        """Score one request body (what ``POST /invocations`` does); raises ``RequestError`` on bad input.

        When every version the request is routed to looks its own features up (logged with the feature
        client's ``log_model``, served with automatic feature lookup) the records go to it as they are,
        keys and request context (:meth:`_score_keys`); otherwise the router looks the features up and
        sends the model inputs (:meth:`_score_features`). Either way the model converts the feature columns
        itself (the packaged model's ``features_frame``); the inference log's typed model inputs are
        derived at flush time, off the request path.
        """
        started = time.perf_counter()
        records = parse_request(body)
        table = self.routes  # one snapshot: the whole request sees one routing table
        arms = [assign_arm(r["customer_id"], table.weights, salt=self.model_name) for r in records]
        versions = [table.versions[a] for a in arms]
        if all(getattr(self.upstreams.get(v), "looks_up_features", False) for v in set(versions)):
            frame, predictions, feature_versions = self._score_keys(records, versions)
        else:
            frame, predictions, feature_versions = self._score_features(records, versions)
        request_id = uuid.uuid4().hex
        if self.log_predictions:
            self._remember(frame, predictions, versions, arms, request_id, feature_versions)
        unique = sorted(set(versions))
        return {"predictions": predictions, "model_version": unique[0] if len(unique) == 1 else "mixed",
                "model_versions": versions, "arms": arms, "request_id": request_id,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    def _score_features(self, records: list[dict[str, Any]], versions: list[str],
                        ) -> tuple[pd.DataFrame, list[float], dict[str, int | None]]:
        """The router looks the features up (``utils.online_features``) and sends each version its model inputs.

        A version in this process gets the 15 model inputs; a version behind HTTP (Model Serving) gets them with
        the lookup keys, which a model logged with its feature lookups requires (its signature comes from the
        feature spec; the features sent override its own lookup) and a plain model ignores.
        """
        if self._features is None:
            self._features = OnlineFeatures(self.cfg)
        try:
            frame = self._features.build(records)
        except UnknownKeyError as exc:
            raise FeatureLookupError(str(exc)) from None
        predictions: list[float] = [0.0] * len(records)
        for version in dict.fromkeys(versions):
            idx = [i for i, v in enumerate(versions) if v == version]
            for i, s in zip(idx, self._forward(version, frame.iloc[idx])):
                predictions[i] = float(s)
        return frame, predictions, self._features.versions()

    def _score_keys(self, records: list[dict[str, Any]], versions: list[str],
                    ) -> tuple[pd.DataFrame | dict[str, Any], list[float], dict[str, int | None]]:
        """Each served version looks its own features up from the keys and the request context (automatic lookup).

        A record whose customer or plant the online store's profile tables do not hold is refused (422,
        naming the key): its ``invasive`` flag would be unknown. Databricks' automatic lookup would pass
        ``None`` features to the model instead. With one version (the usual case) the looked-up records are
        returned as columns (the inference log frames them at flush time), else as one frame in request order.
        """
        from utils.online_features import unknown_keys_message

        parts: list[pd.DataFrame] = []
        predictions: list[float] = [0.0] * len(records)
        feature_versions: dict[str, int | None] = {}
        unknown: dict[int, str] = {}
        routed = list(dict.fromkeys(versions))
        columns: dict[str, Any] = {}
        for version in routed:
            idx = [i for i, v in enumerate(versions) if v == version]
            served = self.upstreams[version]
            with _refusal_is_422(version):  # one version takes the records as they are
                columns, scores, misses = served.predict_records(records if len(routed) == 1 else
                                                                 [records[i] for i in idx])
            unknown.update({idx[j]: "; ".join(why) for j, why in misses.items()})
            if len(routed) > 1:
                parts.append(pd.DataFrame(columns).set_axis(idx))
            for i, s in zip(idx, scores):
                predictions[i] = s
            feature_versions.update(served.feature_versions())
        if unknown:
            raise FeatureLookupError(unknown_keys_message(dict(sorted(unknown.items()))))
        if not parts:
            return columns, predictions, feature_versions
        return pd.concat(parts).sort_index().reset_index(drop=True), predictions, feature_versions

    def _forward(self, version: str, frame: pd.DataFrame) -> list[float]:
        """Score ``frame`` (request columns and looked-up features) with ``version``, in process or over HTTP."""
        from utils.plantly_features import FEATURES

        upstream = self.upstreams.get(version)
        if upstream is None:
            raise RequestError(f"model version {version} has no endpoint", 503)
        inputs = frame[FEATURES]
        if callable(getattr(upstream, "predict_frame", None)):  # a served model in this process: no second hop
            with _refusal_is_422(version):
                preds = upstream.predict_frame(inputs)
            if len(preds) != len(inputs):
                raise RequestError(f"model version {version} returned {len(preds)} predictions for {len(inputs)} rows", 502)
            return preds
        return forward_http(version, upstream, frame, self.upstream_timeout_s)

    def _remember(self, frame: pd.DataFrame | dict[str, Any], predictions: list[float], versions: list[str],
                  arms: list[str], request_id: str, feature_versions: dict[str, int | None]) -> None:
        """Buffer one answered request (its records and features: a frame, or columns); logged at flush time."""
        entry = (frame, predictions, versions, arms, request_id, feature_versions, datetime.now(UTC))
        with self._lock:
            self._log.append(entry)

    def _log_rows(self, entries: list[tuple[Any, ...]]) -> pd.DataFrame:
        """The inference-log rows of buffered requests (``utils.scoring.inference_rows``, one row per prediction)."""
        from utils.scoring import inference_rows

        frames = [inference_rows(frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame), predictions,
                                 source="realtime", model_name=self.model_name, model_version=versions,
                                 feature_versions=feature_versions, request_id=request_id, arm=arms, ts=answered_at)
                  for frame, predictions, versions, arms, request_id, feature_versions, answered_at in entries]
        return pd.concat(frames, ignore_index=True)

    def record_request(self, path: str, status: int, started: float, answer: Mapping[str, Any]) -> None:
        """Remember one HTTP request for the request log: status, latency, records and versions, or the error."""
        if not self.log_predictions:
            return
        versions = answer.get("model_versions") or []
        row = {"request_id": answer.get("request_id") or uuid.uuid4().hex, "ts": datetime.now(UTC),
               "model_name": self.model_name, "path": path, "status_code": int(status),
               "latency_ms": round((time.perf_counter() - started) * 1000, 3),
               "records": len(answer.get("predictions") or []),
               "model_versions": ",".join(sorted(set(map(str, versions)))) or None,
               "error": None if status < 400 else str(answer.get("error", ""))[:1000]}
        with self._lock:
            self._requests.append(row)

    def pending_log_rows(self) -> int:
        """Predictions answered but not yet written to the inference log."""
        with self._lock:
            return sum(len(entry[1]) for entry in self._log)

    def pending_requests(self) -> int:
        """Requests (answered or refused) not yet written to the request log."""
        with self._lock:
            return len(self._requests)

    def flush_log(self) -> int:
        """Write buffered predictions to the inference log and requests to the request log; returns predictions written."""
        from utils.scoring import append_inference_log, append_request_log

        with self._lock:
            frames, self._log = self._log, []
            requests, self._requests = self._requests, []
        try:
            if requests:
                append_request_log(requests, self.cfg)
                requests = []
            return append_inference_log(self._log_rows(frames), self.cfg) if frames else 0
        except BaseException:
            with self._lock:  # a failed write keeps the rows for the next flush: nothing is lost
                self._requests[:0] = requests
                self._log[:0] = frames
            raise

    def predict(self, records: Mapping[str, Any] | Sequence[Mapping[str, Any]], timeout: float = 60.0) -> dict[str, Any]:
        """Client helper: POST ``records`` to this router over HTTP; raises ``RequestError`` on a 4xx/5xx.

        A refusal of an unknown customer or plant also names its feature table's online and offline versions
        and the call that publishes it (:func:`utils.online_features.unknown_key_hint`).
        """
        import requests

        from utils.online_features import unknown_key_hint

        body = records if isinstance(records, Mapping) else {"records": list(records)}
        resp = requests.post(f"{self.url}/invocations", data=json.dumps(body, default=json_default),
                             headers={"Content-Type": "application/json"}, timeout=timeout)
        if resp.status_code != 200:
            error = resp.json().get("error", resp.text)
            hint = unknown_key_hint(error, self.cfg) if resp.status_code == 422 else ""
            raise RequestError(f"{error}. {hint}" if hint else error, resp.status_code)
        return resp.json()


def _weights_by_version(versions: Mapping[str, str], weights: Mapping[str, int]) -> dict[str, int]:
    """Version -> the summed traffic weight of the arms routed to it."""
    by_version: dict[str, int] = {}
    for arm, version in versions.items():
        by_version[version] = by_version.get(version, 0) + int(weights.get(arm, 0))
    return by_version


@contextmanager
def _refusal_is_422(version: str) -> Iterator[None]:
    """A model that refuses its input (``INVALID_PARAMETER_VALUE``) becomes a 422 naming ``version``."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE":
            raise RequestError(f"model version {version} refused the input: {getattr(exc, 'message', exc)}",
                               422) from None
        raise


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)



# ---------------------------------------------------------------- serving aliases (local or Databricks)


def serve_aliases(model_name: str, weights: Mapping[str, int], cfg: Config | None = None,
                  timeout_s: float = 300.0, port: int | None = None, reuse_port: bool = False) -> Router:
    """A started router serving the versions ``weights``' aliases point at (e.g. ``{"champion": 90, "challenger": 10}``).

    Locally each version is loaded once into this process (``utils.local.served_models.ServedModel``) and
    scored in memory; on Databricks each is a served entity of the Model Serving endpoint
    ``cfg.endpoint_name``, created or updated here with the same traffic split. ``reload`` keeps the
    backend in step with every alias move. ``port``/``reuse_port`` as for ``Router``.
    """
    cfg = cfg or get_config()
    router = Router(model_name, cfg, port=port, reuse_port=reuse_port,
                    backend=serving_backend(model_name, cfg.endpoint_name, timeout_s))
    try:
        router.reload(weights)
        return router.start()
    except BaseException:
        router.stop()
        raise


# ---------------------------------------------------------------- A/B analysis


def ab_test(frame: pd.DataFrame, arm_col: str, outcome_col: str, control: str, treatment: str,
            alpha: float = 0.05) -> ABResult:
    """A/B result from one row per exposure: ``arm_col`` names the arm, ``outcome_col`` is 0/1 (converted)."""
    missing = [c for c in (arm_col, outcome_col) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}")
    counts = {}
    for arm in (control, treatment):
        outcome = frame.loc[frame[arm_col] == arm, outcome_col].astype(int)
        counts[arm] = (int(outcome.sum()), len(outcome))
    return two_proportion_test(*counts[control], *counts[treatment], alpha=alpha, control=control, treatment=treatment)
