"""The round flow: version the labeled set → train → evaluate → score → select → export → track."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from prefect import flow

from al_core import faults, pipeline
from al_core.acquisition.report import batch_report
from al_core.errors import WorkspaceError
from al_core.training import round_seeds
from al_core.workspace import Workspace, atomic_write_text, round_name
from tasks import artifacts, queue, scoring, steps, stopping, tracking

log = logging.getLogger(__name__)
#: how the round's candidate set was scored (the summary's "candidates")
CANDIDATE_KEYS = ("candidate_set", "candidate_size", "n_shards", "worker_peak_mb", "shards_cached")


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

    The round holds the workspace's writer lock throughout and records each step it completes in
    ``.alp/progress/round-NNN.json``; a round that was killed or failed is resumed by the next call
    (whatever its arguments) from the step it reached: before the batch was prepared it is redone
    (the tag moved if the labeled set changed meanwhile), after that the same batch is exported
    and the round is logged, committed and pushed once.

    ``after_batch`` (set by the ``alp.batch.ready`` trigger of ``alp serve``): run only if batch
    ``after_batch`` is still the newest, so a second trigger for the same batch is a no-op
    (returns ``{"skipped": ...}``), not a second round.
    """
    ws = Workspace(workspace).require()
    with round_lock(ws), ws.writer("round"):
        unfinished = ws.incomplete_round()
        if unfinished is not None:
            print(f"resuming {round_name(unfinished)}, which did not finish")
            return stopping.conclude(str(ws.root), _run_round(ws, unfinished, simulate))
        if after_batch is not None and ws.next_round() != after_batch + 1:
            reason = f"batch {round_name(after_batch)} already has its next round (next is {ws.next_round()})"
            print(f"round skipped: {reason}")
            return {"skipped": reason, "round": None}
        stopping.require_not_stopped(ws, ws.next_round())  # acquisition.stop fired: `alp continue` goes on
        return stopping.conclude(str(ws.root), _run_round(ws, ws.next_round(), simulate))


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (for JSON)."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _save(ws: Workspace, r: int, progress: dict[str, Any]) -> dict[str, Any]:
    """Record the round's progress atomically; return it as read back (what a resumed round sees)."""
    text = json.dumps(progress, indent=1, sort_keys=True, default=_plain) + "\n"
    atomic_write_text(ws.progress_path(r), text)
    return json.loads(text)


def _run_round(ws: Workspace, r: int, simulate: bool) -> dict[str, Any]:
    progress = ws.round_progress(r) or {"round": r, "attempts": 0}
    progress["attempts"] += 1
    progress = _save(ws, r, progress)
    if "prepared" not in progress:
        progress["prepared"] = _prepare(ws, r, simulate)
        progress = _save(ws, r, progress)
        faults.point("round.prepared")
    t_start = time.perf_counter()  # the total is the prepare's seconds plus the rest (prepare counted once)
    prep = progress["prepared"]
    summary: dict[str, Any] = prep["summary"]
    root = str(ws.root)
    if "exported" not in progress:
        progress["exported"] = steps.export_batch(root, r, prep["records"])
        _save(ws, r, progress)
        faults.point("round.exported")
    summary["queue"] = exported = progress["exported"]
    history = [*(s for s in ws.round_summaries() if s["round"] != r), summary]
    if "logged" not in progress:
        parent = tracking.campaign_run(ws, ws.params)
        if progress["attempts"] > 1:
            tracking.discard_partial_round(ws, parent, r)
        model = pipeline.load_model(ws) if prep["trained"] else None  # as saved by train (also on a resumed round)
        logged = steps.log_round(
            root,
            parent,
            r,
            run_params={**prep["run_params"], "device": str(model.device_) if model is not None else "none"},
            metrics=prep["run_metrics"],
            history=history,
            confusion=_confusion(ws) if model is not None else None,
            model=model,
            input_example=np.asarray(prep["input_example"], dtype=np.float32) if model is not None else None,
            tags=prep["tags"],
            artifacts={"queue": exported["batch"]},
            batch_report=summary["batch_report"],
        )
        progress["logged"] = {k: logged.get(k) for k in ("run_id", "model_version", "champion")}
        _save(ws, r, progress)
        faults.point("round.logged")
    summary["mlflow_run_id"] = progress["logged"]["run_id"]
    summary["model_version"] = progress["logged"]["model_version"]
    summary["champion"] = progress["logged"]["champion"] or False
    summary["seconds"]["total"] = round(prep["seconds_prepare"] + time.perf_counter() - t_start, 3)
    steps.record_results(root, r, prep["trained"], summary)
    progress["done"] = True
    _save(ws, r, progress)
    artifacts.publish_round_artifacts(root, history)
    return summary


def _confusion(ws: Workspace) -> list[list[int]]:
    return json.loads(ws.metrics_path.with_name("confusion.json").read_text())["matrix"]


def _prepare(ws: Workspace, r: int, simulate: bool) -> dict[str, Any]:
    """Version → train → evaluate → score → select: everything up to the batch to export (redone if killed)."""
    params = ws.params
    root = str(ws.root)
    if r > 0 and ws.labeled_set().empty:
        raise WorkspaceError(
            "the cold-start batch (queue/round-000) is still waiting for labels: ingest them with "
            f"`alp ingest {ws.root} FILE` before the next round"
        )
    t_start = time.perf_counter()
    version = steps.version_labeled_set(root, r, retag=not ws.batch_path(r).exists())
    faults.point("round.versioned")
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
        faults.point("round.trained")
        metrics = steps.evaluate(root, trained)
        faults.point("round.evaluated")
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
    if model is not None and params.scoring.engine == "dask":  # shards as Prefect tasks on a Dask cluster
        with (
            scoring.scoring_progress("scoring shards on Dask") as progress,
            scoring.dask_engine(ws, model, progress) as mapper,
        ):
            selection = steps.score_and_select.fn(root, data, model, None, mapper=mapper)
            selection["worker_peak_mb"] = mapper.worker_peak_mb()
            selection["shards_cached"] = mapper.stats["cached"]  # a rerun: shards scored before are not again
    else:
        selection = steps.score_and_select(root, data, model, cold_start_labels)
    report = batch_report(selection["probs"], selection["scores"], ws.classes) if model is not None else {}
    run_metrics["seconds_score"] = selection["seconds_score"]
    run_metrics["seconds_select"] = selection["seconds_select"]
    if report:
        run_metrics["batch_mean_score"] = report["mean_score"]
    model_version = f"{ws.name}/{round_name(r)}" if model is not None else None
    records = queue.batch_records(
        r,
        selection["strategy"],
        data.pool_ids[selection["pool_idx"]],
        selection["scores"],
        selection["probs"],
        ws.classes,
        model_version,
        params.queue.top_k,
        **queue.sample_payload(ws, data.X_pool, selection["pool_idx"]),
    )
    seeds = round_seeds(params.seed, r)
    summary: dict[str, Any] = {
        "round": r,
        "tag": version["tag"],
        "data_hash": version["data_hash"],
        "strategy": selection["strategy"],
        "n_labels": len(data.labeled_idx),
        "n_queued": len(selection["pool_idx"]),
        "n_candidates": int(selection["n_candidates"]),
        "candidates": {k: selection[k] for k in CANDIDATE_KEYS if k in selection},
        "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "batch_report": report,
        "n_pseudo_labels": int(run_metrics.get("n_pseudo_labels", 0)),
        "stopping": stop,
        "seconds": {
            k.removeprefix("seconds_"): round(v, 3) for k, v in run_metrics.items() if k.startswith("seconds_")
        },
    }
    return {
        "summary": summary,
        "input_example": data.X_pool[:1].tolist(),  # one row for MLflow's model signature
        "records": records,
        "trained": trained is not None,
        "run_params": {
            "round": r,
            "strategy": selection["strategy"],
            "batch_size": len(selection["pool_idx"]),
            "dvc_tag": version["tag"],
            "data_hash": version["data_hash"],
            "n_candidates": int(selection["n_candidates"]),
            "candidate_set": selection["candidate_set"],
            "candidate_size": int(selection["candidate_size"]),
            "scoring_engine": params.scoring.engine,
            **{f"seed_{k}": v for k, v in seeds.items()},
        },
        "run_metrics": {k: float(v) for k, v in run_metrics.items()},
        "tags": {
            "alp.round": str(r),
            "alp.dvc_tag": version["tag"],
            "alp.dvc_commit": version["commit"],
            "alp.data_hash": version["data_hash"],
        },
        "seconds_prepare": time.perf_counter() - t_start,
    }
