"""BADGE: k-means++ seeding on gradient embeddings.

Ash, Zhang, Krishnamurthy, Langford & Agarwal, *Deep Batch Active Learning by Diverse, Uncertain
Gradient Lower Bounds*, ICLR 2020. The gradient of the cross-entropy loss at the pseudo-label
ŷ = argmax_c p(c|x) with respect to the last layer's weights is

    g(x) = (p(x) − e_ŷ) ⊗ h(x)        (C·d values; h = penultimate embedding)

and the batch is the k-means++ seeding (Arthur & Vassilvitskii 2007) of {g(x)}: the first center
is the largest ‖g‖ (as in the authors' code and scikit-activeml), every next one is drawn with
probability ∝ D²(x), the squared distance to the nearest chosen center.

The [N, C·d] matrix is never built. With u = p − e_ŷ:

    ‖g_i‖² = ‖u_i‖²·‖h_i‖²,   ⟨g_i, g_j⟩ = ⟨u_i, u_j⟩·⟨h_i, h_j⟩,
    ‖g_i − g_j‖² = ‖g_i‖² + ‖g_j‖² − 2⟨u_i, u_j⟩⟨h_i, h_j⟩,

so each new center costs two matrix-vector products over the pool (O(N·(C + d))), in chunks, and
the only state is the running minimum D² [N]. Extra memory: a few [N] vectors and u [N, C].
"""

from __future__ import annotations

import torch

from al_core.acquisition.base import (
    EMBEDDINGS,
    PROBS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    check_k,
    check_shape,
    register,
)
from al_core.errors import ShapeError

#: Pool rows per chunk of the distance update.
DEFAULT_CHUNK = 16384


def check_badge_inputs(probs_N_C: torch.Tensor, embeddings_N_D: torch.Tensor, n: int | None = None) -> None:
    """Raise :class:`ShapeError` unless probs are [N, C] and embeddings [N, D] with one N."""
    check_shape("probs_N_C", probs_N_C, 2, "N,C")
    check_shape("embeddings_N_D", embeddings_N_D, 2, "N,D")
    if embeddings_N_D.shape[0] != probs_N_C.shape[0]:
        raise ShapeError(
            f"embeddings_N_D must have N = {probs_N_C.shape[0]} rows like probs_N_C, got {tuple(embeddings_N_D.shape)}"
        )
    if n is not None and probs_N_C.shape[0] != n:
        raise ShapeError(f"probs_N_C must have N = {n} rows (the pool), got shape {tuple(probs_N_C.shape)}")


def gradient_factors(probs_N_C: torch.Tensor) -> torch.Tensor:
    """u = p − e_ŷ with ŷ = argmax p (ties: the lower class), probs [N, C] → [N, C]."""
    check_shape("probs_N_C", probs_N_C, 2, "N,C")
    u_N_C = probs_N_C.float().clone()
    y_hat_N = probs_N_C.argmax(dim=1)
    u_N_C[torch.arange(u_N_C.shape[0], device=u_N_C.device), y_hat_N] -= 1.0
    return u_N_C


def gradient_embeddings(probs_N_C: torch.Tensor, embeddings_N_D: torch.Tensor) -> torch.Tensor:
    """The materialised g = (p − e_ŷ) ⊗ h, [N, C·D] (class-major). For tests on small pools only."""
    check_badge_inputs(probs_N_C, embeddings_N_D)
    u_N_C = gradient_factors(probs_N_C)
    return (u_N_C[:, :, None] * embeddings_N_D.float()[:, None, :]).reshape(u_N_C.shape[0], -1)


class _Factorised:
    """Squared distances between gradient embeddings from the factors u [N, C] and h [N, D]."""

    def __init__(self, probs_N_C: torch.Tensor, embeddings_N_D: torch.Tensor, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
        self.u_N_C = gradient_factors(probs_N_C)
        self.h_N_D = embeddings_N_D.float()
        self.sq_norm_N = (self.u_N_C * self.u_N_C).sum(dim=1) * (self.h_N_D * self.h_N_D).sum(dim=1)
        self.chunk_size = chunk_size

    def update_min(self, d2_N: torch.Tensor, center: int) -> None:
        """d2_N ← min(d2_N, ‖g − g_center‖²), chunk by chunk (in place)."""
        u_C, h_D, sq_c = self.u_N_C[center], self.h_N_D[center], self.sq_norm_N[center]
        for s in range(0, d2_N.shape[0], self.chunk_size):
            e = s + self.chunk_size
            dot_b = (self.u_N_C[s:e] @ u_C).mul_(self.h_N_D[s:e] @ h_D)
            dist_b = (self.sq_norm_N[s:e] + sq_c).sub_(dot_b, alpha=2.0).clamp_min_(0.0)
            torch.minimum(d2_N[s:e], dist_b, out=d2_N[s:e])


def gradient_sq_distances(
    probs_N_C: torch.Tensor,
    embeddings_N_D: torch.Tensor,
    centers: list[int] | torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """D²(x) = min over ``centers`` of ‖g(x) − g(center)‖², factorised; [N] (‖g‖² when no center)."""
    check_badge_inputs(probs_N_C, embeddings_N_D)
    f = _Factorised(probs_N_C, embeddings_N_D, chunk_size)
    centers = [int(c) for c in centers]
    if not centers:
        return f.sq_norm_N.clone()
    d2_N = torch.full_like(f.sq_norm_N, torch.inf)
    for c in centers:
        f.update_min(d2_N, c)
    d2_N[centers] = 0.0
    return d2_N


def _draw(weights_N: torch.Tensor, generator: torch.Generator) -> int:
    """One index drawn with probability ∝ weights_N (≥ 0, positive sum), by inverse CDF in float64."""
    cdf_N = torch.cumsum(weights_N.double(), dim=0)
    total = cdf_N[-1]
    u = torch.rand(1, generator=generator, dtype=torch.float64, device=generator.device).to(cdf_N.device)
    i = int(torch.searchsorted(cdf_N, u * total, right=True))
    # u·total < total up to rounding; never land past the last index with positive weight.
    return min(i, int(torch.nonzero(weights_N > 0)[-1]))


def badge(
    probs_N_C: torch.Tensor,
    embeddings_N_D: torch.Tensor,
    k: int,
    generator: torch.Generator,
    chunk_size: int = DEFAULT_CHUNK,
    origin_as_center: bool = False,
) -> Acquisition:
    """BADGE batch (Ash et al. 2020): k-means++ seeding on gradient embeddings, never materialised.

    Args:
        probs_N_C: [N, C] predictive probabilities of the pool (the pseudo-label is their argmax).
        embeddings_N_D: [N, D] penultimate-layer embeddings h(x) of the pool.
        k: batch size; ``min(k, N)`` indices are returned.
        generator: draws the D² samples (the first center is deterministic: the largest ‖g‖).
        chunk_size: pool rows per chunk of the distance update.
        origin_as_center: also count the zero gradient as a center, i.e. D² starts at ‖g‖²
            rather than +∞. scikit-activeml 1.0.1 ``Badge`` does this (its running minimum starts
            from the squared norms); the paper and the authors' code do not (default).

    Returns:
        :class:`Acquisition`, indices in pick order, ``scores`` [B] = D² of each pick when it was
        drawn (‖g‖² for the first). When every remaining D² is 0 (the rest duplicate the centers)
        the next pick is uniform over the unpicked rows, as in scikit-activeml.
    """
    check_badge_inputs(probs_N_C, embeddings_N_D)
    check_k(k)
    N = probs_N_C.shape[0]
    k = min(k, N)
    device = probs_N_C.device
    if k == 0:
        return Acquisition(torch.empty(0, dtype=torch.long, device=device), torch.empty(0, device=device))
    f = _Factorised(probs_N_C, embeddings_N_D, chunk_size)
    first = int(torch.argmax(f.sq_norm_N))
    chosen, scores = [first], [float(f.sq_norm_N[first])]
    d2_N = f.sq_norm_N.clone() if origin_as_center else torch.full_like(f.sq_norm_N, torch.inf)
    taken_N = torch.zeros(N, dtype=torch.bool, device=device)
    taken_N[first] = True
    while len(chosen) < k:
        f.update_min(d2_N, chosen[-1])
        d2_N[chosen[-1]] = 0.0
        weights_N = d2_N if float(d2_N.sum()) > 0 else (~taken_N).to(d2_N.dtype)
        nxt = _draw(weights_N, generator)
        chosen.append(nxt)
        scores.append(float(d2_N[nxt]))
        taken_N[nxt] = True
    return Acquisition(
        indices=torch.tensor(chosen, dtype=torch.long, device=device),
        scores=torch.tensor(scores, dtype=torch.float32, device=device),
    )


@register
class BadgeStrategy(Strategy):
    """BADGE (Ash et al. 2020): diverse and uncertain batches by k-means++ on gradient embeddings."""

    name = "badge"
    needs = frozenset({PROBS, EMBEDDINGS})

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        probs_N_C = inputs.require("probs_N_C")
        embeddings_N_D = inputs.require("embeddings_N_D")
        check_badge_inputs(probs_N_C, embeddings_N_D, inputs.n)
        return badge(probs_N_C, embeddings_N_D, k, generator)
