"""Ingest returned labels into the workspace's labeled set.

Validate the whole file first (al_core.labels); write nothing unless it is valid (or ``partial``);
re-ingesting a file already ingested changes nothing (ledger of file digests). Everything happens
under the workspace's writer lock: the read of the labeled set, the merge and the write are one
step, so two ingests at once both land. The merge is one journaled change
(:meth:`Workspace.commit_labeled`): a crash leaves it undone or rolled forward by the next writer.

Corrections (a Label Studio annotation newer than the stored label, see :mod:`al_core.labels`)
replace the stored row in its round file, and the replaced row goes to
``data/labeled/history.parquet`` in the same change, so it is versioned like any ingest. Label
Studio user ids (``ls-user-<id>``) are named by e-mail through the Label Studio API when
``ALP_LABEL_STUDIO_URL`` and ``ALP_LABEL_STUDIO_TOKEN`` are set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from al_core import faults
from al_core.labels import HISTORY_COLUMNS, LABELED_COLUMNS, file_digest, parse_label_file, validate_labels
from al_core.pool import read_pool_ids
from al_core.workspace import Workspace, atomic_write_text
from tasks import label_studio

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
    corrected: int = 0


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
    labeled = ws.labeled_set()
    new, problems = validate_labels(
        str(path),
        records,
        parse_problems,
        classes=ws.classes,
        label_format=ws.params.queue.label_format,
        pool_ids=read_pool_ids(ws.pool_path).present([rec.sample_id for rec in records]),
        queued=ws.queued(),
        labeled=dict(zip(labeled["sample_id"], labeled["label"], strict=True)),
        partial=partial,
        labeled_at=dict(zip(labeled["sample_id"], labeled["labeled_at"], strict=True)),
    )
    new["source"] = source
    new["annotator"] = label_studio.resolve_annotators(new["annotator"].tolist(), ws.params.queue.label_studio.url)
    result.rejected = problems
    if problems:
        rejects = path.with_name(path.name + ".rejects.txt")
        atomic_write_text(rejects, "\n".join(problems) + "\n")
        result.rejects_file = str(rejects)
    stored = labeled.set_index("sample_id")
    corrected = new[new["sample_id"].isin(stored.index)]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    updates = {}
    touched = {int(r) for r in new["round"]} | {int(r) for r in stored.loc[corrected["sample_id"], "round"]}
    for r in sorted(touched):
        rows = new[new["round"] == r]
        current = ws.labeled_round(r)
        current = current[~current["sample_id"].isin(corrected["sample_id"])]  # the latest annotation wins
        updates[r] = pd.concat([current, rows], ignore_index=True) if len(current) else rows
        if len(rows):
            result.rounds[r] = len(rows)
    history = None
    if len(corrected):
        old = stored.loc[corrected["sample_id"]].reset_index()[LABELED_COLUMNS]
        old["replaced_at"] = now
        old["replaced_by"] = corrected["label"].to_numpy()
        old["replaced_by_annotator"] = corrected["annotator"].to_numpy()
        old["ingest_digest"] = digest
        history = pd.concat([ws.label_history(), old[LABELED_COLUMNS + HISTORY_COLUMNS]], ignore_index=True)
        for before, after in zip(old.itertuples(), corrected.itertuples(), strict=True):
            log.info(
                "corrected %s: %r (%s) -> %r (%s), the latest annotation wins",
                before.sample_id,
                before.label,
                before.annotator,
                after.label,
                after.annotator,
            )
    result.corrected = len(corrected)
    result.added = len(new) - len(corrected)
    faults.point("ingest.validated")
    ws.commit_labeled(
        updates,
        ledger_entry={
            "digest": digest,
            "file": path.name,
            "added": result.added,
            "corrected": result.corrected,
            "rejected": len(problems),
            "rounds": sorted(result.rounds),
            "at": now,
        },
        history=history,
    )
    log.info(
        "ingested %s: %d new label(s), %d corrected, %d rejected", path, result.added, result.corrected, len(problems)
    )
    return result


def summary_json(results: list[IngestResult]) -> str:
    return json.dumps([r.__dict__ for r in results], indent=2)
