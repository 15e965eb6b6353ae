"""Thin Prefect tasks around al_core and the workspace I/O (DVC, queue, MLflow).

Retries only where the work is I/O that can fail transiently (DVC push, MLflow logging).
Every write holds the workspace's writer lock (the flows take it; ``versioning.dvc_lock`` re-enters it).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from prefect import task

from al_core import pipeline
from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.scoring import Mapper, local_mapper, select_batch
from al_core.training import TrainResult, round_seeds
from al_core.workspace import Workspace, atomic_write_json
from tasks import queue, queues, tracking, versioning
from tasks.ingest import IngestResult, ingest_file
from tasks.scoring import scoring_progress

log = logging.getLogger(__name__)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only I/O failures that may pass by themselves (S3 or Label Studio
    down, timeouts), as the queue backends tell them."""
    try:
        state.result()
    except Exception as exc:
        return queues.is_transient(exc)
    return False


@task(name="version-labeled-set", retries=2, retry_delay_seconds=3)
def version_labeled_set(root: str, r: int, retag: bool = False) -> dict[str, str]:
    ws = Workspace(root)
    with versioning.dvc_lock(ws):
        atomic_write_json(ws.round_path, {"round": r})
        return versioning.version_labeled_set(ws, r, retag=retag)


@task(name="train")
def train(root: str, data: pipeline.RoundData) -> TrainResult:
    return pipeline.train(Workspace(root), data)


@task(name="evaluate")
def evaluate(root: str, result: TrainResult) -> dict[str, Any]:
    return pipeline.evaluate_model(Workspace(root), result.model)


@task(name="score-and-select")
def score_and_select(
    root: str,
    data: pipeline.RoundData,
    model: Any | None,
    cold_start_labels: np.ndarray | None = None,
    mapper: Mapper | None = None,
) -> dict[str, Any]:
    """Score the candidates shard by shard with the configured strategy and pick the batch (cold
    start: random, or class-balanced from ``cold_start_labels`` [candidates] when a simulation
    passes them). ``mapper`` scores the shards elsewhere (the dask engine); default: this process,
    with a progress bar over the shards on a terminal."""
    ws = Workspace(root)
    params = ws.params
    acq_params = params.acquisition
    seeds = round_seeds(params.seed, data.round)
    cand = data.candidate_idx
    if model is None:  # cold start: the first batch is random, from the initial seed
        if cold_start_labels is not None:
            picked = pipeline.balanced_cold_start(cold_start_labels, acq_params.initial_size, acq_params.initial_seed)
            return _selection_dict("balanced (cold start)", cand[picked], np.zeros(len(picked)), None, len(cand))
        gen = torch.Generator().manual_seed(acq_params.initial_seed)
        acq = get_strategy("random").select(AcquisitionInputs(n=len(cand)), acq_params.initial_size, gen)
        return _selection_dict("random (cold start)", cand[acq.indices.numpy()], acq.scores.numpy(), None, len(cand))
    strategy = get_strategy(acq_params.strategy, acq_params)
    cand = pipeline.scored_candidates(params, data)
    with scoring_progress(f"scoring {len(cand):,} candidates") as progress:
        sel = select_batch(
            model,
            strategy,
            data.X_pool,
            cand,
            data.labeled_idx,
            acq_params.batch_size,
            torch.Generator().manual_seed(seeds["select"]),
            params.scoring,
            mc_samples=acq_params.mc_samples,
            seed=seeds["score"],
            mapper=mapper or local_mapper(model, data.X_pool, progress),
        )
    out = _selection_dict(sel.strategy, sel.pool_idx, sel.scores, sel.probs, sel.n_candidates)
    out.update(
        seconds_score=sel.seconds_score,
        seconds_select=sel.seconds_select,
        candidate_set=sel.candidate_set,
        candidate_size=sel.candidate_size,
        n_shards=sel.n_shards,
    )
    return out


def _selection_dict(
    strategy: str, pool_idx: np.ndarray, scores: np.ndarray, probs: np.ndarray | None, n_candidates: int
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "pool_idx": np.asarray(pool_idx, dtype=np.int64),
        "scores": np.asarray(scores, dtype=np.float32),
        "probs": probs,
        "n_candidates": n_candidates,
        "seconds_score": 0.0,
        "seconds_select": 0.0,
        "candidate_set": "none",
        "candidate_size": 0,
        "n_shards": 0,
    }


@task(name="export-batch", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_if_transient)
def export_batch(root: str, r: int, records: list[dict[str, Any]]) -> dict[str, str]:
    """Export round ``r``'s batch records to the queue (the same records again on a resumed round)."""
    ws = Workspace(root)
    return queue.export_batch(ws, r, records, ws.classes)


@task(name="log-round", retries=2, retry_delay_seconds=3)
def log_round(root: str, parent_run_id: str, r: int, **kwargs: Any) -> dict[str, Any]:
    ws = Workspace(root)
    return tracking.log_round(ws, parent_run_id, r, ws.params, **kwargs)


@task(name="record-results", retries=2, retry_delay_seconds=3)
def record_results(root: str, r: int, trained: bool, summary: dict[str, Any]) -> str:
    """dvc commit the train/evaluate outputs, write the round summary, git commit, dvc push."""
    ws = Workspace(root)
    ws.write_round_summary(r, summary)
    with versioning.dvc_lock(ws):
        if trained:
            versioning.commit_stage_outputs(ws, ["train", "evaluate"])
        head = versioning.commit_all(ws, f"round-{r:03d}: results ({summary.get('strategy')})")
        versioning.push(ws)
    return head


@task(name="fetch-label-files", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_if_transient)
def fetch_label_files(root: str, files: list[str]) -> list[str]:
    """Local paths for the returned-label files (URLs are downloaded into the workspace's queue/inbox/)."""
    return queue.fetch_label_files(Workspace(root), files)


@task(name="fetch-returned-labels", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_if_transient)
def fetch_returned(root: str) -> list[str]:
    """The queue backend brings labels returned to it into the local inbox; the new files."""
    return [str(p) for p in queues.backend(Workspace(root)).fetch()]


@task(name="ingest-file")
def ingest(root: str, path: str, partial: bool, source: str) -> IngestResult:
    return ingest_file(Workspace(root), path, partial=partial, source=source)


@task(name="version-ingested", retries=2, retry_delay_seconds=3)
def version_ingested(root: str, message: str) -> str:
    ws = Workspace(root)
    with versioning.dvc_lock(ws):
        versioning.add_labeled_set(ws)
        head = versioning.commit_all(ws, message)
        versioning.push(ws)
    return head


@task(name="simulate-annotator", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_if_transient)
def simulate_annotator(root: str, r: int) -> list[str]:
    return queue.simulate_annotator(Workspace(root), r)
