"""Bayesian uncertainty from MC-dropout samples: BALD, variation ratio, mean standard deviation.

All three read log-probabilities ``log_probs_N_K_C`` of K stochastic forward passes (MC dropout,
Gal & Ghahramani 2016) and score every pool sample "higher = more informative":

- BALD (Houlsby et al., *Bayesian Active Learning for Classification and Preference Learning*,
  2011; Gal, Islam & Ghahramani, *Deep Bayesian Active Learning with Image Data*, ICML 2017):
  the mutual information I[y; ω | x] = H[E_ω p(y|x,ω)] − E_ω H[p(y|x,ω)].
- Variation ratio (Freeman 1965; Gal et al. 2017): 1 − f_mode / K, where f_mode counts the passes
  that vote for the modal class.
- Mean standard deviation (Kampffmeyer et al. 2016; Gal et al. 2017): the standard deviation of
  p(y=c|x,ω) over the passes, averaged over the classes.

The pool is processed in chunks of ``chunk_size`` rows, so extra memory is O(chunk·K·C).
"""

from __future__ import annotations

import math

import torch

from al_core.acquisition.base import (
    MC_LOG_PROBS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    check_shape,
    register,
    top_k,
)
from al_core.errors import ShapeError

#: Rows of the pool processed at once (bounds the temporaries to chunk·K·C floats).
DEFAULT_CHUNK = 4096

_MIN_LOG = torch.finfo(torch.float32).min


def check_log_probs(log_probs_N_K_C: torch.Tensor, n: int | None = None) -> None:
    """Raise :class:`ShapeError` unless ``log_probs_N_K_C`` is [N, K, C] (with N == ``n`` when given)."""
    check_shape("log_probs_N_K_C", log_probs_N_K_C, 3, "N,K,C")
    if n is not None and log_probs_N_K_C.shape[0] != n:
        raise ShapeError(f"log_probs_N_K_C must have N = {n} rows (the pool), got shape {tuple(log_probs_N_K_C.shape)}")
    if log_probs_N_K_C.shape[0] > 0 and (log_probs_N_K_C.shape[1] == 0 or log_probs_N_K_C.shape[2] == 0):
        raise ShapeError(f"log_probs_N_K_C needs K ≥ 1 and C ≥ 1, got shape {tuple(log_probs_N_K_C.shape)}")


def _chunks(n: int, chunk_size: int) -> range:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    return range(0, n, chunk_size)


def conditional_entropy(log_probs_N_K_C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """E_ω H[p(y|x,ω)] in nats, log_probs [N, K, C] → [N] (the aleatoric part of BALD)."""
    check_log_probs(log_probs_N_K_C)
    N, K, _ = log_probs_N_K_C.shape
    out_N = torch.empty(N, dtype=log_probs_N_K_C.dtype, device=log_probs_N_K_C.device)
    for s in _chunks(N, chunk_size):
        lp_b_K_C = log_probs_N_K_C[s : s + chunk_size]
        out_N[s : s + chunk_size] = -(lp_b_K_C.exp() * lp_b_K_C.clamp_min(_MIN_LOG)).sum(dim=(1, 2)) / K
    return out_N


def mean_log_probs(log_probs_N_K_C: torch.Tensor) -> torch.Tensor:
    """log E_ω p(y|x,ω), log_probs [N, K, C] → [N, C] (log-sum-exp, no underflow)."""
    return torch.logsumexp(log_probs_N_K_C, dim=1) - math.log(log_probs_N_K_C.shape[1])


def predictive_entropy(log_probs_N_K_C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """H[E_ω p(y|x,ω)] in nats, log_probs [N, K, C] → [N]."""
    check_log_probs(log_probs_N_K_C)
    N = log_probs_N_K_C.shape[0]
    out_N = torch.empty(N, dtype=log_probs_N_K_C.dtype, device=log_probs_N_K_C.device)
    for s in _chunks(N, chunk_size):
        mlp_b_C = mean_log_probs(log_probs_N_K_C[s : s + chunk_size])
        out_N[s : s + chunk_size] = -(mlp_b_C.exp() * mlp_b_C.clamp_min(_MIN_LOG)).sum(dim=1)
    return out_N


def bald_scores(log_probs_N_K_C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """BALD mutual information I[y; ω | x] in nats, log_probs [N, K, C] → [N] (Houlsby et al. 2011).

    Computed as E_ω KL(p(y|x,ω) ‖ E_ω' p(y|x,ω')), which equals H[E p] − E H[p] but sums
    non-negative terms instead of subtracting two entropies, so it is exact 0 (up to rounding)
    for uniform or identical passes and never meaningfully negative.
    """
    check_log_probs(log_probs_N_K_C)
    N, K, _ = log_probs_N_K_C.shape
    out_N = torch.empty(N, dtype=log_probs_N_K_C.dtype, device=log_probs_N_K_C.device)
    for s in _chunks(N, chunk_size):
        lp_b_K_C = log_probs_N_K_C[s : s + chunk_size]
        mlp_b_1_C = mean_log_probs(lp_b_K_C).unsqueeze(1)
        # p·(log p − log p̄); where p = 0 the term is 0 (clamp keeps -inf − -inf out of it).
        diff_b_K_C = lp_b_K_C.clamp_min(_MIN_LOG) - mlp_b_1_C.clamp_min(_MIN_LOG)
        out_N[s : s + chunk_size] = (lp_b_K_C.exp() * diff_b_K_C).sum(dim=(1, 2)) / K
    return out_N.clamp_min_(0.0)


def variation_ratio_scores(log_probs_N_K_C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Variation ratio 1 − f_mode/K, log_probs [N, K, C] → [N] (Freeman 1965; Gal et al. 2017).

    f_mode is how many of the K passes predict the modal class (argmax ties go to the lower class).
    """
    check_log_probs(log_probs_N_K_C)
    N, K, C = log_probs_N_K_C.shape
    out_N = torch.empty(N, dtype=log_probs_N_K_C.dtype, device=log_probs_N_K_C.device)
    for s in _chunks(N, chunk_size):
        votes_b_K = log_probs_N_K_C[s : s + chunk_size].argmax(dim=2)
        counts_b_C = torch.zeros(votes_b_K.shape[0], C, dtype=torch.int64, device=votes_b_K.device)
        counts_b_C.scatter_add_(1, votes_b_K, torch.ones_like(votes_b_K))
        out_N[s : s + chunk_size] = 1.0 - counts_b_C.max(dim=1).values.to(out_N.dtype) / K
    return out_N


def mean_std_scores(log_probs_N_K_C: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Mean over classes of the (population) std over passes of p(y=c|x,ω), [N, K, C] → [N].

    Kampffmeyer et al. 2016, as used by Gal et al. 2017.
    """
    check_log_probs(log_probs_N_K_C)
    N = log_probs_N_K_C.shape[0]
    out_N = torch.empty(N, dtype=log_probs_N_K_C.dtype, device=log_probs_N_K_C.device)
    for s in _chunks(N, chunk_size):
        p_b_K_C = log_probs_N_K_C[s : s + chunk_size].exp()
        out_N[s : s + chunk_size] = p_b_K_C.std(dim=1, correction=0).mean(dim=1)
    return out_N


class _MCStrategy(Strategy):
    needs = frozenset({MC_LOG_PROBS})
    is_top_k = True

    @staticmethod
    def score(log_probs_N_K_C: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def topk_scores(self, inputs: AcquisitionInputs) -> torch.Tensor:
        log_probs_N_K_C = inputs.require("log_probs_N_K_C")
        check_log_probs(log_probs_N_K_C, inputs.n)
        return self.score(log_probs_N_K_C)

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        return top_k(self.topk_scores(inputs), k)


@register
class BaldStrategy(_MCStrategy):
    """BALD (Houlsby et al. 2011; Gal et al. 2017): top-k mutual information."""

    name = "bald"
    score = staticmethod(bald_scores)


@register
class VariationRatioStrategy(_MCStrategy):
    """Variation ratio over MC-dropout votes (Gal et al. 2017)."""

    name = "variation_ratio"
    score = staticmethod(variation_ratio_scores)


@register
class MeanStdStrategy(_MCStrategy):
    """Mean standard deviation of MC-dropout probabilities (Kampffmeyer et al. 2016)."""

    name = "mean_std"
    score = staticmethod(mean_std_scores)
