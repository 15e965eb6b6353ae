"""Shared generators of acquisition inputs for the acquisition tests (continuous, tie-free data)."""

from __future__ import annotations

import torch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mc_log_probs(seed: int, N: int, K: int, C: int, spread: float = 1.5) -> torch.Tensor:
    """[N, K, C] MC-dropout-like log-probs: a per-sample mean plus per-pass noise of random size."""
    g = gen(seed)
    base = torch.randn(N, 1, C, generator=g) * 2.0
    sigma = torch.rand(N, 1, 1, generator=g) * spread
    return torch.log_softmax(base + sigma * torch.randn(N, K, C, generator=g), dim=-1)


def probs_and_embeddings(seed: int, N: int, C: int, D: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    probs = torch.softmax(torch.randn(N, C, generator=g) * 2.0, dim=-1)
    return probs, torch.randn(N, D, generator=g)
