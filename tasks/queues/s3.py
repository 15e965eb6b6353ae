"""``queue.backend: s3`` with ``queue.path: s3://bucket/prefix``: the round's files go to
``s3://bucket/prefix/round-NNN/`` (through s3fs), then to the workspace's ``queue/`` folder (the local
copy the round flow reads); returned labels are read from ``s3://bucket/prefix/inbox/``.

Endpoint and credentials come only from the standard AWS chain (``AWS_ENDPOINT_URL``, ...). Failures
are :class:`tasks.s3.S3UnavailableError` (transient: connection refused or reset, timeouts, throttling,
5xx, after s3fs's and botocore's own retries) or :class:`tasks.s3.S3Error` (fix something first).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from al_core.config import QueueParams
from tasks import s3
from tasks.queues import BACKENDS
from tasks.queues._base import FileQueue

#: the errno values s3fs gives the S3 error codes that say "try again later" (SlowDown, 503, 500, ...)
TRANSIENT_ERRNOS = frozenset({errno.EBUSY, getattr(errno, "EREMOTEIO", errno.EIO), errno.ETIMEDOUT})


class S3Queue(FileQueue):
    name = "s3"
    summary = "an S3 prefix (`queue.path: s3://bucket/prefix`) through s3fs, plus a local copy in queue/"
    protocol: ClassVar[str] = "s3"
    makes_dirs: ClassVar[bool] = False

    @classmethod
    def check(cls, params: QueueParams) -> None:
        if not (params.path.startswith("s3://") and len(params.path) > len("s3://")):
            raise ValueError(f"path = {params.path!r}: the s3 backend needs s3://bucket/prefix")

    @classmethod
    def filesystem(cls) -> Any:
        import s3fs

        # a fresh instance per call: the endpoint and credentials are read from the environment now
        return s3fs.S3FileSystem(
            skip_instance_cache=True,
            config_kwargs={
                "retries": {"mode": "standard", "max_attempts": 4},
                "connect_timeout": 5,
                "read_timeout": 30,
            },
        )

    @classmethod
    def transient(cls, exc: BaseException) -> bool:
        if s3.is_transient(exc):
            return True
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return True
        cause = exc.__cause__
        return cause is not None and cause is not exc and not isinstance(exc, s3.S3Error) and cls.transient(cause)

    @classmethod
    @contextmanager
    def errors(cls, action: str, url: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise
        except s3.S3Error:
            raise
        except (OSError, Exception) as exc:
            from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

            if not isinstance(exc, OSError | BotoCoreError | ClientError):
                raise
            if isinstance(exc, NoCredentialsError) or isinstance(exc.__cause__, NoCredentialsError):
                raise s3.no_credentials(action, url) from None
            if cls.transient(exc):
                raise s3.unavailable(action, url, exc) from exc
            hint = (
                "access denied: check the AWS credentials and the bucket policy"
                if isinstance(exc, PermissionError)
                else "check the bucket and prefix in queue.path"
            )
            raise s3.S3Error(f"{action} {url} failed ({s3.endpoint()}): {exc}; {hint}") from exc


BACKENDS.register(S3Queue.name, S3Queue)
