"""The queue-backend interface, and the file-queue base that the folder and S3 backends share
(fsspec: any filesystem a URL names)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from al_core.errors import WorkspaceError
from al_core.workspace import Workspace, atomic_write_bytes, atomic_write_text, round_name

if TYPE_CHECKING:
    import fsspec

    from al_core.config import QueueParams

log = logging.getLogger(__name__)

#: the returned-label files a queue's inbox may hold (JSON Lines, CSV, Label Studio JSON export)
LABEL_SUFFIXES = (".jsonl", ".csv", ".json")


@dataclass(frozen=True)
class ExportedBatch:
    """One round's export, as every backend receives it: the batch records (DESIGN §4, rank order),
    the same batch as Label Studio tasks, and the files' texts by their path in the queue
    (``round-NNN/batch.jsonl``, ``round-NNN/label-studio.json``, ``label-config.xml``)."""

    round: int
    records: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    label_config: str
    files: dict[str, str]

    @property
    def batch_file(self) -> str:
        return f"{round_name(self.round)}/batch.jsonl"

    @property
    def sample_ids(self) -> list[str]:
        return [rec["sample_id"] for rec in self.records]


def check_same_batch(existing: str | None, batch: ExportedBatch, where: str) -> None:
    """An export that exists already must hold the same samples: a round is exported once."""
    if existing is None:
        return
    old_ids = [json.loads(line)["sample_id"] for line in existing.splitlines() if line.strip()]
    if old_ids != batch.sample_ids:
        raise WorkspaceError(
            f"{where} already holds a different batch for {round_name(batch.round)}; a round is exported once. "
            "Run the next round instead."
        )


def check_local_folder(path: str, hint: str) -> None:
    """``queue.path`` must be a folder inside the workspace (or an absolute one): ValueError otherwise."""
    if "://" in path:
        raise ValueError(f"path = {path!r} is a URL: {hint}")
    if not Path(path).is_absolute() and os.path.normpath(path).split(os.sep)[0] == "..":
        raise ValueError(
            f"path = {path!r} leaves the workspace: give a folder inside it (e.g. queue), "
            "or an absolute path if the queue really lives elsewhere"
        )


class QueueBackend:
    """Where a workspace's batches go and its returned labels come from (one per ``queue.backend``).

    The workspace's local copy (``ws.queue_dir``) is written by the export step after
    :meth:`publish` succeeded, so an export interrupted by the backend leaves no local ``batch.jsonl``
    and the round runs again. Every method but :meth:`check` and :meth:`transient` runs under the
    workspace's writer lock.
    """

    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, ws: Workspace):
        self.ws = ws

    @classmethod
    def check(cls, params: QueueParams) -> None:
        """Raise ValueError (naming the key and the fix) when ``params`` do not fit this backend."""

    @classmethod
    def transient(cls, exc: BaseException) -> bool:
        """Whether ``exc``, raised by this backend, may pass by itself (a retry makes sense)."""
        return False

    def publish(self, batch: ExportedBatch) -> dict[str, str]:
        """Send ``batch`` to the annotators (idempotent: the same batch again changes nothing);
        returns where it went (``{"batch_url": ...}``)."""
        return {}

    def fetch(self) -> list[Path]:
        """Bring labels returned since the last call into the local inbox (``queue/inbox/``); the new files."""
        return []

    def answer(self, r: int, lines: list[dict[str, str]]) -> list[str]:
        """The simulated annotator's answer to round ``r``: ``lines`` (``sample_id, label, annotator``)
        returned through the backend as a human would; the files (paths or URLs) to ingest."""
        path = self.ws.queue_dir / round_name(r) / "labels.jsonl"
        atomic_write_text(path, "".join(json.dumps(x) + "\n" for x in lines))
        return [str(path)]


class FileQueue(QueueBackend):
    """A queue that is a tree of files at ``queue.path`` on an fsspec filesystem: the round's files go to
    ``<path>/round-NNN/`` (``batch.jsonl`` last, as it marks the round exported) and annotators drop
    returned labels into ``<path>/inbox/``. The local folder backend is this with the workspace's
    ``queue/`` as the tree (nothing to copy)."""

    #: the fsspec protocol of ``queue.path``
    protocol: ClassVar[str]
    #: whether folders are made before a file is written (not on object stores)
    makes_dirs: ClassVar[bool] = True

    @property
    def url(self) -> str:
        return self.ws.params.queue.path.rstrip("/")

    @classmethod
    def filesystem(cls) -> fsspec.AbstractFileSystem:
        import fsspec

        return fsspec.filesystem(cls.protocol)

    def is_local_copy(self) -> bool:
        """Whether the tree is the workspace's local queue folder itself."""
        return False

    def _join(self, *parts: str) -> str:
        return "/".join([self.url, *(p.strip("/") for p in parts)])

    @classmethod
    @contextmanager
    def errors(cls, action: str, url: str) -> Iterator[None]:
        """Turn the filesystem's exceptions into alp's (a backend with a network says which are transient)."""
        yield

    def _read(self, fs: fsspec.AbstractFileSystem, url: str) -> bytes | None:
        with self.errors("reading", url):
            try:
                return fs.cat_file(url)
            except FileNotFoundError:
                return None

    def _write(self, fs: fsspec.AbstractFileSystem, url: str, data: bytes) -> None:
        """One object/file written whole (an S3 PUT; readers see the old content or the new)."""
        with self.errors("writing", url):
            if self.makes_dirs:
                fs.makedirs(fs._parent(url), exist_ok=True)
            fs.pipe_file(url, data)

    def publish(self, batch: ExportedBatch) -> dict[str, str]:
        if self.is_local_copy():
            return {}
        fs = self.filesystem()
        batch_url = self._join(batch.batch_file)
        old = self._read(fs, batch_url)
        check_same_batch(old.decode("utf-8") if old is not None else None, batch, batch_url)
        for name, text in batch.files.items():
            if name != batch.batch_file:
                self._write(fs, self._join(name), text.encode())
        if old is None:
            self._write(fs, batch_url, batch.files[batch.batch_file].encode())
        return {"batch_url": batch_url, "label_studio_url": self._join(round_name(batch.round), "label-studio.json")}

    def fetch(self) -> list[Path]:
        if self.is_local_copy():
            return []
        return self.pull(self.ws, self._join("inbox"), required=False)

    @classmethod
    def pull(cls, ws: Workspace, url: str, required: bool = True) -> list[Path]:
        """Copy the label file at ``url``, or every label file under the prefix ``url``, into the local
        inbox (``queue/inbox/``; nested names joined with ``__``); the local paths."""
        fs = cls.filesystem()
        path = fs._strip_protocol(url)
        inbox = ws.queue_dir / "inbox"
        with cls.errors("reading", url):
            if fs.isfile(path):
                return [download(fs, path, inbox / Path(path).name)]
            found = sorted(u for u in fs.find(path) if u.endswith(LABEL_SUFFIXES))
            if not found and required:
                raise WorkspaceError(
                    f"no label files (.jsonl, .csv, .json) at {url}: check the URL and that the upload finished"
                )
            prefix = path.rstrip("/") + "/"
            return [download(fs, u, inbox / u.removeprefix(prefix).replace("/", "__")) for u in found]

    def answer(self, r: int, lines: list[dict[str, str]]) -> list[str]:
        if self.is_local_copy():
            return super().answer(r, lines)
        url = self._join("inbox", f"{round_name(r)}-{lines[0]['annotator'] if lines else 'oracle'}.jsonl")
        self._write(self.filesystem(), url, "".join(json.dumps(x) + "\n" for x in lines).encode())
        return [url]


def download(fs: fsspec.AbstractFileSystem, url: str, dest: Path) -> Path:
    """Copy one file to ``dest`` (atomically)."""
    atomic_write_bytes(dest, fs.cat_file(url))
    return dest
