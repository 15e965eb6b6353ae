"""Batch report: what a selected batch looks like (mode collapse shows up in its class histogram)."""

from __future__ import annotations

from typing import Any

import numpy as np


def batch_report(probs_B_C: np.ndarray | None, scores_B: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Class histogram of the batch by predicted label, its mean score, and the share of its largest class.

    probs_B_C: [B, C] predictive probabilities of the selected samples (None for a cold-start batch);
    scores_B: [B] acquisition scores of the selected samples.
    """
    scores = np.asarray(scores_B, dtype=np.float64)
    out: dict[str, Any] = {"size": len(scores), "mean_score": float(scores.mean()) if len(scores) else 0.0}
    if probs_B_C is None or len(scores) == 0:
        return out
    pred = np.asarray(probs_B_C).argmax(axis=1)
    counts = np.bincount(pred, minlength=len(classes))
    out["class_histogram"] = {c: int(n) for c, n in zip(classes, counts, strict=True)}
    out["max_class_share"] = float(counts.max() / counts.sum())
    return out
