"""Integration tests against real servers: the local stack (`alp stack`) started once per session.

PostgreSQL, the S3 endpoint (moto's server mode), the Prefect and MLflow servers run on 127.0.0.1 for the
session and are stopped by PID at its end. The stack installs PostgreSQL itself where it is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # under /tmp, open to other users: PostgreSQL runs as `postgres` and must reach its data directory
    base = Path(tempfile.mkdtemp(prefix="alp-it-stack-"))
    os.chmod(base, 0o755)
    s = Stack(base / "stack")
    try:
        t0 = time.perf_counter()
        s.up(timeout=300)
        sys.stderr.write(f"\nalp stack up in {time.perf_counter() - t0:.1f}s ({s.state_dir})\n")
        yield s
    finally:
        s.down()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_env(stack: Stack) -> Iterator[dict[str, str]]:
    """The clients' environment for the stack, as `eval "$(alp stack env)"` would set it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = stack.client_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # Prefect reads its settings once: point this process's client at the server explicitly
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`alp` and `dvc` must resolve to this interpreter's console scripts."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))


def small_overrides(**extra: object) -> dict[str, object]:
    """A fast digits workspace (as tests/flows), with its queue and DVC remote where the test says."""
    from tests.flows.conftest import small_overrides as flows_small

    return flows_small(**extra)


def s3_keys(bucket: str, prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def flow_runs(workspace: Path, name: str) -> list:
    """The flow runs named ``name`` of ``workspace`` in the Prefect server, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name])), sort=FlowRunSort.START_TIME_ASC
        )
    return [r for r in runs if r.parameters.get("workspace") == str(workspace)]
