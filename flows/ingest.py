"""The ingest flow: validate returned labels, merge them into the labeled set, version it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from al_core.errors import ALError
from al_core.workspace import Workspace
from tasks import events, steps


@flow(name="alp-ingest", log_prints=True)
def ingest_flow(workspace: str, files: list[str], partial: bool = False, source: str = "human") -> list[dict[str, Any]]:
    """Ingest each returned-labels file (JSONL, CSV or Label Studio JSON export; a path or an s3:// URL)."""
    ws = Workspace(workspace).require()
    files = steps.fetch_label_files(str(ws.root), files)  # s3:// URLs: downloaded into queue/inbox/ first
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise ALError(f"no such label file(s): {', '.join(missing)}")
    results = [steps.ingest(str(ws.root), str(Path(f).resolve()), partial, source) for f in files]
    added = sum(r.added for r in results)
    if added:
        rounds = sorted({rnd for r in results for rnd in r.rounds})
        steps.version_ingested(str(ws.root), f"ingest {added} label(s) for round(s) {rounds}")
        events.emit_labels_ingested(ws, added, rounds)
        events.announce_if_ready(ws)
    return [r.__dict__ for r in results]
