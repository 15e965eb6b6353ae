"""BatchBALD side by side with batchbald-redux 2.0.5, in one process, on identical inputs.

    nice -n 5 .venv/bin/python -m benchmarks.bench_batchbald                    # i.i.d. passes (worst case)
    nice -n 5 .venv/bin/python -m benchmarks.bench_batchbald --kind correlated  # MC-dropout-like passes
    nice -n 5 .venv/bin/python -m benchmarks.bench_batchbald --threads 1 --profile

Inputs are ``bench_acquisition``'s (N=5,000, K=20, C=10, batch 10, 10,000 sampled configurations;
``--quick``: N=500, batch 5, 1,000). The runs go alp, batchbald-redux, alp again (the machine's
load drifts; the speed-up is the reference's time over the mean of alp's two). The reference draws
its sampled configurations from torch's global RNG seeded 0 (inside ``fork_rng``); alp gets an
explicit ``torch.Generator`` seeded 0, which draws the same configurations, so all picks can be
compared, not only the exact ones. Peak memory is the peak RSS above the RSS before each call
(``bench_acquisition.measure``: VmHWM reset before the call, ``ru_maxrss``, a 1 ms sampler).
``--profile`` adds the ten most expensive calls of an alp run (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
from collections.abc import Callable

import torch

from benchmarks.bench_acquisition import FULL, QUICK, batchbald_inputs, measure


def timed(thunk: Callable[[], list[int]]) -> dict:
    """``bench_acquisition.measure`` of ``thunk()`` as {time_s, peak_mb, picks}."""
    picks, dt, peak_mb = measure(thunk)
    return {"time_s": dt, "peak_mb": peak_mb, "picks": picks}


def alp_thunk(lp: torch.Tensor, cfg: dict) -> Callable[[], list[int]]:
    from al_core.acquisition.batchbald import batchbald

    def run() -> list[int]:
        return batchbald(lp, cfg["B"], torch.Generator().manual_seed(0), num_samples=cfg["samples"]).indices.tolist()

    return run


def reference_thunk(lp: torch.Tensor, cfg: dict) -> Callable[[], list[int]]:
    from batchbald_redux import batchbald as redux
    from batchbald_redux import joint_entropy
    from tqdm.auto import tqdm

    redux.tqdm = joint_entropy.tqdm = functools.partial(tqdm, disable=True)  # no progress bars

    def run() -> list[int]:
        with torch.random.fork_rng():  # the reference samples with the global RNG
            torch.manual_seed(0)
            return [int(i) for i in redux.get_batchbald_batch(lp, cfg["B"], cfg["samples"]).indices]

    return run


def profile_alp(thunk: Callable[[], list[int]], top: int = 10) -> str:
    prof = cProfile.Profile()
    prof.runcall(thunk)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("iid", "correlated"), default="iid", help="MC passes: i.i.d. or correlated")
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for both (0: torch's default)")
    ap.add_argument("--skip-reference", action="store_true", help="time alp only")
    ap.add_argument("--profile", action="store_true", help="cProfile one more alp run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = (QUICK if args.quick else FULL)["batchbald"]
    lp = batchbald_inputs(cfg, args.kind)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; {args.kind} passes, {cfg}"
    )
    ours = alp_thunk(lp, cfg)
    before = timed(ours)
    print(f"alp (before)         {before['time_s']:7.2f} s, peak +{before['peak_mb']:.0f} MB", flush=True)
    if not args.skip_reference:
        ref = timed(reference_thunk(lp, cfg))
        print(f"batchbald-redux 2.0.5 {ref['time_s']:7.2f} s, peak +{ref['peak_mb']:.0f} MB", flush=True)
    after = timed(ours)
    print(f"alp (after)          {after['time_s']:7.2f} s, peak +{after['peak_mb']:.0f} MB")
    print(f"alp picks:             {before['picks']} (first five {before['picks'][:5]})")
    if not args.skip_reference:
        mean = (before["time_s"] + after["time_s"]) / 2
        print(f"batchbald-redux picks: {ref['picks']} (first five {ref['picks'][:5]})")
        print(
            f"speed-up {ref['time_s'] / mean:.1f}× (reference / mean alp time); same first five picks: "
            f"{before['picks'][:5] == ref['picks'][:5]}; same picks (all {len(ref['picks'])}): "
            f"{before['picks'] == ref['picks']}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.profile:
        print(profile_alp(ours))


if __name__ == "__main__":
    main()
