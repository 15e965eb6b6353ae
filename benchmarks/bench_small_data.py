"""Training on small labeled sets: does test accuracy rise with labels? (issue #14, point 2)

Nested random labeled sets (n₁ ⊂ n₂ ⊂ …, one draw per seed) of a dataset's pool, each trained with
a training protocol (``training.*`` overrides) and scored on the test split; prints mean ± std over
seeds per size and the number of downward steps of each seed's curve. Random subsets take the
acquisition function out: what is left is the training protocol's noise.

    nice -n 5 .venv/bin/python -m benchmarks.bench_small_data --dataset mnist1d \
        --sizes 100,200,300,500,700 --seeds 3 --protocol default --protocol val_fraction=0
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from al_core.config import Params, with_overrides
from al_core.data import load_dataset
from al_core.training import apply_cpu_threads, evaluate, make_classifier


def parse_protocol(text: str) -> dict[str, Any]:
    """``default`` or ``key=value,key=value`` over the training (and model) sections."""
    if text == "default":
        return {}
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, value = item.split("=", 1)
        full = key if "." in key else f"training.{key}"
        out[full] = json.loads(value) if value not in ("loss", "accuracy", "none", "swa") else value
    return out


def run(dataset: str, sizes: list[int], seeds: int, protocol: dict[str, Any], pool_size: int | None) -> dict:
    base = with_overrides(Params(), **{"dataset.name": dataset, "training.cpu_threads": 1})
    if pool_size:
        base = with_overrides(base, **{"dataset.pool_size": pool_size})
    params = with_overrides(base, **protocol)
    apply_cpu_threads(params)
    ds = load_dataset(params.dataset)
    acc = np.zeros((seeds, len(sizes)))
    t0 = time.perf_counter()
    for s in range(seeds):
        order = np.random.default_rng(1000 + s).permutation(len(ds.pool_y))
        for j, n in enumerate(sizes):
            idx = order[:n]
            clf = make_classifier(params, ds.input_shape, len(ds.classes), seed=s)
            clf.fit(ds.pool_X[idx], ds.pool_y[idx])
            acc[s, j] = evaluate(clf, ds.test_X, ds.test_y, len(ds.classes))["test_accuracy"]
    drops = int((np.diff(acc, axis=1) < 0).sum())
    return {"acc": acc, "drops": drops, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--sizes", default="100,200,300,500,700")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pool-size", type=int, default=None)
    ap.add_argument("--protocol", action="append", default=None, help="default | key=value,... (training.*)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    for text in args.protocol or ["default"]:
        out = run(args.dataset, sizes, args.seeds, parse_protocol(text), args.pool_size)
        mean, std = out["acc"].mean(0), out["acc"].std(0)
        cells = "  ".join(f"{n}: {m:.3f}±{d:.3f}" for n, m, d in zip(sizes, mean, std, strict=True))
        print(
            f"{args.dataset} [{text}] {cells}  | drops {out['drops']}/{args.seeds * (len(sizes) - 1)}"
            f"  ({out['seconds']:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
