"""Score a pool shard by shard and pick the batch; what stays in memory for the whole pool is O(N) scalars.

A round's selection reads the pool in shards (:mod:`al_core.pool`), each scored by
:func:`score_shard` wherever a *mapper* runs it (this process, or Dask workers as Prefect tasks;
see ``tasks/scoring.py``):

* top-k strategies (entropy, margin, least-confidence, BALD, variation ratio, mean std): one pass
  keeps one float per candidate; the batch is the global top-k of those scores, the very picks
  the unsharded strategy makes (a row's score does not depend on the other rows of its shard);
* batch-aware strategies (BADGE, core-set, BatchBALD) run on a *candidate set*: every candidate
  when their inputs fit ``scoring.memory_mb``, else the top-M by a cheap score (one pass over
  the shards, a float per candidate) or a seeded random M; a second pass computes the strategy's
  inputs for those M rows only, and the greedy step runs on them;
* random needs no pass at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from al_core.acquisition.base import (
    EMBEDDINGS,
    LABELED_EMBEDDINGS,
    MC_LOG_PROBS,
    PROBS,
    AcquisitionInputs,
    Strategy,
    get_strategy,
    top_k,
)
from al_core.models import NeuralClassifier
from al_core.pool import ArrayPool, ParquetPool, Shard

if TYPE_CHECKING:
    from al_core.config import ScoringParams


def compute_inputs(
    model: NeuralClassifier | None,
    strategy: Strategy,
    X_pool: np.ndarray,
    X_labeled: np.ndarray | None = None,
    mc_samples: int = 20,
    seed: int = 0,
    probs_N_C: torch.Tensor | None = None,
    needs: frozenset[str] | None = None,
) -> AcquisitionInputs:
    """Compute exactly what ``strategy.needs`` (or ``needs``) for the N rows of ``X_pool`` (chunked
    by the model).

    ``probs_N_C`` may be passed in when the caller already has them (they are always needed for
    the batch report).
    """
    needs = strategy.needs if needs is None else needs
    n = len(X_pool)
    if not needs:
        return AcquisitionInputs(n=n, probs_N_C=probs_N_C)
    if model is None:
        raise ValueError(f"strategy '{strategy.name}' needs a trained model ({', '.join(sorted(needs))})")
    fields: dict[str, torch.Tensor] = {}
    if PROBS in needs or probs_N_C is not None:
        fields["probs_N_C"] = probs_N_C if probs_N_C is not None else model.predict_proba(X_pool)
    if MC_LOG_PROBS in needs:
        fields["log_probs_N_K_C"] = model.predict_log_proba(X_pool, mc_samples=mc_samples, seed=seed)
    if EMBEDDINGS in needs:
        fields["embeddings_N_D"] = model.embed(X_pool)
    if LABELED_EMBEDDINGS in needs:
        if X_labeled is None:
            raise ValueError(f"strategy '{strategy.name}' needs the labeled set's embeddings")
        fields["labeled_embeddings_M_D"] = model.embed(X_labeled)
    # Strategies run where the model runs (CUDA when there is one); the model returns CPU tensors
    # chunk by chunk so that the pool never has to fit on the device at once.
    return AcquisitionInputs(n=n, **{k: v.to(model.device_) for k, v in fields.items()})


# ---------------------------------------------------------------------- one shard
@dataclass(frozen=True)
class ShardJob:
    """What every shard computes: ``scores`` (the strategy's top-k score per row), ``cheap`` (the
    candidate-set score ``cheap_score`` per row) or ``inputs`` (the strategy's inputs per row)."""

    kind: Literal["scores", "cheap", "inputs"]
    strategy: Strategy
    mc_samples: int
    seed: int
    cheap_score: str = "entropy"


@dataclass(frozen=True)
class ShardResult:
    """One shard's answer for its ``rows`` (pool indices): a score per row, or the strategy's inputs."""

    index: int
    rows: np.ndarray
    scores: np.ndarray | None = None
    probs: np.ndarray | None = None
    log_probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.scores, self.probs, self.log_probs, self.embeddings) if a is not None)


def score_shard(model: NeuralClassifier, job: ShardJob, shard: Shard, X: np.ndarray) -> ShardResult:
    """Score the rows ``shard.rows`` of one shard, whose features (rows ``shard.start:stop``) are ``X``."""
    X_rows = X[shard.rows - shard.start]
    if job.kind == "cheap":
        probe = get_strategy(job.cheap_score)
        inputs = compute_inputs(model, probe, X_rows)
        return ShardResult(shard.index, shard.rows, scores=_np(probe.topk_scores(inputs)))
    per_row = job.strategy.needs - {LABELED_EMBEDDINGS}  # the labeled set's embeddings: once, by the caller
    inputs = compute_inputs(model, job.strategy, X_rows, mc_samples=job.mc_samples, seed=job.seed, needs=per_row)
    if job.kind == "scores":
        scores = job.strategy.topk_scores(inputs)
        if scores is None:
            raise ValueError(f"strategy '{job.strategy.name}' is not a top-k strategy: score it on a candidate set")
        return ShardResult(shard.index, shard.rows, scores=_np(scores))
    return ShardResult(
        shard.index,
        shard.rows,
        probs=_np(inputs.probs_N_C),
        log_probs=_np(inputs.log_probs_N_K_C),
        embeddings=_np(inputs.embeddings_N_D),
    )


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float32, copy=False)


#: runs a job over shards (in any order) and yields their results: this process or a cluster
Mapper = Callable[[list[Shard], ShardJob], Iterable[ShardResult]]


def local_mapper(
    model: NeuralClassifier, pool: ParquetPool | ArrayPool, progress: Callable[[int, int], None] | None = None
) -> Mapper:
    """Shards scored one after another in this process; ``progress(done, total)`` after each."""

    def run(shards: list[Shard], job: ShardJob) -> Iterator[ShardResult]:
        for i, shard in enumerate(shards):
            yield score_shard(model, job, shard, pool.read(shard.start, shard.stop))
            if progress is not None:
                progress(i + 1, len(shards))

    return run


# ---------------------------------------------------------------------- the round's selection
@dataclass(frozen=True)
class Selection:
    """The batch: ``pool_idx`` [B] in pick order, their ``scores`` [B] and ``probs`` [B, C] (the batch
    report), with how the candidate set was chosen and how long scoring and selecting took."""

    strategy: str
    pool_idx: np.ndarray
    scores: np.ndarray
    probs: np.ndarray | None
    n_candidates: int
    candidate_set: str  # "all", "top-M by entropy", "random M", "none"
    candidate_size: int
    n_shards: int
    seconds_score: float
    seconds_select: float
    info: dict[str, float] = field(default_factory=dict)


def row_bytes(strategy: Strategy, n_classes: int, embedding_dim: int, mc_samples: int) -> int:
    """Bytes a batch-aware strategy holds per candidate: its float32 inputs, twice (the greedy
    step's working copies: BADGE's u and h, core-set's squared norms, BatchBALD's gathered rows)."""
    floats = 0
    if PROBS in strategy.needs:
        floats += n_classes
    if EMBEDDINGS in strategy.needs:
        floats += embedding_dim
    if MC_LOG_PROBS in strategy.needs:
        floats += mc_samples * n_classes
    return 2 * 4 * max(floats, 1)


def candidate_budget(strategy: Strategy, n_classes: int, embedding_dim: int, mc_samples: int, memory_mb: int) -> int:
    """M: how many candidates' inputs fit ``memory_mb``."""
    return max(1, memory_mb * 2**20 // row_bytes(strategy, n_classes, embedding_dim, mc_samples))


def select_batch(
    model: NeuralClassifier,
    strategy: Strategy,
    pool: ParquetPool | ArrayPool,
    candidates: np.ndarray,
    labeled_idx: np.ndarray,
    k: int,
    generator: torch.Generator,
    sp: ScoringParams,
    mc_samples: int = 20,
    seed: int = 0,
    mapper: Mapper | None = None,
) -> Selection:
    """Pick ``min(k, len(candidates))`` of the pool rows ``candidates`` (sorted) with ``strategy``,
    reading the pool shard by shard through ``mapper`` (default: this process)."""
    run = mapper or local_mapper(model, pool)
    candidates = np.asarray(candidates, dtype=np.int64)
    shards = pool.shards(candidates, sp.shard_rows)
    t0 = time.perf_counter()
    job = ShardJob("scores", strategy, mc_samples, seed, sp.candidate_score)
    if not getattr(strategy, "base", strategy).needs:  # random (also inside ceal+random): no model pass
        acq = strategy.select(AcquisitionInputs(n=len(candidates)), k, generator)
        picked = candidates[acq.indices.cpu().numpy()]
        return _finish(model, strategy, pool, picked, acq.scores, len(candidates), "none", 0, 0, t0, t0)
    if strategy.is_top_k:
        scores = _gather_scores(run(shards, job), shards, len(candidates))
        t1 = time.perf_counter()
        acq = top_k(torch.from_numpy(scores), k)
        picked = candidates[acq.indices.numpy()]
        return _finish(model, strategy, pool, picked, acq.scores, len(candidates), "all", len(candidates),
                       len(shards), t0, t1)  # fmt: skip
    m = candidate_budget(strategy, model.n_classes, model.module_.embedding_dim, mc_samples, sp.memory_mb)
    m = min(m, sp.candidate_size or m)
    subset, how = candidates, "all"
    if len(candidates) > m:
        if sp.candidates == "random":
            gen = torch.Generator().manual_seed(seed)
            subset = np.sort(candidates[torch.randperm(len(candidates), generator=gen)[:m].numpy()])
            how = f"random {m}"
        else:
            cheap = _gather_scores(run(shards, ShardJob("cheap", strategy, mc_samples, seed, sp.candidate_score)),
                                   shards, len(candidates))  # fmt: skip
            best = top_k(torch.from_numpy(cheap), m).indices.numpy()
            subset = np.sort(candidates[best])
            how = f"top {m} by {sp.candidate_score}"
    sub_shards = pool.shards(subset, sp.shard_rows)
    inputs = _gather_inputs(run(sub_shards, ShardJob("inputs", strategy, mc_samples, seed)), sub_shards, len(subset))
    if LABELED_EMBEDDINGS in strategy.needs:
        inputs = _with(inputs, labeled_embeddings_M_D=model.embed(pool[np.sort(labeled_idx)]))
    inputs = AcquisitionInputs(n=inputs.n, **{k: getattr(inputs, k).to(model.device_) for k in _fields(inputs)})
    t1 = time.perf_counter()
    acq = strategy.select(inputs, k, generator)
    chosen = acq.indices.cpu().numpy()
    probs = inputs.probs_N_C[acq.indices].cpu().numpy() if inputs.probs_N_C is not None else None
    return _finish(model, strategy, pool, subset[chosen], acq.scores, len(candidates), how, len(subset),
                   len(shards) + len(sub_shards), t0, t1, probs)  # fmt: skip


def _fields(inputs: AcquisitionInputs) -> list[str]:
    names = ("probs_N_C", "log_probs_N_K_C", "embeddings_N_D", "labeled_embeddings_M_D")
    return [n for n in names if getattr(inputs, n) is not None]


def _with(inputs: AcquisitionInputs, **fields: torch.Tensor) -> AcquisitionInputs:
    return AcquisitionInputs(n=inputs.n, **{**{k: getattr(inputs, k) for k in _fields(inputs)}, **fields})


def _gather_scores(results: Iterable[ShardResult], shards: list[Shard], n: int) -> np.ndarray:
    """One float per candidate [n], in candidate order, from the shards' results (any order)."""
    offsets = np.concatenate([[0], np.cumsum([len(s.rows) for s in shards])])
    out = np.full(n, np.nan, dtype=np.float32)
    for res in results:
        out[offsets[res.index] : offsets[res.index + 1]] = res.scores
    if np.isnan(out).any():
        raise RuntimeError("a shard returned no scores: the pool changed while it was scored")
    return out


def _gather_inputs(results: Iterable[ShardResult], shards: list[Shard], n: int) -> AcquisitionInputs:
    """The strategy's inputs for the n subset rows, assembled from the shards' results in shard order."""
    parts = sorted(results, key=lambda r: r.index)
    if len(parts) != len(shards):
        raise RuntimeError(f"{len(shards) - len(parts)} shard(s) returned no result")

    def cat(name: str) -> torch.Tensor | None:
        arrays = [getattr(p, name) for p in parts]
        return torch.from_numpy(np.concatenate(arrays)) if arrays and arrays[0] is not None else None

    return AcquisitionInputs(n=n, probs_N_C=cat("probs"), log_probs_N_K_C=cat("log_probs"),
                             embeddings_N_D=cat("embeddings"))  # fmt: skip


def _finish(
    model: NeuralClassifier | None,
    strategy: Strategy,
    pool: ParquetPool | ArrayPool,
    picked: np.ndarray,
    scores: torch.Tensor,
    n_candidates: int,
    how: str,
    size: int,
    n_shards: int,
    t0: float,
    t1: float,
    probs: np.ndarray | None = None,
) -> Selection:
    """The :class:`Selection`, with the picks' probabilities (read back for the batch report)."""
    if probs is None and model is not None and len(picked):
        probs = model.predict_proba(pool[picked]).numpy()
    return Selection(
        strategy=strategy.name,
        pool_idx=np.asarray(picked, dtype=np.int64),
        scores=scores.detach().cpu().numpy().astype(np.float32),
        probs=probs,
        n_candidates=n_candidates,
        candidate_set=how,
        candidate_size=size,
        n_shards=n_shards,
        seconds_score=t1 - t0,
        seconds_select=time.perf_counter() - t1,
    )
