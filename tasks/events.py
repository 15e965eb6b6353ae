"""Prefect events of a campaign: labels ingested, and "the newest batch is ready for the next round".

``alp.labels.ingested`` is emitted after every ingest that added labels. ``alp.batch.ready`` is emitted
at most once per batch, when the newest batch is labeled completely, or at least
``schedule.trigger_fraction`` of it once the batch is ``schedule.trigger_wait_s`` seconds old; the
round deployment of ``alp serve`` has a trigger on it. Both name the campaign as their resource
(``alp.campaign.<workspace name>``, with the workspace path as the label ``alp.workspace``). The
announcement is recorded in ``.alp/locks/runtime.json``: operational state, git-ignored, not versioned.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.events import emit_event

from al_core.config import ScheduleParams
from al_core.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)

LABELS_INGESTED = "alp.labels.ingested"
BATCH_READY = "alp.batch.ready"


def slug(name: str) -> str:
    """Lowercase letters, digits and dashes (Prefect artifact keys, resource ids)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", name.lower())).strip("-") or "workspace"


def campaign_resource(ws: Workspace) -> dict[str, str]:
    return {
        "prefect.resource.id": f"alp.campaign.{slug(ws.name)}",
        "prefect.resource.name": ws.name,
        "alp.workspace": str(ws.root),
    }


def runtime_path(ws: Workspace) -> Path:
    """Operational state (announcements, refused inbox files): beside the locks, git-ignored, never versioned."""
    return ws.alp_dir / "locks" / "runtime.json"


def runtime_state(ws: Workspace) -> dict[str, Any]:
    path = runtime_path(ws)
    return json.loads(path.read_text()) if path.exists() else {}


def update_runtime(ws: Workspace, **values: Any) -> None:
    """Merge ``values`` into the runtime state (needs the writer lock: a read-modify-write)."""
    state = runtime_state(ws)
    state.update(values)
    atomic_write_json(runtime_path(ws), state)


def batch_fill(ws: Workspace) -> dict[str, Any] | None:
    """The newest exported batch: its round, size, how many of it are labeled, and its age in seconds."""
    rounds = ws.exported_rounds()
    if not rounds:
        return None
    r = rounds[-1]
    ids = [row["sample_id"] for row in ws.batch(r)]
    labeled = set(ws.labeled_set()["sample_id"])
    n = sum(i in labeled for i in ids)
    return {
        "round": r,
        "batch_size": len(ids),
        "labeled": n,
        "fraction": n / len(ids) if ids else 1.0,
        "age_s": round(time.time() - ws.batch_path(r).stat().st_mtime, 1),
    }


def is_ready(fill: dict[str, Any], schedule: ScheduleParams) -> bool:
    """Complete, or labeled to ``trigger_fraction`` and older than ``trigger_wait_s``."""
    if fill["labeled"] >= fill["batch_size"]:
        return True
    return fill["fraction"] >= schedule.trigger_fraction and fill["age_s"] >= schedule.trigger_wait_s


def emit_labels_ingested(ws: Workspace, added: int, rounds: list[int]) -> None:
    emit_event(
        event=LABELS_INGESTED,
        resource=campaign_resource(ws),
        payload={"workspace": str(ws.root), "added": added, "rounds": rounds},
    )


def announce_if_ready(ws: Workspace) -> dict[str, Any] | None:
    """Emit ``alp.batch.ready`` for the newest batch if it is ready and was not announced yet.

    Returns the announcement (also recorded in ``.alp/state.json`` as ``last_batch_ready``), or None.
    The workspace's writer lock makes check-and-record one step, so two ingests at once announce a batch once.
    """
    with ws.writer("announce a ready batch"):
        fill = batch_fill(ws)
        if fill is None or not is_ready(fill, ws.params.schedule):
            return None
        last = runtime_state(ws).get("last_batch_ready")
        if last is not None and last["round"] >= fill["round"]:
            return None
        announcement = {**fill, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        emit_event(
            event=BATCH_READY,
            resource=campaign_resource(ws),
            payload={"workspace": str(ws.root), **announcement},
        )
        update_runtime(ws, last_batch_ready=announcement)
    log.info(
        "batch round-%03d ready (%d/%d labeled): next round announced",
        fill["round"],
        fill["labeled"],
        fill["batch_size"],
    )
    return announcement
