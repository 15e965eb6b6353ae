"""One round on a synthetic table pool of millions of rows: seconds per phase and peak RSS.

    nice -n 10 .venv/bin/python -m benchmarks.bench_big_pool --out bench-big --rows 1000000 3000000 10000000

For each size: a synthetic Parquet table (``rows`` × 64 float32 features, 10 classes, written in
row groups by a seeded generator, kept between runs) and a 10,000-row labeled test table; then
``alp init --dataset table``, the cold-start round (``alp round``), the simulated annotator's labels
ingested, and one trained round per strategy (``alp round``), each in its own process, as a user
runs them. Peak RSS is each process's own (``wait4``); the phase seconds are the round summary's.
``--pythonpath DIR`` runs another checkout of alp (the reference: the code before streaming).
Prints one JSON line per (size, strategy) and a markdown table.

    nice -n 10 .venv/bin/python -m benchmarks.bench_big_pool --engines bench-big/ws-10000k

scores the next batch of a kept workspace (``ALP_BENCH_KEEP=1``) with the last model twice, each in
its own process: ``scoring.engine`` local, then dask (``scoring.workers``; per-worker peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 64
CLASSES = 10
#: the round's params: a small model trained briefly (train reads only the labeled rows)
PARAMS = {
    "model.arch": "mlp",
    "model.hidden": 64,
    "training.epochs": 20,
    "training.min_steps": 200,
    "training.cpu_threads": 1,
    "acquisition.batch_size": 40,
    "acquisition.initial_size": 40,
    "tracking.log_model": False,
}


def write_table(path: Path, rows: int, seed: int = 0, group: int = 250_000) -> Path:
    """``rows`` × ``FEATURES`` float32 features around 10 class centres, ``sample_id``, ``label`` (kept if there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, FEATURES)).astype(np.float32)
    names = [f"f{j}" for j in range(FEATURES)]
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, rows, group):
        n = min(group, rows - start)
        y = rng.integers(0, CLASSES, n)
        X = centres[y] + rng.normal(scale=1.5, size=(n, FEATURES)).astype(np.float32)
        cols = {"sample_id": pa.array([f"{path.stem}-{i}" for i in range(start, start + n)])}
        cols.update({name: pa.array(X[:, j]) for j, name in enumerate(names)})
        cols["label"] = pa.array([f"c{v}" for v in y])
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    os.replace(tmp, path)
    return path


#: the last command's peak RSS (GB) of its own process, sampled every 0.1 s (``run`` returns the
#: peak of the process and of any process it started and waited for: DVC, the Prefect server)
LAST_MAIN_PEAK_GB = [0.0]


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB of the process and its waited-for children, stdout) of one command."""
    import threading

    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], p.memory_info().rss)
            except psutil.Error:
                return
            done.wait(0.1)

    threading.Thread(target=sample, daemon=True).start()
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    LAST_MAIN_PEAK_GB[0] = peak[0] / 1024**3
    return seconds, usage.ru_maxrss / 1024**2, out


def bench(rows: int, strategies: list[str], out: Path, sets: list[str], env: dict[str, str]) -> list[dict]:
    data = write_table(out / f"pool-{rows // 1000}k.parquet", rows)
    test = write_table(out / "test-10k.parquet", 10_000, seed=0)
    ws = out / f"ws-{rows // 1000}k"
    shutil.rmtree(ws, ignore_errors=True)
    alp = str(Path(sys.executable).with_name("alp"))
    me = [sys.executable, "-m", "benchmarks.bench_big_pool"]
    extra = [a for kv in [*(f"{k}={json.dumps(v)}" for k, v in PARAMS.items()), *sets] for a in ("--set", kv)]
    init_s, init_gb, _ = run([alp, "init", str(ws), "--dataset", "table", "--data", str(data), "--data", str(test),
                              *extra], env)  # fmt: skip
    init_main = LAST_MAIN_PEAK_GB[0]
    cold_s, cold_gb, _ = run([alp, "round", str(ws)], env)
    ingest_s, ingest_gb, _ = run([*me, "--annotate", str(ws), "0"], env)
    ingest_main = LAST_MAIN_PEAK_GB[0]
    results = []
    for r, strategy in enumerate(strategies, start=1):
        run([*me, "--strategy-of", str(ws), strategy], env)
        s, gb, _ = run([alp, "round", str(ws)], env)
        summary = json.loads((ws / ".alp" / "rounds" / f"round-{r:03d}.json").read_text())
        sec = summary["seconds"]
        res = {
            "rows": rows,
            "strategy": strategy,
            "init_s": round(init_s, 1),
            "init_peak_gb": round(init_gb, 2),
            "init_main_peak_gb": round(init_main, 2),
            "cold_start_s": round(cold_s, 1),
            "cold_start_peak_gb": round(cold_gb, 2),
            "ingest_s": round(ingest_s, 1),
            "ingest_peak_gb": round(ingest_gb, 2),
            "ingest_main_peak_gb": round(ingest_main, 2),
            "process_s": round(s, 1),
            "round_s": sec.get("total"),
            "train_s": sec.get("train"),
            "score_s": sec.get("score"),
            "select_s": sec.get("select"),
            "peak_gb": round(gb, 2),
            "main_peak_gb": round(LAST_MAIN_PEAK_GB[0], 2),
            "s_per_M_rows": round(sec.get("total", 0) / (rows / 1e6), 2),
            "picked": [row["sample_id"] for row in _batch(ws, r)],
            "candidates": summary.get("candidates"),
        }
        print(json.dumps({k: v for k, v in res.items() if k != "picked"}), flush=True)
        results.append(res)
        if r < len(strategies):
            run([*me, "--annotate", str(ws), str(r)], env)
    if not os.environ.get("ALP_BENCH_KEEP"):
        shutil.rmtree(ws, ignore_errors=True)
    return results


def annotate(ws: Path, r: int) -> None:
    """The simulated annotator answers batch ``r``; the labels are ingested (as `alp campaign` does)."""
    from al_core.workspace import Workspace
    from flows.campaign import _annotate
    from flows.prefect_api import prefect_api

    with prefect_api():
        _annotate(Workspace(ws), r)


def set_strategy(ws: Path, strategy: str) -> None:
    from al_core.workspace import Workspace
    from flows.campaign import apply_overrides

    apply_overrides(Workspace(ws), **{"acquisition.strategy": strategy})


def engine_run(ws_path: Path, engine: str) -> dict:
    """Score and select the next round's batch of ``ws`` with the last trained model, on ``engine``
    (local, or dask with scoring.workers): seconds, the picks, this process's and each worker's peak RSS."""
    import resource

    from al_core import pipeline
    from al_core.training import apply_cpu_threads
    from al_core.workspace import Workspace
    from flows.prefect_api import prefect_api
    from tasks import scoring, steps

    ws = Workspace(ws_path)
    apply_cpu_threads(ws.params)  # as the round does (training.cpu_threads: 1 here; dask workers: 1 each)
    data = pipeline.round_data(ws, ws.next_round())
    model = pipeline.load_model(ws)
    t0 = time.perf_counter()
    workers = {}
    with prefect_api():
        if engine == "dask":
            with scoring.dask_engine(ws, model) as mapper:
                t0 = time.perf_counter()
                sel = steps.score_and_select.fn(str(ws.root), data, model, None, mapper=mapper)
                workers = mapper.worker_peak_mb()
        else:
            sel = steps.score_and_select.fn(str(ws.root), data, model)
    return {
        "engine": engine,
        "seconds": round(time.perf_counter() - t0, 1),
        "score_s": round(sel["seconds_score"], 1),
        "select_s": round(sel["seconds_select"], 1),
        "n_shards": sel["n_shards"],
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "worker_peak_mb": workers,
        "picked": data.pool_ids[sel["pool_idx"]].tolist(),
    }


def _batch(ws: Path, r: int) -> list[dict]:
    lines = (ws / "queue" / f"round-{r:03d}" / "batch.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def table(results: list[dict]) -> str:
    head = (
        "| rows | strategy | init s (peak GB: alp / with children) | round s | train | score | select "
        "| round peak GB: alp / with children | (score + select) s / M rows |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        per_m = round((r["score_s"] + r["select_s"]) / (r["rows"] / 1e6), 2)
        lines.append(
            f"| {r['rows']:,} | {r['strategy']} | {r['init_s']} ({r['init_main_peak_gb']} / {r['init_peak_gb']}) | "
            f"{r['round_s']} | {r['train_s']} | {r['score_s']} | {r['select_s']} | "
            f"{r['main_peak_gb']} / {r['peak_gb']} | {per_m} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-big"))
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    ap.add_argument("--strategy", nargs="+", default=["entropy", "badge"])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="more params overrides KEY=VALUE")
    ap.add_argument("--pythonpath", help="run this checkout of alp instead (the reference code)")
    ap.add_argument("--json", type=Path, help="also write every result (with the picked ids) here")
    ap.add_argument("--annotate", nargs=2, metavar=("WS", "ROUND"), help=argparse.SUPPRESS)
    ap.add_argument("--strategy-of", nargs=2, metavar=("WS", "STRATEGY"), help=argparse.SUPPRESS)
    ap.add_argument("--engines", type=Path, help="compare local and dask scoring on this kept workspace")
    ap.add_argument("--engine-run", nargs=2, metavar=("WS", "ENGINE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.annotate:
        return annotate(Path(args.annotate[0]), int(args.annotate[1]))
    if args.strategy_of:
        return set_strategy(Path(args.strategy_of[0]), args.strategy_of[1])
    if args.engine_run:
        return print(json.dumps(engine_run(Path(args.engine_run[0]), args.engine_run[1])))
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = str(Path(args.pythonpath).resolve())
    from flows.prefect_api import prefect_api

    with prefect_api() as url:  # one Prefect server for every command (a start-up each is slow)
        if url:
            env["PREFECT_API_URL"] = url
        if args.engines:
            return compare_engines(args.engines, args.sets, env)
        results = [r for rows in args.rows for r in bench(rows, args.strategy, args.out.resolve(), args.sets, env)]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    return None


def compare_engines(ws: Path, sets: list[str], env: dict[str, str]) -> None:
    """local, then dask scoring of the next batch of ``ws``, each in its own process; same picks?"""
    me = [sys.executable, "-m", "benchmarks.bench_big_pool", "--engine-run", str(ws)]
    runs = {}
    for engine in ("local", "dask"):
        s, gb, out = run([*me, engine], env)
        runs[engine] = json.loads(out.strip().splitlines()[-1])
        runs[engine]["process_s"], runs[engine]["process_peak_gb"] = round(s, 1), round(gb, 2)
        print(json.dumps({k: v for k, v in runs[engine].items() if k != "picked"}), flush=True)
    print("same picks:", runs["local"]["picked"] == runs["dask"]["picked"])


if __name__ == "__main__":
    main()
