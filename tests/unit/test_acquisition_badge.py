"""BADGE (Ash et al. 2020): factorised distances, k-means++ seeding, sampling law, chunking."""

from __future__ import annotations

import pytest
import torch
from _acq_helpers import gen, probs_and_embeddings
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.acquisition.badge import badge, gradient_embeddings, gradient_sq_distances
from al_core.errors import ShapeError

FAST = settings(max_examples=15, deadline=None)
dims = st.tuples(st.integers(1, 40), st.integers(2, 6), st.integers(1, 9), st.integers(0, 2**16))


@FAST
@given(dims, st.integers(0, 5))
def test_factorised_distances_equal_materialised_ones(d, n_centers):
    N, C, D, seed = d
    probs, emb = probs_and_embeddings(seed, N, C, D)
    centers = torch.randperm(N, generator=gen(seed))[: min(n_centers, N)].tolist()
    g = gradient_embeddings(probs, emb).double()
    want = torch.cdist(g, g[centers]).pow(2).min(dim=1).values if centers else (g * g).sum(1)
    got = gradient_sq_distances(probs, emb, centers, chunk_size=3).double()
    torch.testing.assert_close(got, want, atol=1e-4 * (1 + float(want.max())), rtol=1e-4)


@FAST
@given(dims, st.integers(0, 45), st.integers(1, 50))
def test_indices_unique_in_pool_exactly_min_k_n_and_chunking_does_not_change_picks(d, k, chunk):
    N, C, D, seed = d
    probs, emb = probs_and_embeddings(seed, N, C, D)
    a = badge(probs, emb, k, gen(seed), chunk_size=chunk)
    b = badge(probs, emb, k, gen(seed))
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices.shape == (min(k, N),) and len(set(a.indices.tolist())) == min(k, N)
    assert ((a.indices >= 0) & (a.indices < N)).all()
    if k:
        g = gradient_embeddings(probs, emb)
        assert a.indices[0].item() == int(torch.argmax((g * g).sum(1)))


def test_same_seed_same_picks_other_seed_other_picks():
    probs, emb = probs_and_embeddings(0, 500, 5, 16)
    a, b, c = (badge(probs, emb, 20, gen(s)) for s in (1, 1, 2))
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices.tolist() != c.indices.tolist()


@FAST
@given(dims)
def test_permuting_the_pool_permutes_the_d2_law(d):
    N, C, D, seed = d
    probs, emb = probs_and_embeddings(seed, N, C, D)
    perm = torch.randperm(N, generator=gen(seed + 1))
    inv = torch.argsort(perm)
    centers = [0, N // 2]
    got = gradient_sq_distances(probs[perm], emb[perm], inv[centers].tolist())
    torch.testing.assert_close(got, gradient_sq_distances(probs, emb, centers)[perm], atol=1e-5, rtol=1e-5)


def test_second_pick_follows_d2_sampling():
    probs, emb = probs_and_embeddings(4, 6, 3, 4)
    first = badge(probs, emb, 1, gen(0)).indices.item()
    law = gradient_sq_distances(probs, emb, [first]).double()
    law = law / law.sum()
    draws = 3000
    counts = torch.zeros(6, dtype=torch.float64)
    g = gen(123)
    for _ in range(draws):
        counts[badge(probs, emb, 2, g).indices[1]] += 1
    assert counts[first] == 0
    # total variation distance of the empirical law; its standard error is ≈ 0.02 here
    assert 0.5 * (counts / draws - law).abs().sum() < 0.05


def test_duplicated_pool_still_returns_k_unique_indices():
    probs = torch.full((10, 3), 1 / 3)
    emb = torch.ones(10, 4)
    a = badge(probs, emb, 7, gen(0))
    assert len(set(a.indices.tolist())) == 7


def test_strategy_needs_and_shape_errors():
    s = get_strategy("badge")
    assert s.needs == {"probs", "embeddings"}
    probs, emb = probs_and_embeddings(0, 8, 3, 4)
    assert s.select(AcquisitionInputs(n=8, probs_N_C=probs, embeddings_N_D=emb), 3, gen(0)).indices.shape == (3,)
    with pytest.raises(ShapeError, match=r"embeddings_N_D must have N = 8"):
        badge(probs, emb[:5], 3, gen(0))
    with pytest.raises(ShapeError, match=r"\[N,D\]"):
        badge(probs, emb[0], 3, gen(0))
