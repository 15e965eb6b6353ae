"""scoring.engine: dask (#13): a round whose shards are Prefect tasks on a real 2-process LocalCluster
picks what the local engine picks, and its shard results are persisted (a rerun does not rescore)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from al_core import pipeline
from al_core.acquisition import get_strategy
from al_core.pool import ParquetPool
from al_core.scoring import ShardJob
from al_core.training import round_seeds
from al_core.workspace import Workspace
from flows.campaign import _annotate
from flows.round import round_flow
from flows.workspace_init import init_workspace
from tasks import scoring, steps


def _table(path, n=500, f=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, f)).astype(np.float32) + y[:, None]
    cols = {"sample_id": [f"t{i}" for i in range(n)], **{f"x{j}": X[:, j] for j in range(f)}, "label": y}
    pq.write_table(pa.table(cols), path)
    return path


def test_a_dask_round_picks_what_the_local_engine_picks(tmp_path):
    root = tmp_path / "ws"
    init_workspace(
        root,
        {
            "dataset.name": "table",
            "dataset.path": str(_table(tmp_path / "pool.parquet")),
            "model.arch": "mlp",
            "model.hidden": 16,
            "training.epochs": 5,
            "training.min_steps": 20,
            "training.cpu_threads": 1,
            "acquisition.initial_size": 20,
            "acquisition.batch_size": 10,
            "acquisition.strategy": "entropy",
            "scoring.engine": "dask",
            "scoring.workers": 2,
            "scoring.shard_rows": 90,
            "tracking.log_model": False,
        },
    )
    ws = Workspace(root)
    round_flow(str(root))
    _annotate(ws, 0)
    summary = round_flow(str(root), simulate=True)
    c = summary["candidates"]
    assert c["n_shards"] == 5 and c["shards_cached"] == 0 and len(c["worker_peak_mb"]) == 2, c
    picked = [rec["sample_id"] for rec in ws.batch(1)]

    data = pipeline.round_data(ws, 1)  # as the round saw it: its batch back among the candidates
    data.candidate_idx = np.sort(np.concatenate([data.candidate_idx, data.pool_ids.positions(picked)]))
    model = pipeline.load_model(ws)
    local = steps.score_and_select.fn(str(root), data, model)
    assert data.pool_ids[local["pool_idx"]].tolist() == picked

    # the shard results are persisted Prefect results: the same shard, model and job is a cache hit
    pool = ParquetPool(ws.pool_path)
    job = ShardJob("scores", get_strategy("entropy"), ws.params.acquisition.mc_samples, round_seeds(0, 1)["score"])
    blob = model.to_bytes()
    shard_task = scoring.score_shard_task.with_options(result_storage=scoring.shard_storage(ws))
    args = (str(pool.path), pool.fingerprint, pool.shards(data.candidate_idx, 90)[2], job)
    state = shard_task(*args, hashlib.sha256(blob).hexdigest(), blob, 1, return_state=True)
    assert state.name == "Cached"
