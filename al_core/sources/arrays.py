"""``arrays``: numpy arrays of any shape: ``X.npy`` [N, ...] (+ ``labels`` y.npy [N], ``ids`` one per
line), or one ``.npz`` holding ``X`` (or ``x``), ``y`` (or ``labels``) and optionally ``ids``.
An unlabeled pool (no ``y``: the real case, annotators give the labels) needs a labeled test set,
``test_path``: an ``.npz`` with ``X`` and ``y`` (``--data X.npy TEST.npz``).

One sample's shape is ``X.shape[1:]``: [C, L] for multichannel series (``cnn1d`` sees C channels),
[C, H, W] for images (``cnn2d``), [F] for plain features (``mlp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from al_core.data import Dataset, check_sample_ids, split_holdout
from al_core.errors import DatasetError
from al_core.sources import SOURCES, DataSource, SourceParams


class ArraysParams(SourceParams):
    name: Literal["arrays"] = "arrays"
    path: str | None = Field(default=None, description="X.npy [N, ...], or an .npz with X, y (and ids)")
    labels: str | None = Field(default=None, description="y.npy [N]: class names or indices (ground truth)")
    ids: str | None = Field(default=None, description="a text file of N sample ids, one a line (null = arr-000000 …)")
    classes: list[str] | None = Field(default=None, description="class names, for integer labels (null = as found)")
    test_path: str | None = Field(default=None, description="a labeled test .npz (X, y[, ids]); else test_fraction")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="share held out for testing")

    @model_validator(mode="after")
    def _needs_path(self) -> ArraysParams:
        if not self.path:
            raise ValueError("dataset.path is required for dataset.name = arrays (an .npy or .npz file)")
        return self


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise DatasetError(f"{path} does not exist: set dataset.{what} (or --data/--labels/--ids) to your file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not a numpy .npy/.npz file without pickled objects ({exc})") from exc


def _from_npz(npz: np.lib.npyio.NpzFile, names: tuple[str, ...]) -> np.ndarray | None:
    return next((npz[n] for n in names if n in npz.files), None)


def read_arrays(p: ArraysParams) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(X [N, ...], labels [N] or None, ids [N] or None) from ``dataset.path`` / ``labels`` / ``ids``."""
    X, y, ids = _read_file(Path(p.path or "").expanduser(), "path")
    if p.labels:
        y = _load_array(Path(p.labels).expanduser(), "labels")
    if p.ids:
        ids_path = Path(p.ids).expanduser()
        if not ids_path.exists():
            raise DatasetError(f"{ids_path} does not exist: set dataset.ids (--ids) to a file of sample ids")
        ids = np.array([s.strip() for s in ids_path.read_text().splitlines() if s.strip()])
    return X, y, ids


def _read_file(path: Path, what: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(X, y or None, ids or None) of one .npy (X only) or .npz file."""
    loaded = _load_array(path, what)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded, None, None
    X = _from_npz(loaded, ("X", "x"))
    if X is None:
        raise DatasetError(f"{path} holds {loaded.files} but no 'X' array: save the samples as X")
    return X, _from_npz(loaded, ("y", "labels")), _from_npz(loaded, ("ids", "sample_id"))


def _checked(X: np.ndarray, y: np.ndarray | None, ids: np.ndarray | None, where: Path, prefix: str) -> tuple:
    """(ids, X [N, F] float32) checked: numeric, finite, one label and one id per sample."""
    if X.ndim < 2 or not np.issubdtype(X.dtype, np.number):
        raise DatasetError(f"{where}: X must be a numeric array [N, ...] of N samples, got {X.dtype} {X.shape}")
    n = len(X)
    for what, a in (("labels", y), ("ids", ids)):
        if a is not None and len(a) != n:
            raise DatasetError(f"{where}: X holds {n} samples but the {what} hold {len(a)}: they must match")
    ids = check_sample_ids(ids if ids is not None else np.array([f"{prefix}-{i:06d}" for i in range(n)]), where)
    Xf = np.ascontiguousarray(X, dtype=np.float32).reshape(n, -1)
    if not np.isfinite(Xf).all():
        raise DatasetError(f"{where}: X holds NaN or infinite values; clean or impute them first")
    return ids, Xf


def load(p: ArraysParams) -> Dataset:
    """The arrays, split into pool and test (``test_path``, or ``test_fraction`` held out, seeded).
    Without labels the pool is unlabeled (label -1: no simulated annotator) and ``test_path`` is needed."""
    X, y, ids = read_arrays(p)
    where = Path(p.path or "").expanduser()
    ids, Xf = _checked(X, y, ids, where, "arr")
    if p.test_path:
        test_where = Path(p.test_path).expanduser()
        X_te, y_te, ids_te = _read_file(test_where, "test_path")
        if y_te is None:
            raise DatasetError(f"{test_where}: the test set needs labels: save them as y in the .npz")
        if X_te.shape[1:] != X.shape[1:]:
            raise DatasetError(f"{test_where}: test samples have shape {X_te.shape[1:]}, the pool's {X.shape[1:]}")
        ids_te, X_te = _checked(X_te, y_te, ids_te, test_where, "arr-test")
        known = np.concatenate([np.asarray(y_te), np.asarray(y)]) if y is not None else np.asarray(y_te)
        classes, y_all = _class_indices(known, p.classes, test_where)
        y_pool = y_all[len(y_te) :] if y is not None else np.full(len(Xf), -1, dtype=np.int64)
        return Dataset(ids, Xf, y_pool, ids_te, X_te, y_all[: len(y_te)], classes, tuple(X.shape[1:])).checked(
            str(where)
        )
    if y is None:
        raise DatasetError(
            f"{where}: no labels, so there is no test split: pass a labeled test set (--data X.npy TEST.npz, "
            "dataset.test_path), or ground truth for a simulation (--labels y.npy, or y in the .npz)"
        )
    classes, y_idx = _class_indices(np.asarray(y), p.classes, where)
    tr, te = split_holdout(len(Xf), p.test_fraction, p.seed)
    return Dataset(ids[tr], Xf[tr], y_idx[tr], ids[te], Xf[te], y_idx[te], classes, tuple(X.shape[1:])).checked(
        str(where)
    )


def _class_indices(y: np.ndarray, classes: list[str] | None, where: Path) -> tuple[list[str], np.ndarray]:
    """(class names, y as indices): integer labels index ``classes`` when given; else the sorted values."""
    if classes and np.issubdtype(y.dtype, np.integer):
        if y.min() < 0 or y.max() >= len(classes):
            span = f"[{y.min()}, {y.max()}]"
            raise DatasetError(f"{where}: labels span {span} but dataset.classes has {len(classes)} names")
        return list(classes), y.astype(np.int64)
    names = np.sort(np.unique(y.astype(str))) if not np.issubdtype(y.dtype, np.integer) else np.unique(y)
    found = [str(c) for c in names]
    if classes:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DatasetError(f"{where}: labels {unknown[:5]} are not in dataset.classes {classes}")
        found = list(classes)
    if len(found) < 2:
        raise DatasetError(f"{where}: the labels hold {len(found)} class(es); need at least 2")
    index = {c: i for i, c in enumerate(found)}
    return found, np.array([index[str(v)] for v in y], dtype=np.int64)


SOURCES.register(
    "arrays",
    DataSource(
        "arrays",
        ArraysParams,
        load,
        default_arch="mlp",
        summary="numpy arrays of any shape (X.npy + labels.npy + ids, or one .npz)",
        path_keys=("path", "test_path"),
        data_help="X.npy or one .npz (with --labels y.npy, --ids ids.txt), then optionally a labeled test .npz",
        extra_deps=lambda p: [p.labels, p.ids],
    ),
)
