"""End to end, bring your own data and model: simulated campaigns through Prefect (test harness),
MLflow and git + DVC on an image folder (digits written as PNGs) with badge, bald and ceal+entropy,
on a multichannel series (arrays, [6, 20] per sample), and with a custom nn.Module from a file."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from al_core import pipeline
from al_core.workspace import Workspace
from benchmarks.image_data import digits_pngs
from flows.campaign import campaign_flow
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tests.flows.conftest import copy_workspace

pytestmark = pytest.mark.e2e

FAST = {
    "model.hidden": 32,
    "training.epochs": 10,
    "training.patience": 3,
    "training.min_steps": 40,
    "training.cpu_threads": 1,
    "acquisition.batch_size": 15,
    "acquisition.initial_size": 30,
    "acquisition.mc_samples": 4,
}


@pytest.fixture(scope="module")
def image_template(tmp_path_factory):
    """An image-folder workspace (500 digits as PNGs, one folder per class) with its cold start exported."""
    base = tmp_path_factory.mktemp("byo-images")
    digits_pngs(base / "pngs", 500)
    root = base / "images"
    init_workspace(
        root, {**FAST, "dataset.name": "images", "dataset.path": str(base / "pngs"), "dataset.image_size": [8, 8]}
    )
    round_flow(str(root))
    return root


@pytest.mark.parametrize("strategy", ["badge", "bald", "ceal+entropy"])
def test_image_folder_campaign(image_template, tmp_path, strategy):
    ws = copy_workspace(image_template, tmp_path)
    assert "features" not in pd.read_parquet(ws.pool_path).columns  # the pool is not copied in
    summaries = campaign_flow(str(ws.root), rounds=2, strategy=strategy)
    assert [s["round"] for s in summaries] == [1, 2]
    assert all(0.0 <= s["metrics"]["test_accuracy"] <= 1.0 for s in summaries)
    assert summaries[-1]["strategy"] == strategy
    assert ws.params.resolved_arch((1, 8, 8)) == "cnn2d"
    for r in (0, 1, 2):
        lines = ws.batch(r)
        assert lines and all("features" not in rec and Path(rec["uri"]).is_file() for rec in lines)
        assert all(Path(rec["uri"]).stem == rec["sample_id"] for rec in lines)
    tasks = json.loads((ws.queue_dir / "round-002" / "label-studio.json").read_text())
    assert all(t["data"]["uri"].endswith(".png") for t in tasks)


def test_multichannel_series_campaign(tmp_path):
    rng = np.random.default_rng(0)
    n, t = 400, np.arange(20)
    y = np.arange(n) % 3
    X = np.stack([np.sin((y[:, None] + 1) * (c + 1) * t / 6.0) for c in range(6)], axis=1)
    X = (X + 0.3 * rng.normal(size=X.shape)).astype(np.float32)  # [N, 6 channels, 20 steps]
    np.savez(tmp_path / "windows.npz", X=X, y=np.array(["walk", "run", "sit"])[y])
    root = tmp_path / "series"
    init_workspace(root, {**FAST, "dataset.name": "arrays", "dataset.path": str(tmp_path / "windows.npz")})
    ws = Workspace(root)
    assert ws.meta()["input_shape"] == [6, 20] and ws.classes == ["run", "sit", "walk"]
    summaries = campaign_flow(str(root), rounds=2, strategy="margin")
    assert [s["round"] for s in summaries] == [0, 1, 2]
    model = pipeline.load_model(ws)
    assert model.arch == "cnn1d" and model.module_.trunk[1].in_channels == 6  # the channels are channels
    assert summaries[-1]["metrics"]["test_accuracy"] > 0.5


FACTORY = textwrap.dedent(
    """
    from torch import nn

    class Net(nn.Module):
        def __init__(self, input_shape, n_classes):
            super().__init__()
            c, h, w = input_shape
            self.trunk = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Flatten())
            self.tail = nn.Sequential(nn.Dropout(0.25), nn.Linear(8 * h * w, 32), nn.ReLU(), nn.Dropout(0.25))
            self.head = nn.Linear(32, n_classes)

        def embed(self, x):
            return self.tail(self.trunk(x))

        def forward(self, x):
            return self.head(self.embed(x))

    def build(input_shape, n_classes):
        return Net(input_shape, n_classes)
    """
)


def test_custom_model_campaign_logs_the_model_and_dvc_repro_reproduces_it(tmp_path):
    (tmp_path / "my_net.py").write_text(FACTORY)
    root = tmp_path / "custom"
    overrides = {
        **FAST,
        "dataset.name": "digits",
        "model.arch": "custom",
        "model.factory": f"{tmp_path}/my_net.py:build",
    }
    init_workspace(root, {**overrides, "acquisition.strategy": "bald"})
    ws = Workspace(root)
    summaries = campaign_flow(str(root), rounds=2)
    assert [s["strategy"] for s in summaries[1:]] == ["bald", "bald"]
    assert f"{tmp_path}/my_net.py" in (root / "dvc.yaml").read_text()  # train depends on the model's code
    logged = mlflow.pytorch.load_model(f"runs:/{summaries[-1]['mlflow_run_id']}/model")
    x = torch.as_tensor(np.array(ws.test_set()[1][:1]))  # MLflow exports it for the input example's shape
    assert logged(x).shape == (1, 10)
    target = summaries[-1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", target["tag"]], check=True)
    run = lambda *a: subprocess.run(["dvc", *a], cwd=clone, capture_output=True, text=True)  # noqa: E731
    # the workspace's remote is relative to it (a copy pushes to its own): a clone points back at the original's
    assert run("remote", "modify", "--local", "storage", "url", str(root / ".dvc-remote")).returncode == 0
    assert (pulled := run("pull", "--allow-missing")).returncode == 0, pulled.stderr
    assert (repro := run("repro")).returncode == 0, repro.stdout + repro.stderr
    metrics = json.loads((clone / "metrics" / "eval.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(target["metrics"]["test_accuracy"], abs=1e-9)


def test_init_refuses_a_model_that_cannot_serve_the_strategy(tmp_path):
    from al_core.errors import ConfigError

    (tmp_path / "my_net.py").write_text(FACTORY.replace("nn.Dropout(0.25)", "nn.Identity()"))
    overrides = {"dataset.name": "digits", "model.arch": "custom", "model.factory": f"{tmp_path}/my_net.py:build"}
    with pytest.raises(ConfigError, match="batchbald needs dropout in the model: none found"):
        init_workspace(tmp_path / "ws", {**overrides, "acquisition.strategy": "batchbald"})
    assert not (tmp_path / "ws").exists()  # nothing half-made left behind
