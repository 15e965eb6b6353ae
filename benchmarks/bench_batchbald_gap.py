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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--candidates", default="1000,5000")
    ap.add_argument("--K", default="20,100")
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args()
    base = with_overrides(Params(), **load_benchmark_config(CONFIG).overrides())
    apply_cpu_threads(base)
    pool, val = take_validation(load_dataset(base.dataset), base.dataset.val_size, base.dataset.seed)
    assert val is not None
    print("| seed | candidates | K | log K | joint MI after 1 / 2 / 5 / 10 picks | Σ BALD of the batch | flat picks |")
    print("|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        idx = balanced_cold_start(pool.pool_y, 20, seed)
        clf = make_classifier(base, pool.input_shape, len(pool.classes), seed)
        clf.fit(pool.pool_X[idx], pool.pool_y[idx], X_val=val.test_X, y_val=val.test_y)
        rest = np.setdiff1d(np.arange(len(pool.pool_y)), idx)
        for m in (int(x) for x in args.candidates.split(",")):
            cand = np.random.default_rng(seed).choice(rest, m, replace=False)
            for K in (int(x) for x in args.K.split(",")):
                lp = clf.predict_log_proba(pool.pool_X[cand], mc_samples=K, seed=seed)
                gen = torch.Generator().manual_seed(seed)
                acq = batchbald(lp, args.batch, gen, num_samples=base.acquisition.batchbald_samples)
                mi = acq.scores.tolist()
                gains = np.diff([0.0, *mi])
                bald_sum = float(bald_scores(lp.float())[acq.indices].sum())
                picks = " / ".join(f"{mi[i - 1]:.2f}" for i in (1, 2, 5, args.batch))
                flat = int((gains < 0.05).sum())
                print(f"| {seed} | {m} | {K} | {math.log(K):.2f} | {picks} | {bald_sum:.2f} | {flat} |", flush=True)


if __name__ == "__main__":
    main()
