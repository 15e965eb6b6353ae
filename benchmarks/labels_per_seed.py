"""Per-seed labels to a target accuracy from an ``alp benchmark`` folder: each seed, the median and
mean ± sd, and the AULC (the numbers RESULTS.md quotes next to the benchmark's own table).

    .venv/bin/python -m benchmarks.labels_per_seed benchmark-runs/mnist_bbald_k100/results.json --target 0.9

Labels to target and AULC are :func:`al_core.benchmark.labels_to_target` and :func:`~al_core.benchmark.aulc`
(the first trained round at or above the target, as in Kirsch et al. 2019, Table 1); '>B': the seed
never reached it within the budget B. A seed that never reached it counts as B in the median (a lower
bound, marked '≥' when the median is one), and is left out of the mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from al_core.benchmark import aulc, censored_median, labels_to_target


def per_seed_table(results_json: Path, target: float) -> str:
    """Markdown table: strategy, labels to ``target`` per seed, median, mean ± sd, AULC mean ± sd."""
    runs = json.loads(results_json.read_text())["runs"]
    seeds = sorted({r["seed"] for r in runs})
    by: dict[str, dict[int, dict]] = {}
    for r in runs:
        by.setdefault(r["strategy"], {})[r["seed"]] = r
    head = ["strategy", *[f"seed {s}" for s in seeds], "median", "mean ± sd (reached)", "AULC", "final acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for strategy, rs in by.items():
        cells, hits, bounds = [], [], []
        for s in seeds:
            r = rs.get(s)
            if r is None:
                cells.append("—")
                continue
            hit = labels_to_target(r["labels"], r["accuracy"], target)
            cells.append(f">{r['labels'][-1]}" if hit is None else f"{hit:.0f}")
            hits.append(hit)
            bounds.append(float(r["labels"][-1]))
        med, lower = censored_median(hits, bounds)
        median = f"{'≥ ' if lower else ''}{med:.0f}"
        reached = [h for h in hits if h is not None]
        mean = f"{statistics.fmean(reached):.0f} ± {statistics.pstdev(reached):.0f}" if reached else "—"
        mean += f" ({len(reached)}/{len(rs)})"
        areas = [aulc(r["labels"], r["accuracy"]) for r in rs.values()]
        finals = [r["accuracy"][-1] for r in rs.values()]
        lines.append(
            f"| {strategy} | "
            + " | ".join(cells)
            + f" | {median} | {mean} | {statistics.fmean(areas):.3f} ± {statistics.pstdev(areas):.3f}"
            + f" | {statistics.fmean(finals):.3f} ± {statistics.pstdev(finals):.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="results.json of an alp benchmark folder")
    ap.add_argument("--target", type=float, default=0.9)
    args = ap.parse_args()
    print(per_seed_table(args.results, args.target), end="")


if __name__ == "__main__":
    main()
