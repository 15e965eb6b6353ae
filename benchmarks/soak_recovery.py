"""Soak test of recovery: kill ``alp ingest`` / ``alp round`` with SIGKILL at random steps, rerun, check.

Each trial copies a template workspace, runs one command with ``ALP_FAULT=<step>`` (the process
SIGKILLs itself there, see al_core/faults.py), reruns the same command without it, and checks the
invariants of a converged workspace (:func:`check_converged`): every label exactly once and
versioned, the batch announced, no stale lock, one tag and one MLflow run per round, a clean git
tree, the exported batch unchanged by the rerun, and no alp child process left alive.

    .venv/bin/python -m benchmarks.soak_recovery --trials 24 --seed 1

prints one line per trial and the count converged. tests/flows/test_recovery.py runs a handful of
fixed points of the same machinery in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from flows.prefect_api import prefect_api

INGEST_POINTS = [
    "ingest.validated",
    "ingest.journal-undecided",
    "ingest.pending-written",
    "ingest.journal-decided",
    "ingest.mid-rename",
    "ingest.versioned",
]
ROUND_POINTS = [
    "round.tag",
    "round.versioned",
    "round.trained",
    "round.evaluated",
    "round.prepared",
    "round.exported",
    "round.logged",
]


def alp_bin() -> str:
    return str(Path(sys.executable).with_name("alp"))


@dataclass
class Run:
    returncode: int
    output: str
    marker: str = ""
    seconds: float = 0.0


def run_alp(args: list[str], env: dict[str, str] | None = None, fault: str | None = None, timeout: float = 600) -> Run:
    """Run ``alp ARGS`` as its own process; ``fault``: the step it SIGKILLs itself at."""
    marker = uuid.uuid4().hex
    full = {k: v for k, v in os.environ.items() if k not in ("ALP_FAULT", "MLFLOW_TRACKING_URI")}
    full.update(env or {}, ALP_TEST_MARKER=marker)  # MLflow: each workspace's own store
    if fault:
        full["ALP_FAULT"] = fault
    t0 = time.perf_counter()
    proc = subprocess.run([alp_bin(), *args], env=full, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout + proc.stderr, marker, time.perf_counter() - t0)


def processes_with_marker(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``ALP_TEST_MARKER=marker`` (children of a run)."""
    needle = f"ALP_TEST_MARKER={marker}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def no_orphans(marker: str, wait_s: float = 10.0) -> list[int]:
    """Wait until no process of the run ``marker`` is left; return those still alive after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        left = processes_with_marker(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class Converged:
    ok: bool
    problems: list[str] = field(default_factory=list)


def check_converged(root: Path, expect_labels: dict[str, str], expect_rounds: int) -> Converged:
    """The invariants of point 2 of issue #10 on workspace ``root`` after the rerun."""
    from al_core.workspace import Workspace
    from tasks.events import runtime_state

    ws = Workspace(root)
    problems = []
    labeled = ws.labeled_set()
    if labeled["sample_id"].duplicated().any():
        problems.append("a label is stored twice")
    got = dict(zip(labeled["sample_id"], labeled["label"], strict=True))
    if got != expect_labels:
        problems.append(f"labeled set has {len(got)} labels, expected {len(expect_labels)}")
    if git(root, "status", "--porcelain"):
        problems.append("git tree not clean: " + git(root, "status", "--porcelain")[:200])
    if (root / ".git" / "index.lock").exists():
        problems.append("stale .git/index.lock")
    if list(ws.labeled_dir.glob(".*.pending")) or ws.journal_path.exists():
        problems.append("an interrupted labeled-set change was left")
    if ws.incomplete_round() is not None:
        problems.append(f"round {ws.incomplete_round()} left incomplete")
    tags = git(root, "tag", "--list", "round-*").split()
    if tags != [f"round-{r:03d}" for r in range(expect_rounds)]:
        problems.append(f"tags {tags}, expected {expect_rounds}")
    summaries = [s["round"] for s in ws.round_summaries()]
    if summaries != list(range(expect_rounds)):
        problems.append(f"round summaries {summaries}")
    ledger = ws.ledger()
    if len({e["digest"] for e in ledger}) != len(ledger):
        problems.append("a file is in the ledger twice")
    if int(runtime_state(ws).get("versioned_ledger", 0)) != len(ledger):
        problems.append("ingested labels not versioned")
    committed = git(root, "show", "HEAD:data/labeled.dvc") if (root / "data" / "labeled.dvc").exists() else ""
    if committed and committed != (root / "data" / "labeled.dvc").read_text().strip():
        problems.append("data/labeled.dvc differs from the commit")
    fill = _fill(ws)
    if fill and fill["labeled"] == fill["batch_size"]:
        last = runtime_state(ws).get("last_batch_ready")
        if not last or last["round"] != fill["round"]:
            problems.append(f"batch round-{fill['round']:03d} is complete but was not announced")
    runs = _mlflow_round_runs(ws)
    if sorted(runs) != list(range(expect_rounds)) or len(runs) != len(set(runs)):
        problems.append(f"MLflow round runs {sorted(runs)}, expected one per round")
    return Converged(not problems, problems)


def _fill(ws) -> dict | None:
    from tasks.events import batch_fill

    return batch_fill(ws)


def _mlflow_round_runs(ws) -> list[int]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws.root / 'mlflow.db'}")
    exps = [e.experiment_id for e in client.search_experiments()]  # a copied workspace keeps its template's
    runs = client.search_runs(exps, filter_string="tags.`alp.round` != ''") if exps else []
    return [int(r.data.tags["alp.round"]) for r in runs]


def labels_file(root: Path, path: Path, r: int = 0) -> dict[str, str]:
    """Write the ground truth of batch ``r`` as a returned-labels file; return {sample_id: label}."""
    import pandas as pd

    from al_core.workspace import Workspace

    ws = Workspace(root)
    truth = pd.read_parquet(ws.truth_path).set_index("sample_id")["label"]
    rows = {row["sample_id"]: ws.classes[int(truth[row["sample_id"]])] for row in ws.batch(r)}
    path.write_text("".join(json.dumps({"sample_id": s, "label": lab}) + "\n" for s, lab in rows.items()))
    return rows


def make_template(base: Path, env: dict[str, str]) -> Path:
    """A digits workspace with its cold-start batch (30) exported and waiting for labels."""
    root = base / "template"
    sets = [
        "model.arch=mlp",
        "model.hidden=32",
        "training.epochs=20",
        "training.patience=5",
        "training.cpu_threads=1",
        "acquisition.batch_size=20",
        "acquisition.initial_size=30",
        "acquisition.mc_samples=4",
    ]
    args = ["init", str(root), "--dataset", "digits", *(x for s in sets for x in ("--set", s))]
    for step in (args, ["round", str(root)]):
        r = run_alp(step, env)
        if r.returncode != 0:
            raise RuntimeError(f"alp {' '.join(step)} failed:\n{r.output}")
    return root


def trial(template: Path, work: Path, kind: str, point: str, env: dict[str, str]) -> tuple[Converged, Run, Run]:
    """Kill ``kind`` (ingest | round) at ``point``, rerun it, check convergence."""
    root = work / f"{kind}-{point}-{uuid.uuid4().hex[:6]}"
    shutil.copytree(template, root, symlinks=True)
    labels_path = work / f"{root.name}.jsonl"
    expected = labels_file(root, labels_path)
    if kind == "ingest":
        cmd, rounds = ["ingest", str(root), str(labels_path)], 1
    else:
        first = run_alp(["ingest", str(root), str(labels_path)], env)
        if first.returncode != 0:
            raise RuntimeError(first.output)
        cmd, rounds = ["round", str(root)], 2
    killed = run_alp(cmd, env, fault=point)
    batch_before = _batch_text(root, 1)
    rerun = run_alp(cmd, env)
    result = check_converged(root, expected, rounds)
    if killed.returncode != -9:
        result.problems.append(f"the faulted run was not killed (exit {killed.returncode}): {killed.output[-300:]}")
    if rerun.returncode != 0:
        result.problems.append(f"the rerun failed (exit {rerun.returncode}): {rerun.output[-500:]}")
    if batch_before is not None and batch_before != _batch_text(root, 1):
        result.problems.append("the rerun exported a different batch than the killed run")
    for name, run in (("killed run", killed), ("rerun", rerun)):
        left = no_orphans(run.marker)
        if left:
            result.problems.append(f"{name} left processes alive: {left}")
    result.ok = not result.problems
    return result, killed, rerun


def _batch_text(root: Path, r: int) -> str | None:
    p = root / "queue" / f"round-{r:03d}" / "batch.jsonl"
    return p.read_text() if p.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the workspaces (printed) for inspection")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    work = Path(tempfile.mkdtemp(prefix="alp-soak-"))
    t0 = time.perf_counter()
    with prefect_api() as url:  # one Prefect server for every command of the soak (a start-up each is slow)
        if url:
            env["PREFECT_API_URL"] = url
        converged = _trials(args, rng, work, env)
    print(f"\n{converged}/{args.trials} kills converged ({time.perf_counter() - t0:.0f} s)")
    if args.keep:
        print(f"workspaces in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if converged == args.trials else 1)


def _trials(args: argparse.Namespace, rng: random.Random, work: Path, env: dict[str, str]) -> int:
    template = make_template(work, env)
    converged = 0
    for i in range(args.trials):
        kind = rng.choice(["ingest", "round"])
        point = rng.choice(INGEST_POINTS if kind == "ingest" else ROUND_POINTS)
        result, _, rerun = trial(template, work, kind, point, env)
        converged += result.ok
        status = "converged" if result.ok else "NOT converged: " + "; ".join(result.problems)
        print(f"trial {i + 1:2d}: kill alp {kind} at {point:26s} rerun {rerun.seconds:5.1f} s  {status}", flush=True)
    return converged


if __name__ == "__main__":
    main()
