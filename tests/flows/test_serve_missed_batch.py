"""`alp serve` starting after a batch was completed while it was down: the round deployment gets one
flow run for that batch (on the Prefect test harness's API), not a second on a restart, none once the
next round exists, none for a batch still waiting for labels or a stopped campaign."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flows.ingest import ingest_flow
from flows.round import round_flow
from flows.serve import build_deployments, missed_batch, start_missed_round
from tests.flows.conftest import copy_workspace, exported_template

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return exported_template(tmp_path_factory, "missed")


@pytest.fixture
def ws(template, tmp_path):
    return copy_workspace(template, tmp_path)


def label_batch(ws, tmp_path, n=None):
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    rows = [{"sample_id": b["sample_id"], "label": ws.classes[int(truth[b["sample_id"]])]} for b in ws.batch(0)]
    path = tmp_path / f"labels-{n}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))
    ingest_flow(str(ws.root), [str(path)])  # no `alp serve`: the batch.ready event fires nothing


def round_runs(ws):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[build_deployments(ws)[0].name]))
        )
    return [run for run in runs if run.parameters.get("workspace") == str(ws.root)]


def test_a_batch_completed_while_serve_was_down_starts_its_round_once(ws, tmp_path):
    label_batch(ws, tmp_path)
    assert missed_batch(ws) == 0
    started = start_missed_round(ws, build_deployments(ws)[0])
    assert started is not None and started["round"] == 0
    (run,) = round_runs(ws)
    assert run.parameters == {"workspace": str(ws.root), "after_batch": 0} and run.state.type.value == "SCHEDULED"
    # serve restarted before the run ran: still one run
    assert start_missed_round(ws, build_deployments(ws)[0]) is None
    assert len(round_runs(ws)) == 1
    # once the next round exists, nothing is missed
    round_flow(str(ws.root), after_batch=0)
    assert missed_batch(ws) is None and start_missed_round(ws, build_deployments(ws)[0]) is None


def test_nothing_starts_for_a_batch_still_waiting_for_labels(ws, tmp_path):
    label_batch(ws, tmp_path, n=5)
    assert missed_batch(ws) is None
    assert start_missed_round(ws, build_deployments(ws)[0]) is None and round_runs(ws) == []


def test_nothing_starts_for_a_stopped_campaign(ws, tmp_path):
    from tasks.stopping import state_path

    label_batch(ws, tmp_path)
    state_path(ws).parent.mkdir(parents=True, exist_ok=True)
    state_path(ws).write_text(json.dumps({"stopped": {"round": 0, "reason": "test"}}))
    assert missed_batch(ws) is None
