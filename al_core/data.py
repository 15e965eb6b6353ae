"""Datasets → the pool / test / ground-truth tables of the data contract.

* pool: ``sample_id`` (unique string ``[A-Za-z0-9._-]``) + ``features`` (fixed-size float32 list)
* test: ``sample_id``, ``features``, ``label`` (class index)
* truth: ``sample_id``, ``label`` — read only by the simulated annotator, kept apart from the pool.

Sources: ``mnist1d`` (Greydanus 2020, generated with ``mnist1d.data.make_dataset``), ``digits``
(scikit-learn's bundled set), ``mnist`` (LeCun et al. 1998, the original IDX gz files) and
``table`` (the user's Parquet/CSV).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from al_core.config import DatasetParams
from al_core.errors import DatasetError

SAMPLE_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset: features [N, F] float32, ids, integer labels and the class names."""

    pool_ids: np.ndarray
    pool_X: np.ndarray
    pool_y: np.ndarray  # ground truth, written apart from the pool
    test_ids: np.ndarray
    test_X: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    input_shape: tuple[int, ...]

    def meta(self, name: str) -> dict:
        return {
            "dataset": name,
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "n_pool": len(self.pool_ids),
            "n_test": len(self.test_ids),
        }


# ----------------------------------------------------------------------------- sources
def load_mnist1d(p: DatasetParams) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package (never downloaded)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    n_pool, n_test = p.pool_size or 4000, p.test_size or 1000
    args.num_samples = n_pool + n_test
    args.train_split = n_pool / (n_pool + n_test)
    args.seed = p.seed
    # make_dataset seeds the global numpy/random RNGs: keep that side effect inside this call.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    pool_X, pool_y = d["x"].astype(np.float32), d["y"].astype(np.int64)
    test_X, test_y = d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)
    return Dataset(
        pool_ids=np.array([f"m1d-{i:06d}" for i in range(len(pool_y))]),
        pool_X=pool_X,
        pool_y=pool_y,
        test_ids=np.array([f"m1d-test-{i:06d}" for i in range(len(test_y))]),
        test_X=test_X,
        test_y=test_y,
        classes=[str(c) for c in range(10)],
        input_shape=(pool_X.shape[1],),
    )


def load_digits(p: DatasetParams) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1,797 images), split by ``test_fraction``, stratified."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    ids = np.array([f"digits-{i:04d}" for i in range(len(y))])
    tr, te = train_test_split(np.arange(len(y)), test_size=p.test_fraction, random_state=p.seed, stratify=y)
    tr, te = _cap(tr, p.pool_size, p.seed), _cap(te, p.test_size, p.seed + 1)
    return Dataset(ids[tr], X[tr], y[tr], ids[te], X[te], y[te], [str(c) for c in range(10)], (1, 8, 8))


MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed), as published by LeCun et al."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: header says {shape} but the body holds {body.size} bytes (truncated file?)")
    return body.reshape(shape)


def verify_checksums(directory: Path, names: list[str]) -> None:
    """Check ``names`` against SHA256SUMS in ``directory`` when that file exists."""
    sums = directory / "SHA256SUMS"
    if not sums.exists():
        return
    expected = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            expected[parts[1].lstrip("*")] = parts[0]
    for name in names:
        if name in expected:
            digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
            if digest != expected[name]:
                raise DatasetError(f"{directory / name}: SHA-256 {digest} does not match SHA256SUMS; re-copy the file")


def load_mnist(p: DatasetParams) -> Dataset:
    """MNIST (LeCun et al. 1998) from the original IDX gz files in ``dataset.path``."""
    if not p.path:
        raise DatasetError("dataset.name = mnist needs dataset.path: the directory with the four IDX gz files")
    directory = Path(p.path).expanduser()
    missing = [f for f in MNIST_FILES.values() if not (directory / f).exists()]
    if missing:
        raise DatasetError(f"dataset.path = {directory} lacks {', '.join(missing)}: point it at the MNIST IDX files")
    verify_checksums(directory, list(MNIST_FILES.values()))
    arr = {k: read_idx(directory / f) for k, f in MNIST_FILES.items()}
    tr = _cap(np.arange(len(arr["train_y"])), p.pool_size, p.seed)
    te = _cap(np.arange(len(arr["test_y"])), p.test_size, p.seed + 1)
    X_tr = (arr["train_x"][tr].reshape(len(tr), -1) / 255.0).astype(np.float32)
    X_te = (arr["test_x"][te].reshape(len(te), -1) / 255.0).astype(np.float32)
    return Dataset(
        np.array([f"mnist-{i:05d}" for i in tr]),
        X_tr,
        arr["train_y"][tr].astype(np.int64),
        np.array([f"mnist-test-{i:05d}" for i in te]),
        X_te,
        arr["test_y"][te].astype(np.int64),
        [str(c) for c in range(10)],
        (1, 28, 28),
    )


def read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DatasetError(f"{path} does not exist: set dataset.path (or --data) to your Parquet or CSV file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    raise DatasetError(f"{path}: unsupported file type '{path.suffix}'; use .parquet or .csv")


def load_table(p: DatasetParams) -> Dataset:
    """The user's own table: ``sample_id`` + feature columns (+ ``label`` for simulation/testing)."""
    path = Path(p.path or "").expanduser()
    df = read_table(path)
    if p.id_column not in df.columns:
        raise DatasetError(f"{path}: no '{p.id_column}' column; add stable sample ids or set dataset.id_column")
    features = p.feature_columns or [
        c for c in df.columns if c not in (p.id_column, p.label_column) and pd.api.types.is_numeric_dtype(df[c])
    ]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: dataset.feature_columns names missing columns {missing}")
    if not features:
        raise DatasetError(f"{path}: no numeric feature columns found; set dataset.feature_columns")
    if p.label_column not in df.columns:
        raise DatasetError(
            f"{path}: no '{p.label_column}' column. alp needs ground truth for a simulated campaign and a labeled "
            "test set; add the label column (or set dataset.label_column)"
        )
    classes = sorted(df[p.label_column].astype(str).unique().tolist())
    if len(classes) < 2:
        raise DatasetError(f"{path}: column '{p.label_column}' has {len(classes)} class(es); need at least 2")
    index = {c: i for i, c in enumerate(classes)}

    def split(frame: pd.DataFrame, where: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = frame[p.id_column].astype(str).to_numpy()
        bad = [s for s in ids if not SAMPLE_ID_RE.match(s)]
        if bad:
            raise DatasetError(f"{where}: sample ids must match [A-Za-z0-9._-]+, e.g. {bad[:3]} do not")
        X = frame[features].to_numpy(dtype=np.float32)
        if not np.isfinite(X).all():
            raise DatasetError(f"{where}: feature columns hold NaN or infinite values; clean or impute them first")
        unknown = sorted(set(frame[p.label_column].astype(str)) - set(index))
        if unknown:
            raise DatasetError(f"{where}: labels {unknown[:5]} do not occur in the training table's classes")
        y = frame[p.label_column].astype(str).map(index).to_numpy(dtype=np.int64)
        return ids, X, y

    if p.test_path:
        test_path = Path(p.test_path).expanduser()
        pool = split(df, path)
        test = split(read_table(test_path), test_path)
    else:
        rng = np.random.default_rng(p.seed)
        perm = rng.permutation(len(df))
        n_test = max(1, int(len(df) * p.test_fraction))
        pool = split(df.iloc[np.sort(perm[n_test:])], path)
        test = split(df.iloc[np.sort(perm[:n_test])], path)
    all_ids = np.concatenate([pool[0], test[0]])
    if len(set(all_ids)) != len(all_ids):
        dup = pd.Series(all_ids)[pd.Series(all_ids).duplicated()].unique()[:3]
        raise DatasetError(f"{path}: sample ids must be unique across pool and test; duplicated: {list(dup)}")
    return Dataset(*pool, *test, classes, (len(features),))


LOADERS = {"mnist1d": load_mnist1d, "digits": load_digits, "mnist": load_mnist, "table": load_table}


def load_dataset(p: DatasetParams) -> Dataset:
    """Build the :class:`Dataset` that ``dataset`` in params.yaml describes."""
    return LOADERS[p.name](p)


def take_validation(ds: Dataset, size: int | None, seed: int) -> tuple[Dataset, Dataset | None]:
    """Move ``size`` random pool samples (seeded) into a labeled validation split, as the BatchBALD
    protocol does (Kirsch et al. 2019). Returns (dataset without them, the split in ``test_*``)."""
    if not size:
        return ds, None
    if size >= len(ds.pool_ids):
        raise DatasetError(f"dataset.val_size = {size} leaves no pool ({len(ds.pool_ids)} samples); lower it")
    val = np.sort(np.random.default_rng([seed, 1024]).choice(len(ds.pool_ids), size=size, replace=False))
    keep = np.setdiff1d(np.arange(len(ds.pool_ids)), val)
    pool = Dataset(ds.pool_ids[keep], ds.pool_X[keep], ds.pool_y[keep], ds.test_ids, ds.test_X, ds.test_y,
                   ds.classes, ds.input_shape)  # fmt: skip
    split = Dataset(ds.pool_ids[:0], ds.pool_X[:0], ds.pool_y[:0], ds.pool_ids[val], ds.pool_X[val], ds.pool_y[val],
                    ds.classes, ds.input_shape)  # fmt: skip
    return pool, split


def _cap(idx: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    if size is None or size >= len(idx):
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=size, replace=False))


# ---------------------------------------------------------------------- parquet I/O
def features_table(ids: np.ndarray, X: np.ndarray, y: np.ndarray | None = None) -> pa.Table:
    """Arrow table with ``sample_id``, a fixed-size-list ``features`` column and optional ``label``."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    feats = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
    cols = {"sample_id": pa.array(ids.astype(str)), "features": feats}
    if y is not None:
        cols["label"] = pa.array(np.asarray(y, dtype=np.int64))
    return pa.table(cols)


def write_features(path: Path, ids: np.ndarray, X: np.ndarray, y: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(features_table(ids, X, y), path)


def _require(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(f"{path} is missing: run `alp init` (or `dvc pull`) in the workspace")
    return path


def _ids(table: pa.Table) -> np.ndarray:
    return table.column("sample_id").to_numpy(zero_copy_only=False).astype(str)


def read_ids(path: Path) -> np.ndarray:
    """The sample ids [N] of a file written by :func:`write_features`, without reading the features."""
    return _ids(pq.read_table(_require(path), columns=["sample_id"]))


def read_features(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read (ids [N], X [N, F] float32, labels [N] or None) written by :func:`write_features`.

    The arrays are read-only and cached per process while the file is unchanged (same path,
    size and mtime): a campaign's rounds read the same pool and test split again and again."""
    st = _require(path).stat()
    return _read_features_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_features_cached(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = pq.read_table(path)
    ids = _ids(t)
    col = t.column("features").combine_chunks()
    width = col.type.list_size
    X = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(ids), width)
    y = t.column("label").to_numpy() if "label" in t.column_names else None
    for a in (ids, X, y):
        if a is not None:
            a.setflags(write=False)
    return ids, X, y
