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
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from al_core.workspace import Workspace
from flows.ingest import ingest_flow
from flows.round import round_flow
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_label_studio_round_trip(label_studio, stack_env, tmp_path):
    ls = label_studio
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
    assert set(labeled["annotator"]) == {"1"}  # Label Studio's export names the annotator by user id
    assert events.runtime_state(Workspace(root))["last_batch_ready"]["round"] == 0  # what fires the round deployment

    summary = round_flow(str(root), after_batch=0)
    assert summary["tag"] == "round-001" and Workspace(root).exported_rounds() == [0, 1]
    # the next batch, with the model's predictions, imports too
    tasks1 = json.loads((ws.queue_dir / "round-001" / "label-studio.json").read_text())
    assert all(t["predictions"] for t in tasks1)
    assert ls.call("POST", f"/api/projects/{project['id']}/import", tasks1)["task_count"] == 20
