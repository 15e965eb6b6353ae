"""The exported batch as Label Studio shows it, through the real round flow: digits as PNG images
(files beside the batch, inline in the tasks), MNIST-1D as a time series of the sample's values."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from al_core.workspace import Workspace
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tests.flows.conftest import copy_workspace, exported_template, small_overrides

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return exported_template(tmp_path_factory, "lsq")


@pytest.fixture
def ws(template, tmp_path):
    return copy_workspace(template, tmp_path)


def tasks_of(ws: Workspace, r: int) -> list[dict]:
    return json.loads((ws.queue_dir / f"round-{r:03d}" / "label-studio.json").read_text())


def test_digits_batches_are_images_beside_the_batch_and_inline(ws):
    config = ET.fromstring((ws.queue_dir / "label-config.xml").read_text())
    assert config.find("Image").get("value") == "$image" and config.find("Text") is None
    tasks = tasks_of(ws, 0)
    batch = ws.batch(0)
    assert [t["data"]["sample_id"] for t in tasks] == [b["sample_id"] for b in batch]
    for task in tasks:
        sid = task["data"]["sample_id"]
        png = ws.queue_dir / "round-000" / "images" / f"{sid}.png"
        assert task["data"]["image_file"] == f"round-000/images/{sid}.png"
        assert base64.b64decode(task["data"]["image"].split(",", 1)[1]) == png.read_bytes()
        assert task["data"]["acquisition"].startswith("random") and task["predictions"] == []  # cold start


def test_the_next_batch_carries_the_models_guess_and_its_probability(ws, tmp_path):
    import pandas as pd

    from flows.ingest import ingest_flow

    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    lines = [{"sample_id": b["sample_id"], "label": ws.classes[int(truth[b["sample_id"]])]} for b in ws.batch(0)]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ingest_flow(str(ws.root), [str(tmp_path / "l.jsonl")])
    round_flow(str(ws.root))
    batch, tasks = ws.batch(1), tasks_of(ws, 1)
    for rec, task in zip(batch, tasks, strict=True):
        best, p = max(rec["predictions"].items(), key=lambda kv: kv[1])
        (pred,) = task["predictions"]
        assert pred["score"] == p and 0 < p <= 1
        assert pred["result"][0]["value"]["choices"] == [best]
        assert task["data"]["acquisition_score"] == round(rec["score"], 6)
        assert task["data"]["acquisition"] == "entropy" and task["data"]["rank"] == rec["rank"]
    assert [t["data"]["rank"] for t in tasks] == list(range(1, len(tasks) + 1))


def test_mnist1d_batches_are_time_series_of_the_samples_values(tmp_path):
    root = tmp_path / "m1d"
    init_workspace(
        root,
        small_overrides(**{"dataset.name": "mnist1d", "dataset.pool_size": 200, "dataset.test_size": 50}),
    )
    round_flow(str(root))
    ws = Workspace(root)
    config = ET.fromstring((ws.queue_dir / "label-config.xml").read_text())
    ts = config.find("TimeSeries")
    assert ts.get("valueType") == "json" and [c.get("column") for c in ts.findall("Channel")] == ["signal"]
    ids, X = ws.pool()
    row = {sid: i for i, sid in enumerate(ids)}
    for task in tasks_of(ws, 0):
        values = task["data"]["series"]["signal"]
        np.testing.assert_allclose(values, X[row[task["data"]["sample_id"]]], atol=1e-4)
    assert not (ws.queue_dir / "round-000" / "images").exists()


# ---------------------------------------------------------------- corrections: the latest annotation wins
def ls_annotation(label: str, updated_at: str, ann_id: int = 11, who=1) -> dict:
    return {
        "id": ann_id,
        "task": 7,
        "result": [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [label]}}],
        "completed_by": who,
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": updated_at,
    }


def git(ws: Workspace, *args: str) -> str:
    return subprocess.run(["git", "-C", str(ws.root), *args], capture_output=True, text=True, check=True).stdout


def test_a_label_studio_correction_replaces_the_label_keeps_the_old_one_and_is_versioned(ws, tmp_path):
    from al_core.errors import LabelValidationError
    from flows.ingest import ingest_flow

    sid = ws.batch(0)[0]["sample_id"]
    first, second = ws.classes[0], ws.classes[1]

    def export(name: str, label: str, when: str) -> str:
        task = {"id": 7, "data": {"sample_id": sid}, "annotations": [ls_annotation(label, when)]}
        (tmp_path / name).write_text(json.dumps([task]))
        return str(tmp_path / name)

    ingest_flow(str(ws.root), [export("a.json", first, "2026-12-01T10:00:00Z")])
    head = git(ws, "rev-parse", "HEAD")
    (res,) = ingest_flow(str(ws.root), [export("b.json", second, "2026-12-01T10:07:00.5Z")])
    assert (res["added"], res["corrected"]) == (0, 1)
    row = ws.labeled_set().set_index("sample_id").loc[sid]
    assert (row["label"], row["annotator"], row["labeled_at"]) == (second, "ls-user-1", "2026-12-01T10:07:00.5Z")
    assert len(ws.labeled_set()) == 1  # replaced, not added
    (old,) = ws.label_history().to_dict("records")
    assert (old["sample_id"], old["label"], old["labeled_at"]) == (sid, first, "2026-12-01T10:00:00Z")
    assert (old["replaced_by"], old["replaced_by_annotator"]) == (second, "ls-user-1")
    # versioned like any ingest: a commit of its own, the history inside the DVC-tracked labeled set
    assert git(ws, "rev-parse", "HEAD") != head and "1 corrected" in git(ws, "log", "-1", "--format=%s")
    assert git(ws, "status", "--porcelain", "--untracked-files=no").strip() == ""
    assert ws.ledger()[-1]["corrected"] == 1
    # an export taken before the correction is out of date: refused, nothing changes
    with pytest.raises(LabelValidationError, match="out of date"):
        ingest_flow(str(ws.root), [export("stale.json", first, "2026-12-01T10:03:00Z")])
    assert ws.labeled_set().set_index("sample_id").loc[sid, "label"] == second
    # a JSON Lines file changing it is refused as before
    (tmp_path / "x.jsonl").write_text(json.dumps({"sample_id": sid, "label": first}) + "\n")
    with pytest.raises(LabelValidationError, match="relabeling is not supported outside Label Studio"):
        ingest_flow(str(ws.root), [str(tmp_path / "x.jsonl")])


def test_an_annotation_updated_webhook_corrects_the_label(ws):
    from flows.webhook import WebhookReceiver, make_server

    receiver = WebhookReceiver(ws.root, "s3cret", reply_within_s=120)
    server = make_server(receiver, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    sid = ws.batch(0)[0]["sample_id"]

    def call(action: str, label: str, when: str) -> tuple[int, dict]:
        body = {
            "action": action,
            "task": {"id": 7, "data": {"sample_id": sid}},
            "annotation": ls_annotation(label, when),
        }
        req = urllib.request.Request(url, json.dumps(body).encode(), {"X-Alp-Secret": "s3cret"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        assert call("ANNOTATION_CREATED", ws.classes[2], "2026-12-01T10:00:00Z")[0] == 200
        status, out = call("ANNOTATION_UPDATED", ws.classes[3], "2026-12-01T10:01:00Z")
        assert status == 200, out
        assert ws.labeled_set().set_index("sample_id").loc[sid, "label"] == ws.classes[3]
        assert ws.label_history()["label"].tolist() == [ws.classes[2]]
        # the same update delivered again (Label Studio retries): accepted, no change, no second history row
        receiver.reply_within_s = 0.8
        assert call("ANNOTATION_UPDATED", ws.classes[3], "2026-12-01T10:01:00Z")[0] in (200, 202)
        receiver.close()  # the worker has finished whatever it was doing
        assert ws.labeled_set().set_index("sample_id").loc[sid, "label"] == ws.classes[3]
        assert len(ws.label_history()) == 1
    finally:
        server.shutdown()
        server.server_close()
        receiver.close()


@pytest.mark.parametrize("fault", ["ingest.journal-undecided", "ingest.journal-decided"])
def test_a_correction_killed_mid_change_is_all_or_nothing_and_the_rerun_converges(ws, tmp_path, fault):
    """SIGKILL inside the journaled change: readers see the old label or the new one (never the history
    rows as labels), and the rerun ends with the correction applied once, versioned."""
    from prefect.settings import PREFECT_API_URL

    from benchmarks.soak_recovery import run_alp
    from flows.ingest import ingest_flow

    sid = ws.batch(0)[0]["sample_id"]
    for name, label, when in (
        ("a.json", ws.classes[0], "2026-12-01T10:00:00Z"),
        ("b.json", ws.classes[1], "2026-12-01T10:09:00Z"),
    ):
        task = {"id": 7, "data": {"sample_id": sid}, "annotations": [ls_annotation(label, when)]}
        (tmp_path / name).write_text(json.dumps([task]))
    ingest_flow(str(ws.root), [str(tmp_path / "a.json")])
    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    killed = run_alp(["ingest", str(ws.root), str(tmp_path / "b.json")], env, fault=fault)
    assert killed.returncode == -9
    seen = ws.labeled_set()
    assert len(seen) == 1 and seen["label"].iloc[0] in (ws.classes[0], ws.classes[1])
    rerun = run_alp(["ingest", str(ws.root), str(tmp_path / "b.json")], env)
    assert rerun.returncode == 0, rerun.output
    labeled = ws.labeled_set()
    assert labeled["label"].tolist() == [ws.classes[1]]
    assert ws.label_history()["label"].tolist() == [ws.classes[0]]
    assert git(ws, "status", "--porcelain", "--untracked-files=no").strip() == ""


def test_webhook_calls_alp_does_not_know_skipped_or_repeated_spool_nothing_new(ws):
    """With the label-studio backend: a call from another project is ignored (its tasks are another
    campaign's), a skipped annotation is ignored, a task whose sample alp never had is refused, and
    the same annotation twice lands once (one inbox file: the name the export poller would give it)."""
    from al_core.config import dump_params, load_params, with_overrides
    from al_core.workspace import atomic_write_text
    from flows.webhook import WebhookReceiver
    from tasks.queues.label_studio import spool_name

    queue = {"queue.backend": "label-studio", "queue.label_studio.url": "http://127.0.0.1:9"}
    atomic_write_text(ws.params_path, dump_params(with_overrides(load_params(ws.params_path), **queue)))
    atomic_write_text(ws.alp_dir / "label-studio.json", json.dumps({"project": 3, "url": "http://127.0.0.1:9"}))
    receiver = WebhookReceiver(ws.root, "s3cret", reply_within_s=120)
    sid = ws.batch(0)[0]["sample_id"]
    inbox = ws.queue_dir / "inbox"

    def call(project, sample_id, ann):
        body = {"action": "ANNOTATION_CREATED", "project": {"id": project}, "annotation": ann}
        body["task"] = {"id": 7, "data": {"sample_id": sample_id}, "project": project}
        return receiver.handle({"X-Alp-Secret": "s3cret"}, json.dumps(body).encode())

    try:
        ann = ls_annotation(ws.classes[1], "2026-12-01T10:00:00Z")
        status, out = call(7, sid, ann)
        assert status == 200 and "project 7 is not this workspace's Label Studio project (3)" in out["ignored"]
        status, out = call(3, sid, {**ann, "result": [], "was_cancelled": True})
        assert status == 200 and "skipped" in out["ignored"]
        assert not inbox.exists() or not list(inbox.iterdir())
        status, out = call(3, "not-a-sample", ann)
        assert status == 422 and "unknown sample_id 'not-a-sample'" in out["error"]
        assert call(3, sid, ann) == (200, {"action": "ANNOTATION_CREATED", "added": 1, "file": spool_name(ann)})
        assert call(3, sid, ann) == (200, {"action": "ANNOTATION_CREATED", "added": 0, "duplicate": True})
        assert [p.name for p in inbox.glob("ls-*.json")] == [spool_name(ann)]
        assert ws.labeled_set()["sample_id"].tolist() == [sid] and len(ws.ledger()) == 1
    finally:
        receiver.close()
