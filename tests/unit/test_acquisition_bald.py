"""BALD, variation ratio, mean std: definitions, chunking, permutation, shapes (Houlsby 2011; Gal 2017)."""

from __future__ import annotations

import math

import pytest
import torch
from _acq_helpers import gen, mc_log_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.acquisition.bald import (
    bald_scores,
    conditional_entropy,
    mean_std_scores,
    predictive_entropy,
    variation_ratio_scores,
)
from al_core.errors import ShapeError

SCORERS = [bald_scores, variation_ratio_scores, mean_std_scores, conditional_entropy, predictive_entropy]
FAST = settings(max_examples=15, deadline=None)
dims = st.tuples(st.integers(1, 40), st.integers(1, 8), st.integers(2, 6), st.integers(0, 2**16))


@FAST
@given(dims, st.integers(1, 7))
def test_chunked_equals_full(d, chunk):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    for f in SCORERS:
        torch.testing.assert_close(f(lp, chunk_size=chunk), f(lp, chunk_size=10_000), rtol=0, atol=1e-6)


@FAST
@given(dims)
def test_permuting_the_pool_permutes_the_scores(d):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    perm = torch.randperm(N, generator=gen(seed + 1))
    for f in SCORERS:
        torch.testing.assert_close(f(lp[perm]), f(lp)[perm], rtol=0, atol=1e-6)


@FAST
@given(dims)
def test_bald_is_entropy_minus_conditional_entropy_and_non_negative(d):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    b = bald_scores(lp)
    # mutual information is non-negative (Jensen) before any clamping, up to float32 rounding
    assert (predictive_entropy(lp) - conditional_entropy(lp) >= -1e-5).all()
    torch.testing.assert_close(b, (predictive_entropy(lp) - conditional_entropy(lp)).clamp_min(0), atol=2e-5, rtol=0)
    # float64 definition straight from the paper
    p = lp.double().exp()
    mean_p = p.mean(1)
    ref = -(mean_p * mean_p.log()).sum(1) + (p * p.log()).sum((1, 2)) / K
    torch.testing.assert_close(b.double(), ref.clamp_min(0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("C", [2, 3, 10])
def test_uniform_predictions_give_zero_bald_and_entropy_log_c(C):
    lp = torch.full((7, 5, C), -math.log(C))
    torch.testing.assert_close(bald_scores(lp), torch.zeros(7), atol=1e-6, rtol=0)
    torch.testing.assert_close(predictive_entropy(lp), torch.full((7,), math.log(C)), atol=1e-6, rtol=0)
    torch.testing.assert_close(mean_std_scores(lp), torch.zeros(7), atol=1e-7, rtol=0)


def test_identical_passes_give_zero_bald_but_full_disagreement_gives_max_variation_ratio():
    lp = mc_log_probs(0, 6, 1, 4).expand(6, 8, 4)
    torch.testing.assert_close(bald_scores(lp), torch.zeros(6), atol=1e-6, rtol=0)
    votes = torch.full((1, 4, 4), -20.0)
    for k in range(4):
        votes[0, k, k] = 0.0
    assert variation_ratio_scores(torch.log_softmax(votes, -1)).item() == pytest.approx(0.75)


@FAST
@given(dims, st.integers(0, 50))
@pytest.mark.parametrize("name", ["bald", "variation_ratio", "mean_std"])
def test_strategy_returns_min_k_n_unique_indices_best_first(name, d, k):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    a = get_strategy(name).select(AcquisitionInputs(n=N, log_probs_N_K_C=lp), k, gen(0))
    assert a.indices.dtype == torch.long and a.indices.shape == (min(k, N),)
    assert len(set(a.indices.tolist())) == min(k, N)
    assert ((a.indices >= 0) & (a.indices < N)).all()
    assert (a.scores[:-1] >= a.scores[1:]).all()


def test_shape_errors_name_expected_and_got():
    with pytest.raises(ShapeError, match=r"\[N,K,C\].*\(4, 3\)"):
        bald_scores(torch.zeros(4, 3))
    with pytest.raises(ShapeError, match="N = 5"):
        get_strategy("bald").select(AcquisitionInputs(n=5, log_probs_N_K_C=torch.zeros(4, 3, 2)), 2, gen(0))
    with pytest.raises(ShapeError, match="needs 'log_probs_N_K_C'"):
        get_strategy("bald").select(AcquisitionInputs(n=5), 2, gen(0))
