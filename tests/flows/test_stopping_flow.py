"""A campaign that stops by itself: the criteria every round (summary, MLflow, `alp status`), the rule
firing, rounds refused afterwards, and `alp continue` labeling on (Prefect test harness, real MLflow
store, real git + DVC)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from al_core.errors import CampaignStoppedError
from al_core.stopping import CRITERIA, cohen_kappa, stop_set_indices
from al_core.workspace import Workspace
from flows.campaign import campaign_flow
from flows.cli import app
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tasks.stopping import stop_dir
from tests.flows.conftest import small_overrides

pytestmark = pytest.mark.e2e

# κ̄ over 2 round pairs ≥ -1 fires as soon as two pairs exist: at round 3 (rounds 1-2, 2-3)
RULE = {
    "acquisition.stop.criteria": ["stabilizing_predictions"],
    "acquisition.stop.stabilizing_predictions.threshold": -1.0,
    "acquisition.stop.stabilizing_predictions.window": 2,
    "acquisition.stop.stop_set_size": 200,
    "dataset.val_size": 100,  # a fixed labeled validation split: the plateau criterion's input
}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop") / "ws"
    init_workspace(root, small_overrides(**RULE))
    summaries = campaign_flow(str(root), rounds=6)
    return Workspace(root), summaries


def test_campaign_stops_where_the_rule_fires(stopped):
    ws, summaries = stopped
    assert [s["round"] for s in summaries] == [0, 1, 2, 3]  # 6 rounds asked for, stopped after 3
    assert [s["stopping"]["stop"] for s in summaries[1:]] == [False, False, True]
    assert summaries[3]["stopping"]["reason"].startswith("κ̄ = ")
    # the last batch is exported but left for `alp continue`, not labeled
    assert list(ws.pending()) == [3] and len(ws.labeled_set()) == 70


def test_every_criterion_every_round_in_summary_and_mlflow(stopped):
    ws, summaries = stopped
    for s in summaries[1:]:
        assert set(s["stopping"]["criteria"]) == set(CRITERIA)
        assert s["stopping"]["criteria"]["budget"]["value"] == s["n_labels"] + 20
        assert s["stopping"]["criteria"]["plateau"]["value"] is not None
    assert summaries[1]["stopping"]["criteria"]["stabilizing_predictions"]["value"] is None  # nothing to compare yet
    # κ of round 3 is recomputed from the stored stop-set predictions
    p2, p3 = (np.load(stop_dir(ws) / f"round-00{r}.npy") for r in (2, 3))
    assert len(p3) == 200 and len(stop_set_indices(len(ws.pool_ids()), 200, 0)) == 200
    k23 = cohen_kappa(p2, p3, len(ws.classes))
    k12 = cohen_kappa(np.load(stop_dir(ws) / "round-001.npy"), p2, len(ws.classes))
    kbar = summaries[3]["stopping"]["criteria"]["stabilizing_predictions"]["value"]
    assert kbar == pytest.approx((k12 + k23) / 2)
    client = MlflowClient(f"sqlite:///{ws.root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(ws.name)
    run = client.search_runs([exp.experiment_id], "attributes.run_name = 'round-003'")[0]
    for name in ("stabilizing_predictions", "overall_uncertainty", "classification_change", "plateau", "budget"):
        assert f"stop_{name}" in run.data.metrics
    assert run.data.metrics["stop_fired"] == 1.0
    assert run.data.metrics["stop_stabilizing_predictions"] == pytest.approx(kbar)


def test_status_shows_the_criteria_and_where_it_stopped(stopped):
    ws, summaries = stopped
    res = CliRunner().invoke(app, ["status", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["stopping"]["stopped"]["round"] == 3
    assert data["rounds"][3]["stopping"]["criteria"]["overall_uncertainty"]["value"] is not None
    text = CliRunner().invoke(app, ["status", str(ws.root)]).output
    assert f"stopped at round 3: {summaries[3]['stopping']['reason']}" in text
    assert "stopping criteria" in text and "κ̄*" in text


def test_rounds_refused_until_continue_then_the_rule_is_checked_again(stopped, tmp_path):
    import shutil

    root = tmp_path / "ws"
    shutil.copytree(stopped[0].root, root, symlinks=True)
    ws = Workspace(root)
    with pytest.raises(CampaignStoppedError, match=r"stopped at round 3: .*alp continue"):
        round_flow(str(root), simulate=True)
    with pytest.raises(CampaignStoppedError, match="alp continue"):
        campaign_flow(str(root), rounds=2)
    assert list(ws.pending()) == [3]  # the refused campaign did not label the waiting batch
    res = CliRunner().invoke(app, ["continue", str(root)])
    assert res.exit_code == 0 and "was stopped at round 3" in res.output, res.output
    more = campaign_flow(str(root), rounds=3)
    assert [s["round"] for s in more] == [4]  # the waiting batch was labeled; the rule fired again at once
    assert more[0]["stopping"]["stop"] and len(ws.labeled_set()) == 90
