"""MC-dropout log-probabilities with an optional cached trunk (Gal & Ghahramani 2016).

An :class:`~al_core.models.ALNet` is ``trunk`` (deterministic) → ``tail`` (every dropout layer)
→ ``head``. The K stochastic passes only differ in the tail, so with ``cache_trunk=True`` the
trunk runs once per chunk of samples and only tail + head run K times. Dropout masks come from
one explicit generator and are drawn by the tail alone in the same order either way, so both
modes give the same log-probabilities for the same seed (up to float rounding).
:meth:`NeuralClassifier.predict_log_proba <al_core.models.NeuralClassifier.predict_log_proba>`
is the ``cache_trunk=True`` path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from al_core.models import ALNet, mc_dropout


@torch.no_grad()
def mc_log_probs(
    module: ALNet,
    X: np.ndarray | torch.Tensor,
    mc_samples: int,
    generator: torch.Generator,
    chunk_size: int = 4096,
    cache_trunk: bool = True,
) -> torch.Tensor:
    """Log-probabilities of ``mc_samples`` MC-dropout passes, X [N, F] → [N, K, C] (float32, CPU).

    Args:
        module: the network (switched to eval mode; dropout forced on inside).
        X: [N, F] inputs (flat rows, as the pool is stored).
        mc_samples: K, the number of stochastic passes.
        generator: draws every dropout mask (on the module's device).
        chunk_size: rows per forward chunk (bounds activation memory).
        cache_trunk: run the deterministic trunk once per chunk instead of K times.
    """
    if mc_samples < 1:
        raise ValueError(f"mc_samples must be ≥ 1, got {mc_samples}")
    device = next(module.parameters()).device
    X_t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32)
    module.eval()
    out = []
    with mc_dropout(module, generator):
        for s in range(0, X_t.shape[0], chunk_size):
            xb = X_t[s : s + chunk_size].to(device)
            if cache_trunk:
                h = module.trunk(xb)
                passes = [module.head(module.tail(h)) for _ in range(mc_samples)]
            else:
                passes = [module(xb) for _ in range(mc_samples)]
            out.append(F.log_softmax(torch.stack(passes, dim=1), dim=-1).float().cpu())
    n_classes = module.head.out_features
    return torch.cat(out) if out else torch.empty(0, mc_samples, n_classes)
