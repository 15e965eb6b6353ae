"""Core-set: greedy k-center selection in embedding space.

Sener & Savarese, *Active Learning for Convolutional Neural Networks: A Core-Set Approach*,
ICLR 2018, Algorithm 1 (k-Center-Greedy, Gonzalez 1985): the labeled embeddings are the initial
centers; each step picks the pool point farthest from its nearest center, which then becomes a
center.

Only the running minimum squared distance [N] is kept: each pick updates it with the distances to
the new center (one chunked matrix-vector product, ‖x − c‖² = ‖x‖² + ‖c‖² − 2⟨x, c⟩), so time is
O(N·(M + B)·d) and extra memory O(N) plus one chunk; never an N×N or N×M matrix.
"""

from __future__ import annotations

import torch

from al_core.acquisition.base import (
    EMBEDDINGS,
    LABELED_EMBEDDINGS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    check_k,
    check_shape,
    register,
)
from al_core.errors import ShapeError

#: Pool rows per chunk of a distance update.
DEFAULT_CHUNK = 16384
#: Labeled rows per chunk of the initial pool × labeled distance block (chunk × this floats).
DEFAULT_LABELED_CHUNK = 256


def check_coreset_inputs(embeddings_N_D: torch.Tensor, labeled_embeddings_M_D: torch.Tensor | None) -> None:
    """Raise :class:`ShapeError` unless the pool is [N, D] and the labeled set [M, D] with one D."""
    check_shape("embeddings_N_D", embeddings_N_D, 2, "N,D")
    if labeled_embeddings_M_D is not None:
        check_shape("labeled_embeddings_M_D", labeled_embeddings_M_D, 2, "M,D")
        if labeled_embeddings_M_D.shape[0] > 0 and labeled_embeddings_M_D.shape[1] != embeddings_N_D.shape[1]:
            raise ShapeError(
                f"labeled_embeddings_M_D must have D = {embeddings_N_D.shape[1]} columns like embeddings_N_D, "
                f"got {tuple(labeled_embeddings_M_D.shape)}"
            )


def min_sq_distances(
    embeddings_N_D: torch.Tensor,
    centers_M_D: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK,
    center_chunk: int = DEFAULT_LABELED_CHUNK,
) -> torch.Tensor:
    """min_m ‖x_n − c_m‖² → [N] (+inf when M = 0), in [chunk_size, center_chunk] blocks."""
    x_N_D = embeddings_N_D.float()
    c_M_D = centers_M_D.float()
    out_N = torch.full((x_N_D.shape[0],), torch.inf, device=x_N_D.device)
    if c_M_D.shape[0] == 0:
        return out_N
    c_sq_M = (c_M_D * c_M_D).sum(dim=1)
    for s in range(0, x_N_D.shape[0], chunk_size):
        x_b_D = x_N_D[s : s + chunk_size]
        x_sq_b_1 = (x_b_D * x_b_D).sum(dim=1, keepdim=True)
        for t in range(0, c_M_D.shape[0], center_chunk):
            d_b_m = torch.addmm(c_sq_M[None, t : t + center_chunk], x_b_D, c_M_D[t : t + center_chunk].t(), alpha=-2)
            d_b = d_b_m.add_(x_sq_b_1).min(dim=1).values.clamp_min_(0.0)
            torch.minimum(out_N[s : s + chunk_size], d_b, out=out_N[s : s + chunk_size])
    return out_N


def coreset(
    embeddings_N_D: torch.Tensor,
    labeled_embeddings_M_D: torch.Tensor | None,
    k: int,
    generator: torch.Generator,
    chunk_size: int = DEFAULT_CHUNK,
) -> Acquisition:
    """k-Center-Greedy batch (Sener & Savarese 2018, Algorithm 1).

    Args:
        embeddings_N_D: [N, D] embeddings of the pool.
        labeled_embeddings_M_D: [M, D] embeddings of the labeled set, the initial centers (None or
            M = 0: no initial center).
        k: batch size; ``min(k, N)`` indices are returned.
        generator: picks the first center uniformly when there is no labeled set (as
            scikit-activeml does); unused otherwise.
        chunk_size: pool rows per chunk of a distance update.

    Returns:
        :class:`Acquisition`, indices in pick order, ``scores`` [B] = the Euclidean distance of each
        pick to its nearest center when picked (+inf for a first pick without labeled set).
        Ties go to the lower pool index.
    """
    check_coreset_inputs(embeddings_N_D, labeled_embeddings_M_D)
    check_k(k)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    N = embeddings_N_D.shape[0]
    k = min(k, N)
    device = embeddings_N_D.device
    if k == 0:
        return Acquisition(torch.empty(0, dtype=torch.long, device=device), torch.empty(0, device=device))
    x_N_D = embeddings_N_D.float()
    x_sq_N = (x_N_D * x_N_D).sum(dim=1)
    if labeled_embeddings_M_D is None:
        labeled_embeddings_M_D = x_N_D[:0]
    d2_N = min_sq_distances(x_N_D, labeled_embeddings_M_D, chunk_size)
    chosen: list[int] = []
    scores: list[float] = []
    if labeled_embeddings_M_D.shape[0] == 0:
        first = int(torch.randint(N, (1,), generator=generator, device=generator.device))
        chosen.append(first)
        scores.append(float("inf"))
        d2_N[first] = -1.0
    while len(chosen) < k:
        if chosen:
            _update_min(d2_N, x_N_D, x_sq_N, chosen[-1], chunk_size)
        best = int(torch.argmax(d2_N))
        chosen.append(best)
        scores.append(float(d2_N[best].clamp_min(0).sqrt()))
        d2_N[best] = -1.0  # picked: below every distance, never picked again
    return Acquisition(
        indices=torch.tensor(chosen, dtype=torch.long, device=device),
        scores=torch.tensor(scores, dtype=torch.float32, device=device),
    )


def _update_min(d2_N: torch.Tensor, x_N_D: torch.Tensor, x_sq_N: torch.Tensor, center: int, chunk_size: int) -> None:
    """d2_N ← min(d2_N, ‖x − x_center‖²) in chunks (picked rows hold −1 and stay there)."""
    c_D, c_sq = x_N_D[center], x_sq_N[center]
    for s in range(0, d2_N.shape[0], chunk_size):
        e = s + chunk_size
        dist_b = torch.addmv(x_sq_N[s:e], x_N_D[s:e], c_D, alpha=-2.0).add_(c_sq).clamp_min_(0.0)
        torch.minimum(d2_N[s:e], dist_b, out=d2_N[s:e])


@register
class CoreSetStrategy(Strategy):
    """Core-set (Sener & Savarese 2018): greedy k-center on embeddings, labeled set as centers."""

    name = "coreset"
    needs = frozenset({EMBEDDINGS, LABELED_EMBEDDINGS})

    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        embeddings_N_D = inputs.require("embeddings_N_D")
        if embeddings_N_D.shape[0] != inputs.n:
            raise ShapeError(
                f"embeddings_N_D must have N = {inputs.n} rows (the pool), got {tuple(embeddings_N_D.shape)}"
            )
        return coreset(embeddings_N_D, inputs.labeled_embeddings_M_D, k, generator)
