"""`make demo` smoke test: a tiny run of the demo's main job (2 strategies × 1 seed × 2 trained rounds)
through the benchmark runner, the round flow (Prefect test harness), MLflow, git and DVC."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import demo

pytestmark = pytest.mark.e2e

TINY = {
    "seeds": [0],
    "initial_size": 30,
    "batch_size": 20,
    "budget": 50,
    "workers": 1,
    "params": {"model.hidden": 32, "training": {"epochs": 20, "min_steps": 100}, "training.cpu_threads": 1},
}


def test_demo_prints_the_table_and_writes_the_learning_curve(tmp_path, capsys):
    assert demo.main(str(tmp_path / "demo"), TINY) == 0
    out = capsys.readouterr().out
    assert "alp demo: digits, test accuracy" in out and "margin" in out and "random" in out
    assert "AULC" in out and "labels saved" in out  # the summary and the stopping tables
    png = tmp_path / "demo" / "learning_curve.png"
    assert f"learning curve: {png}" in out.replace("\n", "")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for strategy in ("margin", "random"):
        ws = tmp_path / "demo" / "workspaces" / f"{strategy}-s0"
        assert len(list((ws / ".alp" / "rounds").glob("round-*.json"))) == 3  # cold start + 2 trained
    assert Path(tmp_path / "demo" / "results.md").read_text().count("## Stopping") == 1
