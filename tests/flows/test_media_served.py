"""An image pool's own files, served to the annotator's browser by ``alp webhook`` (``media: served``):
the round flow puts signed URLs in the Label Studio tasks, and the real webhook server answers them
with the original file, only for queued samples and only with alp's signature."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from al_core.workspace import Workspace
from benchmarks.image_data import digits_pngs
from flows.round import round_flow
from flows.webhook import WebhookReceiver, make_server
from flows.workspace_init import init_workspace
from tasks import media
from tests.flows.test_byo_e2e import FAST

pytestmark = pytest.mark.e2e
SECRET = "media-s3cret"


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def test_the_tasks_point_at_the_original_files_and_the_webhook_serves_them(tmp_path, monkeypatch):
    monkeypatch.setenv(media.SECRET_ENV, SECRET)
    digits_pngs(tmp_path / "pngs", 200)
    root = tmp_path / "scans"
    init_workspace(
        root,
        {
            **FAST,
            "dataset.name": "images",
            "dataset.path": str(tmp_path / "pngs"),
            "dataset.image_size": [8, 8],
            "acquisition.initial_size": 12,
            "queue.label_studio.media_url": "http://127.0.0.1:1",  # the port is not known yet: rewritten below
        },
    )
    round_flow(str(root))
    ws = Workspace(root)
    tasks = json.loads((ws.queue_dir / "round-000" / "label-studio.json").read_text())
    batch = {rec["sample_id"]: rec["uri"] for rec in ws.batch(0)}
    assert len(tasks) == 12 and all(t["data"]["image"].startswith("http://127.0.0.1:1/media/") for t in tasks)
    receiver = WebhookReceiver(root, SECRET)
    server = make_server(receiver, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for task in tasks:
            url = task["data"]["image"].replace("http://127.0.0.1:1", base)
            status, body, kind = get(url)
            sid = task["data"]["sample_id"]
            assert (status, kind) == (200, "image/png") and body == Path(batch[sid]).read_bytes()  # the file itself
        first = tasks[0]["data"]["image"].replace("http://127.0.0.1:1", base)
        assert get(first.split("?")[0])[0] == 403  # no signature
        assert get(first[:-4] + "0000")[0] == 403  # a forged one
        queued = set(batch)
        other = next(p.stem for p in sorted((tmp_path / "pngs").rglob("*.png")) if p.stem not in queued)
        status, body, _ = get(media.served_url(base, other, SECRET))  # signed, but never queued
        assert status == 404 and b"no queued sample" in body
        status, body, _ = get(media.served_url(base, "../../params.yaml", SECRET))  # ids only, never paths
        assert status == 404
    finally:
        server.shutdown()
        server.server_close()
        receiver.close()
