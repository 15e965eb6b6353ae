"""What a round's training protocol is worth on MNIST at 20 and 100 labels (BatchBALD protocol).

    .venv/bin/python -m benchmarks.bench_early_stopping            # ≈ 10 min on 2 cores

One fit of the BatchBALD CNN (``bbald_cnn``, dropout 0.5) per (protocol, label count, seed) on a
fixed labeled set (20: two per class; 100: uniformly random), early-stopped on the same 1,024-image
validation split that ``alp benchmark`` takes out of the pool, scored on the 10,000 test images. The
protocols differ in what early stopping watches (``training.early_stopping``), the epoch length
(``training.epoch_samples``) and whether the pixels are standardized with MNIST's mean and std, as
the paper's data loader does. Accuracy is the deterministic network's and, beside it, the mean
prediction of 20 MC-dropout passes (what the paper reports).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from al_core.config import DatasetParams
from al_core.data import load_mnist, take_validation
from al_core.models import NeuralClassifier

MNIST_DIR = "/work/shared/data/mnist"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: name → (early_stopping, epoch_samples, min_steps, epochs, standardize)
PROTOCOLS: dict[str, tuple[str, int, int, int, bool]] = {
    "loss, 640-sample epochs (before)": ("loss", 640, 100, 20, False),
    "accuracy, 640-sample epochs (now)": ("accuracy", 640, 100, 20, False),
    "accuracy, 640, standardized pixels": ("accuracy", 640, 100, 20, True),
    "loss, 5,056-sample epochs": ("loss", 5056, 0, 30, False),
    "accuracy, 5,056 (the paper's runs)": ("accuracy", 5056, 0, 30, False),
}


def labeled_set(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    if n == 20:  # the protocol's class-balanced cold start
        return np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(10)])
    return rng.choice(len(y), n, replace=False)


def fit_once(protocol: str, n: int, seed: int, pool: Any, val: Any, test: Any) -> dict[str, float]:
    stop, epoch_samples, min_steps, epochs, standardize = PROTOCOLS[protocol]

    def scale(X: np.ndarray) -> np.ndarray:
        return (X - MNIST_MEAN) / MNIST_STD if standardize else X

    idx = labeled_set(pool.pool_y, n, seed)
    clf = NeuralClassifier(
        "bbald_cnn", (1, 28, 28), 10, hidden=128, dropout=0.5, epochs=epochs, batch_size=64, patience=3,
        min_steps=min_steps, device="cpu", seed=seed, epoch_samples=epoch_samples, early_stopping=stop,
    )  # fmt: skip
    t0 = time.perf_counter()
    clf.fit(scale(pool.pool_X[idx]), pool.pool_y[idx], X_val=scale(val.test_X), y_val=val.test_y)
    seconds = time.perf_counter() - t0
    X_test = scale(test.test_X)
    det = float((clf.predict_proba(X_test).argmax(1).numpy() == test.test_y).mean())
    mc = torch.logsumexp(clf.predict_log_proba(X_test, mc_samples=20, seed=seed), dim=1)
    return {"det": det, "mc": float((mc.argmax(1).numpy() == test.test_y).mean()), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--labels", default="20,100")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the benchmark's workers
    data = load_mnist(DatasetParams(name="mnist", path=MNIST_DIR, pool_size=None, test_size=None))
    pool, val = take_validation(data, 1024, 0)
    print("| protocol | labels | test acc (deterministic) | test acc (20 MC passes) | s / fit |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in args.labels.split(",")):
        for protocol in PROTOCOLS:
            runs = [fit_once(protocol, n, s, pool, val, data) for s in range(args.seeds)]
            det, mc, sec = (np.array([r[k] for r in runs]) for k in ("det", "mc", "seconds"))
            print(
                f"| {protocol} | {n} | {det.mean():.3f} ± {det.std():.3f} | {mc.mean():.3f} ± {mc.std():.3f} "
                f"| {sec.mean():.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
