"""Labeling-queue backends (``queue.backend``): one module each, registered in :data:`BACKENDS`.

A backend is where a round's batch goes and where returned labels come from. Each implements
:class:`QueueBackend`: ``check`` its params, ``publish`` an exported batch (before the workspace's
local copy, ``queue/round-NNN/``, which marks the round exported), ``fetch`` returned labels into the
local inbox (``queue/inbox/``), ``answer`` as the simulated annotator, and tell ``transient`` errors
(worth a retry) from the rest. Adding a backend = one module here that registers itself + its test.
"""

from __future__ import annotations

from pathlib import Path

from al_core.config import QueueParams
from al_core.errors import ConfigError
from al_core.registry import Registry
from al_core.workspace import Workspace
from tasks.queues._base import LABEL_SUFFIXES, ExportedBatch, FileQueue, QueueBackend

BACKENDS: Registry[type[QueueBackend]] = Registry("queue backend", "tasks.queues", "queue.backend")

__all__ = [
    "BACKENDS",
    "LABEL_SUFFIXES",
    "ExportedBatch",
    "QueueBackend",
    "backend",
    "check",
    "is_transient",
    "is_url",
    "pull",
]


def check(params: QueueParams) -> type[QueueBackend]:
    """The backend class ``params.backend`` names, after it checked the rest of ``params``
    (:class:`ConfigError` naming the key and the fix)."""
    cls = BACKENDS.get(params.backend)
    try:
        cls.check(params)
    except ValueError as exc:
        raise ConfigError(f"params.yaml: queue: {exc}") from None
    return cls


def backend(ws: Workspace) -> QueueBackend:
    """The workspace's queue backend."""
    return check(ws.params.queue)(ws)


def is_transient(exc: BaseException) -> bool:
    """Whether any registered backend calls ``exc`` transient (a Prefect retry condition needs no workspace)."""
    return any(cls.transient(exc) for _, cls in BACKENDS.items())


def is_url(text: str) -> bool:
    """``scheme://...`` (also ``s3:/bucket/key`` as a path library leaves an S3 URL)."""
    return "://" in text or text.startswith("s3:/")


def pull(ws: Workspace, url: str) -> list[Path]:
    """Copy the label file at ``url`` (or every label file under that prefix) into ``queue/inbox/``,
    through the file-queue backend of the URL's scheme (``s3://`` → the s3 backend)."""
    if url.startswith("s3:/") and not url.startswith("s3://"):
        url = "s3://" + url.removeprefix("s3:/")
    scheme = url.split("://", 1)[0]
    for _, cls in BACKENDS.items():
        if issubclass(cls, FileQueue) and cls.protocol == scheme:
            return cls.pull(ws, url)
    raise ConfigError(f"{url}: no queue backend reads {scheme}:// URLs; give a local path or an s3:// URL")
