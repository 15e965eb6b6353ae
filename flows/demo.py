"""``make demo``: a simulated campaign on MNIST-1D with entropy sampling and with random for comparison.

Workspaces land in ./demo-workspace (git-ignored, recreated each run), sharing one MLflow store
and one Prefect home so both UIs show both campaigns.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

STRATEGIES = ("entropy", "random")


def main(base: str = "demo-workspace", rounds: int = 6) -> int:
    root = Path(base).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    prefect_home = root / ".prefect"
    os.environ["PREFECT_HOME"] = str(prefect_home)
    import warnings

    from flows.options import quiet_services

    quiet_services()

    warnings.filterwarnings("ignore")
    from flows.campaign import campaign_flow
    from flows.workspace_init import init_workspace

    console = Console(soft_wrap=True)
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    t0 = time.perf_counter()
    results = {}
    for strategy in STRATEGIES:
        console.print(f"[bold]preparing[/] {strategy} workspace (MNIST-1D, 4,000-sample pool) ...")
        ws = init_workspace(
            root / strategy,
            {
                "acquisition.strategy": strategy,
                "acquisition.rounds": rounds,
                "acquisition.initial_size": 100,
                "acquisition.batch_size": 100,
                "training.cpu_threads": 1,  # the 1-D CNN is small: one thread beats two on 2 cores
                "tracking.uri": tracking,
            },
        )
        results[strategy] = campaign_flow(str(ws.root), progress=True)
    wall = time.perf_counter() - t0

    table = Table(title="alp demo: MNIST-1D, test accuracy per round")
    table.add_column("round")
    table.add_column("labels", justify="right")
    for s in STRATEGIES:
        table.add_column(s, justify="right")
    trained = {s: [r for r in results[s] if r["metrics"]] for s in STRATEGIES}
    for i, row in enumerate(trained[STRATEGIES[0]]):
        cells = [f"{trained[s][i]['metrics']['test_accuracy']:.3f}" if i < len(trained[s]) else "—" for s in STRATEGIES]
        table.add_row(row["tag"], str(row["n_labels"]), *cells)
    console.print(table)
    console.print(f"demo finished in {wall:.0f} s. Look at the results:")
    console.print(
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {tracking} --port 5000   → http://127.0.0.1:5000"
    )
    console.print(
        f"  Prefect UI: PREFECT_HOME={prefect_home} .venv/bin/prefect server start --port 4200   → http://127.0.0.1:4200"
    )
    console.print(f"  a workspace: .venv/bin/alp status {root / 'entropy'}   (git log --oneline --decorate inside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
