from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    """One temporary Prefect API for the whole flow-test session (~8 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch):
    """`alp` (used by dvc.yaml's stage commands) must resolve to this interpreter's console script."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))


def small_overrides(**extra):
    """A fast digits workspace: MLP, small batches, few epochs."""
    base = {
        "dataset.name": "digits",
        "model.arch": "mlp",
        "model.hidden": 32,
        "training.epochs": 30,
        "training.patience": 5,
        "acquisition.batch_size": 20,
        "acquisition.initial_size": 30,
        "acquisition.mc_samples": 4,
        "training.cpu_threads": 1,
        # the small-data floor (1,500 steps) is for label efficiency; these tests check the pipeline
        "training.min_steps": 200,
    }
    base.update(extra)
    return base


def exported_template(tmp_path_factory, name):
    """A fast workspace whose cold-start batch is exported and waiting for labels."""
    from flows.round import round_flow
    from flows.workspace_init import init_workspace

    root = tmp_path_factory.mktemp(name) / name
    init_workspace(root, small_overrides())
    round_flow(str(root))
    return root


def copy_workspace(template, tmp_path):
    """A private copy of a template workspace (its own git repo; the DVC remote stays shared)."""
    import shutil

    from al_core.workspace import Workspace

    root = tmp_path / template.name
    shutil.copytree(template, root, symlinks=True)
    return Workspace(root)
