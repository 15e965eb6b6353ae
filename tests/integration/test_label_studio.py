"""A real Label Studio: alp's exported batch imports into a project made with alp's labeling config,
annotations posted through its API come back in its JSON export, that export ingests directly, the
batch is announced ready, and the next round runs (as the `alp.batch.ready` trigger would start it).

Label Studio gets a virtual environment of its own (it pins packages that clash with ours, prefect
among them), created on first use under the git-ignored ``build/`` and reused after; then it runs on
127.0.0.1 with a fresh data directory, an admin user and a legacy API token.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from al_core.errors import LabelValidationError
from al_core.workspace import Workspace
from flows.ingest import ingest_flow
from flows.round import round_flow
from flows.stack import free_port, wait_port_open
from flows.workspace_init import init_workspace
from tasks import events
from tests.integration.conftest import small_overrides

LABEL_STUDIO = "label-studio==1.23.2"
REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "build" / f"ls-venv-{LABEL_STUDIO.split('==')[1]}"
TOKEN = "alp-test-token-0123456789abcdef"


def ls_executable() -> Path:
    """Label Studio's own venv (created once, ~1–2 min with uv; reused while build/ is kept)."""
    exe = VENV / "bin" / "label-studio"
    if exe.exists():
        return exe
    t0 = time.perf_counter()
    tmp = VENV.with_name(VENV.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        cmd = [str(uv), "pip", "install", "-q", "--python", str(tmp / "bin" / "python"), LABEL_STUDIO]
    else:
        cmd = [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", LABEL_STUDIO]
    subprocess.run(cmd, check=True)
    tmp.rename(VENV)  # whole or not at all: an interrupted install is not taken for a finished one
    # console scripts name the venv's python by absolute path: rewrite them for the final location
    for script in (VENV / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            head = script.read_bytes()[:200]
            if head.startswith(b"#!") and str(tmp).encode() in head:
                script.write_bytes(script.read_bytes().replace(str(tmp).encode(), str(VENV).encode()))
    sys.stderr.write(f"\nLabel Studio venv installed in {time.perf_counter() - t0:.1f}s\n")
    return exe


class LabelStudio:
    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    exe = ls_executable()
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LATEST_VERSION_CHECK": "false",  # no call to the package index at start
        "COLLECT_ANALYTICS": "false",
        "SSRF_PROTECTION_ENABLED": "false",  # else no webhook on 127.0.0.1 (403 "reserved network address")
        "PATH": str(exe.parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    log_path = data / "label-studio.log"
    cmd = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data-dir", str(data / "data"), "--username", "admin@example.com", "--password", "alp-test-pw"]
    cmd += ["--user-token", TOKEN, "--enable-legacy-api-token"]
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ls = LabelStudio(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 420
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"label-studio exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                ls.call("GET", "/api/projects")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"label-studio not up in 420s:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(2)
        sys.stderr.write(f"\nLabel Studio up in {time.perf_counter() - t0:.1f}s\n")
        yield ls
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_label_studio_round_trip(label_studio, stack_env, tmp_path, monkeypatch):
    ls = label_studio
    monkeypatch.setenv("ALP_LABEL_STUDIO_URL", ls.url)  # annotators named through the API
    monkeypatch.setenv("ALP_LABEL_STUDIO_TOKEN", TOKEN)
    root = tmp_path / "ls-ws"
    init_workspace(root, small_overrides())
    round_flow(str(root))
    ws = Workspace(root)

    project = ls.call(
        "POST", "/api/projects", {"title": "alp ls-ws", "label_config": (ws.queue_dir / "label-config.xml").read_text()}
    )
    tasks = json.loads((ws.queue_dir / "round-000" / "label-studio.json").read_text())
    imported = ls.call("POST", f"/api/projects/{project['id']}/import", tasks)
    assert imported["task_count"] == 30

    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    listed = ls.call("GET", f"/api/tasks?project={project['id']}&page_size=100")
    listed = listed["tasks"] if isinstance(listed, dict) else listed
    assert sorted(t["data"]["sample_id"] for t in listed) == sorted(t["data"]["sample_id"] for t in tasks)
    for t in listed:
        label = ws.classes[int(truth[t["data"]["sample_id"]])]
        result = [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [label]}}]
        ls.call("POST", f"/api/tasks/{t['id']}/annotations/", {"result": result})

    export = ls.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    assert len(export) == 30 and all(len(t["annotations"]) == 1 for t in export)
    export_file = tmp_path / "project-export.json"
    export_file.write_text(json.dumps(export))

    (result,) = ingest_flow(str(root), [str(export_file)])
    assert result["added"] == 30
    labeled = Workspace(root).labeled_set().set_index("sample_id")
    assert all(labeled.loc[sid, "label"] == ws.classes[int(truth[sid])] for sid in labeled.index)
    assert set(labeled["annotator"]) == {"admin@example.com"}  # the export's user id 1, named by the API
    # a correction in Label Studio (the annotation updated to another class): the latest wins
    first = min(listed, key=lambda t: t["id"])
    sid = first["data"]["sample_id"]
    old_label = labeled.loc[sid, "label"]
    new_label = next(c for c in ws.classes if c != old_label)
    (ann,) = ls.call("GET", f"/api/tasks/{first['id']}/annotations/")
    result = [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [new_label]}}]
    ls.call("PATCH", f"/api/annotations/{ann['id']}/", {"result": result})
    export_file2 = tmp_path / "project-export-2.json"
    export_file2.write_text(json.dumps(ls.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")))
    (result2,) = ingest_flow(str(root), [str(export_file2)])
    assert (result2["added"], result2["corrected"]) == (0, 1)
    assert Workspace(root).labeled_set().set_index("sample_id").loc[sid, "label"] == new_label
    (hist,) = Workspace(root).label_history().to_dict("records")
    assert (hist["sample_id"], hist["label"], hist["replaced_by"]) == (sid, old_label, new_label)
    # the first export again (out of date now): refused, the correction stays
    stale = tmp_path / "stale.json"
    stale.write_text(export_file.read_text() + "\n")
    with pytest.raises(LabelValidationError, match="out of date"):
        ingest_flow(str(root), [str(stale)])
    assert events.runtime_state(Workspace(root))["last_batch_ready"]["round"] == 0  # what fires the round deployment

    summary = round_flow(str(root), after_batch=0)
    assert summary["tag"] == "round-001" and Workspace(root).exported_rounds() == [0, 1]
    # the next batch, with the model's predictions, imports too
    tasks1 = json.loads((ws.queue_dir / "round-001" / "label-studio.json").read_text())
    assert all(t["predictions"] for t in tasks1)
    assert ls.call("POST", f"/api/projects/{project['id']}/import", tasks1)["task_count"] == 20


@pytest.mark.parametrize(
    ("dataset", "shape", "names"),
    [
        ("digits", (1, 8, 8), None),
        ("images", (3, 16, 16), None),
        ("mnist1d", (40,), None),
        ("table", (3, 10), [f"{c}_{i}" for c in ("acc_x", "acc_y", "acc_z") for i in range(10)]),
        ("table", (4,), ["age", "height", "weight", "pulse"]),
    ],
)
def test_each_modality_imports_with_its_labeling_config(label_studio, dataset, shape, names):
    """Label Studio accepts alp's config per modality and the tasks made for it, pre-annotation included."""
    import numpy as np

    from tasks.queue import batch_records, label_config, label_studio_tasks, presentation

    ls = label_studio
    classes = ["cat", "dog", "bird"]
    pres = presentation(dataset, shape, names)
    rng = np.random.default_rng(0)
    rows = rng.random((2, int(np.prod(shape)))).astype(np.float32)
    probs = np.array([[0.142, 0.5, 0.358], [0.7, 0.2, 0.1]])
    recs = batch_records(1, "entropy", np.array(["a-1", "a-2"]), np.array([2.2, 1.1]), probs, classes, "m/round-001", 3)
    project = ls.call("POST", "/api/projects", {"title": f"alp {dataset}", "label_config": label_config(classes, pres)})
    imported = ls.call("POST", f"/api/projects/{project['id']}/import", label_studio_tasks(recs, pres, rows))
    assert imported["task_count"] == 2 and imported["prediction_count"] == 2
    listed = ls.call("GET", f"/api/tasks?project={project['id']}&page_size=10")
    listed = listed["tasks"] if isinstance(listed, dict) else listed
    first = min(listed, key=lambda t: t["id"])
    assert first["data"]["rank"] == 1 and first["data"]["acquisition_score"] == 2.2
    preds = ls.call("GET", f"/api/predictions?task={first['id']}")
    assert [p["score"] for p in preds] == [0.5]
    assert preds[0]["result"][0]["value"]["choices"] == ["dog"] and preds[0]["model_version"] == "m/round-001"


def test_label_studio_calls_the_webhook_for_created_updated_and_skipped_annotations(
    label_studio, stack_env, tmp_path, monkeypatch
):
    """Label Studio's own webhook calls: a created annotation is ingested (annotator named through the
    API), an updated one to another class corrects it (the old label in the history), a skipped one adds nothing."""
    monkeypatch.setenv("ALP_LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("ALP_LABEL_STUDIO_TOKEN", TOKEN)
    ls = label_studio
    root = tmp_path / "ls-hook"
    init_workspace(root, small_overrides())
    round_flow(str(root))
    ws = Workspace(root)
    config = (ws.queue_dir / "label-config.xml").read_text()
    project = ls.call("POST", "/api/projects", {"title": "alp hook", "label_config": config})
    ls.call(
        "POST",
        f"/api/projects/{project['id']}/import",
        json.loads((ws.queue_dir / "round-000" / "label-studio.json").read_text()),
    )
    from prefect.settings import PREFECT_API_URL

    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "ALP_WEBHOOK_SECRET": "hook-s3cret"}
    hook_log = (tmp_path / "webhook.log").open("w")
    alp = str(Path(sys.executable).parent / "alp")
    proc = subprocess.Popen(
        [alp, "webhook", str(root), "--port", str(port)], env=env, stdout=hook_log, stderr=subprocess.STDOUT
    )
    assert wait_port_open(port, 120), "alp webhook did not start listening"
    try:
        hook = {
            "project": project["id"],
            "url": f"http://127.0.0.1:{port}/",
            "send_payload": True,
            "send_for_all_actions": False,
            "headers": {"Authorization": "Token hook-s3cret"},
            "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"],
        }
        ls.call("POST", "/api/webhooks/", hook)
        listed = ls.call("GET", f"/api/tasks?project={project['id']}&page_size=100")
        listed = sorted(listed["tasks"] if isinstance(listed, dict) else listed, key=lambda t: t["id"])
        first, second = listed[0], listed[1]
        sid = first["data"]["sample_id"]

        def choice(label):
            return [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [label]}}]

        def labels_when(pred, timeout=120):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                labeled = Workspace(root).labeled_set().set_index("sample_id")
                if pred(labeled):
                    return labeled
                time.sleep(0.5)
            raise AssertionError(f"not ingested in {timeout}s: {Workspace(root).labeled_set()}")

        a, b = ws.classes[0], ws.classes[1]
        ann = ls.call("POST", f"/api/tasks/{first['id']}/annotations/", {"result": choice(a)})
        labeled = labels_when(lambda df: sid in df.index)
        assert labeled.loc[sid, "label"] == a and labeled.loc[sid, "annotator"] == "admin@example.com"
        ls.call("PATCH", f"/api/annotations/{ann['id']}/", {"result": choice(b)})
        labeled = labels_when(lambda df: df.loc[sid, "label"] == b)
        assert len(labeled) == 1
        (hist,) = Workspace(root).label_history().to_dict("records")
        assert (hist["label"], hist["replaced_by"], hist["replaced_by_annotator"]) == (a, b, "admin@example.com")
        # skipped in Label Studio: nothing is labeled
        ls.call("POST", f"/api/tasks/{second['id']}/annotations/", {"result": [], "was_cancelled": True})
        time.sleep(3)
        assert second["data"]["sample_id"] not in set(Workspace(root).labeled_set()["sample_id"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        hook_log.close()
        sys.stderr.write((tmp_path / "webhook.log").read_text()[-3000:])
