"""The S3 endpoint dies in the middle of an export: the round fails cleanly after its retries, and once
S3 is back the same round runs again and exports its batch once (no duplicate, no skipped round)."""

from __future__ import annotations

import uuid

import boto3
import mlflow
import pytest

from al_core.workspace import Workspace
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tasks import s3
from tasks.queues.s3 import S3Queue
from tests.integration.conftest import flow_runs, s3_keys, small_overrides


def task_runs(flow_run_id, task_name: str) -> list:
    """The runs of task ``task_name`` in one flow run (a task run's name is the task's plus a suffix)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [r for r in runs if r.name.rsplit("-", 1)[0] == task_name]


def test_s3_dies_mid_export_then_the_round_resumes_without_duplicate(stack, stack_env, tmp_path, monkeypatch):
    bucket, prefix = stack.bucket, f"it-outage-{uuid.uuid4().hex[:8]}"
    queue = f"{prefix}/queue"
    ws = init_workspace(
        tmp_path / "ws-outage", small_overrides(**{"queue.backend": "s3", "queue.path": f"s3://{bucket}/{queue}"})
    )
    real_put = S3Queue._write
    killed = []

    def put_then_kill(self, fs, url: str, data: bytes) -> None:
        real_put(self, fs, url, data)
        if url.endswith("round-000/label-studio.json") and not killed:
            killed.append(stack.stop_service("s3", kill=True))  # SIGKILL, as a crash: batch.jsonl never lands

    monkeypatch.setattr(S3Queue, "_write", put_then_kill)
    with pytest.raises(s3.S3UnavailableError, match="unreachable"):
        round_flow(str(ws.root))
    assert killed == [True]
    monkeypatch.undo()

    # failed cleanly: no local batch, the round is still to run, nothing waits for labels
    ws = Workspace(ws.root)
    assert not ws.batch_path(0).exists() and ws.next_round() == 0 and ws.pending() == {}
    # retried per its policy (retries=2 on transient errors) in the Prefect server's records
    [failed] = flow_runs(ws.root, "alp-round")
    assert failed.state.is_failed()
    [export] = task_runs(failed.id, "export-batch")
    assert export.state.is_failed() and export.run_count == 3

    # S3 comes back with what it held (the stack replays its recording): half an export, no batch.jsonl
    stack.start_service("s3")
    assert s3_keys(bucket, queue + "/") == [f"{queue}/label-config.xml", f"{queue}/round-000/label-studio.json"]

    summary = round_flow(str(ws.root))
    assert summary["round"] == 0 and summary["tag"] == "round-000"
    assert ws.exported_rounds() == [0] and len(ws.batch(0)) == 30
    assert s3_keys(bucket, queue + "/") == [
        f"{queue}/label-config.xml",
        f"{queue}/round-000/batch.jsonl",
        f"{queue}/round-000/label-studio.json",
    ]
    remote = boto3.client("s3").get_object(Bucket=bucket, Key=f"{queue}/round-000/batch.jsonl")["Body"].read()
    assert remote == ws.batch_path(0).read_bytes()
    runs = flow_runs(ws.root, "alp-round")
    assert [r.state.type.value for r in runs] == ["FAILED", "COMPLETED"]
    client = mlflow.MlflowClient(tracking_uri=stack.url("mlflow"))
    exp = client.get_experiment_by_name(ws.name)
    names = [r.info.run_name for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("mlflow.parentRunId")]
    assert names == ["round-000"]  # one tracked round, not two
