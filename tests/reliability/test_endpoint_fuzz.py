"""Fuzzing the keys-only router: over a thousand seeded bad requests, each refused with a JSON 4xx, nothing logged.

A real ``Router`` (uvicorn serving its ASGI application on 127.0.0.1) over the tiny online store of ``tests/code/test_deploy.py`` and a
stub model server that counts its calls. Requests go over raw sockets, so the fuzzer controls every byte:
invalid and truncated JSON, wrong top-level types, missing keys, wrong key types, nulls, huge numbers, nesting,
unicode junk, empty bodies, unknown customers and plants, too many records, oversized bodies, wrong
Content-Length, bad paths and bad methods, MLflow scoring formats with wrong shapes, broken chunked framing,
unsupported transfer and content encodings, and malformed request lines and header blocks. Every answer must be a 4xx with a JSON ``{"error": "..."}``, the
connection must not be dropped (except where the server deliberately closes after a 413 for a body it will not
read), no bad request may reach the model or leave an inference-log row, and afterwards the router must still
answer a good request and flush its logs.

``REPRODUCERS`` keeps the minimal requests of the bugs this fuzzing once found (5xx answers, HTML errors, a short
body served, a row that broke the log flush); each is replayed on its own router as a regression test.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import publish_tiny_online_store
from utils.deploy import Router
from utils.plantly_features import FEATURES
from utils.router_http import MAX_BODY_BYTES, MAX_RECORDS

SEED = 20241122
GOOD = {"customer_id": "C1", "plant_id": "P1", "page": "home", "position": 2, "price": 12.5}
KNOWN_KEYS = {"customer_id": {"C1", "C2"}, "plant_id": {"P1", "P2"}}  # what publish_tiny_online_store holds
STUB_SCORE = 0.25



# ---------------------------------------------------------------- a stub model that counts its calls


class CountingModel(BaseHTTPRequestHandler):
    """Stands in for a model server: checks the 15 feature columns and the two keys, answers ``STUB_SCORE`` per row."""

    calls: list[int]

    def log_message(self, *args: object) -> None:
        return

    def do_POST(self) -> None:
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["dataframe_records"]
        ok = all(sorted(r) == sorted([*FEATURES, "customer_id", "plant_id"]) for r in rows)
        self.calls.append(len(rows))
        data = json.dumps({"predictions": [STUB_SCORE] * len(rows)} if ok else {"error": "bad columns"}).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def model_calls(isolated_state: Path) -> Iterator[tuple[str, list[int]]]:
    publish_tiny_online_store()
    calls: list[int] = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), type("Counting", (CountingModel,), {"calls": calls}))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/invocations", calls
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def router(model_calls) -> Iterator[Router]:
    r = Router("test.models.fuzz", log_predictions=True)
    r.add_upstream("1", model_calls[0])
    r.set_routes({"champion": "1"}, {"champion": 100})
    with r:
        yield r


# ---------------------------------------------------------------- a raw HTTP client


@dataclass
class Case:
    """One fuzz request: its category, the raw bytes sent, and how to send them."""

    category: str
    raw: bytes
    method: str = "POST"
    half_close: bool = False  # shut our side after sending (the server then sees the body end early)
    may_close: bool = False  # the server may close without reading what we send (a body it will not read)

    def __repr__(self) -> str:
        return f"Case({self.category}, {self.raw[:120]!r}{'...' if len(self.raw) > 120 else ''})"


@dataclass
class Answer:
    status: int | None
    content_type: str | None
    body: bytes
    error: str | None = None  # why there is no answer (dropped connection)

    def json_error(self) -> str | None:
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        return doc.get("error") if isinstance(doc, dict) and isinstance(doc.get("error"), str) else None


def http_request(method: str = "POST", path: str | bytes = "/invocations", body: bytes = b"",
                 content_length: str | None | bool = True, extra: list[bytes] | None = None,
                 close: bool = True) -> bytes:
    """Raw HTTP/1.1 request bytes; ``content_length`` True = the body's length, None/False = no header, str = as given."""
    target = path if isinstance(path, bytes) else path.encode("latin-1")
    head = [method.encode("latin-1") + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
            b"Content-Type: application/json"]
    if content_length is True:
        head.append(b"Content-Length: " + str(len(body)).encode())
    elif content_length:
        head.append(b"Content-Length: " + content_length.encode())
    if close:
        head.append(b"Connection: close")
    head += extra or []
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def exchange(router: Router, case: Case, timeout: float = 30.0) -> Answer:
    """Send ``case`` on a fresh connection and read one answer."""
    with socket.create_connection((router.host, router.port), timeout=timeout) as sock:
        try:
            sock.sendall(case.raw)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if not case.may_close:
                return Answer(None, None, b"", f"send failed: {exc!r}")
        resp = http.client.HTTPResponse(sock, method=case.method)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            return Answer(None, None, b"", f"no answer: {exc!r}")
        return Answer(resp.status, resp.getheader("Content-Type"), body)


def problems_with(case: Case, answer: Answer) -> str | None:
    """Why ``answer`` is not a proper refusal of ``case``, or None."""
    if answer.status is None:
        return answer.error
    if not 400 <= answer.status < 500:
        return f"status {answer.status}: {answer.body[:200]!r}"
    if case.method == "HEAD":  # a HEAD answer has no body
        return None
    if not (answer.content_type or "").startswith("application/json") or not answer.json_error():
        return f"status {answer.status} without a JSON error ({answer.content_type}): {answer.body[:200]!r}"
    return None


# ---------------------------------------------------------------- the generator


def _dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def _valid_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _good_record(rec: object) -> bool:
    if not isinstance(rec, dict) or not all(_valid_text(rec.get(k)) for k in ("customer_id", "plant_id", "page")):
        return False
    if any(rec[k] not in known for k, known in KNOWN_KEYS.items()):
        return False
    position, price = rec.get("position"), rec.get("price")
    if isinstance(position, float) and math.isfinite(position) and position.is_integer():
        position = int(position)  # a whole-number float is the integer it writes
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= 2**53:
        return False
    if isinstance(price, bool) or not isinstance(price, (int, float)) or (isinstance(price, int) and price > 2**53):
        return False
    return math.isfinite(float(price)) and price > 0  # both become float64 model inputs and log columns


def is_good_request(body: bytes) -> bool:
    """The router's contract, written down independently: would a correct router serve this body?"""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    formats = [k for k in ("records", "dataframe_records", "dataframe_split", "instances", "inputs")
               if isinstance(doc, dict) and k in doc]
    if len(formats) > 1 or (formats and doc.get("params")):
        return False
    if formats == ["dataframe_split"]:
        split = doc["dataframe_split"]
        if not (isinstance(split, dict) and isinstance(split.get("columns"), list)
                and all(isinstance(c, str) for c in split["columns"]) and isinstance(split.get("data"), list)
                and all(isinstance(r, list) and len(r) == len(split["columns"]) for r in split["data"])):
            return False
        doc = [dict(zip(split["columns"], r)) for r in split["data"]]
    elif formats == ["inputs"] and isinstance(doc["inputs"], dict):
        cols = doc["inputs"]
        if not all(isinstance(v, list) for v in cols.values()) or len({len(v) for v in cols.values()}) > 1:
            return False
        doc = [{k: v[i] for k, v in cols.items()} for i in range(len(next(iter(cols.values()), [])))]
    elif formats:
        doc = doc[formats[0]]
        if not isinstance(doc, list):
            return False
    records = [doc] if isinstance(doc, dict) else doc
    return isinstance(records, list) and 1 <= len(records) <= MAX_RECORDS and all(map(_good_record, records))


JUNK_VALUES: list[object] = [None, True, False, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}, ["C1"], {"customer_id": "C1"}]
WRONG_TYPES: dict[str, list[object]] = {
    "customer_id": [1, 1.5, True, [], {}, ["C1"], {"id": "C1"}],
    "plant_id": [2, -0.0, False, [], {}, ["P1"]],
    "page": [1, True, [], {}, ["home"]],
    "position": ["2", 2.5, 2.0, True, False, [], {}, "two", [2]],
    "price": ["12.5", True, [], {}, "abc", [12.5], {"amount": 12.5}],
}
BAD_NUMBERS: dict[str, list[str]] = {  # JSON number text that must be refused
    "price": ["1e309", "-1e309", "-1e308", "0", "-0.0", "1e-400", "-12.5", "NaN", "Infinity", "-Infinity"],
    "position": ["-1", "-100000000000000000000000000000", "1e30", "2.000001", "NaN", "Infinity", "-Infinity",
                 "9007199254740993"],
}
UNKNOWN_IDS = ["C9", "c1", " C1", "C1 ", "C1\u0000", "' OR '1'='1", "%", "*", "C\u200b1", "\u202eC1", "Ｃ1", "🌱",
               "C" * 5000, "../C1", "null", "P1"]
JUNK_STRINGS = ["\u0000", "\u200b\u200b", "🌵" * 50, "\u202e\u202d", "e\u0301\u0301\u0301", "\ufffd", "\\", "\"",
                "<script>", "\r\n\r\n", "\uffff", "\U0010ffff"]
BAD_PATHS = ["/", "/invocations/", "/INVOCATIONS", "/invocations?x=1", "/invocations#a", "/./invocations",
             "/predict/1", "/../etc/passwd", "/invocations%00", "/%2e%2e/", "/health", "/routes", "*",
             "/" + "a" * 8000, "/inv\u00e9cations"]
BAD_METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "FOO", "post", "P0ST"]


def generate(seed: int = SEED) -> list[Case]:
    """A seeded list of bad requests covering every category (several hundred in all)."""
    rng = random.Random(seed)
    good = _dumps(GOOD)
    cases: list[Case] = []

    framing = {"empty_body", "wrong_content_length", "short_body", "bad_paths", "unsupported_method",
               "transfer_encoding", "content_encoding"}

    def add(category: str, body: bytes, **kw: object) -> None:
        if category not in framing and is_good_request(body):
            return  # a random edit that happens to be a valid request: not a fuzz case
        raw = http_request(body=body, **{k: v for k, v in kw.items() if k in ("method", "path", "content_length", "extra")})
        cases.append(Case(category, raw, method=str(kw.get("method", "POST")),
                          half_close=bool(kw.get("half_close", False)), may_close=bool(kw.get("may_close", False))))

    def record(**changes: object) -> dict:
        rec = dict(GOOD)
        for k, v in changes.items():
            if v is _DROP:
                rec.pop(k, None)
            else:
                rec[k] = v
        return rec

    # invalid JSON: random edits of a good body that no longer parse, and classic mistakes
    classics = [b"{", b"}", b"[", b"{'customer_id': 'C1'}", b'{"customer_id": }', b'{"customer_id": "C1",}',
                b"[1,]", b"{\"a\":1}//", b"/* */{}", b"undefined", b"{\"a\" 1}", b'{"a":"\x01"}', b"\x00",
                b"True", b"nul", b"{\"customer_id\": \"C1\" \"plant_id\": \"P1\"}", b"\"unterminated"]
    for body in classics:
        add("invalid_json", body)
    while sum(c.category == "invalid_json" for c in cases) < 250:
        body = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(body))
            op = rng.choice(("drop", "insert", "replace"))
            if op == "drop":
                del body[pos]
            elif op == "insert":
                body.insert(pos, rng.choice(b"{}[]\",:'\\ x0-+.eE"))
            else:
                body[pos] = rng.choice(b"{}[]\",:'\\x")
        if body.strip() and not _is_json(bytes(body)):
            add("invalid_json", bytes(body))

    # truncated JSON
    for doc in (GOOD, [GOOD, GOOD], {"records": [GOOD, GOOD, GOOD]}):
        text = _dumps(doc)
        for cut in sorted(rng.sample(range(1, len(text)), 24)):
            if text[:cut].strip():
                add("truncated_json", text[:cut])

    # wrong top-level types
    for doc in [1, -3.5, 0, "C1", "", True, False, None, [], [[]], [1, 2], [None], [GOOD, 5], [[GOOD]], {},
                {"records": 5}, {"records": "x"}, {"records": None}, {"records": []}, {"records": {}},
                {"dataframe_records": {}}, {"dataframe_records": None}, {"records": [[GOOD]]},
                {"records": {"records": [GOOD]}}, {"inputs": [GOOD]}, {"instances": [GOOD]}, {"data": GOOD}]:
        add("wrong_top_level", _dumps(doc))

    # missing keys (with and without unknown extra keys)
    keys = list(GOOD)
    for _ in range(120):
        gone = rng.sample(keys, rng.randint(1, len(keys)))
        rec = record(**{k: _DROP for k in gone})
        if rng.random() < 0.4:
            rec[rng.choice(["extra", "customerId", "plant", "Price", ""])] = rng.choice(JUNK_VALUES)
        add("missing_keys", _dumps(rng.choice([rec, [rec], {"records": [GOOD, rec]}])))

    # wrong key types
    for key, values in WRONG_TYPES.items():
        for value in values:
            add("wrong_key_types", _dumps(record(**{key: value})))
    for _ in range(80):
        changes = {k: rng.choice(WRONG_TYPES[k]) for k in rng.sample(keys, rng.randint(2, 5))}
        add("wrong_key_types", _dumps({"records": [GOOD, record(**changes)]}))

    # nulls
    for key in keys:
        add("nulls", _dumps(record(**{key: None})))
        add("nulls", _dumps([GOOD, record(**{key: None})]))
    add("nulls", b"null")
    add("nulls", _dumps({"records": [GOOD, None]}))
    add("nulls", _dumps({k: None for k in keys}))

    # huge numbers (each must be refused)
    for key, texts in BAD_NUMBERS.items():
        for text in texts:
            add("huge_numbers", good.replace(_dumps(GOOD[key]), text.encode(), 1) if key == "price"
                else good.replace(b'"position": 2', b'"position": ' + text.encode()))
    add("huge_int_literal", good.replace(b'"position": 2', b'"position": ' + b"9" * 5000))
    add("huge_int_literal", good.replace(b"12.5", b"1" * 4400))
    add("int_overflow_price", good.replace(b"12.5", str(10**400).encode()))
    add("int_overflow_price", good.replace(b"12.5", b"1" + b"0" * 320))
    add("int_overflow_position", good.replace(b'"position": 2', b'"position": ' + str(10**400).encode()))
    add("int_overflow_position", _dumps({"records": [GOOD, record(position=2**1100)]}))

    # nested objects and arrays
    for _ in range(60):
        depth = rng.randint(2, 30)
        value: object = rng.choice([GOOD, "C1", 1, None])
        for _ in range(depth):
            value = rng.choice([[value], {"v": value}, {"records": value}])
        key = rng.choice(keys)
        add("nested_objects", _dumps(rng.choice([record(**{key: value}), value, {"records": [value]}])))
    for depth in (10_000, 100_000):
        add("deep_nesting", b"[" * depth + b"]" * depth)
        add("deep_nesting", b'{"records": ' + b"[" * depth + b"]" * depth + b"}")

    # unicode junk: invalid UTF-8, and valid but odd strings in every field
    for _ in range(60):
        body = bytearray(good)
        pos = good.index(b"C1") + 1
        body[pos:pos] = bytes(rng.choice([0x80, 0xBF, 0xC0, 0xC1, 0xF5, 0xFF, 0xFE, 0xED]) for _ in range(rng.randint(1, 4)))
        add("unicode_junk", bytes(body))
    add("unicode_junk", b"\xff\xfe\x00\x00" + good)
    add("unicode_junk", b"\xc0\xaf" + good)
    for s in JUNK_STRINGS:
        key = rng.choice(["customer_id", "plant_id"])
        add("unicode_junk", json.dumps(record(**{key: s}), ensure_ascii=rng.random() < 0.5).encode())
    for key in ("customer_id", "plant_id", "page"):
        for s in ("\ud800", "C1\udfff", "\udc00\ud800"):
            add("lone_surrogate", _dumps(record(**{key: s})))
    add("lone_surrogate", good.replace(b"C1", b"\xed\xa0\x80"))  # UTF-8 bytes of a surrogate: json.loads lets them in

    # empty bodies
    for body in (b"", b" ", b"\n", b"\t\r\n ", b"   " * 100):
        add("empty_body", body)
    add("empty_body", b"", content_length=None)
    add("empty_body", good, content_length="0")

    # unknown customers and plants (alone, or next to a good record: the whole request is refused)
    for s in UNKNOWN_IDS + ["", "   ", "\t"]:
        key = rng.choice(["customer_id", "plant_id"])
        bad = record(**{key: s})
        add("unknown_keys", _dumps(rng.choice([bad, [GOOD, bad], {"records": [bad, GOOD, GOOD]}])))
    for _ in range(60):
        bad = record(customer_id=f"C{rng.randint(3, 10**6)}", plant_id=rng.choice(["P1", "P2", f"P{rng.randint(3, 999)}"]))
        add("unknown_keys", _dumps({"records": [GOOD] * rng.randint(0, 5) + [bad]}))

    # too many records (under the byte limit)
    for n in (MAX_RECORDS + 1, MAX_RECORDS + 2, 2 * MAX_RECORDS, 5000):
        add("too_many_records", _dumps({"records": [GOOD] * n}))
    add("too_many_records", _dumps([GOOD] * (MAX_RECORDS + 1)))

    # oversized bodies: drained then refused, or (declared far over the limit) refused without reading
    add("oversized_body", good + b" " * (MAX_BODY_BYTES + 1 - len(good)))
    add("oversized_body", _dumps({"records": [GOOD] * 20000}))
    add("oversized_body", b"x" * (3 * MAX_BODY_BYTES))
    add("oversized_body", b"", content_length=str(100 * MAX_BODY_BYTES), may_close=True)
    add("oversized_body", b"", content_length=str(10**30), may_close=True)

    # wrong Content-Length: garbled, negative, shorter than the body
    for header in ("-1", "-5", "abc", "1e3", "0x10", "1.5", "+-3", "１２", "10 20"):
        add("wrong_content_length", good, content_length=header, half_close=True, may_close=True)
    for cut in rng.sample(range(1, len(good)), 8):
        add("wrong_content_length", good, content_length=str(cut))
    for extra in (1, 10, 1000):  # longer than the body: the client stops sending (half-close)
        add("short_body", good, content_length=str(len(good) + extra), half_close=True)

    # bad paths (a good body) and bad methods
    for path in BAD_PATHS:
        add("bad_paths", good, path=path)
        add("bad_paths", b"", method="GET", path=path if path not in ("/health", "/routes") else "/nope", content_length=None)
    add("bad_paths", good, path=b"/inv\xffcations")
    add("bad_paths", b"", method="GET", path="/invocations", content_length=None)
    for method in BAD_METHODS:
        add("unsupported_method", good, method=method, path=rng.choice(["/invocations", "/health", "/x"]))

    # MLflow scoring formats with wrong shapes
    wrong_shapes: list[object] = [
        {"dataframe_split": {"columns": keys, "data": [[GOOD[k] for k in keys][:-1]]}},  # a row one value short
        {"dataframe_split": {"columns": keys, "data": [[GOOD[k] for k in keys] + [1]]}},  # one value too many
        {"dataframe_split": {"columns": keys[:-1], "data": [[GOOD[k] for k in keys[:-1]]]}},  # a column missing
        {"dataframe_split": {"columns": keys, "data": [GOOD]}},  # records where rows belong
        {"dataframe_split": {"columns": keys, "data": {"0": [GOOD[k] for k in keys]}}},
        {"dataframe_split": {"columns": [1, 2, 3, 4, 5], "data": [[GOOD[k] for k in keys]]}},
        {"dataframe_split": {"data": [[GOOD[k] for k in keys]]}}, {"dataframe_split": {"columns": keys}},
        {"dataframe_split": [[GOOD[k] for k in keys]]}, {"dataframe_split": {"columns": keys, "data": []}},
        {"inputs": {k: [GOOD[k], GOOD[k]] for k in keys} | {"price": [12.5]}},  # columns of unequal length
        {"inputs": {k: GOOD[k] for k in keys}}, {"inputs": {k: [] for k in keys}}, {"inputs": [[GOOD]]},
        {"inputs": {k: [GOOD[k]] for k in keys[:-1]}}, {"instances": GOOD}, {"instances": [[GOOD[k] for k in keys]]},
        {"dataframe_records": GOOD}, {"dataframe_records": [[GOOD[k] for k in keys]]},
        {"dataframe_records": [GOOD], "inputs": [GOOD]}, {"records": [GOOD], "instances": [GOOD]},
        {"dataframe_records": [GOOD], "params": {"k": 1}}, {"dataframe_records": [GOOD], "params": "x"},
    ]
    for doc in wrong_shapes:
        add("mlflow_wrong_shape", _dumps(doc))
    split = {"columns": keys, "data": [[GOOD[k] for k in keys]]}
    for _ in range(60):  # a good split with one row or the column list damaged
        damaged = json.loads(json.dumps(split))
        target = rng.choice(["row", "columns"])
        seq = damaged["data"][0] if target == "row" else damaged["columns"]
        op = rng.choice(["drop", "extra", "junk"])
        if op == "drop":
            del seq[rng.randrange(len(seq))]
        elif op == "extra":
            seq.insert(rng.randrange(len(seq) + 1), rng.choice(JUNK_VALUES))
        else:
            seq[rng.randrange(len(seq))] = rng.choice([None, [], {}, 1.5, True] if target == "columns" else JUNK_VALUES)
        add("mlflow_wrong_shape", _dumps({"dataframe_split": damaged}))

    # broken chunked framing, unsupported transfer and content encodings
    te = [b"Transfer-Encoding: chunked"]
    for raw_body in (b"zz\r\n" + good + b"\r\n0\r\n\r\n", b"5\r\n" + good + b"\r\n0\r\n\r\n",
                     b"-5\r\nabcde\r\n0\r\n\r\n", b"ffffffffffffffffff\r\n", b"5;\x00\r\nabcde\r\n0\r\n\r\n"):
        add("transfer_encoding", raw_body, content_length=None, extra=te, half_close=True, may_close=True)
    for encoding in ("gzip", "chunked, gzip", "identity", "compress", "x-unknown"):
        add("transfer_encoding", good, content_length=None, extra=[b"Transfer-Encoding: " + encoding.encode()],
            half_close=True, may_close=True)
    add("transfer_encoding", good, extra=te, half_close=True, may_close=True)  # both Content-Length and chunked
    for encoding in ("gzip", "deflate", "br", "x-unknown", "gzip, identity"):
        add("content_encoding", good, extra=[b"Content-Encoding: " + encoding.encode()])
    import gzip
    add("content_encoding", gzip.compress(good, mtime=0), extra=[b"Content-Encoding: gzip"])

    # malformed request lines and header blocks (answered by the HTTP layer, before the application)
    for line in (b"GARBAGE", b"POST /invocations HTTP/1.1 extra", b"POST /invocations", b"POST  /invocations HTTP/1.1",
                 b"POST /invocations HTTP/9.9", b"POST /invocations HTTP/1.1\x00", b"\x16\x03\x01\x02\x00\x01",
                 b"POST /" + b"a" * 70_000 + b" HTTP/1.1"):
        cases.append(Case("protocol_error", line + b"\r\n\r\n", may_close=True))
    for header in (b"No colon here", b"Bad Name: x", b": empty name", b"X-A: \x00", b"Host: a\r\nHost: b",
                   b"Content-Length: 5\r\nContent-Length: 6", b"X-Big: " + b"y" * 70_000):
        cases.append(Case("protocol_error", http_request(body=good, extra=[header]), may_close=True))
    cases.append(Case("protocol_error", http_request(body=good, extra=[f"X-{i}: {'y' * 100}".encode() for i in range(700)]),
                      may_close=True))  # a header block over the server's 64 KB limit

    rng.shuffle(cases)
    return cases


_DROP = object()


# ---------------------------------------------------------------- the fuzz test


def test_generator_covers_every_category_with_over_a_thousand_requests():
    cases = generate()
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.category] = counts.get(c.category, 0) + 1
    expected = {"invalid_json", "truncated_json", "wrong_top_level", "missing_keys", "wrong_key_types", "nulls",
                "huge_numbers", "nested_objects", "unicode_junk", "empty_body", "unknown_keys", "too_many_records",
                "oversized_body", "wrong_content_length", "bad_paths", "unsupported_method"}
    expected |= {"mlflow_wrong_shape", "transfer_encoding", "content_encoding", "protocol_error"}
    assert expected <= set(counts), counts
    assert len(cases) >= 1000, counts
    assert generate() == cases  # seeded: the same requests every run


def test_fuzzed_bad_requests_get_a_json_4xx_and_leave_no_trace(router, model_calls):
    calls = model_calls[1]
    calls_before, rows_before = len(calls), router.pending_log_rows()
    failures: dict[str, list[str]] = {}
    cases = generate()
    assert len(cases) >= 1000
    for case in cases:
        answer = exchange(router, case)
        problem = problems_with(case, answer)
        leaked = router.pending_log_rows() != rows_before or len(calls) != calls_before
        if leaked:
            problem = f"{problem or 'answered ' + str(answer.status)}; it reached the model or the inference log"
            rows_before, calls_before = router.pending_log_rows(), len(calls)
        if problem:
            failures.setdefault(case.category, []).append(f"{case!r}: {problem}")
        assert router.running, f"the router died on {case!r}"
    summary = {k: v[:3] for k, v in failures.items()}
    assert not failures, f"{sum(map(len, failures.values()))} bad requests not refused properly: {summary}"
    assert router.pending_log_rows() == 0
    # still serving, and the logs still flush
    answer = exchange(router, Case("good", http_request(body=_dumps([GOOD, {**GOOD, "customer_id": "C2"}]))))
    assert answer.status == 200, answer
    doc = json.loads(answer.body)
    assert doc["predictions"] == [STUB_SCORE, STUB_SCORE] and doc["model_versions"] == ["1", "1"]
    assert router.pending_log_rows() == 2 and model_calls[1][-1] == 2
    assert router.flush_log() == 2


def _read_answer(reader: Any) -> tuple[int, bytes]:
    """Status and body of the next answer on a kept-alive connection (the server always sends Content-Length)."""
    status = int(reader.readline().split()[1])
    headers = http.client.parse_headers(reader)
    return status, reader.read(int(headers["Content-Length"]))


def test_a_connection_kept_alive_after_a_refusal_serves_the_next_request(router):
    """The refused request's body is consumed, so the next request on the same connection is read correctly."""
    good = _dumps(GOOD)
    refusals = [
        http_request(body=b"{oops", close=False),
        http_request(body=_dumps({**GOOD, "customer_id": "C-NOBODY"}), close=False),
        http_request(path="/nope", body=good, close=False),
        http_request(body=_dumps({"records": [GOOD] * (MAX_RECORDS + 1)}), close=False),
        http_request(body=b" " * (MAX_BODY_BYTES + 10), close=False),
        http_request(body=good, content_length="5", close=False)[:-(len(good) - 5)],  # exactly 5 body bytes sent
    ]
    for first in refusals:
        with socket.create_connection((router.host, router.port), timeout=30) as sock:
            sock.sendall(first + http_request(body=good))
            with sock.makefile("rb") as reader:
                answers = [_read_answer(reader), _read_answer(reader)]
        assert 400 <= answers[0][0] < 500 and json.loads(answers[0][1])["error"], (first[:80], answers[0])
        assert answers[1][0] == 200 and json.loads(answers[1][1])["predictions"] == [STUB_SCORE], (first[:80], answers[1])
    assert router.pending_log_rows() == len(refusals)


# ---------------------------------------------------------------- minimal reproducers of bugs fuzzing found


def _good_with(old: bytes, new: bytes) -> bytes:
    return http_request(body=_dumps(GOOD).replace(old, new, 1))


_GOOD_BODY = _dumps(GOOD)
# category -> [(method, raw request, half-close after sending)]
REPRODUCERS: dict[str, list[tuple[str, bytes, bool]]] = {
    "huge_int_literal": [("POST", _good_with(b'"position": 2', b'"position": ' + b"9" * 5000), False)],
    "int_overflow_price": [("POST", _good_with(b"12.5", b"1" + b"0" * 400), False)],
    "int_overflow_position": [("POST", _good_with(b'"position": 2', b'"position": 1' + b"0" * 400), False)],
    "deep_nesting": [("POST", http_request(body=b"[" * 100_000 + b"]" * 100_000), False)],
    "lone_surrogate": [("POST", _good_with(b'"C1"', b'"\\ud800"'), False),  # 500: SQLite cannot bind it
                       ("POST", _good_with(b'"home"', b'"\\ud800"'), False)],  # 200, then flush_log raises
    "unsupported_method": [("PUT", http_request(method="PUT", body=_GOOD_BODY), False),
                           ("DELETE", http_request(method="DELETE", path="/x"), False)],
    "protocol_error": [("POST", b"GARBAGE\r\n\r\n", False)],
    "short_body": [("POST", http_request(body=_GOOD_BODY, content_length=str(len(_GOOD_BODY) + 10)), True)],
}


@pytest.mark.parametrize("bug", sorted(REPRODUCERS))
def test_a_bug_fuzzing_found_stays_fixed(model_calls, bug):
    calls = len(model_calls[1])
    r = Router("test.models.fuzz", log_predictions=True)
    r.add_upstream("1", model_calls[0])
    r.set_routes({"champion": "1"}, {"champion": 100})
    r.start()
    try:
        for method, raw, half_close in REPRODUCERS[bug]:
            case = Case(bug, raw, method=method, half_close=half_close)
            answer = exchange(r, case)
            assert problems_with(case, answer) is None, (raw[:100], answer)
        assert r.pending_log_rows() == 0 and len(model_calls[1]) == calls
        assert r.flush_log() == 0  # and the logs still flush
    finally:
        r.stop()


# ---------------------------------------------------------------- slow clients and many connections (loopback only)


def test_a_slow_client_does_not_hold_up_other_clients(router):
    """A client trickling its request one byte at a time costs one socket, not the server: others are served meanwhile."""
    import time

    raw = http_request(body=_dumps(GOOD))
    stop = threading.Event()

    def trickle() -> None:
        with socket.create_connection((router.host, router.port), timeout=30) as sock:
            for i in range(len(raw) - 1):  # never the last byte: the request stays incomplete
                if stop.is_set():
                    return
                sock.sendall(raw[i:i + 1])
                time.sleep(0.02)

    slow = [threading.Thread(target=trickle, daemon=True) for _ in range(5)]
    for t in slow:
        t.start()
    try:
        time.sleep(0.3)  # the slow clients are mid-request
        started = time.perf_counter()
        for _ in range(10):
            answer = exchange(router, Case("good", http_request(body=_dumps(GOOD))), timeout=10)
            assert answer.status == 200, answer
        assert time.perf_counter() - started < 20, "good requests waited for the slow clients"
    finally:
        stop.set()
        for t in slow:
            t.join(timeout=30)
    assert router.running


def test_many_idle_connections_do_not_stop_the_endpoint(router):
    """200 connections opened and left idle (bounded: loopback, 200 sockets, seconds): a new client is still served."""
    socks = [socket.create_connection((router.host, router.port), timeout=30) for _ in range(200)]
    try:
        for sock in socks[::2]:  # half of them send part of a request and stall
            sock.sendall(http_request(body=_dumps(GOOD))[:40])
        answer = exchange(router, Case("good", http_request(body=_dumps(GOOD))), timeout=10)
        assert answer.status == 200 and json.loads(answer.body)["predictions"] == [STUB_SCORE], answer
    finally:
        for sock in socks:
            sock.close()
    answer = exchange(router, Case("good", http_request(body=_dumps(GOOD))), timeout=10)
    assert answer.status == 200 and router.running
