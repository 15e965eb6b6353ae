"""Datasets → the pool / test / ground-truth tables of the data contract (DESIGN §4).

* pool: ``sample_id`` (unique string ``[A-Za-z0-9._-]``) + ``features`` (fixed-size float32 list),
  or + ``uri`` and ``digest`` (a uri pool: each row is a file, decoded lazily by its data source)
* test: the same columns + ``label`` (class index)
* truth: ``sample_id``, ``label`` — read only by the simulated annotator, kept apart from the pool.

The data sources themselves (mnist1d, digits, mnist, table, arrays, images) are the modules of
:mod:`al_core.sources`. A uri table's decoded features are cached beside it (``.cache/``, keyed by
the files' digests and the decoding params, written atomically), so decoding is paid once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from al_core.errors import DatasetError
from al_core.pool import ROW_GROUP_ROWS, write_row_store

if TYPE_CHECKING:
    from al_core.sources import SourceParams

SAMPLE_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")
#: Parquet schema metadata key of a uri table: how its rows are decoded (source name + params)
DECODE_KEY = b"alp.decode"


@dataclass(frozen=True)
class Uris:
    """Where the samples of a uri pool live: ``uri`` [N] (local path or s3://) and ``digest`` [N]
    (SHA-256 of the file's bytes at ``alp init``, so a changed file is noticed)."""

    uri: np.ndarray
    digest: np.ndarray

    def __getitem__(self, idx: np.ndarray) -> Uris:
        return Uris(self.uri[idx], self.digest[idx])

    def __len__(self) -> int:
        return len(self.uri)


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset: features [N, F] float32, ids, integer labels and the class names.

    A uri pool also carries ``pool_uris``/``test_uris`` and ``decode`` (the spec its source decodes
    the files with); its ``*_X`` are the decoded rows (held while preparing, never written)."""

    pool_ids: np.ndarray
    pool_X: np.ndarray
    pool_y: np.ndarray  # ground truth, written apart from the pool
    test_ids: np.ndarray
    test_X: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    input_shape: tuple[int, ...]
    pool_uris: Uris | None = None
    test_uris: Uris | None = None
    decode: dict[str, Any] | None = None
    #: ids left out while loading (unreadable files skipped on request)
    skipped: tuple[str, ...] = field(default=())

    def meta(self, name: str) -> dict:
        out = {
            "dataset": name,
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "n_pool": len(self.pool_ids),
            "n_test": len(self.test_ids),
        }
        if self.skipped:
            out["skipped"] = list(self.skipped)
        return out

    def checked(self, where: str) -> Dataset:
        """Self, once ids are unique across pool and test (else a :class:`DatasetError` naming them)."""
        all_ids = pd.Series(np.concatenate([self.pool_ids, self.test_ids]))
        dup = all_ids[all_ids.duplicated()].unique()[:3]
        if len(dup):
            raise DatasetError(f"{where}: sample ids must be unique across pool and test; duplicated: {list(dup)}")
        return self

    def pool_subset(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Uris | None]:
        """(ids, X, y, uris) of the pool rows ``idx``."""
        uris = self.pool_uris[idx] if self.pool_uris is not None else None
        return self.pool_ids[idx], self.pool_X[idx], self.pool_y[idx], uris


def check_sample_ids(ids: np.ndarray, where: Any) -> np.ndarray:
    """``ids`` as strings, once each matches ``[A-Za-z0-9._-]+`` (else a :class:`DatasetError`)."""
    ids = np.asarray(ids).astype(str)
    bad = [s for s in ids if not SAMPLE_ID_RE.match(s)]
    if bad:
        raise DatasetError(f"{where}: sample ids must match [A-Za-z0-9._-]+, e.g. {bad[:3]} do not")
    return ids


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (pool, test) row indices: a seeded ``fraction`` (at least 1 row) held out for testing."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(n * fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def cap(idx: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` of ``idx``, drawn with ``seed`` (sorted); all of them if ``size`` is None."""
    if size is None or size >= len(idx):
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=size, replace=False))


def read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DatasetError(f"{path} does not exist: set dataset.path (or --data) to your Parquet or CSV file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    raise DatasetError(f"{path}: unsupported file type '{path.suffix}'; use .parquet or .csv")


def load_dataset(p: SourceParams) -> Dataset:
    """Build the :class:`Dataset` that ``dataset`` in params.yaml describes (its registered source)."""
    from al_core.sources import load_dataset as load

    return load(p)


def take_validation(ds: Dataset, size: int | None, seed: int) -> tuple[Dataset, Dataset | None]:
    """Move ``size`` random pool samples (seeded) into a labeled validation split, as the BatchBALD
    protocol does (Kirsch et al. 2019). Returns (dataset without them, the split in ``test_*``)."""
    if not size:
        return ds, None
    if size >= len(ds.pool_ids):
        raise DatasetError(f"dataset.val_size = {size} leaves no pool ({len(ds.pool_ids)} samples); lower it")
    val = np.sort(np.random.default_rng([seed, 1024]).choice(len(ds.pool_ids), size=size, replace=False))
    keep = np.setdiff1d(np.arange(len(ds.pool_ids)), val)
    ids, X, y, uris = ds.pool_subset(keep)
    pool = replace(ds, pool_ids=ids, pool_X=X, pool_y=y, pool_uris=uris)
    ids, X, y, uris = ds.pool_subset(val)
    split = replace(pool, pool_ids=ids[:0], pool_X=X[:0], pool_y=y[:0], test_ids=ids, test_X=X, test_y=y,
                    pool_uris=None, test_uris=uris)  # fmt: skip
    return pool, split


# ---------------------------------------------------------------------- parquet I/O
def features_table(
    ids: np.ndarray,
    X: np.ndarray | None,
    y: np.ndarray | None = None,
    uris: Uris | None = None,
    decode: dict[str, Any] | None = None,
) -> pa.Table:
    """Arrow table with ``sample_id``, a fixed-size-list ``features`` column and optional ``label``.

    With ``uris``: ``uri`` and ``digest`` columns too; with ``decode`` as well the features are not
    stored (a uri pool: :func:`read_features` decodes the files) and the spec goes into the schema."""
    cols: dict[str, pa.Array] = {"sample_id": pa.array(np.asarray(ids).astype(str))}
    lazy = decode is not None and uris is not None
    if X is not None and not lazy:
        X = np.ascontiguousarray(X, dtype=np.float32).reshape(len(ids), int(np.prod(np.shape(X)[1:])))
        cols["features"] = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
    if uris is not None:
        cols["uri"] = pa.array(uris.uri.astype(str))
        cols["digest"] = pa.array(uris.digest.astype(str))
    if y is not None:
        cols["label"] = pa.array(np.asarray(y, dtype=np.int64))
    table = pa.table(cols)
    if lazy:
        table = table.replace_schema_metadata({DECODE_KEY: json.dumps(decode, sort_keys=True).encode()})
    return table


def write_features(
    path: Path,
    ids: np.ndarray,
    X: np.ndarray | None,
    y: np.ndarray | None = None,
    uris: Uris | None = None,
    decode: dict[str, Any] | None = None,
) -> None:
    """Write a pool/test/val file (see :func:`features_table`); a uri table's decoded ``X`` seeds
    its decode cache, so the rounds never decode the files again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(features_table(ids, X, y, uris, decode), path, row_group_size=ROW_GROUP_ROWS)
    if decode is not None and uris is not None and X is not None and decode.get("cache", True):
        _store_decoded(_cache_path(path, uris.digest, decode), np.asarray(X, dtype=np.float32))


def _require(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(f"{path} is missing: run `alp init` (or `dvc pull`) in the workspace")
    return path


def _ids(table: pa.Table) -> np.ndarray:
    return table.column("sample_id").to_numpy(zero_copy_only=False).astype(str)


def read_ids(path: Path) -> np.ndarray:
    """The sample ids [N] of a file written by :func:`write_features`, without reading the features."""
    return _ids(pq.read_table(_require(path), columns=["sample_id"]))


def read_uris(path: Path) -> np.ndarray | None:
    """The ``uri`` column [N] of a pool/test file, or None when its samples are not files."""
    if "uri" not in pq.read_schema(_require(path)).names:
        return None
    return pq.read_table(path, columns=["uri"]).column("uri").to_numpy(zero_copy_only=False).astype(str)


def read_features(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read (ids [N], X [N, F] float32, labels [N] or None) written by :func:`write_features`.

    A uri table's X is decoded by its data source, or read from the decode cache. The arrays are
    read-only and cached per process while the file is unchanged (same path, size and mtime): a
    campaign's rounds read the same pool and test split again and again."""
    st = _require(path).stat()
    return _read_features_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_features_cached(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = pq.read_table(path)
    ids = _ids(t)
    if "features" in t.column_names:
        col = t.column("features").combine_chunks()
        width = col.type.list_size
        X = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(ids), width)
    else:
        X = _decoded(Path(path), t)
    y = t.column("label").to_numpy() if "label" in t.column_names else None
    for a in (ids, X, y):
        if a is not None:
            a.setflags(write=False)
    return ids, X, y


def _decoded(path: Path, t: pa.Table) -> np.ndarray:
    """The decoded features of a uri table: from the cache, else decoded by the source (then cached)."""
    from al_core.sources import get_source

    meta = t.schema.metadata or {}
    if DECODE_KEY not in meta or "uri" not in t.column_names:
        raise DatasetError(f"{path} has neither features nor uri + decode spec: re-run `alp prepare`")
    spec = json.loads(meta[DECODE_KEY])
    uris = Uris(*(t.column(c).to_numpy(zero_copy_only=False).astype(str) for c in ("uri", "digest")))
    cache = _cache_path(path, uris.digest, spec)
    if spec.get("cache", True) and cache.exists():
        return np.load(cache, mmap_mode="r")
    decode = get_source(spec["source"]).decode
    if decode is None:
        raise DatasetError(f"{path}: data source '{spec['source']}' cannot decode uris")
    X = np.ascontiguousarray(decode(uris.uri, uris.digest, spec), dtype=np.float32)
    if spec.get("cache", True):
        _store_decoded(cache, X)
    return X


def _cache_path(path: Path, digests: np.ndarray, spec: dict[str, Any]) -> Path:
    """``<dir>/.cache/<stem>-<key>.npy``, the key a hash of the decode spec and every file digest."""
    h = hashlib.sha256(json.dumps({k: v for k, v in spec.items() if k != "cache"}, sort_keys=True).encode())
    h.update("\n".join(np.asarray(digests).astype(str)).encode())
    return path.parent / ".cache" / f"{path.stem}-{h.hexdigest()[:20]}.npy"


def _store_decoded(cache: Path, X: np.ndarray) -> None:
    """Write the decode cache atomically (temp file + rename; concurrent readers see old or new),
    dropping older entries of the same table. The folder ignores itself in git."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    ignore = cache.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, X)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stem = cache.stem.rsplit("-", 1)[0]
    for old in cache.parent.glob(f"{stem}-*.npy"):
        if old != cache:
            old.unlink(missing_ok=True)


def write_prepared(ds: Dataset, val: Dataset | None, pool: Path, test: Path, val_path: Path, truth: Path) -> None:
    """The prepare stage's files: pool, test and validation tables, and (apart) the pool's ground truth
    (rows with a label; an unlabeled pool has none, so no simulated annotator can answer for it)."""
    if val is not None:
        write_features(val_path, val.test_ids, val.test_X, val.test_y, val.test_uris, ds.decode)
    else:  # a labeled holdout like the test split, never in the pool, never queued (empty without val_size)
        empty = ds.pool_uris[:0] if ds.pool_uris is not None else None
        write_features(val_path, ds.pool_ids[:0], ds.pool_X[:0], ds.pool_y[:0], empty, ds.decode)
    write_features(pool, ds.pool_ids, ds.pool_X, None, ds.pool_uris, ds.decode)
    if ds.decode is None or ds.pool_uris is None:  # a features pool: its rows also raw, for random access
        write_row_store(pool, ds.pool_X)
    write_features(test, ds.test_ids, ds.test_X, ds.test_y, ds.test_uris, ds.decode)
    truth.parent.mkdir(parents=True, exist_ok=True)
    known = ds.pool_y >= 0
    pd.DataFrame({"sample_id": ds.pool_ids[known], "label": ds.pool_y[known]}).to_parquet(truth, index=False)
