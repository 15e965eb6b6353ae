"""``digits``: scikit-learn's bundled 8×8 digits (1,797 images)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from al_core.data import Dataset, cap
from al_core.sources import SOURCES, DataSource, SourceParams


class DigitsParams(SourceParams):
    name: Literal["digits"] = "digits"
    pool_size: int | None = Field(default=4000, ge=1, description="cap on the pool (null = all)")
    test_size: int | None = Field(default=1000, ge=1, description="cap on the test split (null = all)")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="share held out for testing (stratified)")


def load(p: DigitsParams) -> Dataset:
    """The digits split by ``test_fraction``, stratified."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    ids = np.array([f"digits-{i:04d}" for i in range(len(y))])
    tr, te = train_test_split(np.arange(len(y)), test_size=p.test_fraction, random_state=p.seed, stratify=y)
    tr, te = cap(tr, p.pool_size, p.seed), cap(te, p.test_size, p.seed + 1)
    return Dataset(ids[tr], X[tr], y[tr], ids[te], X[te], y[te], [str(c) for c in range(10)], (1, 8, 8))


SOURCES.register(
    "digits",
    DataSource("digits", DigitsParams, load, default_arch="cnn2d", summary="scikit-learn's bundled 8×8 digits"),
)
