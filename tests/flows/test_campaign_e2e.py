"""End to end: a 3-round simulated campaign through Prefect (test harness), a real MLflow SQLite
store and real git + DVC in a temporary workspace."""

from __future__ import annotations

import json
import subprocess

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from al_core.workspace import Workspace
from flows.campaign import campaign_flow
from flows.workspace_init import init_workspace
from tests.flows.conftest import small_overrides

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "ws"
    ws = init_workspace(root, small_overrides(**{"acquisition.strategy": "margin"}))
    summaries = campaign_flow(str(ws.root), rounds=3)
    return Workspace(root), summaries


def git(ws, *args):
    return subprocess.run(["git", "-C", str(ws.root), *args], capture_output=True, text=True, check=True).stdout


def test_rounds_and_tags(campaign):
    ws, summaries = campaign
    assert [s["round"] for s in summaries] == [0, 1, 2, 3]
    assert summaries[0]["strategy"] == "random (cold start)" and not summaries[0]["metrics"]
    assert all(s["strategy"] == "margin" for s in summaries[1:])
    tags = git(ws, "tag", "--list").split()
    assert tags == ["round-000", "round-001", "round-002", "round-003"]
    assert git(ws, "status", "--porcelain") == ""  # every round ends committed


def test_labeled_set_grows_one_file_per_round(campaign):
    ws, summaries = campaign
    labeled = ws.labeled_set()
    assert [p.name for p in ws.labeled_files()] == [f"round-00{i}.parquet" for i in range(4)]
    assert len(labeled) == 30 + 3 * 20 and labeled["sample_id"].is_unique
    assert set(labeled["source"]) == {"oracle"}
    assert [s["n_labels"] for s in summaries] == [0, 30, 50, 70]
    # each tag holds the labeled set as it was at that round
    for s in summaries[1:]:
        dvc_file = git(ws, "show", f"{s['tag']}:data/labeled.dvc")
        assert "nfiles" in dvc_file
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    assert (labeled["label"].astype(int).to_numpy() == truth[labeled["sample_id"]].to_numpy()).all()


def test_queue_files(campaign):
    ws, summaries = campaign
    for s in summaries:
        r = s["round"]
        batch = ws.batch(r)
        assert len(batch) == (30 if r == 0 else 20)
        assert [b["rank"] for b in batch] == list(range(1, len(batch) + 1))
        for rec in batch:
            assert {"sample_id", "round", "strategy", "score", "rank", "model_version", "predictions"} <= set(rec)
            assert rec["round"] == r
        tasks = json.loads((ws.queue_dir / f"round-{r:03d}" / "label-studio.json").read_text())
        assert [t["data"]["sample_id"] for t in tasks] == [b["sample_id"] for b in batch]
        if r > 0:
            assert len(batch[0]["predictions"]) == 3
            pred = tasks[0]["predictions"][0]
            assert pred["model_version"] == batch[0]["model_version"]
            assert pred["result"][0]["value"]["choices"][0] in ws.classes
            scores = [b["score"] for b in batch]
            assert scores == sorted(scores, reverse=True)
    assert (ws.queue_dir / "label-config.xml").exists()


def test_mlflow_runs_model_and_champion(campaign):
    ws, summaries = campaign
    mlflow.set_tracking_uri(f"sqlite:///{ws.root / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name(ws.name)
    assert exp.artifact_location == (ws.root / "mlartifacts").as_uri()  # never ./mlruns in the cwd
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("alp.kind") == "campaign"]
    assert len(parents) == 1
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in nested) == ["round-000", "round-001", "round-002", "round-003"]
    by_name = {r.info.run_name: r for r in nested}
    for s in summaries[1:]:
        run = by_name[s["tag"]]
        assert run.data.tags["alp.dvc_tag"] == s["tag"]
        assert run.data.params["data_hash"] == s["data_hash"]
        for key in ("test_accuracy", "test_macro_f1", "test_nll", "n_labels", "seconds_train", "seconds_score"):
            assert key in run.data.metrics
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert {"figures/learning_curve.png", "figures/confusion_matrix.png"} <= arts
        report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/batch_report.json")
        assert sum(report["class_histogram"].values()) == 20 and "mean_score" in report
        assert "batch_max_class_share" in run.data.metrics
    versions = client.search_model_versions(f"name='{ws.name}-model'")
    assert len(versions) == 3
    champion = client.get_model_version_by_alias(f"{ws.name}-model", "champion")
    best = max(summaries[1:], key=lambda s: s["metrics"]["test_accuracy"])
    assert float(champion.tags["test_accuracy"]) == pytest.approx(best["metrics"]["test_accuracy"], abs=1e-6)
    model = mlflow.pytorch.load_model(f"models:/{ws.name}-model@champion")
    assert model is not None


def test_dvc_remote_holds_the_data(campaign):
    ws, _ = campaign
    objects = [p for p in (ws.root / ".dvc-remote").rglob("*") if p.is_file()]
    assert len(objects) >= 6  # pool, test, meta, truth, labeled dir + round files, models


def test_checkout_of_a_tag_and_dvc_repro_reproduces_the_metrics(campaign, tmp_path):
    ws, summaries = campaign
    target = summaries[2]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ws.root), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", target["tag"]], check=True)
    run = lambda *a: subprocess.run(["dvc", *a], cwd=clone, capture_output=True, text=True)  # noqa: E731
    # the workspace's remote is relative to it (a copy pushes to its own): a clone points back at the original's
    assert run("remote", "modify", "--local", "storage", "url", str(ws.root / ".dvc-remote")).returncode == 0
    pulled = run("pull", "--allow-missing")
    assert pulled.returncode == 0, pulled.stderr
    repro = run("repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    metrics = json.loads((clone / "metrics" / "eval.json").read_text())
    assert metrics["round"] == target["round"]
    assert metrics["test_accuracy"] == pytest.approx(target["metrics"]["test_accuracy"], abs=1e-9)
    assert metrics["test_nll"] == pytest.approx(target["metrics"]["test_nll"], rel=1e-5)


def test_status_reports_rounds_and_queue(campaign):
    from typer.testing import CliRunner

    from flows.cli import app

    ws, _ = campaign
    res = CliRunner().invoke(app, ["status", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["labels"] == 90 and data["next_round"] == 4 and data["queue"] == {}
    assert [r["tag"] for r in data["rounds"]] == ["round-000", "round-001", "round-002", "round-003"]
    text = CliRunner().invoke(app, ["status", str(ws.root)])
    assert "round-003" in text.output and "nothing waiting" in text.output
