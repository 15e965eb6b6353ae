"""A 2-round simulated campaign against the real servers of the local stack: the queue and the DVC remote
on S3, MLflow on its server (PostgreSQL + artifacts on S3), the flows on the Prefect server."""

from __future__ import annotations

import json
import os
import uuid

import boto3
import mlflow
import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from al_core.workspace import Workspace
from flows.campaign import campaign_flow
from flows.workspace_init import init_workspace
from tests.integration.conftest import flow_runs, s3_keys, small_overrides

ROUNDS = ["round-000", "round-001", "round-002"]


@pytest.fixture(scope="module")
def campaign(stack, stack_env, tmp_path_factory):
    bucket = stack.bucket
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("real") / "ws-campaign"  # its name: the MLflow experiment
    ws = init_workspace(
        root,
        small_overrides(
            **{
                "acquisition.strategy": "margin",
                "queue.backend": "s3",
                "queue.path": f"s3://{bucket}/{prefix}/queue",
                "versioning.remote": f"s3://{bucket}/{prefix}/dvc",
            }
        ),
    )
    summaries = campaign_flow(str(ws.root), rounds=2)
    return Workspace(root), summaries, bucket, prefix


def test_rounds_ran_with_the_queue_on_s3(campaign):
    ws, summaries, bucket, prefix = campaign
    assert [s["tag"] for s in summaries] == ROUNDS
    for s in summaries:
        assert s["queue"]["batch_url"] == f"s3://{bucket}/{prefix}/queue/{s['tag']}/batch.jsonl"
    assert ws.queue_dir == ws.root / "queue"  # the local copy the round flow reads
    assert ws.exported_rounds() == [0, 1, 2]
    assert len(ws.labeled_set()) == 30 + 20 + 20
    # nothing about the endpoint or the credentials in the workspace's configuration or queue files
    texts = [(ws.root / "params.yaml").read_text(), (ws.root / ".dvc" / "config").read_text()]
    text_files = [p for p in ws.queue_dir.rglob("*") if p.is_file() and p.suffix != ".png"]  # PNGs: the samples
    texts += [p.read_text() for p in text_files]
    assert not [t for t in texts if any(v in t for v in private_values())]


def private_values() -> list[str]:
    return [os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ENDPOINT_URL"]]


def test_queue_files_and_inbox_in_the_bucket(campaign):
    ws, summaries, bucket, prefix = campaign
    keys = s3_keys(bucket, f"{prefix}/queue/")
    for s in summaries:
        tag = s["tag"]
        assert {f"{prefix}/queue/{tag}/batch.jsonl", f"{prefix}/queue/{tag}/label-studio.json"} <= set(keys)
        local = ws.batch_path(s["round"]).read_bytes()
        remote = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/queue/{tag}/batch.jsonl")["Body"].read()
        assert remote == local
        # the simulated annotator returned its labels through the inbox
        assert f"{prefix}/queue/inbox/{tag}-oracle.jsonl" in keys
    assert f"{prefix}/queue/label-config.xml" in keys
    assert [r["file"] for r in (json.loads(line) for line in ws.ledger_path.read_text().splitlines())] == [
        f"{t}-oracle.jsonl" for t in ROUNDS
    ]


def test_dvc_cache_objects_in_the_bucket(campaign):
    ws, _, bucket, prefix = campaign
    keys = s3_keys(bucket, f"{prefix}/dvc/")
    assert len(keys) >= 6 and all(k.startswith(f"{prefix}/dvc/files/md5/") for k in keys)
    dvc_file = (ws.root / "data" / "labeled.dvc").read_text()
    md5 = dvc_file.split("md5: ")[1].split()[0].removesuffix(".dir")
    assert f"{prefix}/dvc/files/md5/{md5[:2]}/{md5[2:]}.dir" in keys  # the labeled set of the last round


def test_mlflow_server_runs_champion_and_artifacts_on_s3(campaign, stack):
    ws, summaries, bucket, _ = campaign
    client = MlflowClient(tracking_uri=stack.url("mlflow"))
    exp = client.get_experiment_by_name(ws.name)
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server to S3
    runs = client.search_runs([exp.experiment_id])
    assert not [v for r in runs for v in r.data.params.values() if any(p in v for p in private_values())]
    assert sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId")) == ROUNDS
    champion = client.get_model_version_by_alias(f"{ws.name}-model", "champion")
    best = max(summaries[1:], key=lambda s: s["metrics"]["test_accuracy"])
    assert champion.version == best["model_version"]
    keys = s3_keys(bucket, f"mlflow/{exp.experiment_id}/")
    for s in summaries[1:]:
        run_keys = [k for k in keys if f"/{s['mlflow_run_id']}/artifacts/" in k]
        assert any(k.endswith("figures/confusion_matrix.png") for k in run_keys)
        assert any(k.endswith("queue/batch.jsonl") for k in run_keys)
    assert any(k.endswith("MLmodel") for k in keys)  # the logged models
    mlflow.set_tracking_uri(stack.url("mlflow"))
    assert mlflow.pytorch.load_model(f"models:/{ws.name}-model@champion") is not None


def test_mlflow_store_in_postgres(campaign, stack):
    ws, summaries, _, _ = campaign
    engine = create_engine(stack.postgres_url("mlflow", "postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            exp_id = conn.execute(
                text("SELECT experiment_id FROM experiments WHERE name = :n"), {"n": ws.name}
            ).scalar_one()
            names = conn.execute(
                text("SELECT name FROM runs WHERE experiment_id = :e AND status = 'FINISHED'"), {"e": exp_id}
            ).scalars()
            assert set(ROUNDS) <= set(names)
            alias = conn.execute(
                text("SELECT version FROM registered_model_aliases WHERE name = :m AND alias = 'champion'"),
                {"m": f"{ws.name}-model"},
            ).scalar_one()
            n_versions = conn.execute(
                text("SELECT count(*) FROM model_versions WHERE name = :m"), {"m": f"{ws.name}-model"}
            ).scalar_one()
    finally:
        engine.dispose()
    assert str(alias) == max(summaries[1:], key=lambda s: s["metrics"]["test_accuracy"])["model_version"]
    assert n_versions == 2


def test_flow_runs_in_the_prefect_server(campaign):
    ws, _, _, _ = campaign
    campaigns = flow_runs(ws.root, "alp-campaign")
    rounds = flow_runs(ws.root, "alp-round")
    ingests = flow_runs(ws.root, "alp-ingest")
    assert [r.state.type.value for r in campaigns] == ["COMPLETED"]
    assert [r.state.type.value for r in rounds] == ["COMPLETED"] * 3
    assert len(ingests) == 3 and all(r.state.is_completed() for r in ingests)
    assert all(r.parent_task_run_id is not None for r in rounds)  # subflows of the campaign
