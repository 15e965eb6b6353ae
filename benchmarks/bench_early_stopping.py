"""What a round's training protocol is worth on MNIST at 20 and 100 labels (BatchBALD protocol).

    .venv/bin/python -m benchmarks.bench_early_stopping            # ≈ 10 min on 2 cores

One fit per (protocol, label count, seed) of the model that benchmarks/configs/mnist_batchbald.yaml
trains (its params, through the production ``make_classifier``), on a fixed labeled set (20: the
protocol's class-balanced cold start; 100: uniformly random), early-stopped on the same validation
split that ``alp benchmark`` takes out of the pool, scored on the 10,000 test images. The protocols
change that config in what early stopping watches (``training.early_stopping``), the epoch length
(``training.epoch_samples``) or standardize the pixels with MNIST's mean and std, as the paper's
data loader does. Accuracy is the deterministic network's and, beside it, the mean
prediction of 20 MC-dropout passes (what the paper reports).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from al_core.config import Params, with_overrides
from al_core.data import Dataset, load_dataset, take_validation
from al_core.pipeline import balanced_cold_start
from al_core.training import apply_cpu_threads, make_classifier
from flows.benchmark import load_benchmark_config

CONFIG = Path(__file__).parent / "configs" / "mnist_batchbald.yaml"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
PAPER_EPOCHS = {"training.epoch_samples": 5056, "training.min_steps": 0, "training.epochs": 30}

#: name → (overrides of the config's params, standardize the pixels)
PROTOCOLS: dict[str, tuple[dict[str, Any], bool]] = {
    "loss, 640-sample epochs (before)": ({"training.early_stopping": "loss"}, False),
    "accuracy, 640-sample epochs (now)": ({}, False),
    "accuracy, 640, standardized pixels": ({}, True),
    "loss, 5,056-sample epochs": ({"training.early_stopping": "loss", **PAPER_EPOCHS}, False),
    "accuracy, 5,056 (the paper's runs)": (PAPER_EPOCHS, False),
}


def labeled_set(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n == 20:
        return balanced_cold_start(y, n, seed)
    return np.random.default_rng(seed).choice(len(y), n, replace=False)


def fit_once(params: Params, standardize: bool, n: int, seed: int, pool: Dataset, val: Dataset) -> dict[str, float]:
    def scale(X: np.ndarray) -> np.ndarray:
        return (X - MNIST_MEAN) / MNIST_STD if standardize else X

    idx = labeled_set(pool.pool_y, n, seed)
    clf = make_classifier(params, pool.input_shape, len(pool.classes), seed)
    t0 = time.perf_counter()
    clf.fit(scale(pool.pool_X[idx]), pool.pool_y[idx], X_val=scale(val.test_X), y_val=val.test_y)
    seconds = time.perf_counter() - t0
    X_test = scale(pool.test_X)
    det = float((clf.predict_proba(X_test).argmax(1).numpy() == pool.test_y).mean())
    mc = torch.logsumexp(clf.predict_log_proba(X_test, mc_samples=20, seed=seed), dim=1)
    return {"det": det, "mc": float((mc.argmax(1).numpy() == pool.test_y).mean()), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--labels", default="20,100")
    args = ap.parse_args()
    base = with_overrides(Params(), **load_benchmark_config(CONFIG).overrides())
    apply_cpu_threads(base)  # one thread, as the benchmark's workers
    pool, val = take_validation(load_dataset(base.dataset), base.dataset.val_size, base.dataset.seed)
    assert val is not None  # the config takes a validation split out of the pool
    print("| protocol | labels | test acc (deterministic) | test acc (20 MC passes) | s / fit |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in args.labels.split(",")):
        for name, (overrides, standardize) in PROTOCOLS.items():
            params = with_overrides(base, **overrides)
            runs = [fit_once(params, standardize, n, s, pool, val) for s in range(args.seeds)]
            det, mc, sec = (np.array([r[k] for r in runs]) for k in ("det", "mc", "seconds"))
            print(
                f"| {name} | {n} | {det.mean():.3f} ± {det.std():.3f} | {mc.mean():.3f} ± {mc.std():.3f} "
                f"| {sec.mean():.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
