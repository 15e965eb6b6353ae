"""BatchBALD (Kirsch et al. 2019): joint entropies, greedy picks, lazy = full, chunking, sampling."""

from __future__ import annotations

import itertools
import math

import torch
from _acq_helpers import gen, mc_log_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.acquisition.bald import bald_scores, conditional_entropy
from al_core.acquisition.batchbald import (
    batchbald,
    candidate_joint_entropies,
    exact_joint,
    sampled_joint,
)
from al_core.config import AcquisitionParams

FAST = settings(max_examples=12, deadline=None)
small = st.tuples(st.integers(1, 30), st.integers(1, 6), st.integers(2, 4), st.integers(0, 2**16))


def brute_joint_entropy(lp_n_K_C: torch.Tensor) -> float:
    """H[y_1..y_n] = −Σ_ŷ p̄(ŷ) log p̄(ŷ), p̄(ŷ) = mean_k Π_i p(ŷ_i|ω_k), enumerated in float64."""
    n, K, C = lp_n_K_C.shape
    p = lp_n_K_C.double().exp()
    h = 0.0
    for y in itertools.product(range(C), repeat=n):
        q = torch.ones(K, dtype=torch.float64)
        for i, c in enumerate(y):
            q = q * p[i, :, c]
        m = float(q.mean())
        h -= m * math.log(m) if m > 0 else 0.0
    return h


def probs_K_NC(lp):
    N, K, C = lp.shape
    return lp.exp().permute(1, 0, 2).reshape(K, N * C)


@FAST
@given(small)
def test_batch_of_one_is_bald_top_1(d):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    a = batchbald(lp, 1, gen(0))
    assert a.indices.tolist() == [int(torch.argmax(bald_scores(lp)))]
    assert a.scores[0].item() == bald_scores(lp).max().item()


@FAST
@given(st.integers(1, 3), st.integers(2, 6), st.integers(2, 3), st.integers(0, 2**16))
def test_exact_joint_entropies_match_enumeration(n, K, C, seed):
    lp = mc_log_probs(seed, n + 4, K, C)
    state = exact_joint(lp[:n])
    assert abs(state.entropy() - brute_joint_entropy(lp[:n])) < 1e-4
    H = candidate_joint_entropies(state, probs_K_NC(lp[n:]), C)
    for j in range(4):
        assert abs(float(H[j]) - brute_joint_entropy(torch.cat([lp[:n], lp[n + j : n + j + 1]]))) < 1e-4


def test_sampled_joint_entropy_is_close_to_exact():
    lp = mc_log_probs(3, 12, 10, 3)
    exact = exact_joint(lp[:4])  # 81 configurations
    sampled = sampled_joint(lp[:4], 20_000, gen(1))
    assert abs(sampled.entropy() - exact.entropy()) < 0.03
    H_exact = candidate_joint_entropies(exact, probs_K_NC(lp[4:]), 3)
    H_sampled = candidate_joint_entropies(sampled, probs_K_NC(lp[4:]), 3)
    torch.testing.assert_close(H_sampled, H_exact, atol=0.04, rtol=0)


@FAST
@given(small, st.integers(1, 8), st.integers(1, 5000))
def test_lazy_and_chunked_give_the_full_greedy_picks_while_exact(d, k, chunk):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    full = batchbald(lp, k, gen(0), num_samples=10**9, lazy=False)
    lazy = batchbald(lp, k, gen(0), num_samples=10**9, lazy=True, chunk_elems=chunk)
    assert lazy.indices.tolist() == full.indices.tolist()
    torch.testing.assert_close(lazy.scores, full.scores, atol=1e-4, rtol=0)
    # the exact joint MI is non-decreasing along the batch
    assert (full.scores[1:] >= full.scores[:-1] - 1e-4).all()


@FAST
@given(small, st.integers(0, 12))
def test_greedy_score_is_the_joint_mutual_information(d, k):
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    a = batchbald(lp, k, gen(0), num_samples=10**9)
    assert a.indices.shape == (min(k, N),) and len(set(a.indices.tolist())) == min(k, N)
    if 1 <= min(k, N) <= 3 and C**k <= 64:
        chosen = lp[a.indices]
        mi = brute_joint_entropy(chosen) - float(conditional_entropy(chosen).double().sum())
        assert abs(a.scores[-1].item() - mi) < 1e-4


@FAST
@given(small, st.integers(1, 6))
def test_permuting_the_pool_permutes_the_picks(d, k):
    N, K, C, seed = d
    K = max(K, 2)  # K = 1 makes every score 0: ties go to the lower index, which permuting moves
    lp = mc_log_probs(seed, N, K, C)
    perm = torch.randperm(N, generator=gen(seed))
    a = batchbald(lp, k, gen(0), num_samples=10**9)
    b = batchbald(lp[perm], k, gen(0), num_samples=10**9)
    assert perm[b.indices].tolist() == a.indices.tolist()


def test_sampled_regime_same_seed_same_picks_and_valid_indices():
    lp = mc_log_probs(5, 60, 8, 4)
    a = batchbald(lp, 7, gen(11), num_samples=40)  # 4^3 > 40: sampled from the 3rd pick on
    b = batchbald(lp, 7, gen(11), num_samples=40)
    assert a.indices.tolist() == b.indices.tolist() and torch.equal(a.scores, b.scores)
    assert len(set(a.indices.tolist())) == 7 and int(a.indices.max()) < 60
    full = batchbald(lp, 7, gen(11), num_samples=40, lazy=False)
    assert full.indices[:3].tolist() == a.indices[:3].tolist()  # exact part


def test_strategy_reads_num_samples_from_params_and_handles_k_larger_than_pool():
    s = get_strategy("batchbald", AcquisitionParams(batchbald_samples=123))
    assert s.num_samples == 123
    lp = mc_log_probs(0, 5, 4, 3)
    a = s.select(AcquisitionInputs(n=5, log_probs_N_K_C=lp), 50, gen(0))
    assert sorted(a.indices.tolist()) == [0, 1, 2, 3, 4]
    assert s.select(AcquisitionInputs(n=5, log_probs_N_K_C=lp), 0, gen(0)).indices.shape == (0,)


def test_large_batches_do_not_underflow_the_sampled_joint():
    """p(ŷ_1..n | ω) is a product of n probabilities: float32 underflows near n ≈ 40 for C = 10.
    The per-configuration rescaling keeps every gain finite and the picks valid for big batches."""
    lp = mc_log_probs(10, 300, 8, 10)
    sampled = sampled_joint(lp[:120], 400, gen(0))
    assert torch.isfinite(torch.tensor(sampled.entropy()))
    H = candidate_joint_entropies(sampled, probs_K_NC(lp[120:140]), 10)
    assert torch.isfinite(H).all()
    acq = batchbald(lp, 150, gen(2), num_samples=400)
    assert len(set(acq.indices.tolist())) == 150 and torch.isfinite(acq.scores).all()
