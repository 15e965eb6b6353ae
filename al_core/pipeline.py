"""The round's pure steps on a workspace's local files, shared by the Prefect flows and the
DVC stages (``alp prepare|train|evaluate``), so ``dvc repro`` recomputes exactly what a round did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from al_core.acquisition import get_strategy
from al_core.backbone import apply_backbone
from al_core.config import Params
from al_core.data import load_dataset, take_validation, write_prepared
from al_core.errors import WorkspaceError
from al_core.models import NeuralClassifier
from al_core.pool import ArrayPool, ParquetPool, PoolIds, open_pool, read_pool_ids
from al_core.sources import get_source
from al_core.sources._base import PreparedFiles
from al_core.training import TrainResult, evaluate, round_seeds, train_round_model
from al_core.workspace import Workspace, atomic_write_bytes, atomic_write_json


def prepare(ws: Workspace) -> dict:
    """prepare stage: build pool, test split and (apart) the ground truth from ``dataset`` params
    (streamed in shards when the data source can, e.g. a Parquet table; see README "Big pools")."""
    stream = get_source(ws.params.dataset.name).prepare_stream
    if stream is not None and not ws.params.model.backbone:
        meta = stream(ws.params.dataset, PreparedFiles(ws.pool_path, ws.test_path, ws.val_path, ws.truth_path))
        if meta is not None:
            atomic_write_json(ws.meta_path, meta)
            return meta
    ds, val = take_validation(load_dataset(ws.params.dataset), ws.params.dataset.val_size, ws.params.dataset.seed)
    ds, val = apply_backbone(ws.params, ds, val)  # a frozen backbone's features, computed once here
    write_prepared(ds, val, ws.pool_path, ws.test_path, ws.val_path, ws.truth_path)
    meta = ds.meta(ws.params.dataset.name)
    meta["n_val"] = len(val.test_ids) if val is not None else 0
    atomic_write_json(ws.meta_path, meta)
    return meta


@dataclass
class RoundData:
    """What round ``r`` sees: the pool, the labeled rows, the candidates it may query.

    ``X_pool`` reads rows on demand (``X_pool[idx]`` reads only the row groups holding them) and
    hands the pool out in shards; ``pool_ids`` is one Arrow string array: a round holds O(N)
    scalars of the pool, never all of its features."""

    round: int
    pool_ids: PoolIds | np.ndarray
    X_pool: ParquetPool | ArrayPool
    labeled_idx: np.ndarray  # pool indices of labeled samples
    y_labeled: np.ndarray  # class indices
    candidate_idx: np.ndarray  # pool indices neither labeled nor waiting in the queue

    @property
    def X_labeled(self) -> np.ndarray:
        return self.X_pool[self.labeled_idx]


def current_round(ws: Workspace) -> int:
    if not ws.round_path.exists():
        raise WorkspaceError(f"{ws.round_path} is missing: the round being trained is set by `alp round`")
    return int(json.loads(ws.round_path.read_text())["round"])


def round_data(ws: Workspace, r: int) -> RoundData:
    """The round's view of the pool: its ids, its rows on demand, the labeled and candidate indices."""
    pool_ids = read_pool_ids(ws.pool_path)
    X_pool = open_pool(ws.pool_path, ws.params.scoring.shard_rows)
    classes = ws.classes
    labeled = ws.labeled_set()
    labeled_ids = labeled["sample_id"].to_numpy(dtype=object)
    labeled_idx = pool_ids.positions(labeled_ids)
    if (labeled_idx < 0).any():
        missing = sorted(labeled_ids[labeled_idx < 0])
        raise WorkspaceError(f"labeled ids {missing[:3]} are not in the pool: the labeled set and pool disagree")
    cls = {c: i for i, c in enumerate(classes)}
    y = labeled["label"].map(cls).to_numpy(dtype=np.int64)
    waiting = {sid for ids in ws.pending().values() for sid in ids}
    taken = pool_ids.isin(set(labeled_ids) | waiting)
    candidate_idx = np.flatnonzero(~taken).astype(np.int64)
    return RoundData(r, pool_ids, X_pool, labeled_idx, y, candidate_idx)


def scored_candidates(params: Params, data: RoundData) -> np.ndarray:
    """Pool indices the round scores: every candidate, or with ``acquisition.pool_subset`` a
    random subset of that size drawn from the round's ``score`` seed (sorted). The same subset
    is scored for selection and, for CEAL, searched for pseudo-labels."""
    cand, k = data.candidate_idx, params.acquisition.pool_subset
    if not k or len(cand) <= k:
        return cand
    gen = torch.Generator().manual_seed(round_seeds(params.seed, data.round)["score"])
    sub = torch.randperm(len(cand), generator=gen)
    return np.sort(cand[sub[:k].numpy()])


def train(ws: Workspace, data: RoundData | None = None) -> TrainResult:
    """train stage: fit the round's model on the labeled set (+ CEAL pseudo-labels); save models/model.pt."""
    params = ws.params
    r = current_round(ws)
    data = data or round_data(ws, r)
    if len(data.labeled_idx) == 0:
        raise WorkspaceError("the labeled set is empty: ingest the cold-start batch's labels before training")
    meta = ws.meta()
    strategy = get_strategy(params.acquisition.strategy, params.acquisition)
    X_val, y_val = ws.val_set() or (None, None)
    # only a pseudo-labelling strategy (CEAL) looks at the candidates while training
    cand = scored_candidates(params, data) if strategy.pseudo_labelling else data.candidate_idx[:0]
    result = train_round_model(
        params,
        tuple(meta["input_shape"]),
        len(meta["classes"]),
        data.X_labeled,
        data.y_labeled,
        seed=round_seeds(params.seed, r)["train"],
        round_idx=r,
        strategy=strategy,
        X_unlabeled=data.X_pool[cand],
        X_val=X_val,
        y_val=y_val,
    )
    # pseudo-label indices are into the candidates; report them as pool indices
    result.pseudo_indices = cand[result.pseudo_indices]
    atomic_write_bytes(ws.model_path, result.model.to_bytes())
    return result


def balanced_cold_start(labels_N: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``min(k, N)`` indices drawn class-balanced (⌊k/C⌋ per class, the rest from random classes),
    seeded: the BatchBALD protocol's initial set (Kirsch et al. 2019; simulation only)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels_N)
    per_class = {c: rng.permutation(np.flatnonzero(labels_N == c)) for c in classes}
    quota = {c: k // len(classes) for c in classes}
    for c in rng.permutation(classes)[: k % len(classes)]:
        quota[c] += 1
    chosen = np.concatenate([per_class[c][: quota[c]] for c in classes]).astype(np.int64)
    if len(chosen) < min(k, len(labels_N)):  # a class ran short: top up at random
        rest = rng.permutation(np.setdiff1d(np.arange(len(labels_N)), chosen))
        chosen = np.concatenate([chosen, rest[: min(k, len(labels_N)) - len(chosen)]])
    return rng.permutation(chosen)


def load_model(ws: Workspace) -> NeuralClassifier:
    if not ws.model_path.exists():
        raise WorkspaceError(f"{ws.model_path} is missing: run `alp train {ws.root}` first")
    return NeuralClassifier.from_bytes(ws.model_path.read_bytes(), device=ws.params.training.device)


def evaluate_model(ws: Workspace, model: NeuralClassifier | None = None) -> dict:
    """evaluate stage: test metrics into metrics/eval.json (scalars) and metrics/confusion.json."""
    model = model or load_model(ws)
    _, X, y = ws.test_set()
    m = evaluate(model, X, y, len(ws.classes))
    confusion = m.pop("confusion")
    m["round"] = current_round(ws)
    m["n_labels"] = len(ws.labeled_set())
    atomic_write_json(ws.metrics_path, m)
    atomic_write_json(ws.metrics_path.with_name("confusion.json"), {"classes": ws.classes, "matrix": confusion})
    return {**m, "confusion": confusion}
