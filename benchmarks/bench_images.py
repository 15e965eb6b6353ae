"""Rounds on a 20,000-image folder: the decode cache on vs off — seconds per round and peak memory.

    nice -n 5 .venv/bin/python -m benchmarks.bench_images --out bench-images --n 20000 --rounds 3

Writes ``N`` MNIST training images (the IDX files in ``../shared/data/mnist``, else scikit-learn's
digits cycled) as PNGs, one folder per class; then for each mode a workspace (``alp init --dataset
images``, which digests and decodes every file once) and, in a fresh process (as ``alp round`` is),
``R`` simulated rounds. Each round starts from a cold process cache, so with the cache off every round
decodes the whole pool again; with it on a round reads the decoded rows from ``data/.cache/``.
Prints a JSON line per mode and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
PARAMS = {
    "dataset.name": "images",
    "dataset.image_size": [28, 28],
    "model.arch": "mlp",
    "model.hidden": 64,
    "training.epochs": 10,
    "training.patience": 3,
    "training.min_steps": 50,
    "training.cpu_threads": 1,
    "acquisition.strategy": "entropy",
    "acquisition.batch_size": 20,
    "acquisition.initial_size": 20,
    "tracking.log_model": False,
}


def write_images(folder: Path, n: int) -> None:
    """``n`` grayscale 28×28 PNGs in one folder per class (kept if already there)."""
    from PIL import Image

    if folder.exists() and sum(1 for _ in folder.rglob("*.png")) == n:
        return
    if (MNIST / "train-images-idx3-ubyte.gz").exists():
        from al_core.sources.mnist import read_idx

        images = read_idx(MNIST / "train-images-idx3-ubyte.gz")
        labels = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    else:  # no MNIST: the digits, upscaled and cycled
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.kron(np.round(d.images * 255 / 16), np.ones((3, 3)))
        images = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.uint8)
        labels = d.target
    for i in range(n):
        out = folder / str(int(labels[i % len(labels)]))
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i % len(images)], mode="L").save(out / f"img-{i:06d}.png")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up_prefect() -> None:
    from prefect import flow

    flow(name="bench-warm-up")(lambda: None)()


def worker(phase: str, out: Path, mode: str, rounds: int) -> dict:
    """One process: ``init`` a workspace, or run its ``rounds`` (each from a cold process cache)."""
    os.environ.setdefault("PREFECT_HOME", str(out / f"prefect-{mode}"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from al_core import data
    from al_core.workspace import Workspace

    root = out / f"ws-cache-{mode}"
    if phase == "init":
        from flows.round import round_flow
        from flows.workspace_init import init_workspace

        t = time.perf_counter()
        overrides = {**PARAMS, "dataset.path": str(out / "pngs"), "dataset.cache": mode == "on"}
        init_workspace(root, overrides)
        seconds = time.perf_counter() - t
        round_flow(str(root))  # the cold-start batch
        return {"phase": "init", "mode": mode, "seconds_init": round(seconds, 1), "peak_mb": round(_peak_mb())}
    from flows.campaign import campaign_flow

    ws = Workspace(root)
    _warm_up_prefect()  # the ephemeral API starts on the first flow run: not part of a round
    data._read_features_cached.cache_clear()
    t = time.perf_counter()
    ws.pool()
    read = time.perf_counter() - t
    per_round = []
    for _ in range(rounds):
        data._read_features_cached.cache_clear()  # a fresh process's view: nothing decoded yet
        t = time.perf_counter()
        campaign_flow(str(root), rounds=1)
        per_round.append(round(time.perf_counter() - t, 2))
    return {
        "phase": "rounds",
        "mode": mode,
        "n_pool": int(ws.meta()["n_pool"]),
        "seconds_pool_read": round(read, 2),
        "seconds_per_round": per_round,
        "peak_mb": round(_peak_mb()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-images"))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", nargs=2, metavar=("PHASE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = args.out.resolve()
    if args.worker:
        print(json.dumps(worker(args.worker[0], out, args.worker[1], args.rounds)))
        return
    write_images(out / "pngs", args.n)
    results: dict[str, dict] = {}
    for mode in ("on", "off"):
        for phase in ("init", "rounds"):
            cmd = [sys.executable, "-m", "benchmarks.bench_images", "--out", str(out), "--rounds", str(args.rounds)]
            proc = subprocess.run([*cmd, "--worker", phase, mode], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stdout + proc.stderr)
            line = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(line), flush=True)
            results.setdefault(mode, {})[phase] = line
    print("\n| decode cache | alp init (s) | pool read, cold (s) | seconds per round | peak RSS, rounds (MB) |")
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        rounds = r["rounds"]
        per = ", ".join(f"{s:.1f}" for s in rounds["seconds_per_round"])
        mean = np.mean(rounds["seconds_per_round"])
        print(f"| {mode} | {r['init']['seconds_init']} | {rounds['seconds_pool_read']} | {per} (mean {mean:.1f}) "
              f"| {rounds['peak_mb']} |")  # fmt: skip


if __name__ == "__main__":
    main()
