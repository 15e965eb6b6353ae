"""Turn a fitted model and a candidate pool into the :class:`AcquisitionInputs` a strategy needs."""

from __future__ import annotations

import numpy as np
import torch

from al_core.acquisition.base import (
    EMBEDDINGS,
    LABELED_EMBEDDINGS,
    MC_LOG_PROBS,
    PROBS,
    AcquisitionInputs,
    Strategy,
)
from al_core.models import NeuralClassifier


def compute_inputs(
    model: NeuralClassifier | None,
    strategy: Strategy,
    X_pool: np.ndarray,
    X_labeled: np.ndarray | None = None,
    mc_samples: int = 20,
    seed: int = 0,
    probs_N_C: torch.Tensor | None = None,
) -> AcquisitionInputs:
    """Compute exactly what ``strategy.needs`` for the N rows of ``X_pool`` (chunked by the model).

    ``probs_N_C`` may be passed in when the caller already has them (they are always needed for
    the batch report).
    """
    needs = strategy.needs
    n = len(X_pool)
    if not needs:
        return AcquisitionInputs(n=n, probs_N_C=probs_N_C)
    if model is None:
        raise ValueError(f"strategy '{strategy.name}' needs a trained model ({', '.join(sorted(needs))})")
    fields: dict[str, torch.Tensor] = {}
    if PROBS in needs or probs_N_C is not None:
        fields["probs_N_C"] = probs_N_C if probs_N_C is not None else model.predict_proba(X_pool)
    if MC_LOG_PROBS in needs:
        fields["log_probs_N_K_C"] = model.predict_log_proba(X_pool, mc_samples=mc_samples, seed=seed)
    if EMBEDDINGS in needs:
        fields["embeddings_N_D"] = model.embed(X_pool)
    if LABELED_EMBEDDINGS in needs:
        if X_labeled is None:
            raise ValueError(f"strategy '{strategy.name}' needs the labeled set's embeddings")
        fields["labeled_embeddings_M_D"] = model.embed(X_labeled)
    # Strategies run where the model runs (CUDA when there is one); the model returns CPU tensors
    # chunk by chunk so that the pool never has to fit on the device at once.
    return AcquisitionInputs(n=n, **{k: v.to(model.device_) for k, v in fields.items()})
