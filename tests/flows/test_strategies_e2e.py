"""Every registered strategy (and CEAL around one) runs a real round end to end: scoring through the
model, selection, export, MLflow logging, DVC versioning."""

from __future__ import annotations

import shutil

import pytest

from al_core.acquisition import strategy_names
from al_core.workspace import Workspace
from flows.campaign import _annotate, apply_overrides
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tests.flows.conftest import small_overrides

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def labeled_template(tmp_path_factory):
    """A workspace whose cold-start batch is labeled: the next round trains and acquires."""
    root = tmp_path_factory.mktemp("strategies") / "ws"
    ws = init_workspace(root, small_overrides(**{"acquisition.batchbald_samples": 200}))
    round_flow(str(root), simulate=True)
    _annotate(ws, 0)
    return root


@pytest.mark.parametrize("strategy", [*strategy_names(), "ceal+entropy", "ceal+badge"])
def test_strategy_runs_a_round(labeled_template, tmp_path, strategy):
    root = tmp_path / "ws"
    shutil.copytree(labeled_template, root, symlinks=True)
    ws = Workspace(root)
    # CEAL: a threshold above any entropy makes every scored candidate a pseudo-label
    ceal = {"acquisition.ceal.delta0": 100.0} if strategy.startswith("ceal+") else {}
    apply_overrides(ws, **{"acquisition.strategy": strategy, **ceal})
    s = round_flow(str(root), simulate=True)
    assert s["strategy"] == strategy and s["round"] == 1
    batch = Workspace(root).batch(1)
    ids = [b["sample_id"] for b in batch]
    assert len(ids) == 20 == len(set(ids))
    assert not set(ids) & set(Workspace(root).labeled_set()["sample_id"])
    assert s["metrics"]["test_accuracy"] > 0.1
    assert sum(s["batch_report"]["class_histogram"].values()) == 20
    if strategy.startswith("ceal+"):
        assert s["n_pseudo_labels"] == s["n_candidates"] > 0
        # pseudo-labels never reach the versioned labeled set
        assert set(Workspace(root).labeled_set()["source"]) == {"oracle"}
