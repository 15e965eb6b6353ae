"""Core-set k-center greedy (Sener & Savarese 2018) against a brute-force N×N reference."""

from __future__ import annotations

import pytest
import torch
from _acq_helpers import gen
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.acquisition.coreset import coreset, min_sq_distances
from al_core.errors import ShapeError

FAST = settings(max_examples=15, deadline=None)
dims = st.tuples(st.integers(1, 40), st.integers(0, 6), st.integers(1, 8), st.integers(0, 2**16))


def data(seed, N, M, D):
    g = gen(seed)
    return torch.randn(N, D, generator=g), torch.randn(M, D, generator=g)


def brute_k_center(x, labeled, k):
    """Algorithm 1 of Sener & Savarese, with the full float64 distance matrix."""
    x = x.double()
    centers = labeled.double()
    chosen = []
    for _ in range(min(k, len(x))):
        d = torch.cdist(x, centers).min(dim=1).values if len(centers) else torch.full((len(x),), float("inf"))
        d[chosen] = -1
        best = int(torch.argmax(d))
        chosen.append(best)
        centers = torch.cat([centers, x[best : best + 1]])
    return chosen


@FAST
@given(dims, st.integers(0, 45))
def test_matches_brute_force_and_returns_min_k_n_unique(d, k):
    N, M, D, seed = d
    M = max(M, 1)
    x, lab = data(seed, N, M, D)
    a = coreset(x, lab, k, gen(0))
    assert a.indices.tolist() == brute_k_center(x, lab, k)
    assert a.indices.shape == (min(k, N),) and len(set(a.indices.tolist())) == min(k, N)
    if k:
        assert (a.scores[1:] <= a.scores[:-1] + 1e-5).all()  # farthest-first radii never grow


@FAST
@given(dims, st.integers(1, 12), st.integers(1, 7))
def test_chunked_equals_full_and_permutation_equivariant(d, k, chunk):
    N, M, D, seed = d
    x, lab = data(seed, N, M, D)
    a = coreset(x, lab, k, gen(0))
    assert coreset(x, lab, k, gen(0), chunk_size=chunk).indices.tolist() == a.indices.tolist()
    torch.testing.assert_close(min_sq_distances(x, lab, chunk, 2), min_sq_distances(x, lab), atol=1e-5, rtol=1e-5)
    if M:
        perm = torch.randperm(N, generator=gen(seed + 1))
        assert perm[coreset(x[perm], lab, k, gen(0)).indices].tolist() == a.indices.tolist()


def test_without_labeled_set_the_first_pick_comes_from_the_generator():
    x, _ = data(0, 200, 0, 5)
    picks = {coreset(x, None, 3, gen(s)).indices[0].item() for s in range(5)}
    assert len(picks) > 1
    assert coreset(x, None, 3, gen(7)).indices.tolist() == coreset(x, x[:0], 3, gen(7)).indices.tolist()


def test_duplicates_and_points_on_centers():
    x = torch.zeros(6, 3)
    a = coreset(x, torch.zeros(1, 3), 6, gen(0))
    assert sorted(a.indices.tolist()) == list(range(6))


def test_strategy_and_shape_errors():
    x, lab = data(0, 10, 3, 4)
    s = get_strategy("coreset")
    assert s.needs == {"embeddings", "labeled_embeddings"}
    a = s.select(AcquisitionInputs(n=10, embeddings_N_D=x, labeled_embeddings_M_D=lab), 4, gen(0))
    assert a.indices.tolist() == brute_k_center(x, lab, 4)
    with pytest.raises(ShapeError, match=r"D = 4"):
        coreset(x, torch.zeros(2, 5), 2, gen(0))
