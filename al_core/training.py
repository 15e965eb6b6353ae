"""Train and evaluate the round's model; seed derivation.

One campaign seed; each round's seed is derived with ``numpy.random.SeedSequence`` so rounds
are independent and reproducible (``git checkout round-NNN && dvc repro`` gives the same model).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from al_core.acquisition.base import Strategy
from al_core.config import Params
from al_core.models import NeuralClassifier


def round_seeds(campaign_seed: int, r: int) -> dict[str, int]:
    """Independent 32-bit seeds for round ``r``'s training, scoring and selection.

    Derived as ``SeedSequence(campaign_seed).spawn(r + 1)[r]`` and then spawned once more.
    """
    rnd = np.random.SeedSequence(campaign_seed, spawn_key=(r,))
    train, score, select = rnd.spawn(3)
    return {
        "round": int(rnd.generate_state(1)[0]),
        "train": int(train.generate_state(1)[0]),
        "score": int(score.generate_state(1)[0]),
        "select": int(select.generate_state(1)[0]),
    }


def apply_cpu_threads(params: Params) -> None:
    """Set torch's CPU thread count from ``training.cpu_threads`` (process-wide; null leaves it)."""
    if params.training.cpu_threads:
        torch.set_num_threads(params.training.cpu_threads)


def make_classifier(params: Params, input_shape: tuple[int, ...], n_classes: int, seed: int) -> NeuralClassifier:
    t, m = params.training, params.model
    return NeuralClassifier(
        arch=params.resolved_arch(input_shape),
        input_shape=input_shape,
        n_classes=n_classes,
        hidden=m.hidden,
        dropout=m.dropout,
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        weight_decay=t.weight_decay,
        patience=t.patience,
        min_steps=t.min_steps,
        val_fraction=t.val_fraction,
        device=t.device,
        seed=seed,
        chunk_size=t.chunk_size,
        epoch_samples=t.epoch_samples,
        weight_averaging=t.weight_averaging,
        early_stopping=t.early_stopping,
        factory=m.factory,
    )


@dataclass
class TrainResult:
    model: NeuralClassifier
    n_labeled: int
    seconds: float
    epochs: int
    #: CEAL: pool indices and labels used as pseudo-labels this round (empty otherwise)
    pseudo_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pseudo_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    info: dict[str, Any] = field(default_factory=dict)


def train_round_model(
    params: Params,
    input_shape: tuple[int, ...],
    n_classes: int,
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    seed: int,
    round_idx: int,
    strategy: Strategy | None = None,
    X_unlabeled: np.ndarray | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> TrainResult:
    """Fit on the labeled set; if ``strategy`` pseudo-labels (CEAL, Wang et al. 2016), refit on
    labeled + pseudo-labeled unlabeled samples, each pseudo-label weighted ``ceal.weight``.
    ``X_val``/``y_val``: the fixed labeled validation split (``dataset.val_size``) for early stopping."""
    start = time.perf_counter()
    apply_cpu_threads(params)
    val = {"X_val": X_val, "y_val": y_val}
    model = make_classifier(params, input_shape, n_classes, seed).fit(X_labeled, y_labeled, **val)
    result = TrainResult(model=model, n_labeled=len(y_labeled), seconds=0.0, epochs=model.n_epochs_)
    if strategy is not None and X_unlabeled is not None and len(X_unlabeled):
        pseudo = strategy.pseudo_labels(model.predict_proba(X_unlabeled), round_idx)
        if pseudo is not None and len(pseudo[0]):
            idx, lab = (np.asarray(t.cpu().numpy() if isinstance(t, torch.Tensor) else t) for t in pseudo)
            X = np.concatenate([X_labeled, X_unlabeled[idx]])
            y = np.concatenate([y_labeled, lab.astype(np.int64)])
            w = np.concatenate([np.ones(len(y_labeled)), np.full(len(idx), params.acquisition.ceal.weight)])
            model = make_classifier(params, input_shape, n_classes, seed).fit(X, y, sample_weight=w, **val)
            result.model, result.epochs = model, result.epochs + model.n_epochs_
            result.pseudo_indices, result.pseudo_labels = idx.astype(np.int64), lab.astype(np.int64)
    result.seconds = time.perf_counter() - start
    return result


def evaluate(model: NeuralClassifier, X: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Test accuracy, macro-F1, NLL (nats/sample) and the confusion matrix [true, predicted]."""
    log_p = model.predict_log_proba(X)
    y_t = torch.as_tensor(np.array(y), dtype=torch.long)
    pred = log_p.argmax(dim=1)
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long)
    confusion.index_put_((y_t, pred), torch.ones_like(y_t), accumulate=True)
    tp = confusion.diag().double()
    precision = tp / confusion.sum(0).double().clamp_min(1)
    recall = tp / confusion.sum(1).double().clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp))
    present = confusion.sum(1) > 0
    nll = float(-log_p.gather(1, y_t[:, None]).mean())
    return {
        "test_accuracy": float((pred == y_t).double().mean()),
        "test_macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "test_nll": nll if math.isfinite(nll) else float("inf"),
        "n_test": len(y),
        "confusion": confusion.tolist(),
    }
