import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest

from al_core.data import SAMPLE_ID_RE, load_dataset, read_features, write_features
from al_core.errors import DatasetError
from al_core.sources import dataset_params
from al_core.sources.mnist import read_idx


def test_mnist1d_is_generated_deterministically_without_touching_global_rng():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = load_dataset(dataset_params(name="mnist1d", pool_size=200, test_size=50))
    assert np.array_equal(np.random.get_state()[1], before)
    b = load_dataset(dataset_params(name="mnist1d", pool_size=200, test_size=50))
    assert a.pool_X.shape == (200, 40) and a.test_X.shape == (50, 40)
    assert np.array_equal(a.pool_X, b.pool_X) and list(a.pool_ids) == list(b.pool_ids)
    assert len(set(a.pool_ids) | set(a.test_ids)) == 250
    assert all(SAMPLE_ID_RE.match(s) for s in a.pool_ids)


def test_digits_split_is_stratified_and_disjoint():
    d = load_dataset(dataset_params(name="digits", test_fraction=0.25))
    assert len(d.pool_ids) + len(d.test_ids) == 1797
    assert not set(d.pool_ids) & set(d.test_ids)
    assert set(np.unique(d.test_y)) == set(range(10))
    assert d.input_shape == (1, 8, 8) and d.pool_X.max() <= 1.0


def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _fake_mnist(directory, n=30, m=10):
    rng = np.random.default_rng(0)
    _write_idx(directory / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
    _write_idx(directory / "train-labels-idx1-ubyte.gz", np.arange(n) % 10)
    _write_idx(directory / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (m, 28, 28)))
    _write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.arange(m) % 10)


def test_mnist_reads_idx_files(tmp_path):
    _fake_mnist(tmp_path)
    d = load_dataset(dataset_params(name="mnist", path=str(tmp_path), pool_size=None, test_size=None))
    assert d.pool_X.shape == (30, 784) and d.test_X.shape == (10, 784)
    assert list(d.pool_y[:3]) == [0, 1, 2] and d.input_shape == (1, 28, 28)


def test_mnist_checksum_mismatch_is_refused(tmp_path):
    _fake_mnist(tmp_path)
    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {name}\n")
    with pytest.raises(DatasetError, match="SHA-256"):
        load_dataset(dataset_params(name="mnist", path=str(tmp_path)))
    good = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{good}  {name}\n")
    load_dataset(dataset_params(name="mnist", path=str(tmp_path)))


def test_mnist_missing_files_named(tmp_path):
    with pytest.raises(DatasetError, match="t10k-images"):
        load_dataset(dataset_params(name="mnist", path=str(tmp_path)))


def test_truncated_idx(tmp_path):
    with gzip.open(tmp_path / "x.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 10)
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(tmp_path / "x.gz")


def _table(n=60):
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "sample_id": [f"s-{i}" for i in range(n)],
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "label": np.where(np.arange(n) % 2, "cat", "dog"),
        }
    )


def test_table_csv_with_test_fraction(tmp_path):
    _table().to_csv(tmp_path / "t.csv", index=False)
    d = load_dataset(dataset_params(name="table", path=str(tmp_path / "t.csv"), test_fraction=0.25))
    assert d.classes == ["cat", "dog"] and d.input_shape == (2,)
    assert len(d.pool_ids) == 45 and len(d.test_ids) == 15


def test_table_with_separate_test_file(tmp_path):
    _table().to_parquet(tmp_path / "pool.parquet")
    t = _table(10)
    t["sample_id"] = [f"t-{i}" for i in range(10)]
    t.to_parquet(tmp_path / "test.parquet")
    d = load_dataset(
        dataset_params(name="table", path=str(tmp_path / "pool.parquet"), test_path=str(tmp_path / "test.parquet"))
    )
    assert len(d.pool_ids) == 60 and len(d.test_ids) == 10


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda df: df.drop(columns="sample_id"), "no 'sample_id' column"),
        (lambda df: df.drop(columns="label"), "no 'label' column"),
        (lambda df: df.assign(sample_id=["bad id!"] * len(df)), r"\[A-Za-z0-9._-\]"),
        (lambda df: df.assign(a=np.nan), "NaN"),
        (lambda df: df.assign(sample_id="same"), "unique"),
    ],
)
def test_table_contract_violations(tmp_path, mutate, match):
    mutate(_table()).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match=match):
        load_dataset(dataset_params(name="table", path=str(tmp_path / "t.csv")))


def test_features_round_trip(tmp_path):
    X = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    ids = np.array([f"x{i}" for i in range(5)])
    write_features(tmp_path / "f.parquet", ids, X, np.arange(5))
    ids2, X2, y2 = read_features(tmp_path / "f.parquet")
    assert list(ids2) == list(ids) and np.array_equal(X2, X) and list(y2) == list(range(5))
