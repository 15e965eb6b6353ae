"""Acquisition speed and memory: ours vs the reference implementations, with floor estimates.

    nice -n 10 .venv/bin/python -m benchmarks.bench_acquisition           # full run (minutes)
    nice -n 10 .venv/bin/python -m benchmarks.bench_acquisition --quick   # smoke run (seconds)

Every (case, implementation) runs in its own fresh subprocess, back to back, on identical inputs
built from a fixed seed inside it. Time is wall-clock of the selection call alone. Memory is the
peak RSS above the RSS right after the inputs were built: the larger of a psutil RSS sampler
(1 ms period, in a thread) and ``resource.getrusage(...).ru_maxrss`` (the kernel's exact peak,
meaningful when the run pushed it above the input-building peak). Ratios are reference time /
our time from those subprocesses. Floors are what the arithmetic or the memory traffic that any
implementation of the same algorithm must do costs at this machine's measured rates (sgemm
GFLOP/s, float32 log throughput, streaming read bandwidth), so "× floor" says how close we are.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from al_core.sources.mnist import default_dir as default_mnist_dir

MNIST_DIR = default_mnist_dir()  # $ALP_MNIST_DIR or ../shared/data/mnist beside the repository

FULL = {
    "batchbald": {"N": 5000, "K": 20, "C": 10, "B": 10, "samples": 10_000},
    "badge": {"N": 100_000, "D": 128, "C": 10, "B": 100},
    "coreset": {"N": 100_000, "D": 128, "M": 1000, "B": 1000},
    "mc_dropout": {"N": 60_000, "N_uncached": 3000, "K": 20},
}
QUICK = {
    "batchbald": {"N": 500, "K": 20, "C": 10, "B": 5, "samples": 1000},
    "badge": {"N": 5000, "D": 128, "C": 10, "B": 20},
    "coreset": {"N": 5000, "D": 128, "M": 100, "B": 50},
    "mc_dropout": {"N": 1000, "N_uncached": 200, "K": 20},
}


# --------------------------------------------------------------------------- inputs
def batchbald_inputs(cfg: dict, kind: str) -> torch.Tensor:
    """[N, K, C] log-probs. ``correlated``: per-sample mean logits plus per-pass noise of random size
    (what MC dropout looks like); ``iid``: every pass independent (all samples look alike, worst case
    for lazy greedy)."""
    g = torch.Generator().manual_seed(0)
    N, K, C = cfg["N"], cfg["K"], cfg["C"]
    if kind == "iid":
        return torch.log_softmax(torch.randn(N, K, C, generator=g) * 2, dim=-1)
    base = torch.randn(N, 1, C, generator=g) * 3
    sigma = torch.rand(N, 1, 1, generator=g) * 1.5
    return torch.log_softmax(base + sigma * torch.randn(N, K, C, generator=g), dim=-1)


def badge_inputs(cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(cfg["N"], cfg["C"], generator=g) * 2, dim=-1)
    return probs, torch.randn(cfg["N"], cfg["D"], generator=g)


def coreset_inputs(cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(cfg["N"], cfg["D"], generator=g), torch.randn(cfg["M"], cfg["D"], generator=g)


def load_mnist_images(path: Path = MNIST_DIR / "train-images-idx3-ubyte.gz") -> np.ndarray:
    """IDX3 (big-endian magic 2051, count, rows, cols, then uint8 pixels) → float32 [N, rows·cols] in [0, 1]."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">i4")
    if magic != 2051:
        raise ValueError(f"{path}: not an IDX3 image file (magic {magic})")
    pixels = np.frombuffer(raw[16:], dtype=np.uint8, count=n * rows * cols)
    return (pixels.reshape(n, rows * cols).astype(np.float32)) / 255.0


# --------------------------------------------------------------------------- runners (one per worker)
def run_case(case: str, impl: str, cfg: dict) -> tuple[dict, object]:
    """Build inputs, then return (info, thunk) where thunk() is the timed selection."""
    if case.startswith("batchbald"):
        kind = case.split(":")[1]
        lp = batchbald_inputs(cfg, kind)
        # seed 0 like the reference's global RNG: the same sampled configurations, so all picks compare
        if impl == "ours":
            from al_core.acquisition.batchbald import batchbald

            g = torch.Generator().manual_seed(0)
            return {}, lambda: batchbald(lp, cfg["B"], g, num_samples=cfg["samples"]).indices.tolist()
        if impl == "ours_full":
            from al_core.acquisition.batchbald import batchbald

            g = torch.Generator().manual_seed(0)
            return {}, lambda: batchbald(lp, cfg["B"], g, num_samples=cfg["samples"], lazy=False).indices.tolist()
        os.environ["TQDM_DISABLE"] = "1"
        from batchbald_redux.batchbald import get_batchbald_batch

        torch.manual_seed(0)  # the reference samples with the global RNG (benchmark process only)
        return {}, lambda: [int(i) for i in get_batchbald_batch(lp, cfg["B"], cfg["samples"]).indices]
    if case == "badge":
        probs, emb = badge_inputs(cfg)
        if impl == "ours":
            from al_core.acquisition.badge import badge

            g = torch.Generator().manual_seed(1)
            return {}, lambda: badge(probs, emb, cfg["B"], g).indices.tolist()
        from skactiveml.base import SkactivemlClassifier
        from skactiveml.pool import Badge

        class Precomputed(SkactivemlClassifier):
            def __init__(self, classes=None, missing_label=np.nan, random_state=None):
                super().__init__(classes=classes, missing_label=missing_label, random_state=random_state)

            def fit(self, X, y, sample_weight=None):
                return self

            def predict_proba(self, X):
                rows = np.asarray(X)[:, 0].astype(int)
                return P[rows], E[rows]

        P, E = probs.numpy(), emb.numpy()
        X = np.arange(cfg["N"], dtype=float)[:, None]
        y = np.full(cfg["N"], np.nan)
        clf = Precomputed(classes=np.arange(cfg["C"]))
        return {}, lambda: [int(i) for i in Badge(random_state=0).query(X, y, clf, fit_clf=False, batch_size=cfg["B"])]
    if case == "coreset":
        x, lab = coreset_inputs(cfg)
        if impl == "ours":
            from al_core.acquisition.coreset import coreset

            g = torch.Generator().manual_seed(1)
            return {}, lambda: coreset(x, lab, cfg["B"], g).indices.tolist()
        from skactiveml.pool import CoreSet

        X = np.concatenate([x.numpy(), lab.numpy()])
        y = np.concatenate([np.full(cfg["N"], np.nan), np.zeros(cfg["M"])])
        return {}, lambda: [int(i) for i in CoreSet(random_state=0).query(X, y, batch_size=cfg["B"])]
    if case.startswith("mc_dropout"):
        from al_core.mc_dropout import mc_log_probs
        from al_core.models import build_network, init_weights

        cached = case.endswith(":cached")
        n = cfg["N"] if cached else cfg["N_uncached"]
        X = torch.from_numpy(load_mnist_images()[:n])
        net = build_network("cnn2d", (1, 28, 28), 10)
        init_weights(net, torch.Generator().manual_seed(0))

        def thunk() -> list[float]:
            mc_log_probs(net, X, cfg["K"], torch.Generator().manual_seed(3), chunk_size=1000, cache_trunk=cached)
            return []

        def check() -> list[float]:  # untimed: same rows, seed and chunks in both modes → same masks
            small = X[: cfg["N_uncached"]]
            lp = mc_log_probs(net, small, cfg["K"], torch.Generator().manual_seed(3), 1000, cache_trunk=cached)
            return lp.flatten()[::97].tolist()

        return {"n": n, "_check": check}, thunk
    raise ValueError(case)


class RssSampler(threading.Thread):
    def __init__(self, period: float = 0.001):
        super().__init__(daemon=True)
        self.proc, self.period, self.peak, self._done = psutil.Process(), period, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.period)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter VmHWM (Linux ≥ 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(thunk) -> tuple[object, float, float]:
    """(``thunk()``, its wall-clock seconds, its peak RSS in MB above the RSS before the call)."""
    base = psutil.Process().memory_info().rss
    hwm_reset = _reset_peak_rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    picks = thunk()
    dt = time.perf_counter() - t0
    peak = sampler.stop()
    if hwm_reset:  # the kernel's exact peak since the reset (Linux VmHWM)
        peak = max(peak, _vm_hwm())
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if maxrss_after > maxrss_before:  # the lifetime peak moved: this run set it
        peak = max(peak, maxrss_after)
    return picks, dt, max(0, peak - base) / 2**20


def worker(case: str, impl: str, quick: bool) -> None:
    cfgs = QUICK if quick else FULL
    cfg = cfgs[case.split(":")[0]]
    info, thunk = run_case(case, impl, cfg)
    picks, dt, peak_mb = measure(thunk)
    check = info.pop("_check", None)
    if check is not None:
        picks = check()
    info.update(time_s=dt, peak_mb=peak_mb, picks=picks)
    print(json.dumps(info))


def spawn(case: str, impl: str, quick: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_acquisition", "--worker", case, impl]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"{case}/{impl} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- machine rates and floors
def machine_rates() -> dict:
    def best(f, r: int = 20) -> float:
        f()
        ts = []
        for _ in range(r):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return min(ts)

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    gemm = 2 * 1024**3 / best(lambda: a @ b) / 1e9
    x = torch.rand(1 << 18) + 0.5
    out = torch.empty_like(x)
    log = x.numel() / best(lambda: torch.log(x, out=out), 200) / 1e9
    big = torch.rand(1 << 26)  # 256 MiB, far beyond the caches
    bw = big.numel() * 4 / best(lambda: big.sum()) / 1e9
    return {"gemm_gflops": gemm, "log_gelems": log, "read_gbps": bw}


def floors(case: str, cfg: dict, r: dict) -> tuple[float, float]:
    """(time floor in s, memory floor in MB beyond the inputs) of the algorithm, at rates ``r``."""
    if case.startswith("batchbald"):
        N, K, C, B, S = cfg["N"], cfg["K"], cfg["C"], cfg["B"], cfg["samples"]
        M = [C**n if C**n <= S else K * (S // K) for n in range(1, B)]
        # full greedy: each step scores N candidates: A = joint @ probs (2·M·K·N·C flops), M·N·C logs
        t = sum(2 * m * K * N * C / (r["gemm_gflops"] * 1e9) + m * N * C / (r["log_gelems"] * 1e9) for m in M)
        return t, (max(M) * K * 4 + 2 * N * 4) / 2**20
    if case == "badge":
        N, D, C, B = cfg["N"], cfg["D"], cfg["C"], cfg["B"]
        return B * N * (C + D) * 4 / (r["read_gbps"] * 1e9), (N * (C + 3) * 4) / 2**20
    if case == "coreset":
        N, D, M, B = cfg["N"], cfg["D"], cfg["M"], cfg["B"]
        t = B * N * D * 4 / (r["read_gbps"] * 1e9) + 2 * N * M * D / (r["gemm_gflops"] * 1e9)
        return t, 2 * N * 4 / 2**20
    if case.startswith("mc_dropout"):
        K = cfg["K"]
        trunk = 2 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25)  # conv1 + conv2 multiply-adds ×2
        tail = 2 * (64 * 7 * 7 * 128 + 128 * 10)
        cached = case.endswith(":cached")
        per_sample = trunk + K * tail if cached else K * (trunk + tail)
        n = cfg["N"] if cached else cfg["N_uncached"]
        return n * per_sample / (r["gemm_gflops"] * 1e9), 0.0
    raise ValueError(case)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every case")
    ap.add_argument("--skip-reference", action="store_true", help="time ours only")
    ap.add_argument("--only", default="", help="comma-separated case prefixes (batchbald,badge,coreset,mc_dropout)")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.quick)
        return
    cfgs = QUICK if args.quick else FULL
    rates = machine_rates()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; rates: {rates}")
    plan = [
        ("batchbald:correlated", "batchbald-redux 2.0.5", ["ours", "ours_full"]),
        ("batchbald:iid", "batchbald-redux 2.0.5", ["ours", "ours_full"]),
        ("badge", "scikit-activeml 1.0.1", ["ours"]),
        ("coreset", "scikit-activeml 1.0.1", ["ours"]),
    ]
    only = [p for p in args.only.split(",") if p]
    rows = []
    for case, ref_name, ours in plan:
        if only and not any(case.startswith(p) for p in only):
            continue
        cfg = cfgs[case.split(":")[0]]
        t_floor, m_floor = floors(case, cfg, rates)
        ref = None if args.skip_reference else spawn(case, "reference", args.quick)
        for impl in ours:
            res = spawn(case, impl, args.quick)
            same = None if ref is None else _same_picks(case, cfg, res["picks"], ref["picks"])
            rows.append((case, impl, cfg, res, ref, ref_name, same, t_floor, m_floor))
            print(_row(*rows[-1]), flush=True)
    if not only or any(p.startswith("mc") for p in only):
        cfg = cfgs["mc_dropout"]
        cached = spawn("mc_dropout:cached", "ours", args.quick)
        full = spawn("mc_dropout:uncached", "ours", args.quick)
        same = np.allclose(cached["picks"], full["picks"], atol=1e-5)
        for label, res in (("cached trunk", cached), ("full passes", full)):
            t_floor, _ = floors("mc_dropout:" + ("cached" if label == "cached trunk" else "uncached"), cfg, rates)
            print(
                f"mc_dropout MNIST K={cfg['K']} {label:>12}: n={res['n']} {res['time_s']:.2f} s "
                f"= {res['n'] / res['time_s']:.0f} samples/s, peak +{res['peak_mb']:.0f} MB, "
                f"floor {t_floor:.2f} s ({res['time_s'] / t_floor:.1f}× floor)"
            )
        speedup = (cached["n"] / cached["time_s"]) / (full["n"] / full["time_s"])
        print(
            f"mc_dropout cached-trunk speed-up: {speedup:.1f}× samples/s; "
            f"same log-probs on the first {cfg['N_uncached']} rows: {same}"
        )


def _same_picks(case: str, cfg: dict, ours: list[int], ref: list[int]) -> str:
    """Deterministic picks must be equal; for sampled ones only the deterministic prefix can be."""
    if case.startswith("batchbald"):
        # pick i (1-based) uses the joint of i − 1 picks: exact while C^(i−1) ≤ samples
        n_exact = min(len(ref), 1 + math.floor(math.log(cfg["samples"]) / math.log(cfg["C"]) + 1e-9))
        return f"{ours[:n_exact] == ref[:n_exact]} (the {n_exact} exact picks); all {len(ref)}: {ours == ref}"
    if case == "badge":
        return f"first (deterministic) pick {ours[0] == ref[0]}; the rest are D² samples"
    return str(ours == ref)


def _row(case, impl, cfg, res, ref, ref_name, same, t_floor, m_floor) -> str:
    s = f"{case:<22} {impl:<9} {json.dumps(cfg)}: ours {res['time_s']:.2f} s, peak +{res['peak_mb']:.0f} MB"
    if ref is not None:
        s += (
            f" | {ref_name} {ref['time_s']:.2f} s, peak +{ref['peak_mb']:.0f} MB | "
            f"{ref['time_s'] / res['time_s']:.1f}× faster, same picks: {same}"
        )
    return s + f" | floor {t_floor:.2f} s, {m_floor:.1f} MB ({res['time_s'] / max(t_floor, 1e-9):.1f}× floor)"


if __name__ == "__main__":
    main()
