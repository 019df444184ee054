"""Drift's one Spark pass: every column binned in Spark's Python workers, then KS, Wasserstein and the PSI bins
read from the counts on the driver.

Every non-null numeric value falls in a *fine bin*, ``sign(v) * floor(log2|v| * LOG_BINS_PER_OCTAVE)`` (zero has
its own bin), a factor of ``2^(1/4096)`` (0.017%) wide, so no first pass over the data is needed. The workers
count per (group, column, fine bin or category, side) the rows, the sum, the smallest and the largest value of
each Arrow batch with numpy (``mapInArrow``), one small table per partition, which the driver sums.
Where a value range holds one distinct value per fine bin (integers, rounded values, up to about 4,096 distinct
values per doubling) every statistic is exact; otherwise, with ``p_j``, ``q_j`` the two sides' shares of fine
bin ``j``, ``J`` the bins holding two or more distinct values and ``w_j`` their spread (largest minus smallest):

- KS, the largest ``|F - G|`` at the fine-bin boundaries: ``0 <= D - ks <= max_J max(p_j, q_j)``;
- Wasserstein, each side's mass in a fine bin at its mean there: ``|wasserstein - W| <= 2 * sum_J w_j * max(p_j, q_j)``
  (the integral of ``F - G`` over every bin is kept; only bins where ``F - G`` changes sign add error);
- PSI edges, the baseline's ``inverted_cdf`` quantiles (the value of rank ``ceil(k * n / bins)``): exact when its
  fine bin has one distinct baseline value, else that bin's largest, a rank error of at most ``p_j * n``.

The worker-side code travels by value (:func:`partition_counter`), so this module imports nothing of ``utils``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

LOG_BINS_PER_OCTAVE = 4096  # fine bins of numeric drift: 4,096 per doubling of |value| (each 0.017% wide)
CATEGORICAL_COL = 1 << 20  # column ids of categorical parts in the counts start here
_KEY_BITS = 25  # fine-bin keys lie in (-2^24, 2^24): shifted by 2^24 they fill the low 25 bits of a packed key
_MERGE_EVERY = 1 << 18  # a worker merges one column's per-batch bins once this many entries wait
_COUNTS_SCHEMA = "_g bigint, col int, key bigint, item string, b int, n bigint, s double, lo double, hi double"


def _fine_keys(v: np.ndarray) -> np.ndarray:
    """The fine bin of each finite double of ``v`` (int64, ordered like the values): 0 for zero, else
    ``sign(v) * (floor(log2|v| * LOG_BINS_PER_OCTAVE) + 2^23)``; a bin is a factor ``2^(1/LOG_BINS_PER_OCTAVE)``
    wide and ``|key| < 2^24`` for every double."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log2(np.abs(v)) * LOG_BINS_PER_OCTAVE) + (1 << 23)
        return np.where(v == 0, 0.0, np.sign(v) * mag).astype(np.int64)


def _reduce_bins(packed: np.ndarray, n: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Entries with equal key ``packed`` merged into one: counts ``n`` and sums ``s`` added, the smallest
    ``lo`` and the largest ``hi`` kept (NaN, an unknown bound, is ignored unless all are NaN).
    Returns ``(packed, n, s, lo, hi)`` sorted by key, one entry per distinct key."""
    if packed.size == 0:
        return packed, n, s, lo, hi
    order = np.argsort(packed)
    packed = packed[order]
    start = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
    return (packed[start], np.add.reduceat(n[order], start), np.add.reduceat(s[order], start),
            np.fmin.reduceat(lo[order], start), np.fmax.reduceat(hi[order], start))


class _PartitionCounts:
    """The drift counts of one partition of the tagged union, gathered batch by batch in a Spark worker.

    ``groups`` numbers the partition's (``_g``, side) pairs as they appear (key ``2 * _g + side``). Rows
    (column ``-1``) and numeric column ``i`` are keyed by a packed int64, ``group << 25 | (fine bin + 2^24)``,
    and hold per key the count ``n``, sum ``s`` and smallest / largest value (``lo``, ``hi``; for rows, of
    ``_ts`` in microseconds); each batch's entries wait in ``pending`` and are merged (:func:`_reduce_bins`)
    once :data:`_MERGE_EVERY` wait, so memory stays near the number of distinct bins. Categorical column
    ``CATEGORICAL_COL + i`` is counted per (group, value) in ``items``.
    """

    def __init__(self) -> None:
        self.groups: dict[int, int] = {}
        self.merged: dict[int, tuple[np.ndarray, ...]] = {}
        self.pending: dict[int, list[tuple[np.ndarray, ...]]] = {}
        self.items: dict[tuple[int, int, str], int] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        """Bin every column of one Arrow batch: ``_g`` bigint, ``b`` int (1 = comparison side), ``_n{i}``
        double (null, NaN and +-infinity are missing), ``_k{i}`` string, optional ``_ts`` bigint (microseconds)."""
        if batch.num_rows == 0:
            return
        names = batch.schema.names
        column = {name: batch.column(j) for j, name in enumerate(names)}
        pair = 2 * column["_g"].to_numpy(zero_copy_only=False) + column["b"].to_numpy(zero_copy_only=False)
        pairs, local = np.unique(pair, return_inverse=True)
        group = np.array([self.groups.setdefault(int(p), len(self.groups)) for p in pairs], np.int64)[local]
        zero = (group << _KEY_BITS) + (1 << (_KEY_BITS - 1))  # each row's packed key of fine bin 0
        ts = column["_ts"].to_numpy(zero_copy_only=False).astype(float) if "_ts" in column else np.full(len(zero), np.nan)
        self._absorb(-1, zero, np.zeros(len(zero)), ts)
        for name in names:
            if name.startswith("_n"):
                v = column[name].to_numpy(zero_copy_only=False)
                ok = np.isfinite(v)  # null (NaN here), NaN and +-infinity are left out
                self._absorb(int(name[2:]), zero[ok] + _fine_keys(v[ok]), v[ok], v[ok])
            elif name.startswith("_k"):
                self._add_items(CATEGORICAL_COL + int(name[2:]), pairs, local, column[name])

    def _absorb(self, col: int, packed: np.ndarray, s: np.ndarray, v: np.ndarray) -> None:
        """One batch's entries of column ``col``, one per row: packed key, value to sum, value for min / max."""
        queue = self.pending.setdefault(col, [])
        queue.append(_reduce_bins(packed, np.ones(len(packed), np.int64), s, v, v))
        if sum(len(part[0]) for part in queue) >= _MERGE_EVERY:
            self._merge(col)

    def _merge(self, col: int) -> None:
        parts = self.pending.pop(col, []) + ([self.merged[col]] if col in self.merged else [])
        self.merged[col] = _reduce_bins(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))

    def _add_items(self, col: int, pairs: np.ndarray, local: np.ndarray, values: pa.Array) -> None:
        """Count the non-null values of a categorical column per group (``local``: row -> index in ``pairs``)."""
        import pyarrow.compute as pc

        coded = pc.dictionary_encode(values)
        k = len(coded.dictionary)
        idx = coded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        ok = idx >= 0
        counts = np.bincount(local[ok] * k + idx[ok], minlength=len(pairs) * k)
        words = coded.dictionary.to_pylist()
        for at in np.flatnonzero(counts):
            key = (col, self.groups[int(pairs[at // k])], words[at % k])
            self.items[key] = self.items.get(key, 0) + int(counts[at])

    def table(self) -> pa.Table:
        """The partition's counts, one row per (``_g``, column, fine bin or value, side) (:data:`_COUNTS_SCHEMA`)."""
        import pyarrow as pa

        for col in list(self.pending):
            self._merge(col)
        pair_of = np.fromiter(self.groups, np.int64, len(self.groups))  # group number -> 2 * _g + side
        parts = []
        for col, (packed, n, s, lo, hi) in self.merged.items():
            key = (packed & ((1 << _KEY_BITS) - 1)) - (1 << (_KEY_BITS - 1))
            parts.append((col, pair_of[packed >> _KEY_BITS], key, None, n, s, lo, hi))
        if self.items:
            cols, groups, words = zip(*self.items, strict=True)
            none = np.full(len(words), np.nan)
            parts.append((np.array(cols), pair_of[np.array(groups)], np.zeros(len(words), np.int64), list(words),
                          np.fromiter(self.items.values(), np.int64, len(words)), np.zeros(len(words)), none, none))
        schema = pa.schema([("_g", pa.int64()), ("col", pa.int32()), ("key", pa.int64()), ("item", pa.string()),
                            ("b", pa.int32()), ("n", pa.int64()), ("s", pa.float64()), ("lo", pa.float64()), ("hi", pa.float64())])
        tables = [pa.table([pair >> 1, np.broadcast_to(np.int32(col), len(n)), key,
                            pa.nulls(len(n), pa.string()) if item is None else pa.array(item, pa.string()),
                            (pair & 1).astype(np.int32), n, s, pa.array(lo, from_pandas=True), pa.array(hi, from_pandas=True)],
                           schema=schema) for col, pair, key, item, n, s, lo, hi in parts]
        return pa.concat_tables(tables) if tables else schema.empty_table()


def _count_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function of :func:`counts_job`, run in Spark's Python workers: bin every column of
    every Arrow batch of one partition (:class:`_PartitionCounts`), then yield the partition's counts, as
    many rows as distinct (group, column, fine bin or value, side), whatever the number of input rows."""
    counts = _PartitionCounts()
    for batch in batches:
        counts.add(batch)
    yield from counts.table().to_batches()


def partition_counter() -> Any:
    """The ``mapInArrow`` function that bins a partition, set to travel by value: no ``import utils`` where it runs.

    Spark pickles a function with cloudpickle, by reference when its module is importable here, so the
    worker would import ``utils.drift_binning``. A serverless UDF sandbox need not see this project's files
    (Databricks review R9), so this module is registered with ``cloudpickle.register_pickle_by_value``: the
    function and the module-level code it calls travel with the job; they use only numpy and pyarrow.
    """
    import sys

    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return _count_partition


def counts_job(combined: DataFrame, n_numeric: int, n_categorical: int, with_ts: bool) -> pd.DataFrame:
    """The one Spark job: every partition of the tagged union of both sides is binned in one pass by a
    ``mapInArrow`` worker (:func:`_count_partition`); the driver sums the partitions' counts.

    ``combined``: ``_src`` ('b' = comparison side), ``_g`` bigint, ``_n{i}`` double, ``_k{i}`` string and, with
    ``with_ts``, ``_ts`` (microseconds). Per group ``_g`` and side ``b`` (1 = comparison side): rows (``col = -1``;
    ``lo`` / ``hi`` the first and last ``_ts`` when ``with_ts``); per numeric column ``i`` (``col = i``) and fine
    bin ``key``: count, sum, min and max of the finite values; per categorical column (``col = CATEGORICAL_COL + i``)
    and value ``item``: count. The driver receives at most (partitions x distinct bins) rows: a few hundred
    thousand for 14 columns of 1M rows a side in 8 partitions, whatever the number of rows.
    """
    from pyspark.sql import functions as F

    worker = partition_counter()
    values = [f"_n{i}" for i in range(n_numeric)] + [f"_k{i}" for i in range(n_categorical)] + (["_ts"] if with_ts else [])
    parts = (combined.select("_g", F.expr("IF(_src = 'b', 1, 0)").alias("b"), *values)
             .mapInArrow(worker, _COUNTS_SCHEMA).toArrow())
    summed = parts.group_by(["_g", "col", "key", "item", "b"]).aggregate(
        [("n", "sum"), ("s", "sum"), ("lo", "min"), ("hi", "max")])
    plain = {"n_sum": "n", "s_sum": "s", "lo_min": "lo", "hi_max": "hi"}
    return summed.rename_columns([plain.get(c, c) for c in summed.column_names]).to_pandas()


def fine_bins(part: pd.DataFrame) -> dict[str, np.ndarray]:
    """One (group, numeric column)'s rows of :func:`counts_job` as its fine bins in value order, per-side arrays:
    ``key``, and ``n_*``, ``s_*``, ``lo_*``, ``hi_*`` for the baseline (``b``) and the current side (``c``)."""
    base, cur = part[part["b"] == 1].set_index("key"), part[part["b"] == 0].set_index("key")
    idx = base.index.union(cur.index).sort_values()
    base, cur = base.reindex(idx), cur.reindex(idx)
    out = {"key": idx.to_numpy(np.int64)}
    for name, df in (("b", base), ("c", cur)):
        out[f"n_{name}"] = df["n"].fillna(0).to_numpy(float)
        out[f"s_{name}"] = df["s"].fillna(0).to_numpy(float)
        out[f"lo_{name}"] = df["lo"].to_numpy(float)
        out[f"hi_{name}"] = df["hi"].to_numpy(float)
    return out


def _quantile_edges(fb: dict[str, np.ndarray], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """PSI bin edges from the baseline's fine bins (see the module docstring), and the fine bin each edge lies in."""
    n_b = fb["n_b"]
    cum = np.cumsum(n_b)
    total = cum[-1]
    ranks = [max(1, math.ceil(k * total / bins - 1e-9)) for k in range(1, bins)]
    at = np.searchsorted(cum, ranks, side="left")
    values = fb["hi_b"][at]
    uniq, first = np.unique(values, return_index=True)
    return uniq, at[first]


def _fine_statistics(fb: dict[str, np.ndarray]) -> dict[str, float]:
    """KS statistic ``ks`` and Wasserstein distance ``wasserstein`` from one column's :func:`fine_bins`.

    KS is read at the bin boundaries. For Wasserstein each side's mass in a bin is put at its mean there (its
    value, when the side has one distinct value in the bin) and ``integral |F - G|`` is computed exactly on
    these atoms, as ``utils.drift_statistics.wasserstein`` does on samples (error bounds: module docstring).
    """
    n_b, n_c = fb["n_b"], fb["n_c"]
    tb, tc = n_b.sum(), n_c.sum()
    ks = float(np.abs(np.cumsum(n_b) / tb - np.cumsum(n_c) / tc).max())
    with np.errstate(divide="ignore", invalid="ignore"):
        pos_b = np.where(fb["lo_b"] == fb["hi_b"], fb["lo_b"], fb["s_b"] / n_b)
        pos_c = np.where(fb["lo_c"] == fb["hi_c"], fb["lo_c"], fb["s_c"] / n_c)
    has_b, has_c = n_b > 0, n_c > 0
    pos = np.concatenate([pos_b[has_b], pos_c[has_c]])
    wb = np.concatenate([n_b[has_b] / tb, np.zeros(int(has_c.sum()))])
    wc = np.concatenate([np.zeros(int(has_b.sum())), n_c[has_c] / tc])
    order = np.argsort(pos, kind="stable")
    pos, wb, wc = pos[order], wb[order], wc[order]
    uniq, start = np.unique(pos, return_index=True)
    d = np.abs(np.cumsum(np.add.reduceat(wb, start)) - np.cumsum(np.add.reduceat(wc, start)))
    return {"ks": min(ks, 1.0), "wasserstein": float(np.sum(d[:-1] * np.diff(uniq)))}


def numeric_from_fine(fb: dict[str, np.ndarray], bins: int) -> dict[str, Any]:
    """KS ``ks``, Wasserstein ``wasserstein`` and PSI-bin counts ``p`` / ``q`` of one (group, numeric column) from
    its :func:`fine_bins`.

    Fine bins below an edge's bin count below the edge; the edge's own bin counts below it too (all
    its baseline values are <= the edge; its current values above the edge, possible only when the
    edge is approximate, are the PSI counts' only error).
    """
    edges, edge_bins = _quantile_edges(fb, bins)
    coarse = np.searchsorted(edge_bins, np.arange(len(fb["key"])), side="left")
    p = np.bincount(coarse, weights=fb["n_b"], minlength=len(edges) + 1).astype(float)
    q = np.bincount(coarse, weights=fb["n_c"], minlength=len(edges) + 1).astype(float)
    return {**_fine_statistics(fb), "p": p, "q": q}
