"""A pool table on S3 (#13): a folder of Parquet files on the stack's S3 endpoint (moto's server) is read
in shards through pyarrow datasets; the workspace it makes is the one the same files make locally,
and a round scores it shard by shard."""

from __future__ import annotations

import uuid

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from al_core.data import read_features
from al_core.sources import get_source
from al_core.sources._base import PreparedFiles
from al_core.workspace import Workspace
from flows.campaign import _annotate
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tests.integration.conftest import small_overrides


def test_a_sharded_pool_on_s3_prepares_like_the_local_files(stack, stack_env, tmp_path):
    rng = np.random.default_rng(0)
    local = tmp_path / "pool"
    local.mkdir()
    prefix = f"it-big-pool-{uuid.uuid4().hex[:8]}"
    for part in range(3):  # three files, each of two row groups
        n = 120
        y = rng.integers(0, 3, n)
        cols = {f"x{j}": (rng.normal(size=n) + y).astype(np.float32) for j in range(6)}
        table = pa.table({"sample_id": [f"p{part}-{i}" for i in range(n)], **cols, "label": [f"c{v}" for v in y]})
        pq.write_table(table, local / f"part-{part}.parquet", row_group_size=60)
        boto3.client("s3").upload_file(
            str(local / f"part-{part}.parquet"), stack.bucket, f"{prefix}/part-{part}.parquet"
        )
    fast = {"dataset.name": "table", "model.arch": "mlp", "scoring.shard_rows": 50, "acquisition.initial_size": 20}
    on_s3 = init_workspace(
        tmp_path / "ws-s3", small_overrides(**fast, **{"dataset.path": f"s3://{stack.bucket}/{prefix}/"})
    )
    here = PreparedFiles(*(tmp_path / "here" / f"{n}.parquet" for n in ("pool", "test", "val", "truth")))
    get_source("table").prepare_stream(on_s3.params.dataset.model_copy(update={"path": str(local)}), here)
    for mine, theirs in ((on_s3.pool_path, here.pool), (on_s3.test_path, here.test)):
        a, b = read_features(mine), read_features(theirs)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True) if x is not None)
    assert on_s3.meta()["n_pool"] == 288 and on_s3.meta()["classes"] == ["c0", "c1", "c2"]

    round_flow(str(on_s3.root))
    _annotate(on_s3, 0)
    summary = round_flow(str(on_s3.root), simulate=True)
    assert summary["candidates"]["n_shards"] == 6 and summary["candidates"]["candidate_size"] == 268
    assert len(Workspace(on_s3.root).batch(1)) == 20
