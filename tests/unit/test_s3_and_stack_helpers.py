"""Pure helpers of the S3 queue and the local stack: URLs, transient-error classification, recordings."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from flows.stack import keep_complete_lines
from tasks import s3


@pytest.mark.parametrize(
    ("text", "url", "parts"),
    [
        ("s3://bucket/a/b", "s3://bucket/a/b", ("bucket", "a/b")),
        ("s3:/bucket/a/b", "s3://bucket/a/b", ("bucket", "a/b")),  # as pathlib leaves an s3:// URL
        ("s3://bucket/prefix/", "s3://bucket/prefix/", ("bucket", "prefix")),
        ("s3://bucket", "s3://bucket", ("bucket", "")),
    ],
)
def test_urls(text, url, parts):
    assert s3.is_s3_url(text)
    assert s3.normalise_url(text) == url
    assert s3.split_url(text) == parts


def test_join_and_bad_urls():
    assert s3.join("s3://b/q/", "round-001", "batch.jsonl") == "s3://b/q/round-001/batch.jsonl"
    assert s3.join("s3://b", "x") == "s3://b/x"
    with pytest.raises(s3.S3Error, match="not an S3 URL"):
        s3.normalise_url("queue/round-001")
    with pytest.raises(s3.S3Error, match="names no bucket"):
        s3.split_url("s3:///key")


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (client_error("SlowDown"), True),
        (client_error("503"), True),
        (client_error("NoSuchBucket"), False),
        (client_error("AccessDenied"), False),
        (NoCredentialsError(), False),
        (s3.S3UnavailableError("down"), True),
        (s3.S3Error("no bucket"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_transient_errors_are_retried(exc, transient):
    assert s3.is_transient(exc) is transient


def test_errors_name_the_fix():
    with pytest.raises(s3.S3UnavailableError, match="alp stack status"), s3._errors("writing", "s3://b/k"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    with pytest.raises(s3.S3Error, match="bucket does not exist") as info, s3._errors("writing", "s3://b/k"):
        raise client_error("NoSuchBucket")
    assert not isinstance(info.value, s3.S3UnavailableError)
    with pytest.raises(s3.S3Error, match="AWS_ACCESS_KEY_ID"), s3._errors("reading", "s3://b/k"):
        raise NoCredentialsError()


def test_a_recording_cut_by_a_crash_loses_only_its_last_line(tmp_path):
    rec = tmp_path / "recording.jsonl"
    rec.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    keep_complete_lines(rec)
    assert rec.read_text() == '{"a": 1}\n{"b": 2}\n'
    keep_complete_lines(rec)  # whole lines: unchanged
    assert rec.read_text() == '{"a": 1}\n{"b": 2}\n'
    missing = tmp_path / "new.jsonl"
    keep_complete_lines(missing)
    assert missing.read_text() == ""
