"""Scoring the pool's shards: the progress bar over shards, and the dask engine (shards as Prefect tasks).

``scoring.engine: dask`` scores every shard as a Prefect task (``score-shard``) on a Dask cluster
through prefect-dask's ``DaskTaskRunner``: a ``LocalCluster`` of ``scoring.workers`` processes, or
the scheduler at ``scoring.address``. The model goes to the workers once per round (scattered,
broadcast to every worker); each task reads its shard of ``data/pool.parquet`` itself, and its
result is a persisted Prefect task result keyed by (model, pool file, shard, job), so a rerun of
the round does not score finished shards again.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
from prefect import task
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from al_core.models import NeuralClassifier
from al_core.pool import ParquetPool, Shard
from al_core.scoring import ShardJob, ShardResult, score_shard
from al_core.workspace import Workspace


@contextmanager
def scoring_progress(label: str, enabled: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over shards on stderr (shown on a terminal, or with ``ALP_PROGRESS=1``);
    yields ``progress(done, total)``."""
    if enabled is None:
        enabled = os.environ.get("ALP_PROGRESS", "") == "1" or sys.stderr.isatty()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("shards"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )
    job = None

    def progress(done: int, total: int) -> None:
        nonlocal job
        if job is None:
            job = bar.add_task(label, total=total)
        bar.update(job, completed=done, total=total)

    with bar:
        yield progress


# ---------------------------------------------------------------------- the dask engine
#: per worker process: the round's model, deserialised once (key: the digest of its bytes)
_MODELS: dict[str, Any] = {}


def _shard_key(context: Any, parameters: dict[str, Any]) -> str:
    """Same model, same pool file, same rows, same job → the persisted result of an earlier run."""
    shard: Shard = parameters["shard"]
    job: ShardJob = parameters["job"]
    rows = hashlib.sha256(np.ascontiguousarray(shard.rows).tobytes()).hexdigest()[:16]
    what = f"{job.kind}-{job.strategy.name}-{job.mc_samples}-{job.seed}-{job.cheap_score}"
    pool = hashlib.sha256(parameters["pool_fingerprint"].encode()).hexdigest()[:16]
    return f"alp-shard-{parameters['model_key'][:16]}-{pool}-{shard.start}-{shard.stop}-{rows}-{what}"


@task(name="score-shard", cache_key_fn=_shard_key, persist_result=True, retries=1)
def score_shard_task(
    pool_path: str, pool_fingerprint: str, shard: Shard, job: ShardJob, model_key: str, model: bytes, threads: int
) -> ShardResult:
    """Score one shard on a Dask worker: read its rows of the pool file, run the round's model."""
    net = _MODELS.get(model_key)
    if net is None:
        import torch

        torch.set_num_threads(threads)
        _MODELS.clear()  # one round's model per worker
        net = _MODELS[model_key] = NeuralClassifier.from_bytes(model, device="auto")
    return score_shard(net, job, shard, ParquetPool(pool_path).read(shard.start, shard.stop))


@contextmanager
def dask_engine(ws: Workspace, model: NeuralClassifier, progress: Callable[[int, int], None] | None = None):
    """A :data:`~al_core.scoring.Mapper` that scores shards as ``score-shard`` Prefect tasks on Dask
    (``scoring.address``, or a LocalCluster of ``scoring.workers`` processes on 127.0.0.1). The model
    is scattered to every worker once; results persist in the workspace's ``.alp/shard-results``."""
    import dask
    from prefect_dask import DaskTaskRunner

    sp = ws.params.scoring
    if sp.address:
        runner = DaskTaskRunner(address=sp.address)
    else:
        runner = DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": sp.workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
            },
        )
    pool = ParquetPool(ws.pool_path)
    shard_task = score_shard_task.with_options(result_storage=shard_storage(ws))
    with runner:
        client = runner.client
        where = sp.address or f"LocalCluster of {sp.workers} workers"
        print(f"scoring on Dask ({where}); dashboard: {client.dashboard_link}")
        blob = model.to_bytes()
        key = hashlib.sha256(blob).hexdigest()
        scattered = client.scatter(blob, broadcast=True, hash=False)  # once per round, to every worker

        def run(shards: list[Shard], job: ShardJob) -> Iterator[ShardResult]:
            with dask.annotate(resources=dict(sp.resources)) if sp.resources else nullcontext():
                futures = [
                    runner.submit(
                        shard_task,
                        parameters={
                            "pool_path": str(pool.path),
                            "pool_fingerprint": pool.fingerprint,
                            "shard": shard,
                            "job": job,
                            "model_key": key,
                            "model": scattered,
                            "threads": sp.threads_per_worker,
                        },
                    )
                    for shard in shards
                ]
            for i, fut in enumerate(futures):
                yield fut.result()
                stats["shards"] += 1
                stats["cached"] += fut.state.name == "Cached"
                if progress is not None:
                    progress(i + 1, len(futures))

        stats = {"shards": 0, "cached": 0}
        run.stats = stats  # type: ignore[attr-defined]
        run.worker_peak_mb = lambda: _worker_peaks(client)  # type: ignore[attr-defined]
        yield run


def shard_storage(ws: Workspace) -> Any:
    """The workspace's ``.alp/shard-results`` as a Prefect result storage block (saved: the workers
    load it by reference), named after the workspace's path."""
    from prefect.filesystems import LocalFileSystem

    path = ws.alp_dir / "shard-results"
    block = LocalFileSystem(basepath=str(path))
    block.save(f"alp-shards-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}", overwrite=True)
    return block


def _worker_peaks(client: Any) -> dict[str, float]:
    """Peak RSS (MB) of each Dask worker process so far."""

    def peak() -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    return {str(k): round(v, 1) for k, v in client.run(peak).items()}
