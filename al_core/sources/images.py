"""``images``: a pool of image files (PNG, JPEG, ...), decoded lazily with Pillow.

``dataset.path`` is either

* a folder with one subfolder per class (simulation: the folder name is the ground truth, kept
  apart in ``oracle/`` like every label), or a folder of unlabeled images (``dataset.classes`` or a
  labeled ``test_path`` folder names the classes); or
* a manifest (.csv or .parquet) with ``sample_id, uri[, label]``; a uri is a local path (relative
  to the manifest) or ``s3://bucket/key`` (endpoint and credentials: the standard AWS chain).

The pool is not copied: the workspace's pool table holds ``sample_id, uri, digest`` (SHA-256 of each
file at ``alp init``, so a changed file is refused). Every image is decoded once at ``alp init`` (an
unreadable or truncated file is reported by id; ``skip_unreadable`` leaves them out) and the decoded
rows ([C, H, W] in [0, 1], resized to ``image_size``) are cached beside the pool table, keyed by the
digests and the decoding params (see :mod:`al_core.data`); rounds read the cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from al_core.data import Dataset, Uris, check_sample_ids, read_table, split_holdout
from al_core.errors import DatasetError
from al_core.sources import SOURCES, DataSource, SourceParams
from al_core.uris import read_bytes

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class ImagesParams(SourceParams):
    name: Literal["images"] = "images"
    path: str | None = Field(default=None, description="a folder (one subfolder per class) or a manifest .csv/.parquet")
    test_path: str | None = Field(default=None, description="a labeled test folder or manifest (else test_fraction)")
    test_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="share of labeled images held out for testing"
    )
    image_size: list[int] = Field(default=[28, 28], min_length=2, max_length=2, description="[H, W] images resize to")
    channels: Literal[1, 3] = Field(default=1, description="1 (grayscale) or 3 (RGB)")
    classes: list[str] | None = Field(default=None, description="class names (null = the labels found)")
    skip_unreadable: bool = Field(default=False, description="leave out files that cannot be decoded (listed in meta)")
    cache: bool = Field(default=True, description="keep decoded images beside the pool table (decode once)")

    @model_validator(mode="after")
    def _needs_path(self) -> ImagesParams:
        if not self.path:
            raise ValueError("dataset.path is required for dataset.name = images (an image folder or a manifest)")
        if min(self.image_size) < 1:
            raise ValueError(f"dataset.image_size = {self.image_size}: give [H, W], e.g. [28, 28]")
        return self


# ----------------------------------------------------------------------------- listing
def _listing(path_text: str, key: str) -> pd.DataFrame:
    """sample_id, uri, label (None when unknown) for a folder or a manifest."""
    if path_text.startswith("s3://"):
        raise DatasetError(f"dataset.{key} = {path_text}: give a local folder or manifest (its uris may be s3://)")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset.{key} = {path} does not exist: give an image folder or a .csv/.parquet manifest")
    if path.is_dir():
        return _folder_listing(path)
    df = read_table(path)
    missing = [c for c in ("sample_id", "uri") if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: the manifest needs columns sample_id, uri[, label]; missing {missing}")
    uris = [_resolve_uri(u, path.parent) for u in df["uri"].astype(str)]
    labels = df["label"].map(lambda v: None if pd.isna(v) else str(v)) if "label" in df.columns else None
    return pd.DataFrame({"sample_id": df["sample_id"].astype(str), "uri": uris, "label": labels})


def _resolve_uri(uri: str, base: Path) -> str:
    """A manifest's uri: s3:// and absolute paths as they are, relative paths from the manifest's folder."""
    return uri if uri.startswith("s3://") or Path(uri).is_absolute() else str((base / uri).resolve())


def _folder_listing(folder: Path) -> pd.DataFrame:
    """Class subfolders (label = the folder's name), or images directly in ``folder`` (no labels)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}): check dataset.path")
    nested = [p for p in files if p.parent != folder]
    if nested and len(nested) != len(files):
        raise DatasetError(f"{folder} mixes images and class subfolders: put every image in its class's folder")
    labels = [p.relative_to(folder).parts[0] if nested else None for p in files]
    stems = [_BAD_ID_CHARS.sub("_", p.stem) for p in files]
    if len(set(stems)) != len(stems):  # same file name in two folders: tell them apart, stably
        rel = [hashlib.sha256(str(p.relative_to(folder)).encode()).hexdigest()[:8] for p in files]
        stems = [f"{s}-{h}" for s, h in zip(stems, rel, strict=True)]
    return pd.DataFrame({"sample_id": stems, "uri": [str(p.resolve()) for p in files], "label": labels})


# ----------------------------------------------------------------------------- decoding
def decode_image(data: bytes, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image → [C, H, W] float32 in [0, 1] (grayscale or RGB, resized bilinearly to ``size``)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()  # a truncated file fails here, not later
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _read_one(uri: str, size: tuple[int, int], channels: int) -> tuple[str, np.ndarray | None, str]:
    """(digest, decoded image or None, reason it failed)."""
    try:
        data = read_bytes(uri)
    except Exception as exc:  # reported per id by the caller
        return "", None, f"cannot be read ({exc})"
    digest = hashlib.sha256(data).hexdigest()
    try:
        return digest, decode_image(data, size, channels), ""
    except Exception as exc:  # PIL raises many types for bad files
        return digest, None, f"cannot be decoded ({type(exc).__name__}: {exc})"


def _read_all(uris: list[str], p: ImagesParams) -> Iterator[tuple[str, np.ndarray | None, str]]:
    size = (p.image_size[0], p.image_size[1])
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield from pool.map(lambda u: _read_one(u, size, p.channels), uris, chunksize=64)


def decode(uris: np.ndarray, digests: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Decode a uri table's files → X [N, C·H·W]; a file whose bytes changed since ``alp init`` is refused."""
    p = ImagesParams(path="-", image_size=spec["image_size"], channels=spec["channels"])
    out = np.empty((len(uris), p.channels * p.image_size[0] * p.image_size[1]), dtype=np.float32)
    for i, (digest, img, reason) in enumerate(_read_all(list(uris), p)):
        if img is None:
            raise DatasetError(f"{uris[i]} {reason}: restore the file, or `alp init` a new workspace without it")
        if digest != digests[i]:
            raise DatasetError(f"{uris[i]} changed since alp init (SHA-256 differs): restore it or re-init")
        out[i] = img.reshape(-1)
    return out


# ----------------------------------------------------------------------------- loading
def _decoded_listing(df: pd.DataFrame, p: ImagesParams, where: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Read and decode every listed image: (rows kept, X [n, C·H·W], ids skipped)."""
    check_sample_ids(df["sample_id"].to_numpy(), where)
    results = list(_read_all(df["uri"].tolist(), p))
    bad = [(sid, reason) for sid, (_, img, reason) in zip(df["sample_id"], results, strict=True) if img is None]
    if bad and not p.skip_unreadable:
        shown = "; ".join(f"{sid}: {reason}" for sid, reason in bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise DatasetError(
            f"{where}: {len(bad)} image(s) cannot be used — {shown}{more}. Fix or remove them, or pass "
            "--skip-unreadable (dataset.skip_unreadable: true) to leave them out"
        )
    ok = np.array([img is not None for _, img, _ in results], dtype=bool)
    if bad:
        log.warning("%s: left out %d unreadable image(s): %s", where, len(bad), [s for s, _ in bad[:10]])
    kept = df[ok].reset_index(drop=True).assign(digest=[d for (d, img, _) in results if img is not None])
    X = np.stack([img.reshape(-1) for _, img, _ in results if img is not None]) if ok.any() else None
    if X is None:
        raise DatasetError(f"{where}: no readable images left")
    return kept, X, [s for s, _ in bad]


def load(p: ImagesParams) -> Dataset:
    """List, digest and decode the images; split off the test set (``test_path`` or ``test_fraction``)."""
    pool, X, skipped = _decoded_listing(_listing(p.path or "", "path"), p, p.path or "")
    if p.test_path:
        test, X_test, skipped_test = _decoded_listing(_listing(p.test_path, "test_path"), p, p.test_path)
        skipped += skipped_test
        if test["label"].isna().any():
            raise DatasetError(f"{p.test_path}: every test image needs a label (class subfolders or a label column)")
    else:
        labeled = np.flatnonzero(pool["label"].notna().to_numpy())
        if not len(labeled):
            raise DatasetError(
                f"{p.path}: the images carry no labels, so there is no test split: give a labeled test folder "
                "(--data POOL TEST, dataset.test_path) or class subfolders"
            )
        _, te = split_holdout(len(labeled), p.test_fraction, p.seed)
        keep = np.setdiff1d(np.arange(len(pool)), labeled[te])
        test, X_test = pool.iloc[labeled[te]].reset_index(drop=True), X[labeled[te]]
        pool, X = pool.iloc[keep].reset_index(drop=True), X[keep]
    found = sorted(set(pool["label"].dropna()) | set(test["label"]))
    classes = list(p.classes) if p.classes else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{p.path}: labels {unknown[:5]} are not in dataset.classes {classes}")
    if len(classes) < 2:
        raise DatasetError(f"{p.path}: {len(classes)} class(es) found; need at least 2 (one subfolder per class)")
    index = {c: i for i, c in enumerate(classes)}

    def y(frame: pd.DataFrame) -> np.ndarray:  # -1: no ground truth (a real, unlabeled pool)
        return frame["label"].map(lambda v: index.get(v, -1) if v is not None else -1).to_numpy(dtype=np.int64)

    def uris(frame: pd.DataFrame) -> Uris:
        return Uris(frame["uri"].to_numpy(dtype=str), frame["digest"].to_numpy(dtype=str))

    spec = {"source": "images", "image_size": list(p.image_size), "channels": p.channels, "cache": p.cache}
    shape = (p.channels, p.image_size[0], p.image_size[1])
    ds = Dataset(
        pool["sample_id"].to_numpy(dtype=str), X, y(pool), test["sample_id"].to_numpy(dtype=str), X_test, y(test),
        classes, shape, pool_uris=uris(pool), test_uris=uris(test), decode=spec, skipped=tuple(skipped),
    )  # fmt: skip
    return ds.checked(p.path or "")


def iter_pool(p: ImagesParams, shard_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The listed images as (ids, X) shards, each decoded only when it is reached."""
    df = _listing(p.path or "", "path")
    for start in range(0, len(df), shard_size):
        part, X, _ = _decoded_listing(df.iloc[start : start + shard_size], p, p.path or "")
        yield part["sample_id"].to_numpy(dtype=str), X


class _ImagesSource(DataSource):
    def iter_pool(self, p: Any, shard_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter_pool(p, shard_size)


SOURCES.register(
    "images",
    _ImagesSource(
        "images",
        ImagesParams,
        load,
        default_arch="cnn2d",
        summary="image files (Pillow): class subfolders, or a manifest `sample_id, uri[, label]` (local or s3://)",
        path_keys=("path", "test_path"),
        data_help="an image folder (one subfolder per class) or a manifest .csv/.parquet, then optionally a test one",
        decode=decode,
    ),
)
