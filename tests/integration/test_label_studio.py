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
import re
import shutil
import signal
import subprocess
import sys
import threading
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
from tests.integration.conftest import flow_runs, small_overrides

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
    """One Label Studio for every test of this module (it takes minutes to start on a busy machine).
    ``ALP_TEST_LABEL_STUDIO_URL`` reuses one already running with this module's admin and token."""
    running = os.environ.get("ALP_TEST_LABEL_STUDIO_URL")
    if running:
        yield LabelStudio(running.rstrip("/"))
        return
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
    init_workspace(root, small_overrides(**{"acquisition.initial_size": 10}))
    round_flow(str(root))
    ws = Workspace(root)

    project = ls.call(
        "POST", "/api/projects", {"title": "alp ls-ws", "label_config": (ws.queue_dir / "label-config.xml").read_text()}
    )
    tasks = json.loads((ws.queue_dir / "round-000" / "label-studio.json").read_text())
    imported = ls.call("POST", f"/api/projects/{project['id']}/import", tasks)
    assert imported["task_count"] == 10

    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    listed = ls.call("GET", f"/api/tasks?project={project['id']}&page_size=100")
    listed = listed["tasks"] if isinstance(listed, dict) else listed
    assert sorted(t["data"]["sample_id"] for t in listed) == sorted(t["data"]["sample_id"] for t in tasks)
    for t in listed:
        label = ws.classes[int(truth[t["data"]["sample_id"]])]
        result = [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [label]}}]
        ls.call("POST", f"/api/tasks/{t['id']}/annotations/", {"result": result})

    export = ls.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    assert len(export) == 10 and all(len(t["annotations"]) == 1 for t in export)
    export_file = tmp_path / "project-export.json"
    export_file.write_text(json.dumps(export))

    (result,) = ingest_flow(str(root), [str(export_file)])
    assert result["added"] == 10
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
    # the next round, its tasks with predictions in the project: the label-studio backend's test below


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


# ------------------------------------------------------------------ queue.backend: label-studio
SECRET = "ls-backend-s3cret"


def ls_backend(ls_url: str, webhook_url: str | None = None, **extra):
    """A fast digits workspace whose queue is a Label Studio project alp creates."""
    return small_overrides(
        **{
            "queue.backend": "label-studio",
            "queue.label_studio.url": ls_url,
            "queue.label_studio.webhook_url": webhook_url,
        },
        **extra,
    )


def project_tasks(ls, pid: int) -> list[dict]:
    listed = ls.call("GET", f"/api/tasks?project={pid}&page_size=1000&fields=all")
    return sorted(listed["tasks"] if isinstance(listed, dict) else listed, key=lambda t: t["id"])


def choice(label):
    return [{"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [label]}}]


class FaultyProxy:
    """A real HTTP proxy in front of Label Studio that fails on purpose: ``fail_gets`` GETs answered 503
    (Label Studio down behind its web server), and the answer to the first task import (``drop_import``)
    or project creation (``drop_create``) dropped after Label Studio did it (the connection reset
    mid-answer: the client cannot know the import happened)."""

    def __init__(self, target: str, fail_gets: int = 1, drop_import: bool = True, drop_create: bool = False):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        self.target, self.fail_gets, self.drop_import = target, fail_gets, drop_import
        self.drop_create = drop_create
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append(f"{self.command} {self.path.split('?')[0]}")
                if self.command == "GET" and proxy.fail_gets > 0:
                    proxy.fail_gets -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                resp = httpx.request(self.command, proxy.target + self.path, content=body, headers=headers, timeout=120)
                if self.command == "POST" and self.path.split("?")[0].endswith("/import") and proxy.drop_import:
                    proxy.drop_import = False
                    self.close_connection = True  # Label Studio imported; its answer never arrives
                    return
                if self.command == "POST" and self.path.split("?")[0] == "/api/projects" and proxy.drop_create:
                    proxy.drop_create = False
                    self.close_connection = True  # the project exists; alp never hears its id
                    return
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_label_studio_down_during_export_is_retried_and_the_batch_imported_once(
    label_studio, stack_env, tmp_path, monkeypatch
):
    """The export step meets Label Studio down (503), then loses the answer to its import: both are
    transient, Prefect retries the step, and the project holds each task of the batch once."""
    from tests.integration.test_s3_outage import task_runs

    monkeypatch.setenv("ALP_LABEL_STUDIO_TOKEN", TOKEN)
    proxy = FaultyProxy(label_studio.url)
    try:
        root = tmp_path / "ls-down"
        init_workspace(root, ls_backend(proxy.url, **{"acquisition.initial_size": 10}))
        summary = round_flow(str(root))
    finally:
        proxy.close()
    assert summary["round"] == 0
    ws = Workspace(root)
    pid = json.loads((ws.alp_dir / "label-studio.json").read_text())["project"]
    tasks = project_tasks(label_studio, pid)
    assert sorted(t["data"]["sample_id"] for t in tasks) == sorted(r["sample_id"] for r in ws.batch(0))
    assert len(tasks) == 10  # imported once, although the first import's answer was lost
    assert proxy.seen.count(f"POST /api/projects/{pid}/import") == 1 and proxy.fail_gets == 0
    (run,) = flow_runs(root, "alp-round")
    (export,) = task_runs(run.id, "export-batch")
    assert export.state.is_completed() and export.run_count == 3  # 503, lost answer, then done
    project = label_studio.call("GET", f"/api/projects/{pid}")
    assert (
        project["title"] == "alp ls-down"
        and project["label_config"].strip() == (ws.queue_dir / "label-config.xml").read_text().strip()
    )


def test_a_lost_answer_to_create_project_does_not_make_a_second_project(label_studio, stack_env, tmp_path, monkeypatch):
    """alp creates the project, Label Studio makes it, the answer is lost: the retried export finds
    that project (by the marker alp saved before asking) and imports the batch into it."""
    from tests.integration.test_s3_outage import task_runs

    monkeypatch.setenv("ALP_LABEL_STUDIO_TOKEN", TOKEN)
    proxy = FaultyProxy(label_studio.url, fail_gets=0, drop_import=False, drop_create=True)
    try:
        root = tmp_path / "ls-lost-create"
        init_workspace(root, ls_backend(proxy.url, **{"acquisition.initial_size": 10}))
        round_flow(str(root))
    finally:
        proxy.close()
    ws = Workspace(root)
    pid = json.loads((ws.alp_dir / "label-studio.json").read_text())["project"]
    listed = label_studio.call("GET", "/api/projects?page_size=1000")
    projects = listed["results"] if isinstance(listed, dict) else listed
    same = [p for p in projects if p["title"] == "alp ls-lost-create"]
    assert [p["id"] for p in same] == [pid]  # one project, the one alp made first
    assert len(project_tasks(label_studio, pid)) == 10
    assert proxy.seen.count("POST /api/projects") == 1
    (run,) = flow_runs(root, "alp-round")
    (export,) = task_runs(run.id, "export-batch")
    assert export.state.is_completed() and export.run_count == 2  # the lost answer, then done


def start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("w") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_label_studio_backend_end_to_end_the_next_batch_appears_by_itself(
    label_studio, stack_env, tmp_path, monkeypatch, capsys
):
    """alp creates the project and registers its webhook; annotations submitted in Label Studio reach
    alp by Label Studio's own webhook calls (the ones made while `alp webhook` was down: by polling the
    export), each is ingested once, a correction replaces its label, a skipped task is ignored, and the
    next round's tasks appear in the project with the model's predictions — nobody presses anything."""
    from tests.integration.test_serve_real_server import finished_rounds, wait_for

    ls = label_studio
    port = free_port()
    env = {**os.environ, **stack_env, "ALP_LABEL_STUDIO_TOKEN": TOKEN, "ALP_WEBHOOK_SECRET": SECRET}
    env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
    monkeypatch.setenv("ALP_LABEL_STUDIO_TOKEN", TOKEN)
    monkeypatch.setenv("ALP_WEBHOOK_SECRET", SECRET)
    root = tmp_path / "ls-e2e"
    sched = {"schedule.inbox_interval_s": 5, "schedule.trigger_fraction": 0.9}  # 9 of 10: one is skipped
    sched.update({"acquisition.initial_size": 10, "acquisition.batch_size": 10})
    init_workspace(root, ls_backend(ls.url, f"http://127.0.0.1:{port}/", **sched))
    round_flow(str(root))  # the cold-start batch: alp creates the project, registers the webhook, imports
    ws = Workspace(root)
    pid = json.loads((ws.alp_dir / "label-studio.json").read_text())["project"]
    (hook,) = ls.call("GET", f"/api/webhooks/?project={pid}")
    assert hook["url"] == f"http://127.0.0.1:{port}/" and "ANNOTATION_UPDATED" in hook["actions"]
    tasks = project_tasks(ls, pid)
    assert [t["data"]["sample_id"] for t in tasks] == [r["sample_id"] for r in ws.batch(0)]  # alp's order
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]

    def annotate(task, label=None):
        label = label or ws.classes[int(truth[task["data"]["sample_id"]])]
        return ls.call("POST", f"/api/tasks/{task['id']}/annotations/", {"result": choice(label)})

    def labeled():
        return Workspace(root).labeled_set().set_index("sample_id")

    alp = str(Path(sys.executable).parent / "alp")
    missed = [annotate(t) for t in tasks[:2]]  # `alp webhook` not up yet: Label Studio's calls fail
    hook_proc = start([alp, "webhook", str(root), "--port", str(port)], env, tmp_path / "webhook.log")
    serve_proc = start([alp, "serve", str(root)], env, tmp_path / "serve.log")
    try:
        assert wait_port_open(port, 120), "alp webhook did not start listening"
        wait_for("the missed annotations, by polling", lambda: len(labeled()) == 2, timeout=240)
        corrected = annotate(tasks[2])
        ls.call("POST", f"/api/tasks/{tasks[3]['id']}/annotations/", {"result": [], "was_cancelled": True})
        for t in tasks[4:-1]:
            annotate(t)
        sid3 = tasks[2]["data"]["sample_id"]
        wait_for("the webhook's labels", lambda: len(labeled()) == 8, timeout=240)
        other = next(c for c in ws.classes if c != labeled().loc[sid3, "label"])
        ls.call("PATCH", f"/api/annotations/{corrected['id']}/", {"result": choice(other)})
        wait_for("the correction", lambda: labeled().loc[sid3, "label"] == other, timeout=120)
        annotate(tasks[-1])  # the last one: the batch is ready (9 of 10)
        t_last = time.monotonic()
        nxt = wait_for(
            "round 1's tasks in Label Studio",
            lambda: [t for t in project_tasks(ls, pid) if t["data"]["round"] == 1],
            timeout=300,
            every=0.5,
        )
        latency = time.monotonic() - t_last
        with capsys.disabled():
            print(f"\nlast annotation → next batch visible in Label Studio: {latency:.1f}s")
        (run,) = wait_for("the round run", lambda: finished_rounds(root, 0))
        assert run.state.is_completed(), run.state
    finally:
        stop(serve_proc)
        stop(hook_proc, signal.SIGTERM)
        for name in ("webhook.log", "serve.log"):
            sys.stderr.write(f"--- {name}\n" + (tmp_path / name).read_text()[-3000:])
    ws = Workspace(root)
    assert len(nxt) == 10 and all(t["data"]["model_guess"] for t in nxt)
    preds = ls.call("GET", f"/api/predictions?task={nxt[0]['id']}")
    assert preds and preds[0]["model_version"] == "ls-e2e/round-001" and 0 < preds[0]["score"] <= 1
    assert ls.call("GET", f"/api/projects/{pid}")["model_version"] == "ls-e2e/round-001"
    final = ws.labeled_set()
    assert len(final) == 9 and not final["sample_id"].duplicated().any()
    assert set(final["annotator"]) == {"admin@example.com"}  # Label Studio's user id, named through its API
    assert tasks[3]["data"]["sample_id"] not in set(final["sample_id"])  # skipped: not labeled
    (hist,) = ws.label_history().to_dict("records")
    assert (hist["sample_id"], hist["replaced_by"]) == (sid3, other)
    # each annotation version taken exactly once: 9 annotations + 1 update, one inbox file and ledger entry each
    ledger = ws.ledger()
    assert len(ledger) == 10 and len({e["digest"] for e in ledger}) == 10
    assert sum(e["added"] for e in ledger) == 9 and sum(e["corrected"] for e in ledger) == 1
    inbox = sorted(p.name for p in (ws.queue_dir / "inbox").glob("ls-*.json"))
    assert len(inbox) == 10 and not (ws.queue_dir / "inbox" / "rejected").exists()
    assert {f"ls-{a['id']}-" for a in missed} <= {n[: n.rindex("-") + 1] for n in inbox}
    served_log = (tmp_path / "webhook.log").read_text()
    assert "skipped or cancelled" in served_log  # one log line for the skipped task, nothing spooled
    assert ws.exported_rounds() == [0, 1]


# ------------------------------------------------------------------------------- a real browser
#: where the screenshots go: a temporary folder, or docs/ with ALP_SCREENSHOTS=docs (the README's pictures)
SCREENSHOTS_ENV = "ALP_SCREENSHOTS"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by selenium (Debian's chromium + chromium-driver, installed with apt-get
    when missing, as the local stack installs PostgreSQL)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.fail("needs Debian's chromium and chromium-driver: sudo apt-get install -y chromium chromium-driver")
        t0 = time.perf_counter()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
        ):
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        sys.stderr.write(f"\nchromium installed in {time.perf_counter() - t0:.1f}s\n")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def modality_batch(name: str):
    """Three real samples of a modality (digits images, MNIST-1D series, the wine table), with the
    probabilities of a model fitted on the rest: (presentation, classes, records, rows)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from al_core.sources import get_source
    from tasks.queue import batch_records, presentation

    if name == "table":
        from sklearn.datasets import load_wine

        wine = load_wine()
        X, y, classes = wine.data, wine.target, [str(c) for c in wine.target_names]
        pres = presentation("table", (X.shape[1],), list(wine.feature_names))
    else:
        src = get_source(name)
        small = {"pool_size": 400, "test_size": 10} if name == "mnist1d" else {}
        ds = src.load(src.params(name=name, **small))
        X, y, classes = ds.pool_X[:400], ds.pool_y[:400], ds.classes
        pres = presentation(name, ds.input_shape)
    probs = LogisticRegression(max_iter=300).fit(X[3:] / X.std(), y[3:]).predict_proba(X[:3] / X.std())
    top2 = np.sort(probs, axis=1)[:, -2:]
    recs = batch_records(1, "margin", np.array([f"{name}-{i}" for i in range(3)]), top2[:, 1] - top2[:, 0], probs,
                         classes, f"{name}-demo/round-001", 3)  # fmt: skip
    return pres, classes, recs, X[:3]


SHOWN = {"image": "images", "series": "paths", "table": "cells"}
EDITOR_JS = """
const q = s => Array.from(document.querySelectorAll(s));
return {
  checked: q('.lsf-choice__checkbox.ant-checkbox-wrapper-checked').map(e => e.innerText),
  images: q("img[src^='data:image/png']").filter(e => e.naturalWidth > 0).map(e => [e.src, e.naturalWidth]),
  canvases: q('canvas').map(e => e.getBoundingClientRect().width),
  paths: q('.htx-timeseries-channel svg path').map(e => (e.getAttribute('d') || '').length),
  cells: q('td.ant-table-cell').map(e => e.innerText),
  text: document.body.innerText,
};"""


def login(driver, ls):
    """Log the browser in to Label Studio as the admin (once per browser); a 90 s waiter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 90)
    driver.get(ls.url + "/user/login/")
    time.sleep(1)
    if "/user/login" in driver.current_url:  # else logged in already
        wait.until(lambda d: d.find_elements(By.NAME, "email"))[0].send_keys("admin@example.com")
        driver.find_element(By.NAME, "password").send_keys("alp-test-pw")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        wait.until(lambda d: "/user/login" not in d.current_url)
    return wait


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """A screenshot, quantised to stay small: docs/ with ALP_SCREENSHOTS=docs, else ``tmp_path``."""
    from PIL import Image

    png = (REPO / os.environ[SCREENSHOTS_ENV] if os.environ.get(SCREENSHOTS_ENV) else tmp_path) / name
    png.parent.mkdir(exist_ok=True)
    driver.save_screenshot(str(png))
    Image.open(png).convert("RGB").quantize(colors=64).save(png, optimize=True)  # small in the repo
    assert 10_000 < png.stat().st_size < 200_000
    return png


def editor(driver) -> dict:
    """What Label Studio's editor shows now, read in one script (its React tree re-renders while loading)."""
    return driver.execute_script(EDITOR_JS)


def test_an_annotator_sees_each_modality_and_the_models_guess_in_a_real_browser(label_studio, browser, tmp_path):
    """Chromium logs in to Label Studio and opens a task of each modality: the editor shows the image,
    the time-series plot, the table, and the model's guess pre-selected with its probability.
    The screenshots go to docs/ with ALP_SCREENSHOTS=docs (the README shows them), else to a temporary
    folder, so a test run leaves the checkout as it was."""

    from tasks.queue import label_config, label_studio_tasks

    ls, driver = label_studio, browser
    wait = login(driver, ls)
    for name, height in (("digits", 760), ("mnist1d", 760), ("table", 1180)):
        pres, classes, recs, rows = modality_batch(name)
        project = ls.call(
            "POST",
            "/api/projects",
            {  # as the label-studio backend makes it: the model's guess pre-fills the annotation
                "title": f"alp {name} (browser)",
                "label_config": label_config(classes, pres),
                "show_collab_predictions": True,
                "model_version": recs[0]["model_version"],
            },
        )
        ls.call("POST", f"/api/projects/{project['id']}/import", label_studio_tasks(recs, pres, rows))
        first = project_tasks(ls, project["id"])[0]
        driver.set_window_size(1280, height)
        driver.get(f"{ls.url}/projects/{project['id']}/data?task={first['id']}")
        kind = pres.kind
        wait.until(lambda d, kind=kind: (st := editor(d))["checked"] and st[SHOWN[kind]])
        time.sleep(2)  # fonts and the plot's last frame
        screenshot(driver, tmp_path, f"label-studio-{kind}.png")
        st = editor(driver)
        guess, p = first["data"]["model_guess"], first["data"]["model_probability"]
        assert [c.split("[")[0].strip() for c in st["checked"]] == [guess]  # the pre-annotation, selected
        # the prediction's tab (model version, shortened to fit, and its score = the model's probability)
        assert any(abs(float(v) - p * 100) < 0.011 for v in re.findall(r"·\s*(\d+(?:\.\d+)?)%", st["text"]))
        if kind == "image":
            assert [first["data"]["image"], 112] in st["images"]  # the sample's PNG, decoded
            assert max(st["canvases"]) >= 300  # drawn in the editor, 8×8 scaled up
        elif kind == "series":
            assert max(st["paths"]) > 200  # a plotted line of 40 points
        else:
            cells = st["cells"]
            assert "alcohol" in cells and str(first["data"]["table"]["alcohol"]) in cells


POOL_JS = """
return Array.from(document.querySelectorAll('img')).filter(e => e.src.startsWith(arguments[0]))
  .map(e => [e.src, e.naturalWidth, e.naturalHeight]);"""


def test_an_annotator_sees_an_image_pools_own_file_served_by_alp_webhook(
    label_studio, browser, stack_env, tmp_path, monkeypatch
):
    """An image pool of 96×96 PNG files (the model sees them at 8×8) with the label-studio backend and
    ``media: served``: alp creates the project, its tasks point at `alp webhook`'s signed URLs, and the
    browser shows each original file at its own resolution, loaded from alp, not the model's input."""
    from benchmarks.image_data import digits_pngs
    from flows.webhook import WebhookReceiver, make_server

    ls, driver = label_studio, browser
    monkeypatch.setenv("ALP_LABEL_STUDIO_TOKEN", TOKEN)
    monkeypatch.setenv("ALP_WEBHOOK_SECRET", SECRET)
    digits_pngs(tmp_path / "scans", 300, size=96)
    port = free_port()
    root = tmp_path / "ls-image-pool"
    overrides = {"dataset.name": "images", "dataset.path": str(tmp_path / "scans"), "dataset.image_size": [8, 8]}
    overrides.update({"acquisition.initial_size": 10, "queue.label_studio.media_url": f"http://127.0.0.1:{port}"})
    init_workspace(root, ls_backend(ls.url, **overrides))
    round_flow(str(root))
    ws = Workspace(root)
    pid = json.loads((ws.alp_dir / "label-studio.json").read_text())["project"]
    tasks = project_tasks(ls, pid)
    files = {rec["sample_id"]: Path(rec["uri"]) for rec in ws.batch(0)}
    base = f"http://127.0.0.1:{port}/media/"
    assert len(tasks) == 10 and all(t["data"]["image"].startswith(base) for t in tasks)
    receiver = WebhookReceiver(root, SECRET)
    server = make_server(receiver, port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait = login(driver, ls)
        first = tasks[0]
        driver.set_window_size(1280, 900)  # the choices below the 360-pixel picture stay in view
        driver.get(f"{ls.url}/projects/{pid}/data?task={first['id']}")
        want = [first["data"]["image"], 96, 96]  # the editor's picture (the data manager shows thumbnails too)
        wait.until(lambda d: want in d.execute_script(POOL_JS, base))
        time.sleep(2)
        screenshot(driver, tmp_path, "label-studio-image-pool.png")
        shown = driver.execute_script(POOL_JS, base)
    finally:
        server.shutdown()
        server.server_close()
        receiver.close()
    assert want in shown  # the original file, at its own size, from alp
    assert len({src for src, w, h in shown if w > 0}) >= 2  # the data manager's thumbnails load from alp too
    from PIL import Image

    assert Image.open(files[first["data"]["sample_id"]]).size == (96, 96)
