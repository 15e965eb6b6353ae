"""Ingest returned labels into the workspace's labeled set.

Validate the whole file first (al_core.labels); write nothing unless it is valid (or ``partial``);
re-ingesting a file already ingested changes nothing (ledger of file digests). Everything happens
under the workspace's writer lock: the read of the labeled set, the merge and the write are one
step, so two ingests at once both land. The merge is one journaled change
(:meth:`Workspace.commit_labeled`): a crash leaves it undone or rolled forward by the next writer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from al_core import faults
from al_core.labels import file_digest, parse_label_file, validate_labels
from al_core.workspace import Workspace, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    file: str
    digest: str
    added: int = 0
    already_ingested: bool = False
    rejected: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    rounds: dict[int, int] = field(default_factory=dict)


def ingest_file(ws: Workspace, path: str | Path, partial: bool = False, source: str = "human") -> IngestResult:
    """Validate and merge one returned-labels file; see the module docstring for the guarantees."""
    path = Path(path)
    with ws.writer(f"ingest {path.name}"):
        return _ingest_locked(ws, path, partial, source)


def _ingest_locked(ws: Workspace, path: Path, partial: bool, source: str) -> IngestResult:
    data = path.read_bytes()
    digest = file_digest(data)
    result = IngestResult(file=str(path), digest=digest)
    if any(e["digest"] == digest for e in ws.ledger()):
        result.already_ingested = True
        return result
    records, parse_problems = parse_label_file(path.name, data)
    ids = ws.pool_ids()
    labeled = ws.labeled_set()
    new, problems = validate_labels(
        str(path),
        records,
        parse_problems,
        classes=ws.classes,
        label_format=ws.params.queue.label_format,
        pool_ids=set(ids.tolist()),
        queued=ws.queued(),
        labeled=dict(zip(labeled["sample_id"], labeled["label"], strict=True)),
        partial=partial,
    )
    new["source"] = source
    result.rejected = problems
    if problems:
        rejects = path.with_name(path.name + ".rejects.txt")
        atomic_write_text(rejects, "\n".join(problems) + "\n")
        result.rejects_file = str(rejects)
    updates = {}
    for r, rows in new.groupby("round"):
        current = ws.labeled_round(int(r))
        updates[int(r)] = pd.concat([current, rows], ignore_index=True) if len(current) else rows
        result.rounds[int(r)] = len(rows)
    result.added = len(new)
    faults.point("ingest.validated")
    ws.commit_labeled(
        updates,
        ledger_entry={
            "digest": digest,
            "file": path.name,
            "added": result.added,
            "rejected": len(problems),
            "rounds": sorted(result.rounds),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    log.info("ingested %s: %d new label(s), %d rejected", path, result.added, len(problems))
    return result


def summary_json(results: list[IngestResult]) -> str:
    return json.dumps([r.__dict__ for r in results], indent=2)
