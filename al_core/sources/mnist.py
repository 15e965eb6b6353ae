"""``mnist``: MNIST (LeCun et al. 1998) from the original IDX gz files."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from al_core.data import Dataset, cap
from al_core.errors import DatasetError
from al_core.sources import SOURCES, DataSource, SourceParams

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


class MnistParams(SourceParams):
    name: Literal["mnist"] = "mnist"
    path: str | None = Field(default=None, description="directory of the four IDX gz files")
    pool_size: int | None = Field(default=4000, ge=1, description="cap on the pool (null = all 60,000)")
    test_size: int | None = Field(default=1000, ge=1, description="cap on the test split (null = all 10,000)")


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


def default_dir() -> Path:
    """Where the MNIST IDX files are when ``dataset.path`` is not set: ``$ALP_MNIST_DIR``, else
    ``../shared/data/mnist`` relative to the repository alp runs from."""
    env = os.environ.get("ALP_MNIST_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def load(p: MnistParams) -> Dataset:
    """MNIST from the IDX gz files in ``dataset.path`` (default :func:`default_dir`; checked against
    ``SHA256SUMS`` if present)."""
    directory = Path(p.path).expanduser() if p.path else default_dir()
    if not directory.is_dir():
        raise DatasetError(
            f"no MNIST directory at {directory}: set dataset.path (alp init --data DIR) or $ALP_MNIST_DIR "
            "to the directory with the four IDX gz files"
        )
    missing = [f for f in MNIST_FILES.values() if not (directory / f).exists()]
    if missing:
        raise DatasetError(f"dataset.path = {directory} lacks {', '.join(missing)}: point it at the MNIST IDX files")
    verify_checksums(directory, list(MNIST_FILES.values()))
    arr = {k: read_idx(directory / f) for k, f in MNIST_FILES.items()}
    tr = cap(np.arange(len(arr["train_y"])), p.pool_size, p.seed)
    te = cap(np.arange(len(arr["test_y"])), p.test_size, p.seed + 1)
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


SOURCES.register(
    "mnist",
    DataSource(
        "mnist",
        MnistParams,
        load,
        default_arch="cnn2d",
        summary="MNIST (LeCun et al. 1998), the original IDX gz files",
        path_keys=("path",),
        data_help="the directory of the IDX gz files",
    ),
)
