"""Uncertainty sampling on predictive probabilities (Settles, *Active Learning Literature Survey*, 2010).

Every score is "higher = more informative", so selection is a top-k.
"""

from __future__ import annotations

import torch

from al_core.acquisition.base import (
    PROBS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    check_k,
    check_shape,
    register,
    top_k,
)

_TINY = torch.finfo(torch.float32).tiny


def least_confidence_scores(probs_N_C: torch.Tensor) -> torch.Tensor:
    """1 − max_c p(c|x) for probs [N, C] → [N] (Settles 2010, §3.1)."""
    check_shape("probs_N_C", probs_N_C, 2, "N,C")
    return 1.0 - probs_N_C.max(dim=1).values


def margin_scores(probs_N_C: torch.Tensor) -> torch.Tensor:
    """1 − (p₁ − p₂), the best-vs-second-best margin turned into a score, probs [N, C] → [N] (Settles 2010)."""
    check_shape("probs_N_C", probs_N_C, 2, "N,C")
    if probs_N_C.shape[1] < 2:
        return torch.zeros(probs_N_C.shape[0], dtype=probs_N_C.dtype, device=probs_N_C.device)
    top2 = probs_N_C.topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def entropy_scores(probs_N_C: torch.Tensor) -> torch.Tensor:
    """Predictive entropy −Σ_c p log p in nats, probs [N, C] → [N] (Settles 2010; Shannon 1948)."""
    check_shape("probs_N_C", probs_N_C, 2, "N,C")
    p = probs_N_C.clamp_min(0)
    return -(p * p.clamp_min(_TINY).log()).sum(dim=1)


@register
class RandomStrategy(Strategy):
    """Uniform random sampling: the baseline every strategy must beat."""

    name = "random"
    needs = frozenset()

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        check_k(k)
        k = min(k, inputs.n)
        perm = torch.randperm(inputs.n, generator=generator)[:k]
        return Acquisition(indices=perm, scores=torch.zeros(k))


class _ProbsStrategy(Strategy):
    needs = frozenset({PROBS})
    is_top_k = True

    @staticmethod
    def score(probs_N_C: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def topk_scores(self, inputs: AcquisitionInputs) -> torch.Tensor:
        return self.score(inputs.require("probs_N_C"))

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        return top_k(self.topk_scores(inputs), k)


@register
class LeastConfidenceStrategy(_ProbsStrategy):
    """Least-confidence sampling (Settles 2010)."""

    name = "least_confidence"
    score = staticmethod(least_confidence_scores)


@register
class MarginStrategy(_ProbsStrategy):
    """Margin sampling (Scheffer et al. 2001; Settles 2010)."""

    name = "margin"
    score = staticmethod(margin_scores)


@register
class EntropyStrategy(_ProbsStrategy):
    """Max-entropy sampling (Settles 2010)."""

    name = "entropy"
    score = staticmethod(entropy_scores)
