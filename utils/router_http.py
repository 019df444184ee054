"""The router's HTTP face: the request bodies it accepts, its limits and refusals, and its ASGI application.

A request carries only keys and the request context::

    POST /invocations   {"customer_id": "C0001", "plant_id": "P0001", "page": "home", "position": 1, "price": 12.5}
    (or a JSON list of records, {"records": [...]}, or MLflow's formats: {"dataframe_records": [...]},
    {"dataframe_split": {"columns": [...], "data": [[...]]}}, {"instances": [...]}, {"inputs": ...})

Bad input (invalid JSON, empty body, a missing field, a wrong type, a body over ``max_body_bytes``) gets a 4xx
with a message (:class:`RequestError`); the server stays up and nothing is logged as a prediction.
``RouterApp`` serves a ``utils.deploy.Router`` with uvicorn (``utils.http_server``), Starlette's request and
response types; ``forward_http`` sends a version behind HTTP (Model Serving) its model inputs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from utils.feature_types import MAX_EXACT_INT

if TYPE_CHECKING:
    import pandas as pd

REQUEST_FIELDS: dict[str, tuple[type, ...]] = {
    "customer_id": (str,), "plant_id": (str,), "page": (str,), "position": (int,), "price": (int, float),
}
MAX_BODY_BYTES = 1_000_000
MAX_HEADER_BYTES = 16 * 1024
MAX_RECORDS = 1000
INLINE_BODY_BYTES = 4 * 1024
"""Bodies up to this size (a few records) are scored on the server's event loop when every served version is in
this process: a one-record predict takes about as long as the hand-off to a worker thread and back, and
measured on 2 cores the hand-off costs about 1.5 ms of CPU per request. Bigger bodies, and every request
forwarded over HTTP (Model Serving on Databricks), are scored in a worker thread so the loop keeps serving."""


class RequestError(ValueError):
    """A request the router refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class FeatureLookupError(RequestError):
    """A request names a customer or plant the online store does not know."""


# ---------------------------------------------------------------- request validation


# The request bodies the router reads: its own shapes, and MLflow's scoring formats (what Databricks Model
# Serving clients send), with the key fields in place of feature columns.
REQUEST_FORMATS = ("records", "dataframe_records", "dataframe_split", "instances", "inputs")
ACCEPTED_FORMATS = ('one record {"customer_id": ..., "plant_id": ..., "page": ..., "position": ..., "price": ...}, '
                    'a JSON list of records, {"records": [...]}, or one of MLflow\'s request formats: '
                    '{"dataframe_records": [...]}, {"dataframe_split": {"columns": [...], "data": [[...], ...]}}, '
                    '{"instances": [...]}, {"inputs": [...]} or {"inputs": {"customer_id": [...], ...}}')


def parse_request(body: bytes, max_records: int = MAX_RECORDS) -> list[dict[str, Any]]:
    """The request records of a JSON body (one dict per record, the ``REQUEST_FIELDS`` only); raises ``RequestError``.

    Accepted bodies (``ACCEPTED_FORMATS``): a record, a list of records, ``{"records": [...]}``, and MLflow's
    scoring formats ``dataframe_records``, ``dataframe_split`` (``columns`` + ``data``), ``instances`` and
    ``inputs`` (records, or columns of equal length). Any other body is a 400 naming these formats; a
    record with a missing or mistyped field is a 422 naming the record and the field. ``position`` may be
    a whole-number float (``3.0`` is 3); values a float64 model input cannot hold exactly are refused.
    """
    if not body or not body.strip():
        raise RequestError("empty request body: send a JSON object with customer_id, plant_id, page, position, price",
                           400)
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"invalid JSON: {exc}", 400) from None
    except (ValueError, RecursionError):  # an integer of over 4300 digits; nesting deeper than the parser's stack
        raise RequestError("invalid JSON: a number is too long or the nesting too deep", 400) from None
    records = _records_of(doc)
    if not records:
        raise RequestError(f"the request holds no record: send at least one record, as {ACCEPTED_FORMATS}", 400)
    if len(records) > max_records:
        raise RequestError(f"{len(records)} records in one request; at most {max_records}: split the request", 413)
    return [_check_record(i, rec) for i, rec in enumerate(records)]


def _records_of(doc: Any) -> list[Any]:
    """The list of records inside a parsed body, whichever accepted format it uses; 400 for any other shape."""
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, Mapping):
        raise RequestError(f"a JSON {type(doc).__name__} is not a request: send {ACCEPTED_FORMATS}", 400)
    formats = [k for k in REQUEST_FORMATS if k in doc]
    if not formats:
        if any(k in doc for k in REQUEST_FIELDS):
            return [doc]  # one record
        raise RequestError(f"unrecognised request format (top-level keys {sorted(map(str, doc))[:10]}): "
                           f"send {ACCEPTED_FORMATS}", 400)
    if len(formats) > 1:
        raise RequestError(f"the body names {len(formats)} request formats {formats}: send exactly one, as "
                           f"{ACCEPTED_FORMATS}", 400)
    if doc.get("params"):
        raise RequestError("this endpoint takes no params: send only the records", 400)
    key = formats[0]
    payload = doc[key]
    if key == "dataframe_split":
        return _split_records(payload)
    if key == "inputs" and isinstance(payload, Mapping):
        return _column_records(payload)
    if not isinstance(payload, list):
        raise RequestError(f'"{key}" must hold a list of records, got a JSON {type(payload).__name__}: send '
                           f"{ACCEPTED_FORMATS}", 400)
    return payload


def _split_records(payload: Any) -> list[dict[str, Any]]:
    """Records of MLflow's ``dataframe_split`` format: ``{"columns": [...], "data": [[...], ...]}`` (``index`` ignored)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
        raise RequestError('"dataframe_split" must be {"columns": [...], "data": [[...], ...]}', 400)
    columns = payload.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError('"dataframe_split" needs "columns": the field names, e.g. ["customer_id", "plant_id", '
                           '"page", "position", "price"]', 400)
    rows = payload["data"]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(f'"dataframe_split" row {i} must be a list of {len(columns)} values, one per column', 400)
    return [dict(zip(columns, row)) for row in rows]


def _column_records(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records of MLflow's columnar ``inputs`` format: ``{"customer_id": [...], "plant_id": [...], ...}``."""
    lengths = {k: len(v) for k, v in payload.items() if isinstance(v, list)}
    if len(lengths) != len(payload) or len(set(lengths.values())) > 1:
        raise RequestError('"inputs" as columns must map every field to a list, all of one length', 400)
    n = next(iter(lengths.values()), 0)
    return [{k: v[i] for k, v in payload.items()} for i in range(n)]


def _check_record(i: int, rec: Any) -> dict[str, Any]:
    """The ``REQUEST_FIELDS`` of record ``i``, checked and normalised (``position`` as int); 422 names what is wrong."""
    if not isinstance(rec, Mapping):
        raise RequestError(f"record {i} is a {type(rec).__name__}, expected a JSON object")
    missing = [k for k in REQUEST_FIELDS if k not in rec or rec[k] is None]
    if missing:
        raise RequestError(f"record {i} lacks required fields {missing} (a request needs {list(REQUEST_FIELDS)})")
    out = {k: rec[k] for k in REQUEST_FIELDS}
    for key, types in REQUEST_FIELDS.items():
        value = rec[key]
        if key == "position" and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = out[key] = int(value)  # a whole-number float is the integer it writes
        if isinstance(value, bool) or not isinstance(value, types):
            want = {str: "a string", int: "an integer"}.get(types[0], "a number") if len(types) == 1 else "a number"
            raise RequestError(f"record {i}: {key} must be {want}, got {type(value).__name__} {value!r}")
    for key in ("price", "position"):  # both become float64 model inputs and inference-log columns
        if isinstance(out[key], int) and abs(out[key]) > MAX_EXACT_INT:
            raise RequestError(f"record {i}: {key} {out[key]} is beyond 2**53: a 64-bit float cannot hold it exactly")
    price = float(out["price"])
    if not math.isfinite(price) or price <= 0:
        raise RequestError(f"record {i}: price must be a positive number, got {rec['price']!r}")
    if out["position"] < 0:
        raise RequestError(f"record {i}: position must be >= 0, got {rec['position']!r}")
    if not rec["customer_id"].strip() or not rec["plant_id"].strip():
        raise RequestError(f"record {i}: customer_id and plant_id must not be empty")
    for key in ("customer_id", "plant_id", "page"):
        try:
            rec[key].encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): the online store and the logs cannot store it
            raise RequestError(f"record {i}: {key} is not valid Unicode text (it holds a lone surrogate)") from None
    return out



def forward_http(version: str, upstream: Any, frame: pd.DataFrame, timeout_s: float) -> list[float]:
    """Score ``frame``'s model inputs with ``version`` behind HTTP (Model Serving): one float per row.

    ``upstream`` is an ``/invocations`` URL or an object with ``invocations_url`` (and ``headers()`` for the
    workspace's auth); the lookup keys go with the inputs. Raises RequestError: 503 unreachable, 502 a bad answer.
    """
    import requests

    from utils.scoring import model_inputs

    inputs = model_inputs(frame)  # typed values for JSON: str, float, bool
    inputs.insert(0, "plant_id", frame["plant_id"].astype(str).to_numpy())  # the lookup keys: required by a
    inputs.insert(0, "customer_id", frame["customer_id"].astype(str).to_numpy())  # model logged with lookups
    url = upstream if isinstance(upstream, str) else upstream.invocations_url
    headers = {"Content-Type": "application/json"}
    if callable(getattr(upstream, "headers", None)):  # Model Serving: the workspace's auth header
        headers.update(upstream.headers())
    body = json.dumps({"dataframe_records": inputs.to_dict(orient="records")})
    try:
        resp = requests.post(url, data=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise RequestError(f"model version {version} is unreachable at {url}: {exc}", 503) from None
    if resp.status_code != 200:
        raise RequestError(f"model version {version} answered {resp.status_code}: {resp.text[:500]}", 502)
    out = resp.json()
    preds = out.get("predictions") if isinstance(out, Mapping) else out
    if isinstance(preds, Mapping):  # {"probability": {...}} style
        preds = list(next(iter(preds.values())).values()) if preds else []
    preds = [p.get("probability", next(iter(p.values()))) if isinstance(p, Mapping) else p for p in preds]
    if len(preds) != len(inputs):
        raise RequestError(f"model version {version} returned {len(preds)} predictions for {len(inputs)} rows", 502)
    return [float(p) for p in preds]


def json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_USAGE = "use POST /invocations, GET /health, GET /routes or GET /config"


class RouterApp:
    """The router's HTTP face: an ASGI application (Starlette's request and response types, served by uvicorn).

    ``POST /invocations`` (or ``/predict``) scores keys-only records; ``GET /health``, ``GET /routes`` (arm ->
    version and weight) and ``GET /config`` (the endpoint config in Model Serving's shape) describe it.
    Every refusal is JSON: 404 for another path, 405 with ``Allow`` for another method, 400 for a query
    string, a body that ended early or invalid input, 413 for a body over the limit, 415 for a compressed
    body, 422 for an unknown key or a mistyped field, 431 for headers over ``MAX_HEADER_BYTES``.
    A small request to models loaded in this process is scored on the event loop (see ``INLINE_BODY_BYTES``);
    anything bigger, or forwarded over HTTP, runs in a worker thread so the loop keeps reading other connections.
    """

    def __init__(self, router: Any) -> None:  # a utils.deploy.Router
        self.router = router

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.requests import Request

        if scope["type"] != "http":
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        status, answer, close = await self._answer(request)
        if request.method == "POST":
            # Recorded before answering, so a client that has its answer also finds its request counted.
            self.router.record_request(scope["path"], status, started, answer)
        await self._send(status, answer, close)(scope, receive, send)

    def _send(self, status: int, answer: Mapping[str, Any], close: bool) -> Any:
        from starlette.responses import Response

        headers = {"Connection": "close"} if close else {}
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers["Allow"] = "GET, POST"
        return Response(json.dumps(answer, default=json_default), status, headers, media_type="application/json")

    async def _answer(self, request: Any) -> tuple[int, dict[str, Any], bool]:
        from starlette.concurrency import run_in_threadpool

        from utils.http_server import BodyError, read_body

        router, path, method = self.router, request.url.path, request.method
        header_bytes = sum(len(k) + len(v) for k, v in request.scope["headers"])
        if header_bytes > MAX_HEADER_BYTES:
            return 431, {"error": f"request headers of {header_bytes} bytes are over the {MAX_HEADER_BYTES}-byte limit"}, True
        if method in ("GET", "HEAD"):
            if path == "/health":
                return 200, {"status": "ok"}, False
            if path == "/routes":
                table = router._table
                return 200, {"versions": dict(table.versions) if table else {},
                             "weights": dict(table.weights) if table else {}}, False
            if path == "/config":
                return 200, router.endpoint_config(), False
        elif method != "POST":
            return 405, {"error": f"method {method!r} is not allowed: {_USAGE}"}, False
        try:
            body = await read_body(request, router.max_body_bytes)
        except BodyError as exc:
            return exc.status, {"error": f"{exc}: send at most {MAX_RECORDS} records per request"
                                         if exc.status == 413 else str(exc)}, exc.close
        if method != "POST" or path not in ("/invocations", "/predict"):
            return 404, {"error": f"no such path {path!r}: {_USAGE}"}, False
        if request.url.query:
            return 400, {"error": "query parameters are not accepted: send everything in the JSON body"}, False
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            return 415, {"error": f"Content-Encoding {encoding!r} is not accepted: send the JSON body uncompressed"}, False
        try:
            if len(body) <= INLINE_BODY_BYTES and router.scores_in_process():
                return 200, router.handle(body), False
            return 200, await run_in_threadpool(router.handle, body), False
        except RequestError as exc:
            return exc.status, {"error": str(exc)}, False
        except Exception as exc:  # noqa: BLE001 - a bug answers 500, the server stays up
            return 500, {"error": f"{type(exc).__name__}: {exc}"}, False
