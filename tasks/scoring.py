"""Scoring the pool's shards: the progress bar over shards, and the dask engine (shards as Prefect tasks).

``scoring.engine: dask`` scores every shard as a Prefect task (``score-shard``) on a Dask cluster
through prefect-dask's ``DaskTaskRunner``: a ``LocalCluster`` of ``scoring.workers`` processes, or
the scheduler at ``scoring.address``. The model goes to the workers once per round (scattered,
broadcast to every worker); each task reads its shard of ``data/pool.parquet`` itself, and its
result is a persisted Prefect task result keyed by (model, pool file, shard, job), so a rerun of
the round does not score finished shards again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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
