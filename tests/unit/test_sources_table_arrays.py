"""The table source with a declared [C, L] shape, and the arrays source."""

import numpy as np
import pandas as pd
import pytest
from torch import nn

from al_core.config import parse_params
from al_core.errors import DatasetError
from al_core.models import build_network
from al_core.sources import dataset_params, load_dataset


def _series_table(n=40, channels=("acc_x", "acc_y", "gyr_z"), steps=8, channel_major=True):
    rng = np.random.default_rng(0)
    cols = [f"{c}_{t}" for c in channels for t in range(steps)]
    if not channel_major:
        cols = [f"{c}_{t}" for t in range(steps) for c in channels]
    df = pd.DataFrame(rng.normal(size=(n, len(cols))), columns=cols)
    df.insert(0, "sample_id", [f"w-{i}" for i in range(n)])
    df["label"] = np.where(np.arange(n) % 2, "walk", "run")
    return df, cols


def test_table_shape_gives_cnn1d_its_channels(tmp_path):
    df, _ = _series_table()
    df.to_parquet(tmp_path / "s.parquet")
    p = dataset_params(name="table", path=str(tmp_path / "s.parquet"), shape=[3, 8])
    d = load_dataset(p)
    assert d.input_shape == (3, 8) and d.pool_X.shape[1] == 24
    # channel-major: row 0's channel 1 is the acc_y columns
    row = df.set_index("sample_id").loc[d.pool_ids[0]]
    assert np.allclose(d.pool_X[0].reshape(3, 8)[1], row[[f"acc_y_{t}" for t in range(8)]].to_numpy(dtype=np.float32))
    params = parse_params({"dataset": p.model_dump()})
    assert params.resolved_arch() == "cnn1d"
    net = build_network(params.resolved_arch(), d.input_shape, 2)
    assert next(m for m in net.modules() if isinstance(m, nn.Conv1d)).in_channels == 3


def test_table_shape_mismatch_and_time_major_columns_are_refused(tmp_path):
    df, _ = _series_table()
    df.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DatasetError, match=r"needs 20 feature columns, found 24"):
        load_dataset(dataset_params(name="table", path=str(tmp_path / "s.parquet"), shape=[4, 5]))
    df, _ = _series_table(channel_major=False)
    df.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DatasetError, match="channel-major"):
        load_dataset(dataset_params(name="table", path=str(tmp_path / "t.parquet"), shape=[3, 8]))


def _arrays(n=50, shape=(6, 10)):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, *shape)).astype(np.float32), np.arange(n) % 3


def test_arrays_npy_with_labels_and_ids(tmp_path):
    X, y = _arrays()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "ids.txt").write_text("".join(f"win-{i:03d}\n" for i in range(50)))
    p = dataset_params(
        name="arrays", path=str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"), ids=str(tmp_path / "ids.txt")
    )
    d = load_dataset(p)
    assert d.input_shape == (6, 10) and d.classes == ["0", "1", "2"]
    assert len(d.pool_ids) == 40 and len(d.test_ids) == 10 and d.pool_ids[0].startswith("win-")
    i = int(d.pool_ids[3].split("-")[1])
    assert np.array_equal(d.pool_X[3], X[i].reshape(-1)) and d.pool_y[3] == y[i]
    assert parse_params({"dataset": p.model_dump()}).resolved_arch(d.input_shape) == "cnn1d"


def test_arrays_npz_with_class_names(tmp_path):
    X, y = _arrays(shape=(1, 4, 4))
    np.savez(tmp_path / "d.npz", X=X, y=y)
    d = load_dataset(dataset_params(name="arrays", path=str(tmp_path / "d.npz"), classes=["cat", "dog", "eel"]))
    assert d.classes == ["cat", "dog", "eel"] and d.input_shape == (1, 4, 4)
    assert d.pool_ids[0].startswith("arr-")


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"X": np.zeros((5, 3)), "y": np.arange(4)}, "X holds 5 samples but the labels hold 4"),
        ({"X": np.zeros((5, 3))}, "no labels"),
        ({"y": np.arange(5)}, "no 'X' array"),
        ({"X": np.full((5, 3), np.nan), "y": np.arange(5) % 2}, "NaN"),
    ],
)
def test_arrays_bad_input(tmp_path, files, match):
    np.savez(tmp_path / "d.npz", **files)
    with pytest.raises(DatasetError, match=match):
        load_dataset(dataset_params(name="arrays", path=str(tmp_path / "d.npz")))


def test_arrays_unlabeled_pool_with_a_labeled_test_set(tmp_path):
    X, y = _arrays(shape=(3, 8))
    np.save(tmp_path / "pool.npy", X[:40])
    np.savez(tmp_path / "test.npz", X=X[40:], y=np.array(["a", "b", "c"])[y[40:]])
    d = load_dataset(
        dataset_params(name="arrays", path=str(tmp_path / "pool.npy"), test_path=str(tmp_path / "test.npz"))
    )
    assert len(d.pool_ids) == 40 and (d.pool_y == -1).all()  # a real pool: no ground truth, nothing to simulate
    assert d.classes == ["a", "b", "c"] and list(d.test_y) == list(y[40:])
    assert np.array_equal(d.pool_X, X[:40].reshape(40, -1)) and set(d.pool_ids).isdisjoint(d.test_ids)


@pytest.mark.parametrize(
    ("test_files", "match"),
    [
        ({"X": np.zeros((4, 3, 9))}, "the test set needs labels"),
        ({"X": np.zeros((4, 3, 9)), "y": np.arange(4)}, r"test samples have shape \(3, 9\), the pool's \(3, 8\)"),
    ],
)
def test_arrays_bad_test_set(tmp_path, test_files, match):
    np.save(tmp_path / "pool.npy", np.zeros((10, 3, 8)))
    np.savez(tmp_path / "test.npz", **test_files)
    with pytest.raises(DatasetError, match=match):
        load_dataset(
            dataset_params(name="arrays", path=str(tmp_path / "pool.npy"), test_path=str(tmp_path / "test.npz"))
        )


def test_arrays_missing_file_names_the_key(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist: set dataset.path"):
        load_dataset(dataset_params(name="arrays", path=str(tmp_path / "nope.npy")))


def test_readme_and_params_list_the_registered_names():
    from pathlib import Path

    from al_core.architectures import ARCHITECTURES, architectures_table
    from al_core.sources import SOURCES, sources_table

    root = Path(__file__).resolve().parents[2]
    readme, params = (root / "README.md").read_text(), (root / "params.yaml").read_text()
    assert f"<!-- sources-table -->\n{sources_table()}\n<!-- /sources-table -->" in readme
    assert f"<!-- architectures-table -->\n{architectures_table()}\n<!-- /architectures-table -->" in readme
    assert f"# {' | '.join(SOURCES.names())}\n" in params
    assert f"# auto | {' | '.join(ARCHITECTURES.names())} (auto" in params


def test_params_of_earlier_versions_still_load_and_unknown_sources_are_named():
    from al_core.errors import ConfigError

    old = {"name": "mnist1d", "pool_size": 4000, "path": None, "test_path": None, "test_fraction": 0.2,
           "id_column": "sample_id", "label_column": "label", "feature_columns": None}  # fmt: skip
    assert parse_params({"dataset": old}).dataset.name == "mnist1d"  # the old defaults of other sources' keys
    with pytest.raises(ConfigError, match=r"unknown key 'dataset\.path'.*Valid keys here: name, pool_size"):
        parse_params({"dataset": {**old, "path": "/data"}})  # a real value is still refused
    with pytest.raises(ConfigError, match=r"dataset\.name = 'imges' is not a data source\. Did you mean 'images'"):
        parse_params({"dataset": {"name": "imges"}})
