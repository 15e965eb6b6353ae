"""`alp serve` against the local stack's real Prefect server: labels dropped into the inbox are ingested
by the inbox deployment, the "batch ready" event fires the round deployment's trigger, and exactly one
next round runs and exports a new batch; a repeated event for the same batch is a no-op."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from al_core.workspace import Workspace
from flows.round import round_flow
from flows.serve import next_scheduled_round
from flows.workspace_init import init_workspace
from tasks import events
from tests.integration.conftest import flow_runs, small_overrides

WAIT_S = int(os.environ.get("ALP_TEST_WAIT_S", "180"))


def wait_for(what, check, timeout=WAIT_S, every=1.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def deployment(name):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def finished_rounds(root: Path, after_batch: int) -> list:
    runs = [r for r in flow_runs(root, "alp-round") if r.parameters.get("after_batch") == after_batch]
    return [r for r in runs if r.state is not None and r.state.is_final()]


@pytest.fixture
def served(stack_env, tmp_path):
    with serving(stack_env, tmp_path, "served") as out:
        yield out


@contextlib.contextmanager
def serving(stack_env, tmp_path, prefix, **overrides):
    """A fresh workspace with its cold-start batch waiting, served by `alp serve` until the block ends."""
    root = tmp_path / f"{prefix}-{uuid.uuid4().hex[:6]}"
    sched = {"schedule.inbox_interval_s": 5, "schedule.round_cron": "0 3 * * *"}
    init_workspace(root, small_overrides(**sched, **overrides))
    round_flow(str(root))  # the cold-start batch, waiting for labels
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "alp"), "serve", str(root)],
        env={**os.environ, **stack_env, "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield Workspace(root), proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        sys.stderr.write((tmp_path / "serve.log").read_text()[-4000:])


def test_labels_in_the_inbox_run_exactly_one_next_round(served):
    ws, proc = served
    name = ws.root.name

    def both_deployments():
        # `serve` registers the two one after the other: wait for both, not just the first
        deps = [deployment(f"alp-round/{name}"), deployment(f"alp-inbox/{name}")]
        return deps if all(deps) else None

    round_dep, _ = wait_for("the deployments", both_deployments, timeout=90)
    assert round_dep.global_concurrency_limit.limit == 1  # never two rounds of one campaign at once
    assert [s.schedule.cron for s in round_dep.schedules] == ["0 3 * * *"]
    # `alp status`: the next scheduled round, read from the server's scheduled runs of the deployment
    nxt = wait_for("the scheduled rounds", lambda: (next_scheduled_round(ws) or {}).get("next"), timeout=60)
    assert "T03:00:00" in nxt

    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    rows = [{"sample_id": r["sample_id"], "label": ws.classes[int(truth[r["sample_id"]])]} for r in ws.batch(0)]
    inbox = ws.queue_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / ".labels.jsonl.part"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(inbox / "round-000-ana.jsonl")  # dropped in whole, as annotators are asked to

    t0 = time.monotonic()
    (run,) = wait_for("the triggered round", lambda: finished_rounds(ws.root, 0))
    sys.stderr.write(f"\nlabels dropped → round finished in {time.monotonic() - t0:.1f}s\n")
    assert run.state.is_completed(), run.state
    assert proc.poll() is None
    assert ws.exported_rounds() == [0, 1]
    assert len(ws.labeled_set()) == 30
    assert events.runtime_state(Workspace(ws.root))["last_batch_ready"]["round"] == 0

    # the same event once more (a replay, a second ingest): a round run that changes nothing
    from prefect.events import emit_event

    from tasks.events import BATCH_READY, campaign_resource

    def twice():
        runs = finished_rounds(ws.root, 0)
        return runs if len(runs) == 2 else None

    emit_event(event=BATCH_READY, resource=campaign_resource(ws), payload={"workspace": str(ws.root), "round": 0})
    runs = wait_for(
        "the repeated trigger's run", lambda: len(finished_rounds(ws.root, 0)) == 2 and finished_rounds(ws.root, 0)
    )
    assert all(r.state.is_completed() for r in runs)
    assert ws.exported_rounds() == [0, 1]
    assert [s["round"] for s in Workspace(ws.root).round_summaries()] == [0, 1]
