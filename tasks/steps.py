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
from al_core.acquisition import Acquisition, get_strategy
from al_core.scoring import compute_inputs
from al_core.training import TrainResult, round_seeds
from al_core.workspace import Workspace, atomic_write_json
from tasks import queue, queues, tracking, versioning
from tasks.ingest import IngestResult, ingest_file

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
    root: str, data: pipeline.RoundData, model: Any | None, cold_start_labels: np.ndarray | None = None
) -> dict[str, Any]:
    """Score the candidates with the configured strategy and pick the batch (cold start: random, or
    class-balanced from ``cold_start_labels`` [candidates] when a simulation passes them)."""
    import time

    ws = Workspace(root)
    acq_params = ws.params.acquisition
    seeds = round_seeds(ws.params.seed, data.round)
    cand = data.candidate_idx
    cold_start_name = "random (cold start)" if cold_start_labels is None else "balanced (cold start)"
    if model is None:  # cold start: the first batch is random, from the initial seed
        k = acq_params.initial_size
        strategy = get_strategy("random")
        gen = torch.Generator().manual_seed(acq_params.initial_seed)
    else:
        k = acq_params.batch_size
        strategy = get_strategy(acq_params.strategy, acq_params)
        gen = torch.Generator().manual_seed(seeds["select"])
    if model is not None:
        cand = pipeline.scored_candidates(ws.params, data)
    t0 = time.perf_counter()
    X_cand = data.X_pool[cand]
    probs = model.predict_proba(X_cand) if model is not None else None
    inputs = compute_inputs(
        model, strategy, X_cand, data.X_labeled, mc_samples=acq_params.mc_samples, seed=seeds["score"], probs_N_C=probs
    )
    t1 = time.perf_counter()
    if model is None and cold_start_labels is not None:
        picked = torch.as_tensor(pipeline.balanced_cold_start(cold_start_labels, k, acq_params.initial_seed))
        acq = Acquisition(indices=picked, scores=torch.zeros(len(picked)))
    else:
        acq = strategy.select(inputs, k, gen)
    t2 = time.perf_counter()
    chosen = acq.indices.cpu().numpy()
    sel_probs = probs[acq.indices.cpu()].cpu().numpy() if probs is not None else None
    return {
        "strategy": strategy.name if model is not None else cold_start_name,
        "pool_idx": cand[chosen],
        "scores": acq.scores.cpu().numpy(),
        "probs": sel_probs,
        "n_candidates": len(cand),
        "seconds_score": t1 - t0,
        "seconds_select": t2 - t1,
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
