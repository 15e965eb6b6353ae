"""CEAL: cost-effective active learning, a wrapper adding pseudo-labels to any strategy.

Wang, Zhang, Li, Zhang & Lin, *Cost-Effective Active Learning for Deep Image Classification*,
IEEE TCSVT 2016. Each round the wrapped strategy picks the samples to label (the human queries),
and the pool samples the model is very sure about — predictive entropy below a threshold δ_t —
are trained on with their predicted label. The threshold shrinks with the round t:

    δ_t = δ_0 − dr·t     (no pseudo-label once δ_t ≤ 0)

Usable by name as ``ceal+NAME`` (``ceal+entropy``, ``ceal+badge``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from al_core.acquisition.base import (
    PROBS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    check_shape,
    register_wrapper,
)
from al_core.acquisition.uncertainty import entropy_scores

if TYPE_CHECKING:
    from al_core.config import AcquisitionParams


def ceal_threshold(delta0: float, decay: float, round_idx: int) -> float:
    """δ_t = δ_0 − dr·t (Wang et al. 2016, Eq. 7 and §III-C); may be ≤ 0 (then nothing is pseudo-labeled)."""
    if round_idx < 0:
        raise ValueError(f"round_idx must be ≥ 0, got {round_idx}")
    return delta0 - decay * round_idx


def ceal_pseudo_labels(
    probs_N_C: torch.Tensor, delta0: float, decay: float, round_idx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """High-confidence pool samples and their predicted labels (Wang et al. 2016).

    Args:
        probs_N_C: [N, C] predictive probabilities of the pool.
        delta0, decay: the threshold schedule δ_t = delta0 − decay·round_idx (entropy in nats).
        round_idx: t, the active-learning round (0 for the first).

    Returns:
        ``(indices [P], labels [P])``, both long, indices ascending: every sample with entropy
        < δ_t, labeled argmax_c p(c|x). Empty when δ_t ≤ 0.
    """
    check_shape("probs_N_C", probs_N_C, 2, "N,C")
    delta = ceal_threshold(delta0, decay, round_idx)
    if delta <= 0 or probs_N_C.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.long, device=probs_N_C.device)
        return empty, empty.clone()
    sure_N = entropy_scores(probs_N_C) < delta
    indices_P = sure_N.nonzero().squeeze(1)
    return indices_P, probs_N_C[indices_P].argmax(dim=1)


class CealStrategy(Strategy):
    """Wraps a base strategy: its picks are the queries, plus CEAL pseudo-labels (Wang et al. 2016)."""

    pseudo_labelling = True

    def __init__(self, base: Strategy, delta0: float = 0.05, decay: float = 0.0033):
        self.base = base
        self.delta0 = delta0
        self.decay = decay
        self.name = f"ceal+{base.name}"  # type: ignore[misc]  # per instance: the wrapped name
        self.needs = frozenset(base.needs | {PROBS})  # type: ignore[misc]
        self.is_top_k = base.is_top_k  # type: ignore[misc]

    @classmethod
    def wrap(cls, base: Strategy, params: AcquisitionParams | None = None) -> CealStrategy:
        if params is None:
            return cls(base)
        return cls(base, delta0=params.ceal.delta0, decay=params.ceal.decay)

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        return self.base.select(inputs, k, generator)

    def topk_scores(self, inputs: AcquisitionInputs) -> torch.Tensor | None:
        return self.base.topk_scores(inputs)

    def pseudo_labels(self, probs_N_C: torch.Tensor, round_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pool indices, predicted labels)`` with entropy < δ_t; see :func:`ceal_pseudo_labels`.

        The caller drops any index it also queries this round (human labels win).
        """
        return ceal_pseudo_labels(probs_N_C, self.delta0, self.decay, round_idx)

    def __repr__(self) -> str:
        return f"CealStrategy(base={self.base!r}, delta0={self.delta0}, decay={self.decay})"


register_wrapper("ceal", CealStrategy.wrap)
