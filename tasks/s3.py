"""S3 object reads through boto3 (``s3://`` sample uris), and the S3 error classes and messages the
s3 queue backend (tasks/queues/s3.py, on s3fs) shares (DESIGN §7).

The endpoint and the credentials come only from the standard AWS chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ...): nothing of them is ever written to
params.yaml, MLflow, logs or queue files. botocore retries transient failures (connection refused or
reset, timeouts, throttling, 5xx) in its ``standard`` mode; what still fails is raised as
:class:`S3UnavailableError` (transient: worth a retry later) or :class:`S3Error` (fix something first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from al_core.errors import ALError
from al_core.uris import register_filesystem, register_reader

log = logging.getLogger(__name__)

S3_SCHEME = "s3://"
# codes that say "try again later"; anything else from S3 needs a fix first
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "500",
        "502",
        "503",
        "504",
    }
)


class S3Error(ALError):
    """An S3 request failed in a way a retry will not fix (missing bucket, access denied, no credentials)."""


class S3UnavailableError(S3Error):
    """The S3 endpoint could not be reached or answered a transient error, after botocore's own retries."""


def is_s3_url(text: str) -> bool:
    """``s3://bucket/key``, also as a path library leaves it (``s3:/bucket/key``)."""
    return text.startswith("s3:/")


def normalise_url(text: str) -> str:
    if not is_s3_url(text):
        raise S3Error(f"{text!r} is not an S3 URL: expected s3://bucket/prefix")
    rest = text.removeprefix(S3_SCHEME) if text.startswith(S3_SCHEME) else text.removeprefix("s3:/")
    return S3_SCHEME + rest


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")`` (the key or prefix without leading/trailing slashes)."""
    bucket, _, key = normalise_url(url).removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise S3Error(f"{url!r} names no bucket: expected s3://bucket/prefix")
    return bucket, key.strip("/")


def join(url: str, *parts: str) -> str:
    bucket, key = split_url(url)
    return S3_SCHEME + "/".join(p.strip("/") for p in (bucket, key, *parts) if p.strip("/"))


def endpoint() -> str:
    """Where requests go, for messages (never credentials)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


@lru_cache(maxsize=8)
def _client(endpoint_key: str) -> Any:
    import boto3
    from botocore.config import Config

    del endpoint_key  # part of the cache key only: a changed AWS_ENDPOINT_URL gets a new client
    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30)
    return boto3.session.Session().client("s3", config=config)


def client() -> Any:
    """An S3 client from the standard AWS chain (endpoint, credentials, region)."""
    keys = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_REGION")
    return _client("|".join(os.environ.get(k, "") for k in keys))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an I/O failure that may pass by itself (so a retry makes sense)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, S3UnavailableError):
        return True
    if isinstance(exc, S3Error):
        return False
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectTimeoutError | ReadTimeoutError):
        return True
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code")) in TRANSIENT_CODES
    return isinstance(exc, ConnectionError | TimeoutError)


def no_credentials(action: str, url: str) -> S3Error:
    """The error for a call made without AWS credentials, naming where they come from."""
    return S3Error(
        f"{action} {url}: no AWS credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); "
        'for the local stack: eval "$(alp stack env)"'
    )


def unavailable(action: str, url: str, exc: BaseException) -> S3UnavailableError:
    """The (transient) error for an S3 endpoint that is down or failing."""
    return S3UnavailableError(
        f"{action} {url}: the S3 endpoint ({endpoint()}) is unreachable or failing ({exc}). Check that it "
        "runs (`alp stack status` for the local stack) and that AWS_ENDPOINT_URL points at it, then retry."
    )


@contextmanager
def _errors(action: str, url: str) -> Iterator[None]:
    """Turn botocore's exceptions into :class:`S3Error` / :class:`S3UnavailableError` naming the fix."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError:
        raise no_credentials(action, url) from None
    except (ClientError, BotoCoreError) as exc:
        if is_transient(exc):
            raise unavailable(action, url, exc) from exc
        code = str(exc.response.get("Error", {}).get("Code")) if isinstance(exc, ClientError) else ""
        hint = {
            "NoSuchBucket": "the bucket does not exist: create it or fix the s3:// URL in params.yaml",
            "AccessDenied": "access denied: check the AWS credentials and the bucket policy",
            "InvalidAccessKeyId": "the AWS access key is not known to this endpoint: check AWS_ACCESS_KEY_ID",
            "SignatureDoesNotMatch": "the AWS secret key does not match: check AWS_SECRET_ACCESS_KEY",
        }.get(code, "see the error above")
        raise S3Error(f"{action} {url} failed ({endpoint()}): {exc}; {hint}") from exc


def get_bytes(url: str) -> bytes | None:
    """The object's content, or None if there is no such object."""
    bucket, key = split_url(url)
    s3 = client()
    with _errors("reading", url):
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None


def presigned_url(url: str, expires_s: int) -> str:
    """An HTTPS GET URL of the object that works without credentials for ``expires_s`` seconds (signed
    locally with the AWS chain's keys: no request is made, so a missing object is not noticed here)."""
    bucket, key = split_url(url)
    with _errors("presigning", url):
        return client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires_s)
        )


def read_object(url: str) -> bytes:
    """An object's bytes (``s3://`` sample uris of image pools); a missing object is FileNotFoundError."""
    data = get_bytes(url)
    if data is None:
        raise FileNotFoundError(f"no such object: {url}")
    return data


register_reader("s3", read_object)


def arrow_filesystem() -> Any:
    """A pyarrow S3 filesystem from the same AWS chain, for tables read in shards (a big pool on S3)."""
    from pyarrow import fs

    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {}
    if url:
        scheme, _, host = url.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    return fs.S3FileSystem(**kwargs)


register_filesystem("s3", arrow_filesystem)
