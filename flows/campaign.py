"""The campaign flow (simulation): rounds, each batch answered by a simulated annotator from the
held-apart ground truth through the same queue files a human would use, then ingested."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from al_core.config import load_params, with_overrides
from al_core.workspace import Workspace, atomic_write_text
from flows.ingest import ingest_flow
from flows.round import round_flow
from tasks import steps, stopping

log = logging.getLogger(__name__)


def apply_overrides(ws: Workspace, **dotted: Any) -> None:
    """Write CLI overrides into the workspace's params.yaml (validated), so runs stay reproducible."""
    dotted = {k: v for k, v in dotted.items() if v is not None}
    if not dotted:
        return
    from al_core.config import dump_params

    with ws.writer("params overrides"):
        params = with_overrides(load_params(ws.params_path), **dotted)
        atomic_write_text(ws.params_path, dump_params(params))
    ws.__dict__.pop("params", None)


def _annotate(ws: Workspace, r: int) -> None:
    labels = steps.simulate_annotator(str(ws.root), r)
    ingest_flow(str(ws.root), labels, source="oracle")


def _one_round(ws: Workspace) -> dict[str, Any]:
    summary = round_flow(str(ws.root), simulate=True)
    if not stopping.stopped_in(summary):  # a stopped campaign's last batch waits for `alp continue`
        _annotate(ws, summary["round"])
    return summary


@flow(name="alp-campaign", log_prints=True)
def campaign_flow(
    workspace: str, rounds: int | None = None, strategy: str | None = None, progress: bool = False
) -> list[dict[str, Any]]:
    """Run ``rounds`` trained rounds (after the cold-start batch if none was exported yet)."""
    ws = Workspace(workspace).require()
    stopping.require_not_stopped(ws, ws.next_round())
    apply_overrides(ws, **{"acquisition.rounds": rounds, "acquisition.strategy": strategy})
    params = ws.params
    n = params.acquisition.rounds
    budget = params.acquisition.label_budget
    summaries: list[dict[str, Any]] = []
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    ) as bar:
        job = bar.add_task(f"{ws.name} ({params.acquisition.strategy})", total=n, status="")
        for r in ws.pending():  # batches exported earlier and not answered yet
            _annotate(ws, r)
        if not ws.exported_rounds():
            bar.update(job, status="cold start")
            summaries.append(_one_round(ws))
        for _ in range(n):
            if budget is not None and len(ws.queued()) >= budget:
                log.info("label budget %d spent; stopping", budget)
                break
            s = _one_round(ws)
            summaries.append(s)
            acc = s["metrics"].get("test_accuracy")
            bar.update(job, advance=1, status=f"{s['n_labels']} labels, acc {acc:.3f}" if acc is not None else "")
            if stopping.stopped_in(s):
                log.info("%s: stopping rule fired at round %d: %s", ws.name, s["round"], s["stopping"]["reason"])
                break
    return summaries
