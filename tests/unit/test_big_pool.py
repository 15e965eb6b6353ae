"""Big pools (#13): the pool scored in shards picks what the whole pool picks, a batch-aware strategy
runs on a bounded candidate set, and nothing reads all of the pool's features at once."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import get_strategy
from al_core.config import ScoringParams
from al_core.data import features_table, read_features
from al_core.models import NeuralClassifier
from al_core.pool import ParquetPool, PoolIds
from al_core.scoring import compute_inputs, select_batch

TOP_K = ["entropy", "margin", "least_confidence", "bald", "variation_ratio", "mean_std"]
N, F, C = 700, 6, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fitted small MLP and its pool as a Parquet file of 50-row row groups."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, F)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0.3)
    model = NeuralClassifier("mlp", (F,), C, hidden=16, epochs=2, min_steps=5, val_fraction=0.0, device="cpu")
    model.fit(X[:80], y[:80])
    path = tmp_path_factory.mktemp("pool") / "pool.parquet"
    pq.write_table(features_table(np.array([f"s{i}" for i in range(N)]), X), path, row_group_size=50)
    return model, X, ParquetPool(path)


def _unsharded(model, name, X, cand, k, seed):
    strategy = get_strategy(name)
    inputs = compute_inputs(model, strategy, X[cand], mc_samples=5, seed=seed)
    return cand[strategy.select(inputs, k, torch.Generator().manual_seed(1)).indices.numpy()]


@settings(max_examples=3, deadline=None)
@given(
    shard_rows=st.sampled_from([50, 120, 10_000]),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 30),
)
def test_sharded_top_k_picks_what_the_whole_pool_picks(setup, shard_rows, seed, k):
    model, X, pool = setup
    cand = np.sort(np.random.default_rng(seed).choice(N, size=N // 2, replace=False))
    for name in TOP_K:
        sel = select_batch(model, get_strategy(name), pool, cand, np.arange(0), k, torch.Generator().manual_seed(1),
                           ScoringParams(shard_rows=shard_rows), mc_samples=5, seed=seed)  # fmt: skip
        assert sel.pool_idx.tolist() == _unsharded(model, name, X, cand, k, seed).tolist(), name
        assert sel.candidate_set == "all" and sel.probs.shape == (k, C)


class GuardedPool(ParquetPool):
    """A pool that fails the test when asked for more rows at once than one shard (or a small batch)."""

    limit = 120

    def read(self, start, stop):
        assert stop - start <= self.limit, f"read {stop - start} rows at once"
        return super().read(start, stop)

    def __getitem__(self, idx):
        assert len(np.arange(self.n)[idx]) <= self.limit, "asked for too many rows"
        return super().__getitem__(idx)


@pytest.mark.parametrize(("name", "how"), [("badge", "top"), ("coreset", "random"), ("batchbald", "top")])
def test_batch_aware_strategies_run_on_a_bounded_candidate_set(setup, name, how):
    model, X, pool = setup
    guarded = GuardedPool(pool.path)
    cand = np.arange(40, N)
    sp = ScoringParams(shard_rows=100, memory_mb=1, candidates=how, candidate_size=60)
    sel = select_batch(model, get_strategy(name), guarded, cand, np.arange(40), 5, torch.Generator().manual_seed(0),
                       sp, mc_samples=4, seed=3)  # fmt: skip
    assert sel.candidate_size == 60 and sel.candidate_set.startswith("top 60" if how == "top" else "random 60")
    assert len(set(sel.pool_idx.tolist())) == 5 and set(sel.pool_idx.tolist()) <= set(cand.tolist())
    if how == "top":  # the candidate set is the 60 most uncertain: every pick is among them
        ent = get_strategy("entropy").topk_scores(compute_inputs(model, get_strategy("entropy"), X[cand]))
        top = set(cand[torch.sort(ent, descending=True, stable=True).indices[:60].numpy()].tolist())
        assert set(sel.pool_idx.tolist()) <= top
    again = select_batch(model, get_strategy(name), guarded, cand, np.arange(40), 5, torch.Generator().manual_seed(0),
                         sp, mc_samples=4, seed=3)  # fmt: skip
    assert again.pool_idx.tolist() == sel.pool_idx.tolist()  # seeded


def test_the_whole_candidate_set_when_it_fits(setup):
    model, X, pool = setup
    cand = np.arange(N)
    sel = select_batch(model, get_strategy("badge"), pool, cand, np.arange(0), 8, torch.Generator().manual_seed(0),
                       ScoringParams(shard_rows=64))  # fmt: skip
    inputs = compute_inputs(model, get_strategy("badge"), X)
    whole = get_strategy("badge").select(inputs, 8, torch.Generator().manual_seed(0))
    assert sel.candidate_set == "all" and sel.pool_idx.tolist() == whole.indices.tolist()


def test_pool_rows_and_ids_are_read_by_index(setup):
    _, X, pool = setup
    idx = np.array([699, 3, 51, 3, 250])
    assert np.array_equal(pool[idx], X[idx]) and np.array_equal(pool[10:13], X[10:13])
    ids = PoolIds(np.array([f"s{i}" for i in range(N)]))
    assert ids.positions(["s5", "nope", "s699"]).tolist() == [5, -1, 699]
    assert np.flatnonzero(ids.isin({"s1", "s7"})).tolist() == [1, 7]
    assert ids[np.array([2, 0])].tolist() == ["s2", "s0"]
    assert read_features(pool.path)[0][:2].tolist() == ["s0", "s1"]


def test_a_parquet_table_is_prepared_in_batches_as_it_is_loaded_whole(tmp_path, monkeypatch):
    """The streamed prepare writes the files the in-memory path writes (pool, test, val, truth), row
    for row, reading the table in batches; and the pool's row store gives its rows back."""
    import pandas as pd

    from al_core.data import take_validation, write_prepared
    from al_core.sources import get_source, table
    from al_core.sources._base import PreparedFiles

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"sample_id": [f"r{i}" for i in range(300)], "label": rng.choice(["a", "b", "c"], 300)})
    for j in range(5):
        frame[f"x{j}"] = rng.normal(size=300).astype(np.float32)
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=70)
    p = table.TableParams(path=str(tmp_path / "t.parquet"), val_size=12, seed=3)
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 64)
    names = ("pool.parquet", "test.parquet", "val.parquet", "truth.parquet")
    files = [PreparedFiles(*(tmp_path / d / f for f in names)) for d in ("stream", "whole")]
    meta = get_source("table").prepare_stream(p, files[0])
    ds, val = take_validation(table.load(p), p.val_size, p.seed)
    write_prepared(ds, val, files[1].pool, files[1].test, files[1].val, files[1].truth)
    assert meta == {**ds.meta("table"), "n_val": 12}
    for name in ("pool", "test", "val"):
        a, b = (read_features(getattr(f, name)) for f in files)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True) if x is not None), name
    a, b = (pd.read_parquet(f.truth) for f in files)
    assert a.equals(b)
    pool = ParquetPool(files[0].pool)
    assert pool.store is not None and np.array_equal(
        pool[np.array([5, 0, 200])], read_features(files[0].pool)[1][[5, 0, 200]]
    )
