"""`alp webhook` as its own process: a crowd of concurrent annotations is ingested exactly once, and
hostile requests (path-like ids, bad framing, wrong types, wrong secret) get a 4xx, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from al_core.workspace import Workspace
from benchmarks.soak_recovery import alp_bin
from flows.round import round_flow
from flows.stack import free_port, wait_port_open
from flows.workspace_init import init_workspace
from tests.flows.conftest import small_overrides

pytestmark = pytest.mark.e2e
SECRET = "crowd-s3cret"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A workspace with a 60-sample batch waiting, and `alp webhook` serving it on a free port."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("hook") / "hook-ws"
    init_workspace(root, small_overrides(**{"acquisition.initial_size": 60}))
    round_flow(str(root))
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "ALP_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [alp_bin(), "webhook", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    assert wait_port_open(port, 120), "alp webhook did not start listening"
    yield f"http://127.0.0.1:{port}/", Workspace(root), port, lines
    proc.terminate()
    proc.wait(timeout=30)


def truth(ws):
    t = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    return [(row["sample_id"], ws.classes[int(t[row["sample_id"]])]) for row in ws.batch(0)]


def payload(sample_id, label, ann_id, task_id):
    ann = {
        "id": ann_id,
        "task": task_id,
        "result": [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [label]}}],
        "completed_by": 1,
        "updated_at": "2026-12-01T10:00:00Z",
    }
    task = {"id": task_id, "data": {"sample_id": sample_id}}
    return {"action": "ANNOTATION_CREATED", "task": task, "annotation": ann, "project": {"id": 1}}


def post(url, body, secret=SECRET):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Token {secret}"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def raw(port, request: bytes) -> int:
    """Send raw bytes; return the HTTP status of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        head = s.recv(4096).decode(errors="replace")
    return int(head.split()[1])


def test_fifty_concurrent_annotations_are_ingested_exactly_once(served):
    url, ws, _, lines = served
    rows = truth(ws)[:50]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(lambda i: post(url, payload(rows[i][0], rows[i][1], 1000 + i, 500 + i)), range(len(rows)))
        )
    assert {status for status, _ in answers} <= {200, 202}, answers
    # a webhook Label Studio sends twice changes nothing
    assert post(url, payload(rows[0][0], rows[0][1], 1000, 500))[0] in (200, 202)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(Workspace(ws.root).labeled_set()) < 50:
        time.sleep(1)
    time.sleep(3)  # anything still in flight lands (and must not duplicate)
    fresh = Workspace(ws.root)
    labeled = fresh.labeled_set()
    assert len(labeled) == 50 and not labeled["sample_id"].duplicated().any()
    assert dict(zip(labeled["sample_id"], labeled["label"], strict=True)) == dict(rows)
    ledger = fresh.ledger()
    assert len({e["digest"] for e in ledger}) == len(ledger) and sum(e["added"] for e in ledger) == 50
    assert not (fresh.queue_dir / "inbox" / "rejected").exists()
    status = subprocess.run(["git", "-C", str(ws.root), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""
    # one log line per request, naming the action, the task and the annotation
    assert sum("POST / 20" in line and "ANNOTATION_CREATED task=" in line for line in lines) >= 51


def test_hostile_requests_get_a_4xx_and_write_nothing_outside(served, tmp_path):
    url, ws, port, lines = served
    sid, label = truth(ws)[55]
    escaped = payload(sid, label, "../../../../../ESCAPED", 9001)
    status, out = post(url, escaped)
    assert status in (200, 202), out
    inbox = ws.queue_dir / "inbox"
    names = [p.name for p in inbox.iterdir() if "escaped" in p.name.lower()]
    assert names and all(n.startswith("ls-escaped-") for n in names)
    for folder in (ws.root.parent, ws.root.parent.parent, ws.root, ws.queue_dir):
        assert not any("ESCAPED" in p.name for p in folder.iterdir())

    assert post(url, payload(sid, label, 1, 2), secret="wrong")[0] == 401
    auth = f"Authorization: Token {SECRET}\r\n".encode()
    for length, want in ((b"-1", 400), (b"abc", 400), (b"20000000", 413)):
        assert raw(port, b"POST / HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: " + length + b"\r\n\r\n") == want
    assert raw(port, b"POST / HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n") == 411
    assert raw(port, b"POST /../../etc HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 2\r\n\r\n{}") == 404
    assert raw(port, b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n") == 404

    bad_types = {
        "data is a string": {**payload(sid, label, 5, 6), "task": {"id": 6, "data": "m1d-000044"}},
        "annotation is a string": {**payload(sid, label, 5, 6), "annotation": "oops"},
        "result is a string": {**payload(sid, label, 5, 6), "annotation": {"id": 5, "result": "x"}},
        "task is a list": {**payload(sid, label, 5, 6), "task": [1]},
        "not an object": [1, 2],
    }
    for name, body in bad_types.items():
        status, out = post(url, body)
        assert status == 400 and "error" in out, (name, status, out)
    value_string = payload(sid, label, 7, 8)
    value_string["annotation"]["result"][0]["value"] = "3"
    status, out = post(url, value_string)
    assert status == 422 and "exactly one choice" in out["error"]
    status, out = post(url, payload("no-such-sample", label, 9, 10))
    assert status == 422 and "unknown sample_id" in out["error"]
    # still serving, and no traceback was printed
    assert post(url, {"action": "PROJECT_UPDATED"})[0] == 200
    assert not any("Traceback" in line for line in lines)
