"""BatchBALD (Kirsch et al. 2019): joint entropies, greedy picks, lazy = full, chunking, sampling,
the Jensen bound of clustered configurations, and the picks of batchbald-redux 2.0.5."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _acq_helpers import gen, mc_log_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.acquisition.bald import bald_scores, conditional_entropy
from al_core.acquisition.batchbald import (
    _unique_configurations,
    batchbald,
    candidate_joint_entropies,
    cluster_posteriors,
    exact_joint,
    expected_entropies,
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
    assert full.indices.tolist() == a.indices.tolist()  # the bounds hold for the sampled estimate too


@FAST
@given(st.integers(40, 400), st.integers(2, 12), st.integers(2, 10), st.integers(0, 2**16), st.integers(50, 3000))
def test_pruned_search_gives_the_full_greedy_picks_in_the_sampled_regime(N, K, C, seed, num_samples):
    lp = mc_log_probs(seed, N, K, C)
    lazy = batchbald(lp, 6, gen(seed), num_samples=num_samples)
    full = batchbald(lp, 6, gen(seed), num_samples=num_samples, lazy=False)
    assert lazy.indices.tolist() == full.indices.tolist()
    torch.testing.assert_close(lazy.scores, full.scores, atol=1e-4, rtol=0)


@FAST
@given(st.integers(1, 4), st.integers(2, 12), st.integers(2, 6), st.integers(0, 2**16), st.integers(1, 64))
def test_jensen_bound_of_clustered_configurations_bounds_every_candidate(n, K, C, seed, groups):
    """Σ_g B_g H[π̄_g P] ≥ Σ_m β_m H[π_m P] (H concave), for the exact and the sampled joint."""
    lp = mc_log_probs(seed, n + 30, K, C)
    P = probs_K_NC(lp[n:])
    for state in (exact_joint(lp[:n]), sampled_joint(lp[:n], 500, gen(seed))):
        centres, mass = cluster_posteriors(state.posterior_M_K, state.weights_M, groups)
        assert centres.shape[0] <= groups and abs(float(mass.sum()) - 1) < 1e-5
        torch.testing.assert_close(centres.sum(dim=1), torch.ones(centres.shape[0]))
        exact = expected_entropies(state.posterior_M_K, state.weights_M, P, C)
        bound = expected_entropies(centres, mass, P, C)
        assert (bound >= exact - 1e-5).all()
        # one cluster: the bound is the predictive entropy of the posterior mixture
        one_c, one_m = cluster_posteriors(state.posterior_M_K, state.weights_M, 1)
        mix = (state.weights_M[:, None] * state.posterior_M_K).sum(dim=0, keepdim=True)
        torch.testing.assert_close(one_c, mix, atol=1e-6, rtol=0)
        assert one_m.shape == (1,) and abs(float(one_m) - 1) < 1e-5


def test_sampled_duplicates_are_merged_with_their_counts():
    lp = mc_log_probs(2, 10, 6, 3)
    state = sampled_joint(lp[:3], 3000, gen(4))  # 27 possible configurations, 3000 draws
    assert state.posterior_M_K.shape[0] <= 27
    assert abs(float(state.weights_M.sum()) - 1) < 1e-6
    # the merged estimate equals the reference's estimate over all draws, duplicates included
    draws = torch.multinomial(lp[:3].exp().reshape(-1, 3), 3000 // 6, replacement=True, generator=gen(4))
    choices = draws.reshape(3, -1)
    joint_D_K = lp[:3].double().exp()[torch.arange(3)[:, None], :, choices].prod(dim=0)  # [D, K]
    q_D = joint_D_K.mean(dim=1)
    assert abs(state.entropy() - float(-q_D.log().mean())) < 1e-5
    P = lp[3:].double().exp()  # [N, K, C]
    A = torch.einsum("dk,nkc->ndc", joint_D_K, P) / 6
    ref = -(A * A.log() / q_D[None, :, None]).sum(dim=(1, 2)) / A.shape[1]
    torch.testing.assert_close(candidate_joint_entropies(state, probs_K_NC(lp[3:]), 3).double(), ref, atol=1e-5, rtol=0)


def test_unique_configurations_int_keys_and_column_fallback_agree():
    choices = torch.randint(0, 3, (5, 400), generator=gen(0))
    configs, counts = _unique_configurations(choices, 3)
    ref_configs, ref_counts = torch.unique(choices, dim=1, return_counts=True)
    as_dict = lambda cf, ct: dict(zip(map(tuple, cf.t().tolist()), ct.tolist(), strict=True))  # noqa: E731
    assert as_dict(configs, counts) == as_dict(ref_configs, ref_counts)  # same columns, any order
    wide = torch.randint(0, 10, (25, 50), generator=gen(1))  # 10^25 > 2^62: no int64 key
    configs, counts = _unique_configurations(wide, 10)
    assert int(counts.sum()) == 50 and configs.shape[0] == 25


@FAST
@given(small, st.integers(2, 8))
def test_gains_do_not_increase_and_indices_are_unique(d, k):
    """While exact, each pick's gain a(S_n) − a(S_{n−1}) is at most the previous one's: the greedy
    took the best gain and gains only shrink as S grows (submodularity)."""
    N, K, C, seed = d
    lp = mc_log_probs(seed, N, K, C)
    a = batchbald(lp, k, gen(0), num_samples=10**9)
    assert len(set(a.indices.tolist())) == a.indices.shape[0] == min(k, N)
    assert a.indices.tolist()[0] == int(torch.argmax(bald_scores(lp)))
    gains = torch.diff(a.scores, prepend=torch.zeros(1))
    assert (gains[1:] <= gains[:-1] + 1e-4).all()


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


redux = pytest.importorskip("batchbald_redux.batchbald")


def _redux_batch(lp: torch.Tensor, k: int, num_samples: int, seed: int):
    with torch.random.fork_rng():  # the reference samples with the global RNG; keep it out of ours
        torch.manual_seed(seed)
        return redux.get_batchbald_batch(lp, k, num_samples)


@pytest.mark.parametrize(
    ("seed", "N", "K", "C", "B", "num_samples"),
    [(0, 200, 10, 4, 8, 50), (1, 150, 20, 10, 6, 200), (2, 300, 8, 3, 10, 30), (3, 100, 16, 5, 7, 100)],
)
@pytest.mark.parametrize("lazy", [True, False])
def test_same_picks_as_batchbald_redux_in_the_sampled_regime(seed, N, K, C, B, num_samples, lazy):
    """A generator seeded like the reference's global RNG draws the same configurations, so every
    pick matches, the sampled ones included (the exact ones are also in test_crosscheck_references)."""
    lp = mc_log_probs(seed, N, K, C)
    ref = _redux_batch(lp, B, num_samples, seed)
    ours = batchbald(lp, B, gen(seed), num_samples=num_samples, lazy=lazy)
    assert C**2 <= num_samples < C ** (B - 1)  # exact first, sampled later
    assert ours.indices.tolist() == ref.indices
    torch.testing.assert_close(ours.scores.double(), torch.tensor(ref.scores).double(), atol=2e-4, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_same_picks_as_batchbald_redux_while_exact(seed):
    lp = mc_log_probs(seed, 120, 12, 3)
    ref = _redux_batch(lp, 6, 3**5, seed)
    ours = batchbald(lp, 6, gen(seed), num_samples=3**5)
    assert ours.indices.tolist() == ref.indices
    torch.testing.assert_close(ours.scores.double(), torch.tensor(ref.scores).double(), atol=1e-4, rtol=0)
