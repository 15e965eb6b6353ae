"""``queue.backend: folder`` (the default): the queue is the workspace's ``queue.path`` folder itself.

Annotators (or Label Studio's import) read ``queue/round-NNN/``; returned labels are ingested with
``alp ingest`` or dropped into ``queue/inbox/`` for ``alp serve``'s inbox poller.
"""

from __future__ import annotations

from typing import ClassVar

from al_core.config import QueueParams
from tasks.queues import BACKENDS
from tasks.queues._base import FileQueue, check_local_folder


class FolderQueue(FileQueue):
    name = "folder"
    summary = "a folder in the workspace (`queue.path`, default queue/)"
    protocol: ClassVar[str] = "file"

    @classmethod
    def check(cls, params: QueueParams) -> None:
        check_local_folder(params.path, "set queue.backend to the backend it names (e.g. s3), or give a folder")

    def is_local_copy(self) -> bool:
        return True


BACKENDS.register(FolderQueue.name, FolderQueue)
