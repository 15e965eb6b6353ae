"""The ingest flow: validate returned labels, merge them into the labeled set, version it.

The whole flow holds the workspace's writer lock. Versioning (dvc add, git commit, dvc push) and the
``alp.labels.ingested`` event follow the ledger: every ledger entry past the last one versioned is
versioned and announced, so a flow killed after the merge and rerun (with the same file, which is then
"already ingested", or any other) still commits, pushes and announces those labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from al_core import faults
from al_core.errors import ALError
from al_core.workspace import Workspace
from tasks import events, steps


@flow(name="alp-ingest", log_prints=True)
def ingest_flow(workspace: str, files: list[str], partial: bool = False, source: str = "human") -> list[dict[str, Any]]:
    """Ingest each returned-labels file (JSONL, CSV or Label Studio JSON export; a path or an s3:// URL)."""
    ws = Workspace(workspace).require()
    with ws.writer("ingest " + " ".join(Path(f).name for f in files)):
        files = steps.fetch_label_files(str(ws.root), files)  # s3:// URLs: downloaded into queue/inbox/ first
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise ALError(f"no such label file(s): {', '.join(missing)}")
        results = []
        try:
            for f in files:
                results.append(steps.ingest(str(ws.root), str(Path(f).resolve()), partial, source))
        finally:  # the files ingested before one that failed are versioned all the same
            finish_ingests(ws)
    return [r.__dict__ for r in results]


def finish_ingests(ws: Workspace) -> tuple[int, dict[str, Any] | None]:
    """Version and announce every ingested file not versioned yet (writer lock held).

    Returns the number of labels versioned now and the ``alp.batch.ready`` announcement, if one was made."""
    entries = ws.ledger()
    done = int(events.runtime_state(ws).get("versioned_ledger", 0))
    todo = [e for e in entries[done:] if e.get("added") or e.get("corrected")]
    added = sum(int(e["added"]) for e in todo)
    corrected = sum(int(e.get("corrected", 0)) for e in todo)
    if todo:
        rounds = sorted({int(r) for e in todo for r in e.get("rounds", [])})
        fixes = f", {corrected} corrected" if corrected else ""
        steps.version_ingested(str(ws.root), f"ingest {added} label(s){fixes} for round(s) {rounds}")
        faults.point("ingest.versioned")
        events.emit_labels_ingested(ws, added, rounds)
    if len(entries) != done:
        events.update_runtime(ws, versioned_ledger=len(entries))
    return added, events.announce_if_ready(ws)
