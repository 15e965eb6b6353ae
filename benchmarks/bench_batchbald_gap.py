"""Why BatchBALD trails BALD in our MNIST runs: how much joint information its greedy batch can see.

    nice -n 5 .venv/bin/python -m benchmarks.bench_batchbald_gap --seeds 2 --candidates 1000,5000 --K 20,100

With K MC-dropout samples the joint predictive p(y₁..yₙ) = 1/K Σ_k Π p(yᵢ|ω_k) is a mixture of K
products, so the batch's estimated mutual information I(y₁..yₙ; ω) ≤ H(mixture weights) = log K
(Kirsch et al. 2019 use K = 100; our benchmark K = 20: log 20 = 3.0 nats). Once the greedy batch's
joint MI nears log K, the later picks' gains are ~0 and the choice among candidates is noise.
One fit per seed of the benchmark's model (benchmarks/configs/mnist_batchbald.yaml, through
``make_classifier``) on its class-balanced 20-label cold start; then, per candidate-subset size and K,
BatchBALD's joint MI after each of 10 picks, against log K and against the sum of the same points'
BALD scores; "flat picks": picks whose marginal gain is under 0.05 nats.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from al_core.acquisition.bald import bald_scores
from al_core.acquisition.batchbald import batchbald
from al_core.config import Params, with_overrides
from al_core.data import load_dataset, take_validation
from al_core.pipeline import balanced_cold_start
from al_core.training import apply_cpu_threads, make_classifier
from flows.benchmark import load_benchmark_config

CONFIG = Path(__file__).parent / "configs" / "mnist_batchbald.yaml"


def _test_accuracy(base: Params, pool, val, idx: np.ndarray, seed: int) -> float:
    """Test accuracy of the benchmark's model fitted on ``pool[idx]`` (same seed for every batch compared)."""
    clf = make_classifier(base, pool.input_shape, len(pool.classes), seed)
    clf.fit(pool.pool_X[idx], pool.pool_y[idx], X_val=val.test_X, y_val=val.test_y)
    return float((clf.predict(pool.test_X).numpy() == pool.test_y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--candidates", default="1000,5000")
    ap.add_argument("--K", default="20,100")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--retrain", action="store_true", help="also refit on cold start + each batch: test accuracy")
    args = ap.parse_args()
    base = with_overrides(Params(), **load_benchmark_config(CONFIG).overrides())
    apply_cpu_threads(base)
    pool, val = take_validation(load_dataset(base.dataset), base.dataset.val_size, base.dataset.seed)
    assert val is not None
    head = "| seed | candidates | K | log K | joint MI after 1 / 2 / 5 / 10 picks | Σ BALD of the batch | flat picks"
    head += " | s MC | s select |" + (" acc cold start | acc + BALD top-k | acc + BatchBALD |" if args.retrain else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for seed in range(args.seeds):
        idx = balanced_cold_start(pool.pool_y, 20, seed)
        clf = make_classifier(base, pool.input_shape, len(pool.classes), seed)
        clf.fit(pool.pool_X[idx], pool.pool_y[idx], X_val=val.test_X, y_val=val.test_y)
        acc0 = float((clf.predict(pool.test_X).numpy() == pool.test_y).mean())
        rest = np.setdiff1d(np.arange(len(pool.pool_y)), idx)
        for m in (int(x) for x in args.candidates.split(",")):
            cand = np.random.default_rng(seed).choice(rest, m, replace=False)
            for K in (int(x) for x in args.K.split(",")):
                t0 = time.perf_counter()
                lp = clf.predict_log_proba(pool.pool_X[cand], mc_samples=K, seed=seed)
                t1 = time.perf_counter()
                gen = torch.Generator().manual_seed(seed)
                acq = batchbald(lp, args.batch, gen, num_samples=base.acquisition.batchbald_samples)
                t2 = time.perf_counter()
                mi = acq.scores.tolist()
                gains = np.diff([0.0, *mi])
                bald = bald_scores(lp.float())
                bald_sum = float(bald[acq.indices].sum())
                picks = " / ".join(f"{mi[i - 1]:.2f}" for i in (1, 2, 5, args.batch))
                flat = int((gains < 0.05).sum())
                row = f"| {seed} | {m} | {K} | {math.log(K):.2f} | {picks} | {bald_sum:.2f} | {flat}"
                row += f" | {t1 - t0:.1f} | {t2 - t1:.1f} |"
                if args.retrain:
                    top = torch.topk(bald, args.batch).indices.numpy()
                    a_bald = _test_accuracy(base, pool, val, np.concatenate([idx, cand[top]]), seed)
                    a_bb = _test_accuracy(base, pool, val, np.concatenate([idx, cand[acq.indices.numpy()]]), seed)
                    row += f" {acc0:.3f} | {a_bald:.3f} | {a_bb:.3f} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
