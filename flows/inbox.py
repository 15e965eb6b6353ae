"""The inbox flow: ingest every new label file in the queue's inbox, then announce a ready batch.

The inbox is ``queue/inbox/`` in the workspace; the queue backend fills it first with what was returned
to it (the S3 backend downloads ``s3://bucket/prefix/inbox/``, the label-studio backend takes the
annotations of its project's export that did not come by webhook). Annotators (or ``alp webhook``)
drop finished files there; write them under a temporary name starting with ``.`` and rename them, so
a half-written file is never read.
A file ingested before is skipped (ledger of digests). A file that is refused (malformed, or labels
that fail validation) is moved to ``queue/inbox/rejected/`` with a ``NAME.reason.txt`` beside it, so it
never blocks the inbox and the files after it are still ingested; fix it and drop it in again. Its
digest is remembered in ``.alp/locks/runtime.json`` (``inbox_failed``), so an S3 inbox that still holds
it does not retry it until its content changes. ``alp serve`` runs this flow every
``schedule.inbox_interval_s`` seconds; the whole poll holds the workspace's writer lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from al_core.errors import ALError
from al_core.labels import file_digest
from al_core.workspace import Workspace, atomic_write_text
from flows.ingest import finish_ingests
from tasks import events, queues, steps


def inbox_files(ws: Workspace, fetch: bool = True) -> list[Path]:
    """Label files waiting in the local inbox, oldest first; with ``fetch``, the queue backend brings in
    what was returned to it first (an S3 inbox downloaded, Label Studio's export polled)."""
    if fetch:
        steps.fetch_returned(str(ws.root))
    inbox = ws.queue_dir / "inbox"
    if not inbox.is_dir():
        return []
    found = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted((p for p in found if p.suffix.lower() in queues.LABEL_SUFFIXES), key=lambda p: p.stat().st_mtime)


def reject(ws: Workspace, path: Path, reason: str) -> Path:
    """Move a refused inbox file to ``inbox/rejected/`` with its reason beside it (writer lock held)."""
    folder = path.parent / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    atomic_write_text(target.with_name(target.name + ".reason.txt"), reason.rstrip() + "\n")
    os.replace(path, target)
    return target


@flow(name="alp-inbox", log_prints=True)
def inbox_flow(workspace: str, fetch: bool = True) -> dict[str, Any]:
    """Ingest the inbox's new files (``fetch``: first those returned to the queue backend since the last
    poll); emit ``alp.batch.ready`` once the newest batch is ready."""
    logger = get_run_logger()
    ws = Workspace(workspace).require()
    with ws.writer("inbox poll"):
        done = {e["digest"] for e in ws.ledger()}
        failed: dict[str, str] = dict(events.runtime_state(ws).get("inbox_failed", {}))
        added: dict[str, int] = {}
        reasons: dict[str, str] = {}
        for path in inbox_files(ws, fetch):
            digest = file_digest(path.read_bytes())
            if digest in done:
                continue
            if digest in failed:  # downloaded again from an S3 inbox: refused before
                reject(ws, path, failed[digest])
                continue
            try:
                added[path.name] = steps.ingest(str(ws.root), str(path), False, "human").added
            except ALError as exc:
                moved = reject(ws, path, str(exc))
                logger.error("inbox file %s refused, nothing of it ingested (moved to %s): %s", path.name, moved, exc)
                failed[digest] = reasons[path.name] = f"{path.name}: {exc}"
        if reasons:
            events.update_runtime(ws, inbox_failed=failed)
        _, announced = finish_ingests(ws)  # one commit for the poll; also time-based readiness
    return {
        "ingested": sorted(added),
        "refused": sorted(reasons),
        "added": added,
        "reasons": reasons,
        "announced": announced,
    }
