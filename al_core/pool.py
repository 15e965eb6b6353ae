"""The pool read in shards: what a round keeps of a pool of millions is O(N) scalars, never its features.

:class:`ParquetPool` is the workspace's ``data/pool.parquet`` seen as a read-only, indexable array of
feature rows: ``pool[idx]`` (an index array or a slice) reads only the Parquet row groups holding
those rows, and :meth:`ParquetPool.shards` hands the pool out as ``(start, stop)`` row ranges, one or
more row groups each, that a scorer reads one at a time (in this process or on Dask workers).
:class:`ArrayPool` gives the same interface to rows already in memory (a uri pool's decode cache,
tests). Ids stay a compact Arrow string array (:class:`PoolIds`), looked up without a Python loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from al_core.errors import DatasetError

#: rows per Parquet row group of a pool written by alp (the default shard)
ROW_GROUP_ROWS = 65_536


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of the pool, and which of them the round asks for (``rows``, pool indices)."""

    index: int
    start: int
    stop: int
    rows: np.ndarray

    def __len__(self) -> int:
        return self.stop - self.start


class PoolIds:
    """The pool's sample ids [N] as one Arrow string array (≈ bytes of the ids + 4 per row, no
    Python objects); ``ids[idx]`` gives a numpy str array, :meth:`positions` finds ids by value."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray | np.ndarray):
        if isinstance(ids, np.ndarray):
            ids = pa.array(ids.astype(str))
        self.array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, idx: np.ndarray | slice) -> np.ndarray:
        part = self.array[idx] if isinstance(idx, slice) else self.array.take(pa.array(np.asarray(idx, np.int64)))
        return part.to_numpy(zero_copy_only=False).astype(str)

    def __iter__(self) -> Iterator[str]:
        return iter(self.array.to_pylist())

    def positions(self, ids: np.ndarray | list[str]) -> np.ndarray:
        """Pool index of each of ``ids`` (-1 where it is not in the pool), without a per-id loop."""
        wanted = pa.array(np.asarray(ids, dtype=object).astype(str), type=pa.string())
        hit = pc.index_in(self.array, value_set=wanted)  # per pool row: its position in `wanted`
        rows = np.flatnonzero(hit.is_valid().to_numpy(zero_copy_only=False))
        out = np.full(len(wanted), -1, dtype=np.int64)
        out[hit.take(pa.array(rows)).to_numpy()] = rows
        return out

    def present(self, ids: set[str] | list[str]) -> set[str]:
        """Those of ``ids`` that are pool ids (for validating a label file against a pool of millions)."""
        wanted = sorted({str(i) for i in ids})
        return {sid for sid, pos in zip(wanted, self.positions(wanted), strict=True) if pos >= 0}

    def isin(self, ids: set[str] | list[str]) -> np.ndarray:
        """Bool mask [N]: which pool rows have one of ``ids``."""
        if not ids:
            return np.zeros(len(self), dtype=bool)
        value_set = pa.array(sorted(ids), type=pa.string())
        return pc.is_in(self.array, value_set=value_set).to_numpy(zero_copy_only=False)


class ArrayPool:
    """Rows already in memory (or memory-mapped), behind the :class:`ParquetPool` interface."""

    def __init__(self, X: np.ndarray, shard_rows: int = ROW_GROUP_ROWS):
        self.X = X
        self.shard_rows = shard_rows

    def __len__(self) -> int:
        return len(self.X)

    @property
    def width(self) -> int:
        return int(np.prod(self.X.shape[1:]))

    def __getitem__(self, idx: np.ndarray | slice) -> np.ndarray:
        return np.asarray(self.X[idx], dtype=np.float32)

    def bounds(self, shard_rows: int | None = None) -> list[tuple[int, int]]:
        size = shard_rows or self.shard_rows
        return [(s, min(s + size, len(self))) for s in range(0, len(self), size)]

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.X[start:stop], dtype=np.float32)

    def shards(self, rows: np.ndarray, shard_rows: int | None = None) -> list[Shard]:
        return _shards(self.bounds(shard_rows), rows)


# ---------------------------------------------------------------------- row store (random access)
def row_store_path(pool_path: Path) -> Path:
    """``<dir>/.cache/<stem>-rows-<key>.f32``: the pool's features as raw float32 rows, keyed by the
    Parquet footer (row groups, sizes, statistics), so a copy of the same file finds it and a
    changed file does not."""
    meta = pq.read_metadata(pool_path).to_dict()
    key = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return pool_path.parent / ".cache" / f"{pool_path.stem}-rows-{key}.f32"


class RowWriter:
    """Appends feature rows to a row store (temp file; renamed into place by :meth:`commit`)."""

    def __init__(self, pool_path: Path):
        self.pool_path = pool_path
        cache = pool_path.parent / ".cache"
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / ".gitignore").exists():
            (cache / ".gitignore").write_text("*\n")
        fd, self.tmp = tempfile.mkstemp(prefix=f".{pool_path.stem}-rows.", suffix=".tmp", dir=cache)
        self.fh = os.fdopen(fd, "wb")

    def write(self, X: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(X, dtype=np.float32).tobytes())

    def commit(self) -> None:
        """Once the pool file is complete: the store takes its final name; older stores go."""
        self.fh.close()
        final = row_store_path(self.pool_path)
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, final)
        for old in final.parent.glob(f"{self.pool_path.stem}-rows-*.f32"):
            if old != final:
                old.unlink(missing_ok=True)

    def abort(self) -> None:
        self.fh.close()
        Path(self.tmp).unlink(missing_ok=True)


def write_row_store(pool_path: Path, X: np.ndarray) -> None:
    """The row store of a pool whose features ``X`` [N, F] were just written to ``pool_path``."""
    w = RowWriter(pool_path)
    try:
        for s in range(0, len(X), ROW_GROUP_ROWS):
            w.write(X[s : s + ROW_GROUP_ROWS])
        w.commit()
    except BaseException:
        w.abort()
        raise


class _RowStore:
    """Rows of a row store read with ``pread``: no decoding, no page cache held as this process's memory."""

    def __init__(self, path: Path, n: int, width: int):
        self.path, self.n, self.width = path, n, width
        self.row_bytes = 4 * width

    def read(self, start: int, stop: int) -> np.ndarray:
        with open(self.path, "rb") as fh:
            buf = os.pread(fh.fileno(), (stop - start) * self.row_bytes, start * self.row_bytes)
        return np.frombuffer(buf, dtype=np.float32).reshape(-1, self.width).copy()

    def rows(self, sorted_idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(sorted_idx), self.width), dtype=np.float32)
        with open(self.path, "rb") as fh:
            fd = fh.fileno()
            for j, i in enumerate(sorted_idx.tolist()):
                out[j] = np.frombuffer(os.pread(fd, self.row_bytes, i * self.row_bytes), dtype=np.float32)
        return out


class ParquetPool:
    """A pool table written by :func:`al_core.data.write_features` (``features``: fixed-size float32
    lists), read row group by row group. Nothing is read at construction but the footer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"{self.path} is missing: run `alp init` (or `dvc pull`) in the workspace")
        meta = pq.read_metadata(self.path)
        schema = meta.schema.to_arrow_schema()
        if "features" not in schema.names:
            raise DatasetError(f"{self.path} has no features column (a uri pool is read through its decode cache)")
        self.width = int(schema.field("features").type.list_size)
        self.n = meta.num_rows
        self.group_rows = np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)], np.int64)
        self.group_start = np.concatenate([[0], np.cumsum(self.group_rows)])
        st = self.path.stat()
        #: identifies this file's content for result caches (path, size, mtime)
        self.fingerprint = f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        store = row_store_path(self.path)
        ok = store.exists() and store.stat().st_size == self.n * self.width * 4
        #: the raw rows written beside the pool by prepare (random access without decoding), if there
        self.store = _RowStore(store, self.n, self.width) if ok else None

    def __len__(self) -> int:
        return self.n

    def bounds(self, shard_rows: int | None = None) -> list[tuple[int, int]]:
        """Row ranges of about ``shard_rows`` rows: whole row groups merged up to that size, or slices
        of one row group when it is smaller than a group (each then reads its group)."""
        size = shard_rows or ROW_GROUP_ROWS
        out, start = [], 0
        for g in range(len(self.group_rows)):
            g0, stop = int(self.group_start[g]), int(self.group_start[g + 1])
            if size < stop - g0:  # slices of this group
                out += [(s, min(s + size, stop)) for s in range(g0, stop, size)]
                start = stop
            elif stop - start >= size or g == len(self.group_rows) - 1:
                out.append((start, stop))
                start = stop
        return [b for b in out if b[1] > b[0]]

    def shards(self, rows: np.ndarray, shard_rows: int | None = None) -> list[Shard]:
        """The shards holding any of ``rows`` (sorted pool indices), each with its rows."""
        return _shards(self.bounds(shard_rows), rows)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` [n, F] float32 (from the row store, else whole row groups, sliced)."""
        if self.store is not None:
            return self.store.read(start, stop)
        g0 = int(np.searchsorted(self.group_start, start, side="right") - 1)
        g1 = int(np.searchsorted(self.group_start, stop, side="left"))
        t = _parquet(str(self.path), self.fingerprint).read_row_groups(list(range(g0, g1)), columns=["features"])
        X = _flat(t.column("features"), self.width)
        off = int(self.group_start[g0])
        return X[start - off : stop - off]

    def __getitem__(self, idx: np.ndarray | slice) -> np.ndarray:
        """Rows ``idx`` [len(idx), F] in the order given, reading only the row groups that hold them."""
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self.n)
            return self.read(start, max(start, stop))[::step] if step > 0 else self[np.arange(start, stop, step)]
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.width), dtype=np.float32)
        if len(idx) == 0:
            return out
        if idx.min() < 0 or idx.max() >= self.n:
            raise IndexError(f"pool rows {idx.min()}..{idx.max()} out of range for a pool of {self.n}")
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        if self.store is not None:
            out[order] = self.store.rows(sorted_idx)
            return out
        groups = np.searchsorted(self.group_start, sorted_idx, side="right") - 1
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            t = _parquet(str(self.path), self.fingerprint).read_row_group(int(g), columns=["features"])
            X = _flat(t.column("features"), self.width)
            out[order[sel]] = X[sorted_idx[sel] - self.group_start[g]]
        return out


def _shards(bounds: list[tuple[int, int]], rows: np.ndarray) -> list[Shard]:
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.array([b[0] for b in bounds], dtype=np.int64)
    cut = np.searchsorted(rows, np.append(starts, np.iinfo(np.int64).max))
    out = []
    for i, (start, stop) in enumerate(bounds):
        part = rows[cut[i] : cut[i + 1]]
        if len(part):
            out.append(Shard(len(out), start, stop, part))
    return out


@functools.lru_cache(maxsize=8)
def _parquet(path: str, fingerprint: str) -> pq.ParquetFile:
    """One open reader per file version (``fingerprint``: a rewritten pool gets a new one)."""
    return pq.ParquetFile(path)


def _flat(col: pa.ChunkedArray, width: int) -> np.ndarray:
    flat = col.combine_chunks().flatten() if col.num_chunks != 1 else col.chunk(0).flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)


def open_pool(path: Path, shard_rows: int = ROW_GROUP_ROWS) -> ParquetPool | ArrayPool:
    """The workspace's pool as shards: its Parquet row groups, or (a uri pool) its decoded rows."""
    if "features" in pq.read_schema(path).names:
        return ParquetPool(path)
    from al_core.data import read_features

    return ArrayPool(read_features(path)[1], shard_rows)


def read_pool_ids(path: Path) -> PoolIds:
    """The pool's ``sample_id`` column alone, as :class:`PoolIds`."""
    return PoolIds(pq.read_table(path, columns=["sample_id"]).column("sample_id"))


# ---------------------------------------------------------------------- input tables (local or s3://)
def open_dataset(uri: str):  # -> pyarrow.dataset.Dataset
    """A Parquet file or folder of files, local or ``scheme://…`` (the filesystem the I/O layer
    registered for the scheme: tasks/s3.py for ``s3://``), as a pyarrow dataset read in batches."""
    import pyarrow.dataset as pads

    from al_core.uris import filesystem_for

    fs, where = filesystem_for(uri)
    try:
        return pads.dataset(where, format="parquet", filesystem=fs)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"{uri}: not readable as Parquet ({exc}); give a .parquet file or a folder of them") from exc
