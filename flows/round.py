"""The round flow: version the labeled set → train → evaluate → score → select → export → track."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from prefect import flow

from al_core import pipeline
from al_core.acquisition.report import batch_report
from al_core.errors import WorkspaceError
from al_core.training import round_seeds
from al_core.workspace import Workspace, round_name
from tasks import artifacts, queue, steps, stopping, tracking

log = logging.getLogger(__name__)


@contextmanager
def round_lock(ws: Workspace) -> Iterator[None]:
    """Refuse a second round of the same campaign while one is running."""
    path = ws.alp_dir / "locks" / "round.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WorkspaceError(
            f"a round of the campaign in {ws.root} is already running; wait for it to finish "
            "(alp status shows the rounds) before starting another"
        ) from None
    try:
        yield
    finally:
        lock.release()


@flow(name="alp-round", log_prints=True)
def round_flow(workspace: str, simulate: bool = False, after_batch: int | None = None) -> dict[str, Any]:
    """One active-learning round in ``workspace``; returns the round's summary.

    ``after_batch`` (set by the ``alp.batch.ready`` trigger of ``alp serve``): run only if batch
    ``after_batch`` is still the newest, so a second trigger for the same batch is a no-op
    (returns ``{"skipped": ...}``), not a second round.
    """
    ws = Workspace(workspace).require()
    with round_lock(ws):
        if after_batch is not None and ws.next_round() != after_batch + 1:
            reason = f"batch {round_name(after_batch)} already has its next round (next is {ws.next_round()})"
            print(f"round skipped: {reason}")
            return {"skipped": reason, "round": None}
        stopping.require_not_stopped(ws, ws.next_round())  # acquisition.stop fired: `alp continue` goes on
        return stopping.conclude(str(ws.root), _run_round(ws, simulate))


def _run_round(ws: Workspace, simulate: bool) -> dict[str, Any]:
    params = ws.params
    root = str(ws.root)
    r = ws.next_round()
    if r > 0 and ws.labeled_set().empty:
        raise WorkspaceError(
            "the cold-start batch (queue/round-000) is still waiting for labels: ingest them with "
            f"`alp ingest {ws.root} FILE` before the next round"
        )
    t_start = time.perf_counter()
    version = steps.version_labeled_set(root, r)
    data = pipeline.round_data(ws, r)
    if len(data.candidate_idx) == 0:
        raise WorkspaceError(f"the pool is exhausted: every sample of {ws.root} is labeled or queued")
    budget = params.acquisition.label_budget
    if budget is not None and len(ws.queued()) >= budget:
        raise WorkspaceError(f"the label budget ({budget}) is spent: raise acquisition.label_budget to go on")

    model = trained = stop = None
    metrics: dict[str, Any] = {}
    run_metrics: dict[str, float] = {"n_labels": float(len(data.labeled_idx))}
    if len(data.labeled_idx):
        trained = steps.train(root, data)
        model = trained.model
        metrics = steps.evaluate(root, trained)
        run_metrics.update({k: v for k, v in metrics.items() if k.startswith("test_")})
        run_metrics["seconds_train"] = trained.seconds
        run_metrics["train_epochs"] = trained.epochs
        run_metrics["n_pseudo_labels"] = len(trained.pseudo_indices)
        if simulate and len(trained.pseudo_indices):
            truth = queue.truth_labels(ws, data.pool_ids[trained.pseudo_indices])
            run_metrics["n_pseudo_wrong"] = int((truth != trained.pseudo_labels).sum())
        stop = stopping.stopping_criteria(root, data, trained)  # every criterion, every round
        run_metrics.update(stop.pop("metrics"))

    cold_start_labels = None
    if model is None and params.acquisition.initial_balanced:
        if not simulate:
            raise WorkspaceError(
                "acquisition.initial_balanced draws the cold-start batch by class from the ground truth, which only "
                "a simulated campaign (alp campaign / alp benchmark) has: set it to false for a real campaign"
            )
        cold_start_labels = queue.truth_labels(ws, data.pool_ids[data.candidate_idx])
    selection = steps.score_and_select(root, data, model, cold_start_labels)
    report = batch_report(selection["probs"], selection["scores"], ws.classes) if model is not None else {}
    run_metrics["seconds_score"] = selection["seconds_score"]
    run_metrics["seconds_select"] = selection["seconds_select"]
    if report:
        run_metrics["batch_mean_score"] = report["mean_score"]
    model_version = f"{ws.name}/{round_name(r)}" if model is not None else None
    exported = steps.export_batch(root, r, data, selection, model_version)

    seeds = round_seeds(params.seed, r)
    summary: dict[str, Any] = {
        "round": r,
        "tag": version["tag"],
        "data_hash": version["data_hash"],
        "strategy": selection["strategy"],
        "n_labels": len(data.labeled_idx),
        "n_queued": len(selection["pool_idx"]),
        "n_candidates": int(selection["n_candidates"]),
        "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "batch_report": report,
        "n_pseudo_labels": int(run_metrics.get("n_pseudo_labels", 0)),
        "stopping": stop,
        "seconds": {
            k.removeprefix("seconds_"): round(v, 3) for k, v in run_metrics.items() if k.startswith("seconds_")
        },
        "queue": exported,
    }
    history = [*ws.round_summaries(), summary]
    parent = tracking.campaign_run(ws, params)
    device = str(model.device_) if model is not None else "none"
    logged = steps.log_round(
        root,
        parent,
        r,
        run_params={
            "round": r,
            "strategy": selection["strategy"],
            "batch_size": len(selection["pool_idx"]),
            "dvc_tag": version["tag"],
            "data_hash": version["data_hash"],
            "device": device,
            "n_candidates": selection["n_candidates"],
            **{f"seed_{k}": v for k, v in seeds.items()},
        },
        metrics=run_metrics,
        history=history,
        confusion=metrics.get("confusion"),
        model=model,
        input_example=data.X_pool[:1].astype(np.float32) if model is not None else None,
        tags={
            "alp.round": str(r),
            "alp.dvc_tag": version["tag"],
            "alp.dvc_commit": version["commit"],
            "alp.data_hash": version["data_hash"],
        },
        artifacts={"queue": exported["batch"]},
        batch_report=report,
    )
    summary["mlflow_run_id"] = logged["run_id"]
    summary["model_version"] = logged.get("model_version")
    summary["champion"] = logged.get("champion", False)
    summary["seconds"]["total"] = round(time.perf_counter() - t_start, 3)
    steps.record_results(root, r, trained is not None, summary)
    artifacts.publish_round_artifacts(root, history)
    return summary
