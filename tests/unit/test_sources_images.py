"""The images source: class folders, manifests with local and S3 (moto server) uris, bad files,
and the decode cache of uri tables."""

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from al_core import data as data_mod
from al_core.data import read_features, read_uris, write_prepared
from al_core.errors import DatasetError
from al_core.sources import dataset_params, load_dataset
from benchmarks.image_data import digits_pngs

N = 60


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs") / "digits"
    digits_pngs(root, N)
    return root


def _images(path, **kw):
    return load_dataset(dataset_params(name="images", path=str(path), **{"image_size": [8, 8], **kw}))


def _expected(sample_id):
    i = int(sample_id.split("-")[1])
    return np.round(load_digits().images[i] * 255 / 16).reshape(-1) / 255.0


def test_class_folders_give_labels_ids_and_pixels(folder):
    d = _images(folder, test_fraction=0.25)
    assert d.classes == [str(c) for c in range(10)] and d.input_shape == (1, 8, 8)
    assert len(d.pool_ids) == 45 and len(d.test_ids) == 15
    targets = load_digits().target
    for ids, X, y in ((d.pool_ids, d.pool_X, d.pool_y), (d.test_ids, d.test_X, d.test_y)):
        i = int(ids[0].split("-")[1])
        assert y[0] == targets[i] and np.allclose(X[0], _expected(ids[0]), atol=1e-6)
    assert d.pool_uris.uri[0].endswith(f"{d.pool_ids[0]}.png") and len(d.pool_uris.digest[0]) == 64
    big = _images(folder, test_fraction=0.25, image_size=[16, 12], channels=3)  # resized, RGB
    assert big.input_shape == (3, 16, 12) and big.pool_X.shape == (45, 3 * 16 * 12)


def test_manifest_with_relative_uris_and_an_unlabeled_pool_with_a_test_folder(folder, tmp_path):
    files = sorted(folder.rglob("*.png"))
    rows = [{"sample_id": f.stem, "uri": os.path.relpath(f, tmp_path)} for f in files[:40]]
    pd.DataFrame(rows).to_csv(tmp_path / "pool.csv", index=False)
    test = tmp_path / "test"
    digits_pngs(test, 30, start=100)
    d = load_dataset(
        dataset_params(name="images", path=str(tmp_path / "pool.csv"), test_path=str(test), image_size=[8, 8])
    )
    assert len(d.pool_ids) == 40 and len(d.test_ids) == 30 and (d.pool_y == -1).all()  # no ground truth
    assert d.classes == [str(c) for c in range(10)]
    assert np.allclose(d.pool_X[0], _expected(d.pool_ids[0]), atol=1e-6)


def test_unreadable_and_truncated_files_are_named_and_can_be_skipped(folder, tmp_path):
    bad = tmp_path / "bad"
    digits_pngs(bad, 20)
    png = next((bad / "3").glob("*.png"))
    png.write_bytes(png.read_bytes()[:40])  # truncated
    (bad / "5" / "notes.png").write_text("not an image")
    with pytest.raises(DatasetError) as e:
        _images(bad)
    msg = str(e.value)
    assert "2 image(s) cannot be used" in msg and png.stem in msg and "notes" in msg and "--skip-unreadable" in msg
    d = _images(bad, skip_unreadable=True)
    assert sorted(d.skipped) == sorted([png.stem, "notes"]) and len(d.pool_ids) + len(d.test_ids) == 19
    assert d.meta("images")["skipped"] == list(d.skipped)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no image files"),
        (lambda p: pd.DataFrame({"sample_id": ["a"]}).to_csv(p / "m.csv") or p / "m.csv", "missing \\['uri'\\]"),
    ],
)
def test_bad_paths_are_named(tmp_path, make, match):
    with pytest.raises(DatasetError, match=match):
        _images(make(tmp_path))


def test_uri_tables_decode_lazily_once_and_refuse_changed_files(tmp_path):
    digits_pngs(tmp_path / "own", N)
    d = _images(tmp_path / "own")
    ws = tmp_path / "data"
    write_prepared(d, None, ws / "pool.parquet", ws / "test.parquet", ws / "val.parquet", ws / "truth.parquet")
    assert "features" not in pd.read_parquet(ws / "pool.parquet").columns  # the pool is not copied
    caches = sorted(p.name.split("-")[0] for p in (ws / ".cache").glob("*.npy"))
    assert caches == ["pool", "test", "val"]  # seeded by the decode at load time
    assert (ws / ".cache" / ".gitignore").read_text() == "*\n"
    ids, X, y = read_features(ws / "pool.parquet")
    assert list(ids) == list(d.pool_ids) and np.array_equal(X, d.pool_X) and y is None
    assert read_uris(ws / "pool.parquet")[0] == d.pool_uris.uri[0]
    for c in (ws / ".cache").glob("pool-*.npy"):
        c.unlink()
    data_mod._read_features_cached.cache_clear()
    _, X2, _ = read_features(ws / "pool.parquet")  # decoded from the files, then cached again
    assert np.array_equal(X2, d.pool_X) and len(list((ws / ".cache").glob("pool-*.npy"))) == 1
    for c in (ws / ".cache").glob("pool-*.npy"):
        c.unlink()
    data_mod._read_features_cached.cache_clear()
    changed = d.pool_uris.uri[0]
    digits_pngs(tmp_path / "other", 1, start=500)
    os.replace(next((tmp_path / "other").rglob("*.png")), changed)
    with pytest.raises(DatasetError, match="changed since alp init"):
        read_features(ws / "pool.parquet")


def test_manifest_with_s3_uris(folder, tmp_path, s3_server):
    import boto3

    import tasks.s3  # noqa: F401  (registers the s3:// reader, as the CLI and flows do)

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="imgs")
    files = sorted(folder.rglob("*.png"))[:30]
    for f in files:
        s3.put_object(Bucket="imgs", Key=f"digits/{f.parent.name}/{f.name}", Body=f.read_bytes())
    rows = [
        {"sample_id": f.stem, "uri": f"s3://imgs/digits/{f.parent.name}/{f.name}", "label": f.parent.name}
        for f in files
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    d = _images(tmp_path / "m.parquet")
    assert d.pool_uris.uri[0].startswith("s3://imgs/digits/") and len(d.pool_ids) + len(d.test_ids) == 30
    assert np.allclose(d.pool_X[0], _expected(d.pool_ids[0]), atol=1e-6)


def test_sources_hand_out_the_pool_in_shards(folder):
    from al_core.sources import get_source

    p = dataset_params(name="images", path=str(folder), image_size=[8, 8])
    shards = list(get_source("images").iter_pool(p, 25))
    assert [len(ids) for ids, _ in shards] == [25, 25, 10] and shards[0][1].shape == (25, 64)
    assert np.allclose(shards[1][1][0], _expected(shards[1][0][0]), atol=1e-6)
    digits = dataset_params(name="digits")
    whole = load_dataset(digits)
    parts = list(get_source("digits").iter_pool(digits, 500))
    assert np.array_equal(np.concatenate([X for _, X in parts]), whole.pool_X)
