"""The queue-backend registry: every backend is one module, its params checked by the backend itself,
and the folder backend's export, fetch and answer through the common interface."""

from __future__ import annotations

import errno

import pytest

from al_core.config import parse_params
from al_core.errors import ConfigError
from tasks import label_studio, queues, s3
from tasks.queues._base import ExportedBatch, FileQueue


def test_the_registry_holds_one_module_per_backend_and_names_the_valid_ones():
    assert queues.BACKENDS.names() == ("folder", "label-studio", "s3")
    with pytest.raises(ConfigError, match=r"queue\.backend = 'label_studio'.*Did you mean 'label-studio'"):
        queues.check(parse_params({"queue": {"backend": "label_studio"}}).queue)


def test_each_backend_checks_its_path():
    assert queues.check(parse_params({"queue": {"backend": "s3", "path": "s3://b/q"}}).queue).name == "s3"
    with pytest.raises(ConfigError, match="s3 backend needs s3://bucket/prefix"):
        queues.check(parse_params({"queue": {"backend": "s3", "path": "queue"}}).queue)
    with pytest.raises(ConfigError, match=r"is a URL: set queue\.backend"):
        queues.check(parse_params({"queue": {"path": "s3://b/q"}}).queue)
    with pytest.raises(ConfigError, match="leaves the workspace"):
        queues.check(parse_params({"queue": {"path": "../elsewhere"}}).queue)
    with pytest.raises(ConfigError, match="is a URL: with the label-studio backend it is the queue's local copy"):
        queues.check(parse_params({"queue": {"backend": "label-studio", "path": "s3://b/q"}}).queue)
    with pytest.raises(ConfigError, match=r"label_studio\.url"):
        queues.check(parse_params({"queue": {"backend": "label-studio", "label_studio": {"url": "ls:8080"}}}).queue)
    assert parse_params({}).queue.local_path == "queue"
    assert parse_params({"queue": {"backend": "s3", "path": "s3://b/q"}}).queue.local_path == "queue"


def test_transient_errors_are_told_apart_by_the_backends():
    import httpx

    assert queues.is_transient(label_studio.LabelStudioUnavailableError("down"))
    assert queues.is_transient(httpx.ConnectError("refused"))
    assert not queues.is_transient(label_studio.LabelStudioError("token refused"))
    assert queues.is_transient(OSError(errno.EBUSY, "SlowDown"))  # s3fs's translation of 503/SlowDown
    assert queues.is_transient(s3.S3UnavailableError("unreachable"))
    assert not queues.is_transient(s3.S3Error("no such bucket"))
    assert not queues.is_transient(PermissionError(errno.EACCES, "AccessDenied"))
    assert not queues.is_transient(ValueError("a bug"))


def test_a_file_queue_publishes_batch_last_and_once_and_pulls_its_inbox(tmp_path):
    """A file queue on another filesystem (the local one under tmp_path, as S3 is through s3fs)."""

    class Remote(FileQueue):
        name, summary, protocol = "test-remote", "a folder elsewhere", "file"

        @property
        def url(self) -> str:
            return str(tmp_path / "remote")

    class Ws:
        queue_dir = tmp_path / "local"

    rec = [{"sample_id": "a"}, {"sample_id": "b"}]
    files = {
        "label-config.xml": "<View/>",
        "round-000/label-studio.json": "[]",
        "round-000/batch.jsonl": '{"sample_id": "a"}\n{"sample_id": "b"}\n',
    }
    batch = ExportedBatch(0, rec, [], "<View/>", files)
    written = []
    backend = Remote(Ws())
    real = backend._write
    backend._write = lambda fs, url, data: (written.append(url.rsplit("remote/", 1)[1]), real(fs, url, data))
    backend.publish(batch)
    assert written == ["label-config.xml", "round-000/label-studio.json", "round-000/batch.jsonl"]
    written.clear()
    backend.publish(batch)  # the same batch again: batch.jsonl is not rewritten
    assert "round-000/batch.jsonl" not in written
    (tmp_path / "remote" / "round-000" / "batch.jsonl").write_text('{"sample_id": "z"}\n')
    with pytest.raises(Exception, match="already holds a different batch"):
        backend.publish(batch)
    (tmp_path / "remote" / "inbox" / "ana").mkdir(parents=True)
    (tmp_path / "remote" / "inbox" / "ana" / "r0.jsonl").write_text("{}\n")
    (tmp_path / "remote" / "inbox" / "notes.txt").write_text("not labels")
    assert [p.name for p in backend.fetch()] == ["ana__r0.jsonl"]
    assert (tmp_path / "local" / "inbox" / "ana__r0.jsonl").read_text() == "{}\n"
    (url,) = backend.answer(0, [{"sample_id": "a", "label": "cat", "annotator": "oracle"}])
    assert url.endswith("remote/inbox/round-000-oracle.jsonl")


def test_an_annotation_version_is_one_name_whichever_way_it_comes():
    """The webhook payload and the export spell one updated_at differently: one inbox name; an update
    (a later updated_at) is a new version; ids from a payload never become paths."""
    from tasks.queues.label_studio import spool_name

    hook = {"id": 42, "updated_at": "2026-12-01T10:00:00.123456Z"}
    export = {"id": 42, "updated_at": "2026-12-01T10:00:00.123456+00:00", "created_at": "2026-12-01T09:00:00Z"}
    assert spool_name(hook) == spool_name(export)
    assert spool_name({**hook, "updated_at": "2026-12-01T10:05:00Z"}) != spool_name(hook)
    assert spool_name({"id": 42, "created_at": "2026-12-01T09:00:00Z"}).startswith("ls-42-")
    name = spool_name({"id": "../../etc/passwd", "updated_at": "x"})
    assert "/" not in name and name.startswith("ls-") and name.endswith(".json")
