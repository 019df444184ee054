"""The plantly.shop raw feed (``data/raw``): the simulation's frames as CSV and JSON-lines files, with
malformed records of the kinds in ``BAD_KINDS`` and a ``manifest.json``. Data dictionary: ``data/raw/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from utils.plantly_shop import SCENARIOS, GeneratorSpec, window_bounds
from utils.plantly_simulation import generate, random_streams

GENERATOR_VERSION = 1
RAW_FILES: dict[str, str] = {
    "customers": "customers.csv",
    "plants": "plants.json",
    "clickstream": "clickstream.jsonl",
    "orders": "orders.csv",
}
MANIFEST_FILE = "manifest.json"

BAD_KINDS: dict[str, tuple[str, ...]] = {
    "customers": ("malformed", "wrong_type", "missing_key", "negative_value", "null_id"),
    "plants": ("malformed", "wrong_type", "missing_key", "negative_value", "null_id"),
    "clickstream": ("malformed", "wrong_type", "missing_key", "negative_value", "unknown_id", "null_id"),
    "orders": ("malformed", "wrong_type", "missing_key", "negative_value", "unknown_id", "null_id"),
}

_CHUNK_ROWS = 250_000  # records formatted per Arrow batch while writing
_JSON_ESCAPE = r'["\\\x00-\x1f\x7f]'
_CSV_QUOTE = r'[",\r\n]'


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def _iso_strings(ts: pd.Series) -> pa.Array:
    """ISO-8601 UTC strings ``YYYY-MM-DDTHH:MM:SSZ`` (tables of days and times of day, no per-row Python)."""
    secs = _epoch_seconds(ts)
    days, day_idx = np.unique(secs // 86400, return_inverse=True)
    day_text = pa.array([f"{d}T" for d in np.datetime_as_string(days.astype("datetime64[D]"))], pa.string())
    tod = secs % 86400
    return pc.binary_join_element_wise(pc.take(day_text, pa.array(day_idx)), pc.take(_times_of_day(), pa.array(tod)), "")


@functools.lru_cache(maxsize=1)
def _times_of_day() -> pa.Array:
    """``HH:MM:SSZ`` for every second of a day."""
    return pa.array([f"{h:02d}:{m:02d}:{x:02d}Z" for h in range(24) for m in range(60) for x in range(60)])


def _text_values(values: pd.Series, fmt: str) -> pa.Array:
    """One column's values as JSON or CSV text (strings quoted/escaped as the format needs)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        text = _iso_strings(values)
        return pc.binary_join_element_wise('"', text, '"', "") if fmt == "json" else text
    if pd.api.types.is_bool_dtype(values.dtype):
        return pc.if_else(pa.array(values.to_numpy()), "true", "false")
    if pd.api.types.is_integer_dtype(values.dtype):
        return pc.cast(pa.array(values.to_numpy()), pa.string())
    if pd.api.types.is_float_dtype(values.dtype):
        num = values.to_numpy()
        if not np.isfinite(num).all():
            raise ValueError(f"column {values.name!r} holds NaN or infinity: clean frames must be finite")
        text = pc.cast(pa.array(num), pa.string())
        return pc.if_else(pc.match_substring_regex(text, r"^-?[0-9]+$"), pc.binary_join_element_wise(text, ".0", ""),
                          text)  # keep floats recognisable as floats
    obj = values.to_numpy(dtype=object)
    if len(obj) and isinstance(obj[0], dt.date):
        obj = np.array([d.isoformat() for d in obj], dtype=object)
    text = pa.array(obj, pa.string())
    if fmt == "json":
        if pc.any(pc.match_substring_regex(text, _JSON_ESCAPE)).as_py():
            return pa.array([json.dumps(v) for v in obj], pa.string())
        return pc.binary_join_element_wise('"', text, '"', "")
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(text, _CSV_QUOTE), quoted, text)


def _format_records(df: pd.DataFrame, fmt: str) -> pa.Array:
    """Each row of ``df`` as one JSON object or CSV line, newline included."""
    if fmt == "json":
        parts: list[Any] = []
        for i, col in enumerate(df.columns):
            parts += [("{" if i == 0 else ",") + json.dumps(col) + ":", _text_values(df[col], fmt)]
        lines = pc.binary_join_element_wise(*parts, "}\n", "")
    else:
        joined = pc.binary_join_element_wise(*(_text_values(df[c], fmt) for c in df.columns), ",")
        lines = pc.binary_join_element_wise(joined, "\n", "")
    if lines.null_count:
        raise ValueError("clean frames must not hold nulls: a generator column came out empty")
    return lines


def _template(record: dict[str, Any]) -> dict[str, Any]:
    """A clean record with plain JSON-able values (ISO timestamps and dates)."""
    out = {}
    for k, v in record.items():
        if isinstance(v, pd.Timestamp):
            v = v.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(v, dt.date):
            v = v.isoformat()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _csv_row(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().rstrip("\n")


def _json_row(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _bad_record(
    file: str, kind: str, variant: int, template: dict[str, Any], fresh_id: str, unknown: dict[str, str]
) -> str:
    """One malformed line of ``kind`` for ``file``, built from a clean ``template`` record."""
    rec = dict(template)
    id_col = {"customers": "customer_id", "plants": "plant_id", "clickstream": "event_id", "orders": "order_id"}[file]
    rec[id_col] = fresh_id
    is_json = file in ("plants", "clickstream")
    if kind == "malformed":
        if is_json:
            line = _json_row(rec)
            return line[: max(10, len(line) // 2)]  # truncated object: not valid JSON
        return ";".join(str(v) for v in rec.values())  # wrong delimiter: one field instead of many
    if kind == "wrong_type":
        choices = {
            "customers": [("tenure_days", "abc"), ("signup_date", "not-a-date")],
            "plants": [("price", "abc"), ("stock", "many"), ("invasive", "maybe")],
            "clickstream": [("position", "third"), ("event_ts", "not-a-timestamp"), ("price", "abc")],
            "orders": [("unit_price", "abc"), ("quantity", "two"), ("order_ts", "not-a-timestamp")],
        }[file]
        col, value = choices[variant % len(choices)]
        rec[col] = value
    elif kind == "missing_key":
        cols = {
            "customers": ["region", "signup_date"],
            "plants": ["price", "category"],
            "clickstream": ["event_ts", "purchased", "plant_id"],
            "orders": ["quantity", "order_ts"],
        }[file]
        col = cols[variant % len(cols)]
        if is_json:
            del rec[col]
        else:
            rec[col] = ""
    elif kind == "negative_value":
        col = {"customers": "tenure_days", "plants": "price", "clickstream": "price", "orders": "unit_price"}[file]
        rec[col] = -abs(int(rec[col]) or 1) if col == "tenure_days" else -abs(float(rec[col]) or 1.0)
    elif kind == "unknown_id":
        col = ("customer_id", "plant_id")[variant % 2]
        rec[col] = unknown[col]
    elif kind == "null_id":
        rec[id_col if variant % 2 == 0 or file in ("customers", "plants") else "customer_id"] = None
    if is_json:
        return _json_row(rec)
    return _csv_row(["" if v is None else v for v in rec.values()])


def _bad_lines(
    rng: np.random.Generator,
    file: str,
    clean: pd.DataFrame,
    fraction: float,
    fresh_ids: list[str],
    unknown_ids: dict[str, str],
) -> tuple[list[str], dict[str, int]]:
    """Malformed lines for ``file`` (``fraction`` of its clean records, at least one) and the count per kind."""
    kinds = BAD_KINDS[file]
    n_bad = 0 if fraction == 0 or clean.empty else max(1, round(fraction * len(clean)))
    if n_bad == 0:
        return [], dict.fromkeys(kinds, 0)
    kind_of = np.array(kinds, dtype=object)[rng.permutation((np.arange(n_bad) + rng.integers(len(kinds))) % len(kinds))]
    templates = clean.iloc[rng.integers(0, len(clean), size=n_bad)].to_dict("records")
    lines, seen = [], dict.fromkeys(kinds, 0)
    for kind, tmpl, fresh in zip(kind_of, templates, fresh_ids):
        lines.append(_bad_record(file, kind, seen[kind], _template(tmpl), fresh, unknown_ids))
        seen[kind] += 1
    return lines, seen


def _arrow_text_bytes(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, back to back (each value already ends in a newline)."""
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    data = lines.buffers()[2]
    return memoryview(data)[offsets[0]:offsets[-1]] if data is not None else memoryview(b"")


def _write_records(
    path: Path, clean: pd.DataFrame, fmt: str, bad: list[str], rng: np.random.Generator
) -> tuple[int, str]:
    """Write ``clean`` records with ``bad`` lines mixed in at random places; returns bytes and SHA-256."""
    total = len(clean) + len(bad)
    bad_pos = np.sort(rng.choice(total, size=len(bad), replace=False)) if bad else np.empty(0, dtype=np.int64)
    digest, size = hashlib.sha256(), 0
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:

        def emit(chunk: bytes | memoryview) -> None:
            nonlocal size
            fh.write(chunk)
            digest.update(chunk)
            size += len(chunk)

        if fmt == "csv":
            emit((",".join(clean.columns) + "\n").encode())
        for a in range(0, total, _CHUNK_ROWS):
            b = min(a + _CHUNK_ROWS, total)
            lo, hi = np.searchsorted(bad_pos, [a, b])
            lines = _format_records(clean.iloc[a - lo: b - hi], "json" if fmt == "jsonl" else "csv")
            if hi > lo:
                is_bad = np.zeros(b - a, dtype=bool)
                is_bad[bad_pos[lo:hi] - a] = True
                take = np.empty(b - a, dtype=np.int64)
                take[~is_bad] = np.arange(len(lines))
                take[is_bad] = len(lines) + np.arange(hi - lo)
                extra = pa.array([line + "\n" for line in bad[lo:hi]], pa.string())
                lines = pa.concat_arrays([lines, extra]).take(pa.array(take))
            emit(_arrow_text_bytes(lines))
    os.replace(tmp, path)
    return size, digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _manifest_matches(manifest: dict | None, spec: GeneratorSpec, out_dir: Path) -> bool:
    if not manifest or manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    if manifest.get("spec") != dataclasses.asdict(spec):
        return False
    for name, info in manifest.get("files", {}).items():
        path = out_dir / name
        if not path.is_file() or path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
            return False
    return set(manifest.get("files", {})) == set(RAW_FILES.values())


def _malformed_ids(frames_by_file: dict[str, pd.DataFrame], bad_fraction: float
                   ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Ids for each file's malformed records (after every clean id), and a customer and plant id in no file."""
    n_bad_max = {k: round(bad_fraction * len(v)) + 1 for k, v in frames_by_file.items()}
    n_cust, n_plant = len(frames_by_file["customers"]), len(frames_by_file["plants"])
    w_c = max(6, len(str(n_cust + n_bad_max["customers"] + 1)))
    w_p = max(4, len(str(n_plant + n_bad_max["plants"] + 1)))
    unknown = {"customer_id": f"C{n_cust + n_bad_max['customers'] + 1:0{w_c}d}",
               "plant_id": f"P{n_plant + n_bad_max['plants'] + 1:0{w_p}d}"}
    n_imp, n_ord = len(frames_by_file["clickstream"]), len(frames_by_file["orders"])
    fresh = {
        "customers": [f"C{i:0{w_c}d}" for i in range(n_cust + 1, n_cust + n_bad_max["customers"] + 1)],
        "plants": [f"P{i:0{w_p}d}" for i in range(n_plant + 1, n_plant + n_bad_max["plants"] + 1)],
        "clickstream": [f"E{i:0{max(8, len(str(n_imp)))}d}" for i in range(n_imp + 1, n_imp + n_bad_max["clickstream"] + 1)],
        "orders": [f"O{i:0{max(7, len(str(n_ord)))}d}" for i in range(n_ord + 1, n_ord + n_bad_max["orders"] + 1)],
    }
    return fresh, unknown


def land_raw_files(spec: GeneratorSpec, out_dir: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Write the raw feed for ``spec`` (with malformed records) and its ``manifest.json``; returns the paths.

    Files already there from the same spec and generator version are kept (checked by SHA-256)
    unless ``force``; regenerating the same spec writes byte-identical data files.
    """
    from utils.platform import ensure_dirs, raw_data_dir

    if out_dir is None:
        ensure_dirs()  # on Databricks: the schema and its volumes, `raw` among them
    out = Path(out_dir) if out_dir is not None else raw_data_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the raw folder {out} ({exc.strerror}): on Databricks create the volume first "
            "(CREATE VOLUME IF NOT EXISTS <catalog>.<schema>.raw), or pass out_dir"
        ) from exc
    paths = {k: out / v for k, v in RAW_FILES.items()} | {"manifest": out / MANIFEST_FILE}
    if not force and _manifest_matches(raw_manifest(out), spec, out):
        return paths
    paths["manifest"].unlink(missing_ok=True)  # no manifest describes half-written files

    t0 = time.perf_counter()
    frames = generate(spec)
    frames_by_file = {"customers": frames["customers"], "plants": frames["plants"],
                      "clickstream": frames["impressions"], "orders": frames["orders"]}
    rng = random_streams(spec.seed)["corrupt"]
    fresh, unknown = _malformed_ids(frames_by_file, spec.bad_fraction)
    from utils.progress import progress

    files: dict[str, dict[str, Any]] = {}
    for key, name in progress(RAW_FILES.items(), "raw files", total=len(RAW_FILES), unit="file"):
        clean = frames_by_file[key]
        fmt = "csv" if name.endswith(".csv") else "jsonl"
        bad, by_kind = _bad_lines(rng, key, clean, spec.bad_fraction, fresh[key], unknown)
        size, sha = _write_records(paths[key], clean, fmt, bad, rng)
        files[name] = {"format": fmt, "records": len(clean) + len(bad), "clean_records": len(clean),
                       "bad_records": len(bad), "bad_by_kind": by_kind, "bytes": size, "sha256": sha}
    start, current_start, end = window_bounds(spec)
    manifest = {
        "generator": "utils.datagen",
        "generator_version": GENERATOR_VERSION,
        "spec": dataclasses.asdict(spec),
        "window": {"start": start.isoformat(), "current_start": current_start.isoformat(), "end": end.isoformat()},
        "entities": {k: len(v) for k, v in frames.items()},
        "files": files,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "generation_seconds": round(time.perf_counter() - t0, 3),
    }
    _write_atomic(paths["manifest"], json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return paths


def raw_manifest(out_dir: Path | None = None) -> dict | None:
    """The ``manifest.json`` of the raw folder, or None when no raw files were landed there."""
    from utils.platform import raw_data_dir

    path = (Path(out_dir) if out_dir is not None else raw_data_dir()) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: delete it and call land_raw_files() again") from exc


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m utils.datagen --rows 20000 --scenario baseline``."""
    p = argparse.ArgumentParser(description="Land the synthetic plantly.shop raw files.")
    defaults = GeneratorSpec()
    p.add_argument("--rows", type=int, default=defaults.rows)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--scenario", choices=SCENARIOS, default=defaults.scenario)
    p.add_argument("--bad-fraction", type=float, default=defaults.bad_fraction)
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    spec = GeneratorSpec(rows=a.rows, seed=a.seed, scenario=a.scenario, bad_fraction=a.bad_fraction)
    paths = land_raw_files(spec, a.out_dir, force=a.force)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))


if __name__ == "__main__":
    main()
