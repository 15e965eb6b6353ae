"""How long alp's temporary Prefect server takes to answer, idle and beside CPU burners.

    .venv/bin/python -m benchmarks.bench_prefect_startup --burners 2 --trials 3

Starts the server as ``alp round``/``ingest``/``campaign`` do without ``PREFECT_API_URL``
(flows/prefect_api.py), ``--trials`` times with ``--burners`` busy-looping processes beside it, and
prints each start-up time: the figure behind ``DEFAULT_STARTUP_TIMEOUT_S``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

from flows.prefect_api import DEFAULT_STARTUP_TIMEOUT_S, prefect_api


def _burn() -> None:  # pragma: no cover - a busy loop in a child process
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    times = []
    try:
        for i in range(args.trials):
            t0 = time.perf_counter()
            with prefect_api() as url:
                times.append(time.perf_counter() - t0)
            print(f"trial {i + 1}: {times[-1]:.1f} s to a healthy API at {url}", flush=True)
    finally:
        for b in burners:
            b.terminate()
    print(
        f"{args.burners} burner(s) on {os.cpu_count()} cores: median {statistics.median(times):.1f} s, "
        f"max {max(times):.1f} s (default timeout {DEFAULT_STARTUP_TIMEOUT_S:.0f} s)"
    )


if __name__ == "__main__":
    main()
