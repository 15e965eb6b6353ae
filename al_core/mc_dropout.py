"""MC-dropout log-probabilities with an optional cached trunk (Gal & Ghahramani 2016).

An :class:`~al_core.models.ALNet` is ``trunk`` (deterministic) → ``tail`` (every dropout layer)
→ ``head``. The K stochastic passes only differ in the tail, so with ``cache_trunk=True`` the
trunk runs once per chunk of samples and only tail + head run K times, on K stacked copies of
the chunk. Pass k uses the same dropout masks for every sample (consistent MC dropout: one
sampled model ω_k per pass, which BatchBALD's joint needs; Kirsch et al. 2019). The masks come
from one explicit generator and are drawn by the tail alone in the same order either way, so
both modes give the same log-probabilities for the same seed (up to float rounding).
:meth:`NeuralClassifier.predict_log_proba <al_core.models.NeuralClassifier.predict_log_proba>`
is the ``cache_trunk=True`` path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from al_core.models import ALNet, as_tensor, mc_dropout, stack_passes


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
        chunk_size: rows × passes per forward chunk (bounds activation memory).
        cache_trunk: run the deterministic trunk once per chunk instead of K times.
    """
    device = next(module.parameters()).device
    X_t = as_tensor(X, torch.float32)
    module.eval()
    # one output buffer, filled chunk by chunk: keeping many small per-chunk results alive between
    # the large transient activations fragments the heap (RSS grew by 5.8 GB over a 60k pool)
    out = torch.empty(X_t.shape[0], mc_samples, module.head.out_features)
    with mc_dropout(module, generator, mc_samples):  # validates mc_samples
        rows = max(1, chunk_size // mc_samples)
        for s in range(0, X_t.shape[0], rows):
            xb = X_t[s : s + rows].to(device)
            if cache_trunk:
                logits = module.head(module.tail(stack_passes(module.trunk(xb), mc_samples)))
            else:
                logits = module(stack_passes(xb, mc_samples))
            out[s : s + rows] = F.log_softmax(logits.view(mc_samples, -1, logits.shape[-1]), dim=-1).transpose(0, 1)
    return out
