"""``alp benchmark CONFIG``: label efficiency, measured.

Every strategy × seed of a benchmark config runs as a simulated campaign through the production
code — :func:`flows.workspace_init.init_workspace` then :func:`flows.campaign.campaign_flow`, one
workspace each under the output folder — in parallel worker processes, each on one torch thread.

* **Prefect**: with ``PREFECT_API_URL`` set (or a Prefect test harness active) every worker uses
  that API; otherwise each worker gets its own ``PREFECT_HOME`` (its own ephemeral API and SQLite
  database) under the output folder, so parallel processes never share an ephemeral database.
  ``--workers 1`` runs the campaigns in this process.
* **MLflow** (``OUT/mlflow.db``): one parent run per benchmark; each campaign's run is nested under
  it (the workspace state's ``parent_run_id``) and holds its per-round metrics (step = round) plus
  ``test_accuracy_by_labels`` (step = labels) and the campaign's summary; the rounds are nested
  under their campaign run, as in production.
* **Resumable**: a finished campaign writes ``OUT/results/NAME.json`` and is never redone; an
  interrupted one continues from its workspace (``campaign_flow`` answers pending batches and goes
  on), or restarts from scratch if its workspace cannot continue.
* **Outputs**: ``OUT/learning_curve.png`` (mean ± std over seeds per strategy), ``OUT/results.md``
  (labels to each target, AULC, final accuracy, s/round, class balance) and ``OUT/results.json``.

Benchmark workspaces set ``tracking.log_model: false`` and ``versioning.push: false`` for speed
(overridable in the config's ``params``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from al_core.benchmark import (
    BenchmarkConfig,
    MeanCurve,
    RunResult,
    StopPoint,
    markdown_table,
    mean_std_curve,
    parse_benchmark_config,
    stop_points,
    stopping_markdown,
    summarize,
)
from al_core.config import read_yaml
from al_core.errors import ALError, ConfigError
from al_core.workspace import atomic_write_json, atomic_write_text
from flows.options import QUIET_ENV, parse_sets, quiet_services

log = logging.getLogger(__name__)

#: Worker processes: the CLI's quiet settings, less chatter, and a patient ephemeral API start.
WORKER_ENV = {
    **QUIET_ENV,
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # a worker's ephemeral API starts slowly on a loaded machine (the default wait is 20 s)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


# ------------------------------------------------------------------------------ config
def load_benchmark_config(path: str | Path, sets: dict[str, Any] | None = None) -> BenchmarkConfig:
    """Read a benchmark YAML; ``sets`` override top-level keys (``budget``) or ``params.KEY.PATH``."""
    path = Path(path)
    data = read_yaml(path, "give a benchmark config (see benchmarks/configs/ for examples)")
    if isinstance(data, dict):
        for key, value in (sets or {}).items():
            if key.startswith("params."):
                data.setdefault("params", {})[key.removeprefix("params.")] = value
            else:
                data[key] = value
    return parse_benchmark_config(data, str(path))


def job_name(strategy: str, seed: int) -> str:
    return f"{strategy}-s{seed}"


def _mlflow_name(text: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


# ------------------------------------------------------------------------------ worker side
def _init_worker(env: dict[str, str], prefect_root: str | None) -> None:
    """Runs first in each spawned worker, before Prefect is imported there: its settings come from here."""
    os.environ.update(env)
    if prefect_root is not None:  # no shared API: this worker's own ephemeral API and database
        home = Path(prefect_root) / f"worker-{os.getpid()}"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    import signal
    import warnings

    warnings.filterwarnings("ignore")
    # terminate() → a normal exit, so atexit stops this worker's ephemeral Prefect server too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One strategy × seed campaign, to the end of its budget; writes and returns its result.

    Continues an existing workspace; a workspace that cannot continue (e.g. a crash left it
    half-versioned) is discarded, with its MLflow run, and the campaign restarts from scratch."""
    with campaign_lock(job):
        return _run_job_locked(job, Path(job["workspace"]))


@contextlib.contextmanager
def campaign_lock(job: dict[str, Any]) -> Iterator[None]:
    """One process per campaign: another ``alp benchmark`` on the same folder may hold it."""
    from filelock import FileLock, Timeout

    from al_core.errors import WorkspaceError

    out = Path(job["result_path"]).parent.parent
    lock = FileLock(str(out / ".locks" / f"{job['name']}.lock"), timeout=0)
    Path(lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except Timeout:
        raise WorkspaceError(f"{job['name']} is being run by another `alp benchmark` on {out}") from None
    try:
        yield
    finally:
        lock.release()


def discard_job(job: dict[str, Any]) -> bool:
    """Forget a campaign (``--redo``): its result, workspace and MLflow run; True if there was one."""
    from al_core.workspace import Workspace

    result, root = Path(job["result_path"]), Path(job["workspace"])
    with campaign_lock(job):
        run_ids = {json.loads(result.read_text()).get("run_id")} if result.exists() else set()
        if (root / ".alp").is_dir():
            run_ids.add(Workspace(root).state().get("campaign_run_id"))
        for run_id in run_ids:
            _discard_run(job["tracking_uri"], run_id)
        existed = result.exists() or root.exists()
        result.unlink(missing_ok=True)  # first: a half-discarded campaign is one to run, never a result
        shutil.rmtree(root, ignore_errors=True)
    return existed


def _run_job_locked(job: dict[str, Any], root: Path) -> dict[str, Any]:
    from al_core.errors import WorkspaceError
    from al_core.workspace import Workspace
    from flows.campaign import campaign_flow
    from flows.workspace_init import init_workspace

    summaries: list[dict[str, Any]] = []
    for attempt in (0, 1):
        if not (root / "params.yaml").exists() or not (root / ".dvc").is_dir():
            shutil.rmtree(root, ignore_errors=True)  # never made, or an init that did not finish
            init_workspace(root, job["overrides"])
        ws = Workspace(root)
        if ws.state().get("parent_run_id") != job["parent_run_id"]:
            ws.update_state(parent_run_id=job["parent_run_id"], campaign_run_name=job["name"])
        t0 = time.perf_counter()
        try:
            summaries = campaign_flow(str(root))
            break
        except WorkspaceError as exc:
            if attempt:
                raise
            log.warning("%s cannot continue (%s); restarting it from scratch", job["name"], exc)
            _discard_run(job["tracking_uri"], ws.state().get("campaign_run_id"))
            shutil.rmtree(root)
    wall = time.perf_counter() - t0
    ws = Workspace(root)
    if summaries:  # wall clock of whole rounds, summed over the invocations that ran some
        timing = ws.state().get("benchmark_timing", {"seconds": 0.0, "rounds": 0})
        timing = {"seconds": timing["seconds"] + wall, "rounds": timing["rounds"] + len(summaries)}
        ws.update_state(benchmark_timing=timing)
    timing = ws.state().get("benchmark_timing", {"seconds": 0.0, "rounds": 0})
    result = {
        "name": job["name"],
        "strategy": job["strategy"],
        "seed": job["seed"],
        **campaign_record(root),
        # wall clock of whole rounds run by this invocation (train, score, select, annotate, ingest,
        # DVC/git versioning, MLflow logging); the parts are the round flow's own timings
        "seconds_per_round": timing["seconds"] / max(timing["rounds"], 1),
        "rounds_timed": timing["rounds"],
        "wall_seconds": timing["seconds"],
        "run_id": ws.state().get("campaign_run_id"),
        "workspace": str(root),
        "mlflow_logged": False,
    }
    atomic_write_json(Path(job["result_path"]), result)
    return result


def campaign_record(root: Path) -> dict[str, Any]:
    """A campaign's learning curve, acquired-class histogram, round timings and stopping inputs, as
    its workspace holds them now (read only: a running campaign's trained rounds so far)."""
    from al_core.workspace import Workspace
    from tasks.stopping import observations as stop_observations

    ws = Workspace(root)
    trained = [s for s in ws.round_summaries() if s.get("metrics")]
    labeled = ws.labeled_set()
    acquired = labeled[labeled["round"] > 0]["label"].astype(str)  # what the strategy chose (not round 0)
    seconds = {k: [s["seconds"].get(k, 0.0) for s in trained] for k in ("train", "score", "select", "total")}
    rounds = {s["round"] for s in trained}  # a running round may have stored its observation already
    return {
        "labels": [int(s["n_labels"]) for s in trained],
        "accuracy": [float(s["metrics"]["test_accuracy"]) for s in trained],
        "macro_f1": [float(s["metrics"]["test_macro_f1"]) for s in trained],
        "acquired_counts": [int((acquired == c).sum()) for c in ws.classes],
        "classes": ws.classes,
        "mean_seconds": {k: sum(v) / len(v) if v else 0.0 for k, v in seconds.items()},
        # every round's stopping-criteria inputs: where each criterion fires is computed in the report
        "stop_observations": [dataclasses.asdict(o) for o in stop_observations(ws) if o.round in rounds],
    }


def _discard_run(tracking_uri: str, run_id: str | None) -> None:
    if not run_id:
        return
    from mlflow import MlflowClient

    with contextlib.suppress(Exception):  # already gone: nothing to discard
        MlflowClient(tracking_uri).delete_run(run_id)


# ------------------------------------------------------------------------------ orchestration
class BenchmarkRun:
    """The output folder of one benchmark: workspaces, results, MLflow store, figure and table."""

    def __init__(self, cfg: BenchmarkConfig, out: Path):
        self.cfg = cfg
        self.out = out.expanduser().resolve()
        self.tracking_uri = f"sqlite:///{self.out / 'mlflow.db'}"

    @property
    def state_path(self) -> Path:
        return self.out / "benchmark.json"

    def result_path(self, name: str) -> Path:
        return self.out / "results" / f"{name}.json"

    def workspace(self, name: str) -> Path:
        return self.out / "workspaces" / name

    def protocol(self) -> dict[str, Any]:
        """What every campaign shares; a resumed benchmark must have the same."""
        return json.loads(json.dumps(self.cfg.overrides(), default=str))

    def prepare(self) -> str:
        """Create (or check and reuse) the folder, the MLflow experiment and the parent run."""
        self.out.mkdir(parents=True, exist_ok=True)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        if state and state.get("protocol") != self.protocol():
            raise ConfigError(
                f"{self.out} holds a benchmark run with a different protocol ({self.state_path}); "
                "resume it with the same config, or pass a new --out"
            )
        client = self._client()
        exp = client.get_experiment_by_name(self.cfg.name)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else client.create_experiment(self.cfg.name, artifact_location=(self.out / "mlartifacts").as_uri())
        )
        run_id = state.get("parent_run_id")
        if run_id:
            try:
                client.get_run(run_id)
            except Exception:  # the store was removed: start a new parent run
                run_id = None
        if not run_id:
            run = client.create_run(exp_id, run_name=f"benchmark-{self.cfg.name}", tags={"alp.kind": "benchmark"})
            run_id = run.info.run_id
            params = {k: str(v) for k, v in self.cfg.model_dump(exclude={"params"}).items()}
            params.update({f"params.{k}": str(v) for k, v in self.cfg.overrides().items()})
            from mlflow.entities import Param

            client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
        atomic_write_json(
            self.state_path,
            {"protocol": self.protocol(), "parent_run_id": run_id, "experiment_id": exp_id, "name": self.cfg.name},
        )
        return run_id

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def jobs(self, parent_run_id: str, strategies: list[str], seeds: list[int]) -> list[dict[str, Any]]:
        out = []
        for seed in seeds:  # seed-major: a benchmark cut short still has every strategy on its first seeds
            for strategy in strategies:
                name = job_name(strategy, seed)
                overrides = {
                    **self.cfg.job_overrides(strategy, seed),
                    "tracking.uri": self.tracking_uri,
                    "tracking.experiment": self.cfg.name,
                }
                out.append(
                    {
                        "name": name,
                        "strategy": strategy,
                        "seed": seed,
                        "workspace": str(self.workspace(name)),
                        "result_path": str(self.result_path(name)),
                        "overrides": overrides,
                        "parent_run_id": parent_run_id,
                        "tracking_uri": self.tracking_uri,
                    }
                )
        return out


def _shared_prefect_api() -> str | None:
    """The Prefect API every worker should use: $PREFECT_API_URL, or the one active in this process."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect" in sys.modules:  # e.g. a Prefect test harness (a real temporary server)
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        return str(url) if url else None
    return None


def _rounds_done(workspace: str) -> int:
    rounds = Path(workspace) / ".alp" / "rounds"
    return len(list(rounds.glob("round-*.json"))) if rounds.exists() else 0


@contextlib.contextmanager
def _progress_poller(
    bar: Progress, tasks: dict[str, tuple[TaskID, str]], stop_every: float = 1.0
) -> Iterator[threading.Event]:
    """Update each running campaign's bar from its workspace's round summaries, once a second."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(stop_every):
            for task_id, workspace in list(tasks.values()):
                bar.update(task_id, completed=_rounds_done(workspace))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join()


def run_jobs(
    todo: list[dict[str, Any]], workers: int, out: Path, total_rounds: int, console: Console, progress: bool
) -> dict[str, str]:
    """Run the campaigns (in this process with ``workers == 1``), with a rich progress display.
    Returns the campaigns that failed (name → error); the others still ran."""
    failed: dict[str, str] = {}
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    tasks: dict[str, tuple[TaskID, str]] = {}
    with Progress(*columns, console=console, disable=not progress) as bar:
        overall = bar.add_task("campaigns", total=len(todo))

        def started(job: dict[str, Any]) -> None:
            tid = bar.add_task(
                f"  {job['name']} (rounds)", total=total_rounds, completed=_rounds_done(job["workspace"])
            )
            tasks[job["name"]] = (tid, job["workspace"])

        def finished(job: dict[str, Any]) -> None:
            tid, _ = tasks.pop(job["name"])
            bar.remove_task(tid)
            bar.advance(overall)

        with _progress_poller(bar, tasks):
            api = _shared_prefect_api()
            # in this process only where Prefect's API is shared, or can still be pointed at a home of
            # its own; else (Prefect already set up on an ephemeral API) a worker process runs them
            if workers <= 1 and (api or "prefect" not in sys.modules):
                if not api:
                    (out / ".prefect" / "main").mkdir(parents=True, exist_ok=True)
                    os.environ["PREFECT_HOME"] = str(out / ".prefect" / "main")
                for job in todo:
                    started(job)
                    run_job(job)
                    finished(job)
                return failed
            env = {**WORKER_ENV, **({"PREFECT_API_URL": api} if api else {})}
            prefect_root = None if api else str(out / ".prefect")
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=mp.get_context("spawn"),  # fresh interpreters: Prefect reads the env set for it
                initializer=_init_worker,
                initargs=(env, prefect_root),
            )
            running: dict[Future, dict[str, Any]] = {}
            queue = list(todo)
            try:
                while queue or running:
                    while queue and len(running) < workers:
                        job = queue.pop(0)
                        started(job)
                        running[pool.submit(run_job, job)] = job
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = running.pop(fut)
                        finished(job)
                        if fut.exception() is not None:  # the others go on; the error is reported at the end
                            failed[job["name"]] = f"{type(fut.exception()).__name__}: {fut.exception()}"
                            console.print(f"[red]{job['name']} failed:[/] {failed[job['name']]}", highlight=False)
            except BaseException:
                for proc in list(getattr(pool, "_processes", {}).values()):  # the workers this call started
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    return failed


def run_benchmark(
    cfg: BenchmarkConfig,
    out: str | Path,
    workers: int | None = None,
    strategies: list[str] | None = None,
    seeds: list[int] | None = None,
    progress: bool = True,
    console: Console | None = None,
    redo: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the benchmark ``cfg`` into ``out``; returns the summary rows and output paths.

    ``strategies``/``seeds`` pick a subset of the config's jobs (the rest can be run later into the
    same folder); the figure and table cover every finished job of the config. ``redo`` discards the
    picked jobs' results, workspaces and MLflow runs first (e.g. after a fix), then runs them anew."""
    console = console or Console(stderr=True)
    for name in strategies or []:
        if name not in cfg.strategies:
            raise ConfigError(f"--strategy {name!r} is not in the config's strategies: {', '.join(cfg.strategies)}")
    for s in seeds or []:
        if s not in cfg.seeds:
            raise ConfigError(f"--seed {s} is not in the config's seeds: {cfg.seeds}")
    bench = BenchmarkRun(cfg, Path(out))
    parent_run_id = bench.prepare()
    jobs = bench.jobs(parent_run_id, strategies or cfg.strategies, seeds or cfg.seeds)
    if redo:
        discarded = [j["name"] for j in jobs if discard_job(j)]
        if discarded:
            console.print(f"--redo: discarded {', '.join(discarded)}", highlight=False)
    todo = [j for j in jobs if not Path(j["result_path"]).exists()]
    n_workers = max(1, min(workers or cfg.workers, len(todo) or 1))
    console.print(
        f"benchmark [bold]{cfg.name}[/]: {len(jobs)} campaign(s), {len(jobs) - len(todo)} already finished, "
        f"{len(todo)} to run on {n_workers} worker(s) → {bench.out}",
        highlight=False,
    )
    t0 = time.perf_counter()
    failed = run_jobs(todo, n_workers, bench.out, len(cfg.label_grid()) + 1, console, progress)
    wall = time.perf_counter() - t0
    report = finalize(bench, parent_run_id)
    report["failed"] = failed
    report["wall_seconds"] = wall
    report["ran"] = [j["name"] for j in todo]
    return report


def _load_results(bench: BenchmarkRun) -> list[dict[str, Any]]:
    """Every finished job of the config, in config order (strategy, then seed)."""
    out = []
    for strategy in bench.cfg.strategies:
        for seed in bench.cfg.seeds:
            path = bench.result_path(job_name(strategy, seed))
            if path.exists():
                out.append(json.loads(path.read_text()))
    return out


def finalize(bench: BenchmarkRun, parent_run_id: str) -> dict[str, Any]:
    """Figure, table and MLflow logging for every finished job (each job's extras logged once)."""
    from mlflow.entities import Metric, RunTag

    cfg = bench.cfg
    results = _load_results(bench)
    client = bench._client()
    runs = _run_results(results)
    now = int(time.time() * 1000)
    for r, run in zip(results, runs, strict=True):
        if r["mlflow_logged"] or not r.get("run_id"):
            continue
        single = summarize([run], cfg.targets)[0]
        metrics = [
            Metric("test_accuracy_by_labels", a, now, n) for n, a in zip(r["labels"], r["accuracy"], strict=True)
        ]
        summary = {"aulc": single["aulc"][0], "final_accuracy": single["final_accuracy"][0]}
        summary |= {"seconds_per_round": run.seconds_per_round, "class_entropy": single["class_entropy"][0]}
        summary["wall_seconds_per_round"] = r["seconds_per_round"]
        summary["max_class_share"] = single["max_class_share"][0]
        for t in cfg.targets:
            summary[f"labels_to_{t:g}"] = single[f"labels_to_{t:g}"][0]
        metrics += [Metric(k, float(v), now, 0) for k, v in summary.items() if not math.isnan(v)]
        tags = [
            RunTag("alp.benchmark", cfg.name),
            RunTag("alp.strategy", r["strategy"]),
            RunTag("alp.seed", str(r["seed"])),
        ]
        client.log_batch(r["run_id"], metrics=metrics, tags=tags)
        client.set_terminated(r["run_id"], "FINISHED")
        r["mlflow_logged"] = True
        atomic_write_json(bench.result_path(r["name"]), r)

    report = render_report(cfg, results, bench.out)
    figure, md, js = (Path(report[k]) for k in ("figure", "table_path", "json"))
    for p in (figure, md, js):
        if p.exists():
            client.log_artifact(parent_run_id, str(p))
    parent_metrics = []
    for row in report["rows"]:
        key = _mlflow_name(row["strategy"])
        values = {"aulc": row["aulc"][0], "final_accuracy": row["final_accuracy"][0]}
        values |= {f"labels_to_{t:g}": row[f"labels_to_{t:g}"][0] for t in cfg.targets}
        parent_metrics += [Metric(f"{key}.{k}", float(v), now, 0) for k, v in values.items() if not math.isnan(v)]
    if parent_metrics:
        client.log_batch(parent_run_id, metrics=parent_metrics)
    if len(results) == len(cfg.strategies) * len(cfg.seeds):
        client.set_terminated(parent_run_id, "FINISHED")
    return report


def _run_results(results: list[dict[str, Any]]) -> list[RunResult]:
    return [
        RunResult(
            r["strategy"], r["seed"], r["labels"], r["accuracy"], r["mean_seconds"]["total"], r["acquired_counts"]
        )
        for r in results
    ]


def render_report(cfg: BenchmarkConfig, results: list[dict[str, Any]], dest: Path, partial: bool = False) -> dict:
    """The table, the stopping table, the learning-curve figure and results.json of ``results`` into ``dest``."""
    runs = _run_results(results)
    rows = summarize(runs, cfg.targets)
    table = markdown_table(rows, cfg.targets)
    points = benchmark_stop_points(cfg, results, runs)
    curves = {
        row["strategy"]: mean_std_curve(
            [(r["labels"], r["accuracy"]) for r in results if r["strategy"] == row["strategy"]]
        )
        for row in rows
    }
    dest.mkdir(parents=True, exist_ok=True)
    figure = dest / "learning_curve.png"
    if curves:
        plot_learning_curves(curves, cfg, figure, points)
    md = dest / "results.md"
    stop_md = stopping_section(points)
    atomic_write_text(md, results_markdown(cfg, table, results, partial) + stop_md)
    js = dest / "results.json"
    stops = [
        {**dataclasses.asdict(p), "labels_saved": p.labels_saved, "accuracy_lost": p.accuracy_lost} for p in points
    ]
    atomic_write_json(js, {"config": cfg.model_dump(), "rows": rows, "runs": results, "stopping": stops})
    return {
        "rows": rows,
        "table": table,
        "stopping": stop_md,
        "figure": str(figure),
        "table_path": str(md),
        "json": str(js),
    }


def _has_trained_round(root: Path) -> bool:
    from al_core.workspace import Workspace

    return (root / "params.yaml").exists() and any(s.get("metrics") for s in Workspace(root).round_summaries())


def partial_report(cfg: BenchmarkConfig, out: Path, dest: Path) -> dict[str, Any]:
    """The report over every campaign's trained rounds so far — finished, running or interrupted — into
    ``dest`` (outside ``out``). Reads ``out``'s workspaces only: no MLflow, nothing written there."""
    if dest.resolve() == out.resolve():
        raise ConfigError(f"--report-to {dest} is the benchmark folder itself: name another folder for the report")
    results = []
    for strategy in cfg.strategies:
        for seed in cfg.seeds:
            root = out / "workspaces" / job_name(strategy, seed)
            if _has_trained_round(root):  # not a workspace whose init was cut short
                results.append(
                    {"name": job_name(strategy, seed), "strategy": strategy, "seed": seed, **campaign_record(root)}
                )
    if not results:
        raise ConfigError(f"{out} has no trained round yet: nothing to report (is it an alp benchmark folder?)")
    return render_report(cfg, results, dest, partial=True)


def results_markdown(cfg: BenchmarkConfig, table: str, results: list[dict[str, Any]], partial: bool = False) -> str:
    done = sorted({(r["strategy"], r["seed"]) for r in results})
    total = len(cfg.strategies) * len(cfg.seeds)
    if partial:
        cut = ", ".join(f"{r['name']} at {r['labels'][-1]}" for r in results if r["labels"][-1] < cfg.label_grid()[-1])
        state = (
            f"{len(done)} of {total} campaigns so far, unfinished ones up to their last trained round ({cut or 'none'})"
        )
    else:
        state = f"{len(done)} of {total} strategy × seed campaigns finished"
    return (
        f"# Benchmark `{cfg.name}`\n\n"
        f"{cfg.dataset}, model `{cfg.model}`, {cfg.initial_size} initial labels"
        f"{' (class-balanced)' if cfg.initial_balanced else ''}, {cfg.batch_size} per round, budget {cfg.budget}; "
        f"{state}.\n\n"
        f"{table}\n"
        "Labels to target: first trained round at or above the target (mean ± std over the seeds that "
        "reached it; '> B': none did within the budget); × random: its ratio to random's ('< x' when random "
        "never got there within the budget). AULC: area under the accuracy-vs-labels curve divided by its "
        "label range. s / round: the round flow's mean wall clock per trained round (version the labeled set, "
        "train, evaluate, score, select, export, MLflow logging); the simulated annotation, ingest and final "
        "DVC/git commit come on top (results/*.json hold whole-campaign wall clocks). Class balance of the "
        "acquired labels (cold start excluded): the largest class's share and the histogram's entropy / log C.\n"
    )


def plot_learning_curves(
    curves: dict[str, MeanCurve], cfg: BenchmarkConfig, path: Path, points: list[StopPoint] | None = None
) -> None:
    """Test accuracy vs labels, mean ± std over seeds, one line per strategy; targets dashed; where
    each stopping criterion fires (mean labels and accuracy over the seeds it fired in) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy, c in curves.items():
        style = {"color": "black", "linestyle": "--"} if strategy == "random" else {}
        (line,) = ax.plot(c.labels, c.mean, marker="o", markersize=3, label=f"{strategy} (n={int(c.n.max())})", **style)
        ax.fill_between(c.labels, c.mean - c.std, c.mean + c.std, alpha=0.15, color=line.get_color())
        mark_stop_points(ax, [p for p in points or [] if p.strategy == strategy], line.get_color())
    for t in cfg.targets:
        ax.axhline(t, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{cfg.name}: {cfg.dataset}, {cfg.model}, mean ± std over seeds")
    ax.grid(alpha=0.3)
    _stop_legend(ax, points or [])
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: marker per stopping criterion on the learning-curve figure
STOP_MARKERS = {
    "stabilizing_predictions": "*",
    "overall_uncertainty": "v",
    "classification_change": "D",
    "plateau": "s",
    "budget": "|",
    "rule": "X",
}


def benchmark_stop_points(
    cfg: BenchmarkConfig, results: list[dict[str, Any]], runs: list[RunResult]
) -> list[StopPoint]:
    """Where each stopping criterion fires in each finished campaign (with the config's
    ``acquisition.stop`` thresholds), from the observations its rounds stored."""
    from al_core.stopping import StopObservation

    params = cfg.campaign_params()
    out: list[StopPoint] = []
    for r, run in zip(results, runs, strict=True):
        obs = [StopObservation(**o) for o in r.get("stop_observations") or []]
        if obs and run.labels:
            out += stop_points(run, obs, params.acquisition.stop, params.acquisition.label_budget)
    return out


def stopping_section(points: list[StopPoint]) -> str:
    if not points:
        return ""
    return (
        "\n## Stopping: labels saved vs accuracy lost\n\n"
        "Where each criterion first fires (round · labels · test accuracy there) against the full budget, "
        "with the thresholds of `acquisition.stop`; '—': it never fired within the budget.\n\n"
        + stopping_markdown(points)
    )


def mark_stop_points(ax: Any, points: list[StopPoint], color: str) -> None:
    """One marker per criterion at its mean firing point (labels, accuracy) over the seeds it fired in."""
    for name, marker in STOP_MARKERS.items():
        fired = [p for p in points if p.criterion == name and p.round is not None]
        if fired and name != "budget":
            x = float(sum(p.labels for p in fired)) / len(fired)
            y = float(sum(p.accuracy for p in fired)) / len(fired)
            top = name in ("stabilizing_predictions", "rule")  # the recommended rule drawn over the others
            size, z = (140, 6) if top else (60, 5)
            ax.scatter([x], [y], marker=marker, s=size, color=color, edgecolors="black", linewidths=0.6, zorder=z)


def _stop_legend(ax: Any, points: list[StopPoint]) -> None:
    from matplotlib.lines import Line2D

    shown = sorted({p.criterion for p in points if p.round is not None and p.criterion != "budget"})
    handles = [
        Line2D([], [], marker=STOP_MARKERS[n], linestyle="", color="grey", markeredgecolor="black", label=f"stop: {n}")
        for n in shown
    ]
    if handles:
        ax.add_artist(ax.legend(handles=handles, fontsize=7, loc="center right", title="fires (mean over seeds)"))


# ------------------------------------------------------------------------------ CLI
def benchmark_command(
    config: Annotated[Path, typer.Argument(help="Benchmark YAML (see benchmarks/configs/).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: benchmark-runs/NAME).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel campaigns (default: the config's workers).")] = None,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", help="Run only this strategy of the config (repeatable).")
    ] = None,
    seed: Annotated[list[int] | None, typer.Option("--seed", help="Run only this seed (repeatable).")] = None,
    redo: Annotated[
        bool,
        typer.Option(
            "--redo", help="Discard the picked campaigns' results, workspaces and MLflow runs, then run them again."
        ),
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config key: --set budget=150, --set params.acquisition.pool_subset=1000"
        ),
    ] = None,
    report_to: Annotated[
        Path | None,
        typer.Option(
            "--report-to",
            help="Run nothing: write the tables and figure over the rounds trained so far (unfinished "
            "campaigns up to their last round) into this folder.",
        ),
    ] = None,
) -> None:
    """Label-efficiency benchmark: every strategy × seed as a simulated campaign; learning curves and a table."""
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    quiet_services()
    err = Console(stderr=True, soft_wrap=True)
    try:
        cfg = load_benchmark_config(config, parse_sets(set_ or [], example="budget=150"))
        if report_to is not None:
            report = partial_report(cfg, out or Path("benchmark-runs") / cfg.name, report_to)
            Console(soft_wrap=True).print(report["table"] + report["stopping"], markup=False, highlight=False)
            err.print(f"figure: {report['figure']}  table: {report['table_path']}", highlight=False)
            return
        report = run_benchmark(
            cfg, out or Path("benchmark-runs") / cfg.name, workers, strategy, seed, console=err, redo=redo
        )
    except ALError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    Console(soft_wrap=True).print(report["table"] + report["stopping"], markup=False, highlight=False)
    if report["failed"]:
        err.print(
            f"[bold red]{len(report['failed'])} campaign(s) failed[/] (run again to retry them):", highlight=False
        )
        for name, msg in report["failed"].items():
            err.print(f"  {name}: {msg}", highlight=False)
    err.print(
        f"finished in {report['wall_seconds']:.0f} s. figure: {report['figure']}  table: {report['table_path']}",
        highlight=False,
    )
    if report["failed"]:
        raise typer.Exit(1)
