"""``make bench``: run every benchmark module (``benchmarks/bench_*.py``), one process each, in turn.

Each prints its own figures (time and peak memory beside its reference implementation); the
figures recorded in benchmarks/RESULTS.md come from these runs. ``--only NAME`` (repeatable) runs
some of them, ``--list`` names them. A benchmark that fails is reported and the others still run;
the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[str]:
    """The benchmark modules, by name (``bench_acquisition`` …)."""
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args()
    names = benchmarks()
    if args.list:
        print("\n".join(names))
        return
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    failed = []
    for name in args.only or names:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=HERE.parent)
        print(
            f"=== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.perf_counter() - t0:.0f} s", flush=True
        )
        if rc:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
