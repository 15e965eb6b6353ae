"""Real processes on one workspace: parallel `alp ingest`s beside a reader, SIGKILL at named steps
(ALP_FAULT) and the rerun that converges, the orphan-free embedded Prefect server, and one test per
defect of issue #10 that needs the flows. The soak version: benchmarks/soak_recovery.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from al_core.workspace import Workspace
from benchmarks.soak_recovery import alp_bin, check_converged, labels_file, no_orphans, run_alp, trial
from flows.inbox import inbox_flow
from flows.round import round_flow
from tests.flows.conftest import copy_workspace, exported_template

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A workspace whose cold-start batch (30 samples) is exported and waiting for labels."""
    return exported_template(tmp_path_factory, "rec")


@pytest.fixture
def api_env():
    """Subprocesses talk to this session's Prefect test harness (no server start-up per process)."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value(), "ALP_LOCK_TIMEOUT_S": "600"}


READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from flows.cli import status_data
    root, stop = Path(sys.argv[1]), Path(sys.argv[2])
    seen, reads = [], 0
    while not stop.exists():
        seen.append(status_data(root)["labels"])
        reads += 1
    print(json.dumps({"reads": reads, "seen": seen}))
    """
)


@pytest.mark.parametrize("rep", range(5))
def test_four_parallel_ingests_beside_a_status_loop_store_every_label_once(template, tmp_path, api_env, rep):
    ws = copy_workspace(template, tmp_path)
    all_labels = labels_file(ws.root, tmp_path / "all.jsonl")
    ids = list(all_labels)
    parts = []
    for i in range(4):
        p = tmp_path / f"part-{i}.jsonl"
        p.write_text("".join(json.dumps({"sample_id": s, "label": all_labels[s]}) + "\n" for s in ids[i::4]))
        parts.append(p)
    stop = tmp_path / "stop"
    env = {**os.environ, **api_env}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(ws.root), str(stop)], env=env, stdout=subprocess.PIPE, text=True
    )
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    procs = [subprocess.Popen([alp_bin(), "ingest", str(ws.root), str(p)], env=env, **out) for p in parts]
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    stop.touch()
    seen = json.loads(reader.communicate(timeout=120)[0])
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    fresh = Workspace(ws.root)
    labeled = fresh.labeled_set()
    assert len(labeled) == 30 and not labeled["sample_id"].duplicated().any()
    assert dict(zip(labeled["sample_id"], labeled["label"], strict=True)) == all_labels
    assert len(fresh.ledger()) == 4
    # the reader saw only whole ingests (multiples of a part's size, never a half-merged file) and never went back
    assert seen["reads"] > 0 and seen["seen"] == sorted(seen["seen"])
    sizes = {0, *(len(ids[i::4]) for i in range(4))}
    sums = {a + b + c + d for a in sizes for b in sizes for c in sizes for d in sizes}
    assert set(seen["seen"]) <= sums
    assert check_converged(ws.root, all_labels, 1).problems == []


POINTS = [
    ("ingest", "ingest.pending-written"),
    ("ingest", "ingest.journal-decided"),
    ("ingest", "ingest.versioned"),
    ("round", "round.versioned"),
    ("round", "round.evaluated"),
    ("round", "round.exported"),
    ("round", "round.logged"),
]


@pytest.mark.parametrize(("kind", "point"), POINTS)
def test_a_kill_at_any_step_converges_on_the_rerun(template, tmp_path, api_env, kind, point):
    result, killed, _ = trial(template, tmp_path, kind, point, api_env)
    assert killed.returncode == -9
    assert not result.problems, "\n".join(result.problems)


def test_a_killed_alp_leaves_no_prefect_server_behind(template, tmp_path):
    """Without PREFECT_API_URL alp starts a temporary Prefect server: it dies with alp, even on kill -9."""
    ws = copy_workspace(template, tmp_path)
    labels = tmp_path / "l.jsonl"
    expected = labels_file(ws.root, labels)
    env = {"PREFECT_API_URL": "", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"}
    killed = run_alp(["ingest", str(ws.root), str(labels)], env, fault="ingest.journal-decided")
    assert killed.returncode == -9
    assert no_orphans(killed.marker) == []
    rerun = run_alp(["ingest", str(ws.root), str(labels)], env)
    assert rerun.returncode == 0, rerun.output
    assert no_orphans(rerun.marker) == []
    assert check_converged(ws.root, expected, 1).problems == []


def test_a_prefect_server_that_does_not_start_in_time_is_two_lines_and_exit_2(template, tmp_path):
    ws = copy_workspace(template, tmp_path)
    run = run_alp(
        ["round", str(ws.root)], {"PREFECT_API_URL": "", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}
    )
    assert run.returncode == 2
    lines = run.output.strip().splitlines()
    assert len(lines) <= 2 and "did not answer within" in lines[0] and "Traceback" not in run.output
    assert no_orphans(run.marker) == []
    debug = run_alp(
        ["--debug", "round", str(ws.root)],
        {"PREFECT_API_URL": "", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"},
    )
    assert debug.returncode != 0 and "Traceback" in debug.output


def test_a_round_that_failed_after_its_tag_is_resumed_not_stuck(template, tmp_path):
    """An unwritable queue (here: a file where the round's folder goes) fails the round after its tag;
    the next round after the fix completes it: one tag, one commit chain, no 'tag exists' error."""
    ws = copy_workspace(template, tmp_path)
    labels = tmp_path / "l.jsonl"
    labels_file(ws.root, labels)
    from flows.ingest import ingest_flow

    ingest_flow(str(ws.root), [str(labels)])
    blocker = ws.queue_dir / "round-001"
    blocker.write_text("not a folder")
    for _ in range(2):  # fails the same way twice, adding no commit and no tag the second time
        with pytest.raises(OSError):
            round_flow(str(ws.root))
    tags = subprocess.run(["git", "-C", str(ws.root), "tag"], capture_output=True, text=True).stdout.split()
    assert tags == ["round-000", "round-001"]
    from typer.testing import CliRunner

    from flows.cli import app

    res = CliRunner().invoke(app, ["round", str(ws.root)])  # as a user sees it: two lines, exit code 2
    assert res.exit_code == 2 and "round-001" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2
    status = CliRunner().invoke(app, ["status", str(ws.root), "--json"])
    assert json.loads(status.output)["unfinished_round"] == 1
    blocker.unlink()
    s = round_flow(str(ws.root))
    assert s["round"] == 1 and s["tag"] == "round-001"
    assert Workspace(ws.root).incomplete_round() is None and Workspace(ws.root).exported_rounds() == [0, 1]


def test_a_stale_git_index_lock_does_not_stop_the_next_round(template, tmp_path):
    ws = copy_workspace(template, tmp_path)
    labels = tmp_path / "l.jsonl"
    labels_file(ws.root, labels)
    (ws.root / ".git" / "index.lock").write_text("")  # what a git killed mid-add leaves
    from flows.ingest import ingest_flow

    ingest_flow(str(ws.root), [str(labels)])
    assert not (ws.root / ".git" / "index.lock").exists()
    assert round_flow(str(ws.root))["round"] == 1


def test_a_malformed_inbox_file_is_moved_aside_and_the_rest_is_ingested(template, tmp_path):
    ws = copy_workspace(template, tmp_path)
    inbox = ws.queue_dir / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "a-broken.json").write_text(json.dumps([{"id": 1, "data": "m1d-000044", "annotations": []}]))
    (inbox / "b-not-an-object.json").write_text(json.dumps([{"data": {"sample_id": "x"}, "annotations": ["oops"]}]))
    good = labels_file(ws.root, inbox / "c-good.jsonl")
    out = inbox_flow(str(ws.root))
    assert out["ingested"] == ["c-good.jsonl"] and out["refused"] == ["a-broken.json", "b-not-an-object.json"]
    assert len(Workspace(ws.root).labeled_set()) == len(good)
    rejected = inbox / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == [
        "a-broken.json",
        "a-broken.json.reason.txt",
        "b-not-an-object.json",
        "b-not-an-object.json.reason.txt",
    ]
    assert "'data' must be an object" in (rejected / "a-broken.json.reason.txt").read_text()
    assert "must be a list of annotation objects" in (rejected / "b-not-an-object.json.reason.txt").read_text()
    # the next poll has nothing left to trip on
    assert inbox_flow(str(ws.root))["refused"] == []


def test_readers_never_write(template, tmp_path):
    """A reader landing while an ingest has written its pending files leaves them alone (the ingest then lands)."""
    ws = copy_workspace(template, tmp_path)
    pending = ws.labeled_dir / ".round-000.parquet.pending"
    pending.write_bytes(b"in flight")
    before = sorted(p.name for p in ws.root.rglob("*") if ".git" not in p.parts)
    ws.labeled_set(), ws.ledger(), ws.pending(), ws.queued()
    from flows.cli import status_data

    status_data(ws.root)
    assert pending.read_bytes() == b"in flight"
    assert sorted(p.name for p in ws.root.rglob("*") if ".git" not in p.parts) == before


def test_a_copied_workspace_pushes_to_its_own_dvc_remote(template, tmp_path):
    config = (template / ".dvc" / "config").read_text()
    assert str(template) not in config and "url = ../.dvc-remote\n" in config
    ws = copy_workspace(template, tmp_path)
    labels = tmp_path / "l.jsonl"
    labels_file(ws.root, labels)
    from flows.ingest import ingest_flow

    before = sorted(p.name for p in (template / ".dvc-remote").rglob("*"))
    ingest_flow(str(ws.root), [str(labels)])
    assert sorted(p.name for p in (template / ".dvc-remote").rglob("*")) == before
    assert len(list((ws.root / ".dvc-remote").rglob("*"))) > len(before)


def test_the_workspace_lock_waits_and_says_for_whom(template, tmp_path, api_env):
    ws = copy_workspace(template, tmp_path)
    release = tmp_path / "release"
    hold = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from al_core.workspace import Workspace
        with Workspace(sys.argv[1]).writer("a long change"):
            print("held", flush=True)
            while not Path(sys.argv[2]).exists():
                time.sleep(0.1)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(ws.root), str(release)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    labels = tmp_path / "l.jsonl"
    labels_file(ws.root, labels)
    env = {**os.environ, **api_env}
    waiter = subprocess.Popen(
        [alp_bin(), "ingest", str(ws.root), str(labels)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    said = [waiter.stderr.readline() for _ in range(1)]  # it says whom it waits for, then waits
    while "waiting for the writer lock" not in said[-1] and said[-1] and len(said) < 50:
        said.append(waiter.stderr.readline())
    assert "waiting for the writer lock" in said[-1] and "a long change" in said[-1], said
    time.sleep(1)
    assert waiter.poll() is None and Workspace(ws.root).labeled_set().empty
    release.touch()
    out, _ = waiter.communicate(timeout=300)
    holder.wait(timeout=30)
    assert waiter.returncode == 0 and "30 new label(s)" in out
    # held past the timeout: a two-line message naming the holder, exit code 2
    release.unlink()
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(ws.root), str(release)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    late = run_alp(["ingest", str(ws.root), str(labels)], {**api_env, "ALP_LOCK_TIMEOUT_S": "0.5"})
    release.touch()
    holder.wait(timeout=30)
    assert late.returncode == 2 and "gave up after" in late.output and "a long change" in late.output
    assert "Traceback" not in late.output
