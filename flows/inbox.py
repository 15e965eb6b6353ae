"""The inbox flow: ingest every new label file in the queue's inbox, then announce a ready batch.

The inbox is ``queue/inbox/`` in the workspace, or ``s3://bucket/prefix/inbox/`` with the S3 queue
(downloaded into ``queue/inbox/`` first). Annotators (or ``alp webhook``) drop finished files there;
write them under a temporary name starting with ``.`` and rename them, so a half-written file is never read.
A file ingested before is skipped (ledger of digests); a file that fails validation is logged with its
errors and remembered by digest in ``.alp/locks/runtime.json`` (``inbox_failed``), so it is not retried until
its content changes. ``alp serve`` runs this flow every ``schedule.inbox_interval_s`` seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from al_core.errors import ALError
from al_core.labels import file_digest
from al_core.workspace import Workspace
from flows.ingest import ingest_flow
from tasks import events, queue, s3, steps


def inbox_files(ws: Workspace) -> list[Path]:
    """Label files waiting in the local inbox (S3 inbox: downloaded first), oldest first."""
    if ws.params.queue.backend == "s3":
        url = s3.join(queue.queue_url(ws), "inbox") + "/"
        if s3.list_urls(url.rstrip("/")):
            steps.fetch_label_files(str(ws.root), [url])
    inbox = ws.queue_dir / "inbox"
    if not inbox.is_dir():
        return []
    found = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted((p for p in found if p.suffix.lower() in queue.LABEL_SUFFIXES), key=lambda p: p.stat().st_mtime)


@flow(name="alp-inbox", log_prints=True)
def inbox_flow(workspace: str) -> dict[str, Any]:
    """Ingest the inbox's new files; emit ``alp.batch.ready`` once the newest batch is ready."""
    logger = get_run_logger()
    ws = Workspace(workspace).require()
    done = {e["digest"] for e in ws.ledger()}
    failed: dict[str, str] = dict(events.runtime_state(ws).get("inbox_failed", {}))
    ingested, refused = [], []
    for path in inbox_files(ws):
        digest = file_digest(path.read_bytes())
        if digest in done or digest in failed:
            continue
        try:
            ingest_flow(str(ws.root), [str(path)])
            ingested.append(path.name)
        except ALError as exc:
            logger.error("inbox file %s refused, nothing of it ingested: %s", path.name, exc)
            failed[digest] = f"{path.name}: {exc}"
            refused.append(path.name)
    if refused:
        events.update_runtime(ws, inbox_failed=failed)
    announced = events.announce_if_ready(ws)  # also time-based: fraction reached and batch old enough
    return {"ingested": ingested, "refused": refused, "announced": announced}
