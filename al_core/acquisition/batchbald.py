"""BatchBALD: greedy maximisation of the joint mutual information of a batch.

Kirsch, van Amersfoort & Gal, *BatchBALD: Efficient and Diverse Batch Acquisition for Deep
Bayesian Active Learning*, NeurIPS 2019. With K MC-dropout passes ω_1..ω_K the batch score is

    a(x_1..x_n) = H[y_1..y_n] − Σ_i E_ω H[y_i | ω]

and the batch is built greedily (the score is submodular, so greedy is a (1 − 1/e) approximation).

Implementation (same estimator as the reference ``batchbald_redux.get_batchbald_batch``):

- The joint of the already chosen set S (n variables) is kept as ``joint_M_K`` =
  p(ŷ_m | ω_k) for M configurations ŷ_m of y_S: all C^n of them while C^n ≤ ``num_samples``
  (exact), otherwise ``num_samples`` configurations sampled from the mixture (K·⌊num_samples/K⌋
  of them, ⌊num_samples/K⌋ per pass), each weighted by 1 / (M·q(ŷ_m)), q(ŷ) = E_ω p(ŷ|ω).
- For every candidate x the joint of S ∪ {x} is ``joint_M_K @ probs_K_C(x) / K``; the candidates
  are scored in chunks as ONE matmul ``joint_M_K @ probs_K_(b·C)`` followed by Σ A·log A weighted
  over M (a matrix-vector product). The constants are folded:
  H[S ∪ x] = log K − Σ_m w_m Σ_c A_mc log A_mc with A = joint_M_K @ probs_K_C and
  w_m = 1/K (exact) or 1/(K·M·q_m) (sampled).
- Step 1 is BALD itself (same function as the ``bald`` strategy), so a batch of 1 is BALD's top-1.

Memory beyond the inputs: one K-major copy of the probabilities (N·K·C floats), the joint
(M·K) and one chunk of A (bounded by ``chunk_elems``); never N×M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from al_core.acquisition.bald import bald_scores, check_log_probs, conditional_entropy
from al_core.acquisition.base import (
    MC_LOG_PROBS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    check_k,
    register,
)

if TYPE_CHECKING:
    from al_core.config import AcquisitionParams

#: Elements of the [M, b·C] candidate-joint chunk (4 MiB of float32: stays in the L2/L3 cache).
DEFAULT_CHUNK_ELEMS = 1 << 20
#: Lazy greedy stops once the best gain beats every remaining upper bound by this many nats.
DEFAULT_LAZY_TOL = 1e-3


@dataclass
class JointState:
    """The joint of the chosen set: ``joint_M_K`` = p(ŷ_m | ω_k) / e^{s_m} and the weights ``weights_M``.

    ``weights_M`` is 1/K for exact enumeration and e^{s_m}/(K·M·q_m) for sampled configurations;
    with them H[S ∪ x] = log K − Σ_m w_m Σ_c A_mc (log A_mc + s_m), A = joint_M_K @ probs_K_C(x).
    ``log_scale_M`` (s_m, zero while exact) rescales each sampled configuration's row to a maximum
    of 1: p(ŷ_m | ω) is a product of n probabilities and underflows float32 for large batches,
    while the estimator is invariant to the per-row scale once s_m is added back in the log.
    """

    joint_M_K: torch.Tensor
    weights_M: torch.Tensor
    exact: bool
    log_scale_M: torch.Tensor | None = None

    @staticmethod
    def empty(K: int, dtype: torch.dtype, device: torch.device) -> JointState:
        ones_1_K = torch.ones(1, K, dtype=dtype, device=device)
        return JointState(ones_1_K, torch.full((1,), 1.0 / K, dtype=dtype, device=device), True)

    def entropy(self) -> float:
        """H[y_S] (exact, or the importance-sampled estimate) in nats."""
        q_M = self.joint_M_K.mean(dim=1)
        if self.exact:
            return float(-(q_M * q_M.clamp_min(torch.finfo(q_M.dtype).tiny).log()).sum())
        # the importance weights make it a plain mean of −log q over the sampled configurations
        log_q_M = q_M.clamp_min(torch.finfo(q_M.dtype).tiny).log()
        if self.log_scale_M is not None:
            log_q_M = log_q_M + self.log_scale_M
        return float(-log_q_M.mean())


def exact_joint(log_probs_n_K_C: torch.Tensor) -> JointState:
    """All C^n configurations of n variables: joint_M_K[m, k] = Π_i p(ŷ_m,i | ω_k), M = C^n."""
    n, K, _ = log_probs_n_K_C.shape
    state = JointState.empty(K, log_probs_n_K_C.dtype, log_probs_n_K_C.device)
    for i in range(n):
        state = extend_exact(state, log_probs_n_K_C[i].exp())
    return state


def extend_exact(state: JointState, probs_K_C: torch.Tensor) -> JointState:
    """Add one variable to an exact joint: [M, K] → [M·C, K] (configurations in row-major order)."""
    M, K = state.joint_M_K.shape
    C = probs_K_C.shape[1]
    joint_MC_K = (state.joint_M_K[:, None, :] * probs_K_C.t()[None, :, :]).reshape(M * C, K)
    weights = torch.full((M * C,), 1.0 / K, dtype=joint_MC_K.dtype, device=joint_MC_K.device)
    return JointState(joint_MC_K, weights, True)


def sampled_joint(log_probs_n_K_C: torch.Tensor, num_samples: int, generator: torch.Generator) -> JointState:
    """⌊num_samples/K⌋ configurations per pass ω_k drawn from p(y_S | ω_k), weighted by 1/(K·M·q).

    Kirsch et al. 2019, §3 (importance sampling from the mixture q(ŷ) = E_ω p(ŷ|ω)).
    ``log_probs_n_K_C`` [n, K, C] are the chosen variables.
    """
    n, K, C = log_probs_n_K_C.shape
    S = max(1, num_samples // K)
    probs_nK_C = log_probs_n_K_C.exp().reshape(n * K, C)
    draws = torch.multinomial(probs_nK_C.to(generator.device), S, replacement=True, generator=generator)
    choices_n_KS = draws.to(log_probs_n_K_C.device).reshape(n, K * S)  # configuration m = (k, s)
    log_joint_K_M = torch.zeros(K, K * S, dtype=log_probs_n_K_C.dtype, device=log_probs_n_K_C.device)
    for i in range(n):
        log_joint_K_M += log_probs_n_K_C[i][:, choices_n_KS[i]]
    log_scale_M = log_joint_K_M.max(dim=0).values  # each row's largest log p(ŷ_m | ω_k)
    joint_M_K = (log_joint_K_M - log_scale_M).t().exp().contiguous()
    M = joint_M_K.shape[0]
    log_q_scaled_M = torch.logsumexp(log_joint_K_M - log_scale_M, dim=0) - math.log(K)
    weights_M = torch.exp(-log_q_scaled_M) / (K * M)
    return JointState(joint_M_K, weights_M, False, log_scale_M)


def candidate_joint_entropies(
    state: JointState, probs_K_NC: torch.Tensor, C: int, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> torch.Tensor:
    """H[y_S, y_x] for every candidate x, in nats → [N].

    ``probs_K_NC`` [K, N·C] holds p(y_x = c | ω_k) K-major (column x·C + c). Chunked over the
    pool so the temporary A = joint_M_K @ probs is at most ``chunk_elems`` elements.
    """
    joint_M_K, weights_1_M = state.joint_M_K, state.weights_M[None, :]
    M, K = joint_M_K.shape
    N = probs_K_NC.shape[1] // C
    b = max(1, chunk_elems // (M * C))
    out_N = torch.empty(N, dtype=probs_K_NC.dtype, device=probs_K_NC.device)
    tiny = torch.finfo(probs_K_NC.dtype).tiny
    log_K = math.log(K)
    scaled_1_M = None if state.log_scale_M is None else (state.weights_M * state.log_scale_M)[None, :]
    for s in range(0, N, b):
        e = min(N, s + b)
        A_M_bC = joint_M_K @ probs_K_NC[:, s * C : e * C]
        total_1_bC = weights_1_M @ A_M_bC.clamp_min(tiny).log().mul_(A_M_bC)
        if scaled_1_M is not None:  # + Σ_m w_m s_m A_mc: the rows' scales back in the log
            total_1_bC += scaled_1_M @ A_M_bC
        out_N[s:e] = log_K - total_1_bC.view(e - s, C).sum(dim=1)
    return out_N


def batchbald(
    log_probs_N_K_C: torch.Tensor,
    k: int,
    generator: torch.Generator,
    num_samples: int = 10_000,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    lazy: bool = True,
    lazy_tol: float = DEFAULT_LAZY_TOL,
) -> Acquisition:
    """Greedy BatchBALD batch of ``min(k, N)`` pool indices (Kirsch et al. 2019, Algorithm 1).

    Args:
        log_probs_N_K_C: [N, K, C] log-probabilities of K MC-dropout passes over the pool.
        k: batch size.
        generator: draws the sampled configurations once C^n > ``num_samples`` (unused while exact).
        num_samples: joint configurations kept once exact enumeration would exceed it.
        chunk_elems: bound on the [M, b·C] temporary of one chunk of candidates.
        lazy: lazy greedy (Minoux 1978). The marginal gain Δ_n(x) = a(S_n ∪ x) − a(S_n) is
            non-increasing in n (a is submodular, Kirsch et al. 2019 §3.1), so the last evaluated
            gain of a candidate bounds its current one. Candidates are evaluated in order of that
            bound, in chunks, until the best gain found beats every remaining bound by
            ``lazy_tol`` nats. While the joint is exact this returns the same batch as the full
            evaluation (``lazy=False``; ``lazy_tol`` covers float32 rounding). Once it is sampled
            the gain estimates are noisy and only approximately submodular, so a pick can differ
            from a full evaluation of the same noisy estimates.
        lazy_tol: safety margin of the lazy stopping rule, in nats.

    Returns:
        :class:`Acquisition` with the indices in pick order and ``scores`` [B] the batch's joint
        mutual information after each pick (as in ``batchbald_redux``; non-decreasing while exact).
    """
    check_log_probs(log_probs_N_K_C)
    check_k(k)
    N, K, C = log_probs_N_K_C.shape
    k = min(k, N)
    device = log_probs_N_K_C.device
    if k == 0:
        return Acquisition(torch.empty(0, dtype=torch.long, device=device), torch.empty(0, device=device))
    lp_N_K_C = log_probs_N_K_C.float()
    cond_N = conditional_entropy(lp_N_K_C)
    # Step 1: the joint of one variable is its predictive distribution: plain BALD.
    gain_N = bald_scores(lp_N_K_C)  # latest evaluated gain Δ(x): an upper bound of the current one
    first = int(torch.argmax(gain_N))
    chosen = [first]
    scores = [float(gain_N[first])]
    if k == 1:
        return Acquisition(torch.tensor(chosen, device=device), torch.tensor(scores, device=device))
    probs_K_N_C = lp_N_K_C.exp().permute(1, 0, 2).contiguous()
    taken_N = torch.zeros(N, dtype=torch.bool, device=device)
    taken_N[first] = True
    state = _add_pick(JointState.empty(K, lp_N_K_C.dtype, device), lp_N_K_C, chosen, num_samples, generator)
    chosen_cond = float(cond_N[first])
    while len(chosen) < k:
        H_S = state.entropy()
        M = state.joint_M_K.shape[0]
        step = max(1, chunk_elems // (M * C))
        if lazy:
            bound_N = gain_N.masked_fill(taken_N, -math.inf)
            order = torch.sort(bound_N, descending=True, stable=True).indices[: N - len(chosen)]
            bound_sorted = bound_N[order]
        else:
            order = (~taken_N).nonzero().squeeze(1)
        best_gain, best = -math.inf, -1
        for s in range(0, order.shape[0], step):
            idx = order[s : s + step]
            probs_K_bC = probs_K_N_C[:, idx].reshape(K, -1)
            gain_b = candidate_joint_entropies(state, probs_K_bC, C, chunk_elems) - H_S - cond_N[idx]
            gain_N[idx] = gain_b
            top = float(gain_b.max())
            cand = int(idx[gain_b == top].min())  # ties: the lower pool index, as a full argmax
            if top > best_gain or (top == best_gain and cand < best):
                best_gain, best = top, cand
            nxt = s + step
            if lazy and nxt < order.shape[0] and best_gain - float(bound_sorted[nxt]) >= lazy_tol:
                break
        chosen.append(best)
        chosen_cond += float(cond_N[best])
        # a(S ∪ x) = H[S ∪ x] − Σ_{i ∈ S ∪ x} E_ω H[y_i | ω]
        scores.append(best_gain + H_S + float(cond_N[best]) - chosen_cond)
        taken_N[best] = True
        if len(chosen) < k:
            state = _add_pick(state, lp_N_K_C, chosen, num_samples, generator)
    return Acquisition(
        indices=torch.tensor(chosen, dtype=torch.long, device=device),
        scores=torch.tensor(scores, dtype=torch.float32, device=device),
    )


def _add_pick(
    state: JointState, lp_N_K_C: torch.Tensor, chosen: list[int], num_samples: int, generator: torch.Generator
) -> JointState:
    """The joint after ``chosen[-1]`` joined: exact while C^n ≤ num_samples, else freshly sampled."""
    C = lp_N_K_C.shape[2]
    if state.exact and C ** len(chosen) <= num_samples:
        return extend_exact(state, lp_N_K_C[chosen[-1]].exp())
    return sampled_joint(lp_N_K_C[chosen], num_samples, generator)


@register
class BatchBaldStrategy(Strategy):
    """BatchBALD (Kirsch et al. 2019): greedy joint mutual information over MC-dropout samples."""

    name = "batchbald"
    needs = frozenset({MC_LOG_PROBS})

    def __init__(self, num_samples: int = 10_000, chunk_elems: int = DEFAULT_CHUNK_ELEMS, lazy: bool = True):
        self.num_samples = num_samples
        self.chunk_elems = chunk_elems
        self.lazy = lazy

    @classmethod
    def from_params(cls, params: AcquisitionParams | None = None) -> BatchBaldStrategy:
        return cls() if params is None else cls(num_samples=params.batchbald_samples)

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        log_probs_N_K_C = inputs.require("log_probs_N_K_C")
        check_log_probs(log_probs_N_K_C, inputs.n)
        return batchbald(log_probs_N_K_C, k, generator, self.num_samples, self.chunk_elems, self.lazy)
