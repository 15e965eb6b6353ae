"""`alp benchmark` end to end: 2 strategies × 2 seeds × 2 trained rounds on digits, through the real
campaign flow (Prefect test harness API shared by 2 spawned workers), MLflow, git and DVC."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from al_core.errors import ConfigError
from al_core.workspace import Workspace
from flows.benchmark import load_benchmark_config, partial_report, run_benchmark
from flows.cli import app
from tests.flows.conftest import small_overrides

pytestmark = pytest.mark.e2e

TINY = Path(__file__).resolve().parents[2] / "benchmarks" / "configs" / "tiny.yaml"


def tiny_config():
    keep = ("model.hidden", "training.epochs", "training.patience", "acquisition.mc_samples")
    params = {k: v for k, v in small_overrides().items() if k in keep}
    return load_benchmark_config(TINY, {"params": params})


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny"
    cfg = tiny_config()
    report = run_benchmark(cfg, out, workers=2, progress=False)
    return cfg, out, report


def test_every_campaign_ran_through_the_round_code(bench):
    _cfg, out, report = bench
    assert sorted(report["ran"]) == sorted(f"{s}-s{k}" for s in ("random", "entropy") for k in (0, 1))
    assert report["failed"] == {}
    for name in report["ran"]:
        ws = Workspace(out / "workspaces" / name)
        summaries = ws.round_summaries()
        assert [s["round"] for s in summaries] == [0, 1, 2]  # cold start + 2 trained rounds
        assert [s["n_labels"] for s in summaries[1:]] == [30, 50]
        assert ws.params.seed == int(name[-1]) and ws.params.acquisition.initial_seed == int(name[-1])
        assert ws.params.tracking.log_model is False and ws.params.versioning.push is False
        result = json.loads((out / "results" / f"{name}.json").read_text())
        assert result["labels"] == [30, 50] and len(result["accuracy"]) == 2
        assert sum(result["acquired_counts"]) == 40  # two acquired batches (the last one is never trained on)
    # the same seed gives the same cold start to every strategy (paired comparison)
    first = {s: Workspace(out / "workspaces" / f"{s}-s0").batch(0) for s in ("random", "entropy")}
    assert [r["sample_id"] for r in first["random"]] == [r["sample_id"] for r in first["entropy"]]


def test_figure_and_table(bench):
    _cfg, _out, report = bench
    png = Path(report["figure"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md, stopping = Path(report["table_path"]).read_text().split("## Stopping")
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| strategy")]
    assert [r.split("|")[1].strip() for r in rows] == ["random", "entropy"]
    assert all(r.split("|")[2].strip() == "2" for r in rows)  # 2 seeds each
    assert "labels to 0.3" in md and "labels to 0.99" in md and "> 50" in md  # 0.99 is out of reach
    data = json.loads(Path(report["json"]).read_text())
    assert [r["strategy"] for r in data["rows"]] == ["random", "entropy"]
    # where each stopping criterion fires, per strategy × seed: the budget at the last trained round
    budget = [p for p in data["stopping"] if p["criterion"] == "budget"]
    assert len(budget) == 4 and all(p["labels"] == 50 and p["labels_saved"] == 0 for p in budget)
    assert len(data["stopping"]) == 4 * 5 and "| random | 0 | " in stopping and "labels saved" in stopping


def test_report_so_far_covers_unfinished_campaigns_and_writes_nothing_there(bench, tmp_path):
    cfg, out, report = bench
    own = {p: p.stat().st_mtime_ns for p in (out / "results.md", out / "results.json", out / "learning_curve.png")}
    res = CliRunner().invoke(app, ["benchmark", str(TINY), "--out", str(out), "--report-to", str(tmp_path / "now")])
    assert res.exit_code == 0, res.output
    assert report["table"] in res.output  # every campaign finished: the benchmark's own table
    assert (tmp_path / "now" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert {p: p.stat().st_mtime_ns for p in own} == own
    # a campaign cut after its first trained round (its second round's summary not written yet)
    cut = tmp_path / "cut" / "workspaces" / "entropy-s1"
    shutil.copytree(out / "workspaces" / "entropy-s1", cut, symlinks=True)
    (cut / ".alp" / "rounds" / "round-002.json").unlink()
    half = tmp_path / "cut" / "workspaces" / "random-s0"  # an init cut short: params.yaml, nothing prepared
    half.mkdir()
    shutil.copy(cut / "params.yaml", half / "params.yaml")
    part = partial_report(cfg, tmp_path / "cut", tmp_path / "cut-report")
    data = json.loads(Path(part["json"]).read_text())
    assert [(r["name"], r["labels"]) for r in data["runs"]] == [("entropy-s1", [30])]
    assert {p["labels"] for p in data["stopping"]} <= {30, None}  # round 2's observation is left out
    assert "entropy-s1 at 30" in Path(part["table_path"]).read_text()
    with pytest.raises(ConfigError, match="no trained round"):
        partial_report(cfg, tmp_path / "empty", tmp_path / "x")
    with pytest.raises(ConfigError, match="benchmark folder itself"):
        partial_report(cfg, out, out)


def test_mlflow_parent_and_nested_runs(bench):
    cfg, out, _report = bench
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("alp.kind") == "benchmark"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "learning_curve.png",
        "results.md",
        "results.json",
    }
    campaigns = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in campaigns) == ["entropy-s0", "entropy-s1", "random-s0", "random-s1"]
    for c in campaigns:
        assert c.data.tags["alp.kind"] == "campaign" and c.data.tags["alp.strategy"] in ("random", "entropy")
        history = client.get_metric_history(c.info.run_id, "test_accuracy_by_labels")
        assert [m.step for m in history] == [30, 50]
        assert [m.step for m in client.get_metric_history(c.info.run_id, "test_accuracy")] == [1, 2]  # per round
        assert {"aulc", "final_accuracy", "seconds_per_round", "class_entropy"} <= set(c.data.metrics)
        assert "labels_to_0.99" not in c.data.metrics  # never reached: not logged
        rounds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == c.info.run_id]
        assert sorted(r.info.run_name for r in rounds) == ["round-000", "round-001", "round-002"]
    mlflow.set_tracking_uri("")  # leave no global tracking URI behind


def test_second_invocation_redoes_nothing(bench):
    cfg, out, report = bench
    before = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    rounds_before = {p.name: len(Workspace(p).round_summaries()) for p in (out / "workspaces").iterdir()}
    t0 = time.perf_counter()
    again = run_benchmark(cfg, out, workers=2, progress=False)
    assert again["ran"] == [] and time.perf_counter() - t0 < 20
    assert {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")} == before
    assert {p.name: len(Workspace(p).round_summaries()) for p in (out / "workspaces").iterdir()} == rounds_before
    assert again["table"] == report["table"]


def test_an_unfinished_campaign_continues_from_its_workspace(bench):
    cfg, out, report = bench
    (out / "results" / "entropy-s1.json").unlink()  # as if interrupted after its last round
    run_id = Workspace(out / "workspaces" / "entropy-s1").state()["campaign_run_id"]
    again = run_benchmark(cfg, out, workers=1, strategies=["entropy"], seeds=[1], progress=False)
    assert again["ran"] == ["entropy-s1"]
    assert len(Workspace(out / "workspaces" / "entropy-s1").round_summaries()) == 3  # no round redone
    result = json.loads((out / "results" / "entropy-s1.json").read_text())
    assert result["run_id"] == run_id and result["labels"] == [30, 50]  # same campaign run, continued
    assert again["table"] == report["table"]


def test_redo_discards_a_campaign_and_reruns_it_identically(bench):
    cfg, out, _report = bench
    old = json.loads((out / "results" / "random-s1.json").read_text())
    again = run_benchmark(cfg, out, workers=1, strategies=["random"], seeds=[1], progress=False, redo=True)
    assert again["ran"] == ["random-s1"]
    new = json.loads((out / "results" / "random-s1.json").read_text())
    assert new["run_id"] != old["run_id"]  # a fresh campaign run ...
    assert new["accuracy"] == old["accuracy"] and new["acquired_counts"] == old["acquired_counts"]  # ... same seeds
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    assert client.get_run(old["run_id"]).info.lifecycle_stage == "deleted"
    assert len(Workspace(out / "workspaces" / "random-s1").round_summaries()) == 3
    mlflow.set_tracking_uri("")


def test_protocol_change_in_the_same_folder_is_refused(bench):
    _cfg, out, _ = bench
    other = load_benchmark_config(TINY, {"budget": 70})
    with pytest.raises(Exception, match="different protocol"):
        run_benchmark(other, out, workers=1, progress=False)


def test_cli_help_and_bad_config(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "--help"])
    assert res.exit_code == 0 and "strategy × seed" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("strategies: [random, entropy]", "strategies: [random, entrpy]"))
    res = CliRunner().invoke(app, ["benchmark", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "unknown acquisition strategy 'entrpy'" in res.output and "Did you mean 'entropy'" in res.output
