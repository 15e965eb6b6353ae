"""`alp serve` on the local stack's real Prefect server stops by itself: the labels of the cold-start
batch trigger round 1, whose stopping rule fires; the round deployment's schedule and label trigger
are paused, a Prefect artifact and the flow run's message say why, and `alp continue` resumes both."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.serve import next_scheduled_round
from tasks.stopping import stop_artifact_key
from tests.integration.test_serve_real_server import deployment, finished_rounds, serving, wait_for

# normalised entropy is ≤ 1 always: the rule fires in the first trained round
ALWAYS = {"acquisition.stop.criteria": ["overall_uncertainty"], "acquisition.stop.overall_uncertainty.threshold": 1.0}


@pytest.fixture
def served(stack_env, tmp_path):
    with serving(stack_env, tmp_path, "stops", **ALWAYS) as out:
        yield out


def automation(name):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        (auto,) = client.read_automations_by_name(name)
        return auto


def test_served_campaign_pauses_its_schedule_and_trigger_when_the_rule_fires(served):
    from prefect.client.orchestration import get_client

    ws, proc = served
    name = ws.root.name
    trigger = f"alp-{name}-next-round-on-labels"
    wait_for("the deployments", lambda: deployment(f"alp-round/{name}") and deployment(f"alp-inbox/{name}"), 90)
    wait_for("the scheduled rounds", lambda: (next_scheduled_round(ws) or {}).get("next"), timeout=60)
    assert automation(trigger).enabled

    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    rows = [{"sample_id": r["sample_id"], "label": ws.classes[int(truth[r["sample_id"]])]} for r in ws.batch(0)]
    (ws.queue_dir / "inbox").mkdir(parents=True, exist_ok=True)
    tmp = ws.queue_dir / "inbox" / ".part"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(ws.queue_dir / "inbox" / "round-000.jsonl")

    (run,) = wait_for("the triggered round", lambda: finished_rounds(ws.root, 0))
    assert run.state.is_completed(), run.state
    assert run.state.message.startswith("stopped at round 1: overall uncertainty = ")
    dep = deployment(f"alp-round/{name}")
    assert dep.paused and next_scheduled_round(ws)["paused"]
    assert not automation(trigger).enabled
    with get_client(sync_client=True) as client:
        art = client.read_latest_artifacts(limit=50)
    (stop_art,) = [a for a in art if a.key == stop_artifact_key(ws)]
    assert "stopped at round 1" in stop_art.data and "alp continue" in stop_art.data
    assert proc.poll() is None

    res = CliRunner().invoke(app, ["status", str(ws.root)])
    assert "stopped at round 1: overall uncertainty" in res.output and "is paused" in res.output, res.output
    res = CliRunner().invoke(app, ["continue", str(ws.root)])
    assert res.exit_code == 0 and f"resumed deployment alp-round/{name}, trigger {trigger}" in res.output, res.output
    assert not deployment(f"alp-round/{name}").paused and automation(trigger).enabled
