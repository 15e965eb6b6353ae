"""Orchestration pieces on the Prefect test harness: the round lock, a duplicate trigger as a no-op,
"batch ready" announced once per batch (complete, or a fraction after a wait), the webhook's secret,
the artifacts of a round, and `alp status`'s fill level and last trigger."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from al_core.errors import WorkspaceError
from al_core.workspace import Workspace
from flows.cli import app
from flows.ingest import ingest_flow
from flows.round import round_flow, round_lock
from flows.serve import build_deployments
from flows.webhook import WebhookReceiver, make_server
from tasks import events
from tasks.artifacts import artifact_keys
from tests.flows.conftest import copy_workspace, exported_template

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A workspace whose cold-start batch (30 samples) is exported and waiting for labels."""
    return exported_template(tmp_path_factory, "orch-ws")


@pytest.fixture
def ws(template, tmp_path):
    return copy_workspace(template, tmp_path)


def truth_rows(ws, r=0):
    t = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    return [{"sample_id": row["sample_id"], "label": ws.classes[int(t[row["sample_id"]])]} for row in ws.batch(r)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def set_schedule(ws, **values):
    data = yaml.safe_load(ws.params_path.read_text())
    data.setdefault("schedule", {}).update(values)
    ws.params_path.write_text(yaml.safe_dump(data))
    return Workspace(ws.root)  # params are read once per Workspace


def test_a_second_round_while_one_runs_is_refused(ws):
    with round_lock(ws), pytest.raises(WorkspaceError, match="already running"):
        round_flow(str(ws.root))
    assert ws.exported_rounds() == [0]
    with round_lock(ws):
        result = runner.invoke(app, ["round", str(ws.root)])
    assert result.exit_code == 2
    assert "already running" in result.output
    assert ws.exported_rounds() == [0]


def test_a_trigger_for_a_batch_that_has_its_round_is_a_no_op(ws):
    out = round_flow(str(ws.root), after_batch=3)
    assert out["skipped"] and "round-003" in out["skipped"]
    assert ws.exported_rounds() == [0]


def test_batch_ready_once_when_complete(ws, tmp_path):
    rows = truth_rows(ws)
    ingest_flow(str(ws.root), [write_jsonl(tmp_path / "half.jsonl", rows[:15])])
    assert "last_batch_ready" not in events.runtime_state(ws)  # fraction 1.0: half a batch is not ready
    assert events.batch_fill(ws)["labeled"] == 15
    ingest_flow(str(ws.root), [write_jsonl(tmp_path / "rest.jsonl", rows[15:])])
    ready = events.runtime_state(ws)["last_batch_ready"]
    assert (ready["round"], ready["labeled"], ready["batch_size"]) == (0, 30, 30)
    assert events.announce_if_ready(ws) is None  # once per batch


def test_batch_ready_at_a_fraction_only_after_the_wait(ws, tmp_path):
    ws = set_schedule(ws, trigger_fraction=0.5, trigger_wait_s=3600)
    rows = truth_rows(ws)
    ingest_flow(str(ws.root), [write_jsonl(tmp_path / "half.jsonl", rows[:15])])
    assert "last_batch_ready" not in events.runtime_state(ws)  # half labeled, but the batch is younger than the wait
    ws = set_schedule(ws, trigger_wait_s=0)
    assert events.announce_if_ready(ws)["labeled"] == 15
    assert events.announce_if_ready(ws) is None


def test_the_trigger_and_the_schedules_of_the_deployments(ws):
    ws = set_schedule(ws, round_cron="0 6 * * 1-5", inbox_interval_s=30)
    round_dep, inbox_dep = build_deployments(ws)
    assert (round_dep.flow_name, inbox_dep.flow_name) == ("alp-round", "alp-inbox")
    assert round_dep.name == inbox_dep.name == "orch-ws"
    assert round_dep.schedules[0].schedule.cron == "0 6 * * 1-5"
    assert inbox_dep.schedules[0].schedule.interval.total_seconds() == 30
    assert round_dep.concurrency_limit == inbox_dep.concurrency_limit == 1
    (trigger,) = round_dep.triggers
    assert trigger.expect == {"alp.batch.ready"}
    assert trigger.match.model_dump()["alp.workspace"] == str(ws.root)
    assert trigger.parameters["workspace"] == str(ws.root)
    assert round_dep.entrypoint == "flows.round.round_flow"


@pytest.fixture
def webhook(ws):
    receiver = WebhookReceiver(ws.root, "s3cret-token", reply_within_s=120)  # answer after the ingest
    server = make_server(receiver, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", ws
    server.shutdown()
    server.server_close()
    receiver.close()


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ls_payload(ws, row, label):
    task = next(t for t in json.loads((ws.queue_dir / "round-000" / "label-studio.json").read_text()))
    task = {"id": 7, "data": {**task["data"], "sample_id": row}}
    ann = {
        "id": 11,
        "task": 7,
        "result": [{"from_name": "label", "to_name": "x", "type": "choices", "value": {"choices": [label]}}],
        "completed_by": 1,
    }
    return {"action": "ANNOTATION_CREATED", "task": task, "annotation": ann, "project": {"id": 1}}


def test_webhook_refuses_without_the_secret_and_ingests_with_it(webhook):
    url, ws = webhook
    row = truth_rows(ws)[0]
    body = ls_payload(ws, row["sample_id"], row["label"])
    for headers in ({}, {"Authorization": "Token wrong"}, {"X-Alp-Secret": "s3cret-toke"}):
        assert post(url, body, headers)[0] == 401
    assert ws.labeled_set().empty
    assert not (ws.queue_dir / "inbox").exists()
    status, out = post(url, body, {"Authorization": "Token s3cret-token"})
    assert (status, out["added"]) == (200, 1)
    labeled = ws.labeled_set()
    assert labeled["sample_id"].tolist() == [row["sample_id"]] and labeled["label"].tolist() == [row["label"]]
    # a label outside the class set: refused with the reason, nothing changes
    status, out = post(
        url, ls_payload(ws, truth_rows(ws)[1]["sample_id"], "no-such-class"), {"X-Alp-Secret": "s3cret-token"}
    )
    assert status == 422 and "no-such-class" in out["error"]
    assert len(ws.labeled_set()) == 1
    assert post(url, {"action": "PROJECT_UPDATED"}, {"X-Alp-Secret": "s3cret-token"}) == (
        200,
        {"ignored": "PROJECT_UPDATED"},
    )


def test_round_artifacts_and_status(ws, tmp_path):
    from prefect.client.orchestration import get_client

    ingest_flow(str(ws.root), [write_jsonl(tmp_path / "all.jsonl", truth_rows(ws))])
    round_flow(str(ws.root), after_batch=0)
    assert ws.exported_rounds() == [0, 1]
    keys = artifact_keys(ws)
    assert keys == {"rounds": "alp-orch-ws-rounds", "campaign": "alp-orch-ws-campaign"}
    with get_client(sync_client=True) as client:
        table = client.read_latest_artifacts()
    by_key = {a.key: a for a in table if a.key in keys.values()}
    rows = json.loads(by_key[keys["rounds"]].data)
    assert [r["round"] for r in rows] == ["round-000", "round-001"]
    assert rows[1]["accuracy"] > 0.3 and rows[1]["labels"] == 30 and rows[1]["batch_histogram"]
    assert "round-001" in by_key[keys["campaign"]].data

    result = runner.invoke(app, ["status", str(ws.root), "--json"])
    data = json.loads(result.output)
    assert data["fill"] == {"round": 1, "labeled": 0, "batch_size": 20}
    assert data["last_trigger"]["round"] == 0
    assert data["schedule"] is None
