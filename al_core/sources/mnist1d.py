"""``mnist1d``: MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package."""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
from pydantic import Field

from al_core.data import Dataset
from al_core.sources import SOURCES, DataSource, SourceParams


class Mnist1dParams(SourceParams):
    name: Literal["mnist1d"] = "mnist1d"
    pool_size: int | None = Field(default=4000, ge=1, description="samples generated for the pool")
    test_size: int | None = Field(default=1000, ge=1, description="samples generated for the test split")


def load(p: Mnist1dParams) -> Dataset:
    """MNIST-1D, generated with ``mnist1d.data.make_dataset`` (never downloaded)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    n_pool, n_test = p.pool_size or 4000, p.test_size or 1000
    args.num_samples = n_pool + n_test
    args.train_split = n_pool / (n_pool + n_test)
    args.seed = p.seed
    # make_dataset seeds the global numpy/random RNGs: keep that side effect inside this call.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    pool_X, pool_y = d["x"].astype(np.float32), d["y"].astype(np.int64)
    test_X, test_y = d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)
    return Dataset(
        pool_ids=np.array([f"m1d-{i:06d}" for i in range(len(pool_y))]),
        pool_X=pool_X,
        pool_y=pool_y,
        test_ids=np.array([f"m1d-test-{i:06d}" for i in range(len(test_y))]),
        test_X=test_X,
        test_y=test_y,
        classes=[str(c) for c in range(10)],
        input_shape=(pool_X.shape[1],),
    )


SOURCES.register(
    "mnist1d",
    DataSource(
        "mnist1d", Mnist1dParams, load, default_arch="cnn1d", summary="MNIST-1D (Greydanus 2020), generated locally"
    ),
)
