"""``make demo``: does active learning pay here, and when could we have stopped?

A small label-efficiency benchmark through the production code (``alp benchmark``'s runner: each
campaign is ``alp init`` + ``alp campaign`` in a workspace of its own, with Prefect, MLflow, git and
DVC): an active strategy and random, on the same seed, the same cold start and the same budget,
nothing tuned on the test split. One seed, to stay under 5 minutes on 2 CPU cores; ``python -m
flows.demo --seeds 0 1`` runs more (benchmarks/RESULTS.md "The demo" has seeds 0 and 1). Prints
accuracy per round, the area under the learning curve and the final accuracy, where the stopping
rule (stabilizing predictions, Bloodgood & Vijay-Shanker 2009) fires, and writes the
learning-curve figure. Everything lands in ./demo-workspace (git-ignored, recreated each run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from al_core.benchmark import BenchmarkConfig

#: the demo's protocol, as a benchmark config (see README "Label-efficiency benchmark")
DEMO: dict[str, Any] = {
    "name": "demo",
    "dataset": "digits",
    "model": "mlp",
    "strategies": ["margin", "random"],
    "seeds": [0],  # one seed keeps the demo under 5 min on 2 cores; --seeds 0 1 for more
    "initial_size": 20,
    "batch_size": 30,
    "budget": 290,
    "targets": [0.9, 0.95],
    "workers": 2,
    "params": {"acquisition": {"stop": {"criteria": []}}},
}
#: the criterion whose firing point the demo marks
RULE = "stabilizing_predictions"


def _trained_by_labels(results: list[dict[str, Any]], strategy: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in results:
        if r["strategy"] == strategy:
            for n, a in zip(r["labels"], r["accuracy"], strict=True):
                out.setdefault(n, []).append(a)
    return out


def _kappa_by_labels(results: list[dict[str, Any]], strategy: str) -> dict[int, list[float]]:
    """κ̄ (stabilizing predictions) of ``strategy``'s rounds per label count, from their round summaries."""
    from al_core.workspace import Workspace

    out: dict[int, list[float]] = {}
    for r in results:
        if r["strategy"] == strategy:
            for s in Workspace(r["workspace"]).round_summaries():
                value = ((s.get("stopping") or {}).get("criteria") or {}).get(RULE, {}).get("value")
                if value is not None:
                    out.setdefault(s["n_labels"], []).append(value)
    return out


def rounds_table(report: dict[str, Any], cfg: BenchmarkConfig) -> Table:
    """Test accuracy per label count, mean over seeds, with the rule's firing points marked."""

    data = json.loads(Path(report["json"]).read_text())
    results = data["runs"]
    fired: dict[tuple[str, int], int] = {}
    for p in data["stopping"]:
        if p["criterion"] == RULE and p["labels"] is not None:
            fired[(p["strategy"], p["labels"])] = fired.get((p["strategy"], p["labels"]), 0) + 1
    strategies = cfg.strategies
    table = Table(title=f"alp demo: {cfg.dataset}, test accuracy (mean over seeds {cfg.seeds}) per label count")
    table.add_column("labels", justify="right")
    for s in strategies:
        table.add_column(s, justify="right")
    table.add_column(f"κ̄ ({strategies[0]})", justify="right")
    by = {s: _trained_by_labels(results, s) for s in strategies}
    kappa = _kappa_by_labels(results, strategies[0])
    for n in sorted(set().union(*by.values())):
        cells = []
        for s in strategies:
            accs = by[s].get(n)
            mark = f" ◆{fired[(s, n)]}" if (s, n) in fired else ""
            cells.append(f"{sum(accs) / len(accs):.3f}{mark}" if accs else "—")
        k = kappa.get(n)
        table.add_row(str(n), *cells, f"{sum(k) / len(k):.3f}" if k else "—")
    return table


def main(base: str = "demo-workspace", overrides: dict[str, Any] | None = None) -> int:
    """Run the demo into ``base``; ``overrides`` replace keys of :data:`DEMO` (the smoke test's tiny run)."""
    root = Path(base).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    import warnings

    from flows.options import quiet_services

    quiet_services()
    warnings.filterwarnings("ignore")
    from al_core.benchmark import parse_benchmark_config
    from flows.benchmark import WORKER_ENV, run_benchmark

    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    console = Console(soft_wrap=True)
    cfg = parse_benchmark_config({**DEMO, **(overrides or {})}, "flows/demo.py")
    console.print(
        f"[bold]alp demo[/]: {cfg.dataset} ({cfg.model}), {' vs '.join(cfg.strategies)}, seeds {cfg.seeds}, "
        f"{cfg.initial_size} cold-start labels + {cfg.batch_size} per round up to {cfg.budget}"
    )
    t0 = time.perf_counter()
    report = run_benchmark(cfg, root, progress=True, console=Console(stderr=True))
    wall = time.perf_counter() - t0
    if report["failed"]:
        for name, msg in report["failed"].items():
            console.print(f"[red]{name} failed:[/] {msg}")
        return 1
    console.print(rounds_table(report, cfg))
    sp = cfg.campaign_params().acquisition.stop.stabilizing_predictions
    rule = f"stabilizing predictions, κ̄ ≥ {sp.threshold:g} over {sp.window} round pairs (Bloodgood 2009)"
    stops = json.loads(Path(report["json"]).read_text())["stopping"]
    if any(p["criterion"] == RULE and p["round"] is not None for p in stops):
        console.print(f"◆k: the stopping rule ({rule}) fires first here in k seed(s)")
    else:
        console.print(f"the stopping rule ({rule}) did not fire within the budget of {cfg.budget} labels")
    console.print(report["table"], markup=False, highlight=False)
    console.print(report["stopping"], markup=False, highlight=False)
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    ws = root / "workspaces" / f"{cfg.strategies[0]}-s{cfg.seeds[0]}"
    console.print(f"demo finished in {wall:.0f} s.")
    console.print(f"  learning curve: {report['figure']}")
    console.print(
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {tracking} --port 5000   → http://127.0.0.1:5000"
    )
    console.print(f"  a workspace: .venv/bin/alp status {ws}   (git log --oneline --decorate inside it)")
    return 0


def parse_args(argv: list[str]) -> dict[str, Any]:
    """The command line's overrides of :data:`DEMO` (``--seeds 0 1``: more seeds, same protocol)."""
    ap = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", help=f"campaign seeds (default: {DEMO['seeds']})")
    args = ap.parse_args(argv)
    return {"seeds": args.seeds} if args.seeds else {}


if __name__ == "__main__":
    sys.exit(main(overrides=parse_args(sys.argv[1:])))
