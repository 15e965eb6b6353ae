"""``alp``: the command line. Each verb is a thin Typer command over al_core and the flows."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from al_core.errors import ALError, LabelValidationError
from al_core.sources import SOURCES
from flows.byo import data_overrides
from flows.options import parse_sets, quiet_services
from flows.stack import stack_app

app = typer.Typer(
    help="alp: active learning as a pipeline — Prefect flows, MLflow tracking, DVC-versioned labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

WorkspaceArg = Annotated[Path, typer.Argument(help="The workspace directory.")]


F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    return os.environ.get("ALP_DEBUG", "").lower() in ("1", "true", "yes")


def describe(exc: BaseException) -> str:
    """An expected failure in a sentence or two: what is wrong and what to do."""
    if isinstance(exc, ALError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}. Make it writable for this user (or run alp as its owner)."
    if isinstance(exc, FileNotFoundError):
        return f"no such file or directory: {exc.filename}. Check the path."
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def _fail(exc: BaseException) -> None:
    """Print an expected failure as one or two lines and exit with code 2 (``--debug``: the traceback)."""
    if debug_enabled():
        raise exc
    err.print(f"[bold red]error:[/] {describe(exc)}", markup=True, highlight=False, soft_wrap=True)
    if not isinstance(exc, LabelValidationError):
        err.print("(run with --debug or ALP_DEBUG=1 for the traceback)", style="dim", highlight=False)
    raise typer.Exit(2)


#: What a verb turns into a message instead of a traceback.
EXPECTED = (ALError, OSError)


def guarded(fn: F) -> F:
    """Run a verb; expected failures (:data:`EXPECTED`) become :func:`_fail` messages, exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED as exc:
            _fail(exc)

    return wrapper  # type: ignore[return-value]


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``app.command`` with :func:`guarded` error handling."""

    def register(fn: F) -> F:
        app.command(*args, **kwargs)(guarded(fn))
        return fn

    return register


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of failures (or set ALP_DEBUG=1).")] = False,
) -> None:
    """alp: active learning as a pipeline — Prefect flows, MLflow tracking, DVC-versioned labels."""
    if debug:
        os.environ["ALP_DEBUG"] = "1"


@command()
def init(
    directory: WorkspaceArg,
    dataset: Annotated[str | None, typer.Option(help=" | ".join(SOURCES.names()))] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(help="; ".join(f"{n}: {s.data_help}" for n, s in SOURCES.items() if s.data_help) + "."),
    ] = None,
    labels: Annotated[str | None, typer.Option(help="arrays: the labels .npy (dataset.labels)")] = None,
    ids: Annotated[str | None, typer.Option(help="arrays: sample ids, one a line (dataset.ids)")] = None,
    skip_unreadable: Annotated[
        bool, typer.Option(help="images: leave out files that cannot be decoded (dataset.skip_unreadable)")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a params.yaml key: --set acquisition.batch_size=20")
    ] = None,
) -> None:
    """Create a workspace: its own git repo with DVC, params.yaml, dvc.yaml, the prepared pool and test split."""
    quiet_services()
    from flows.workspace_init import init_workspace

    try:
        overrides = parse_sets(set_ or [])
        if dataset:
            overrides["dataset.name"] = dataset
        name = overrides.get("dataset.name", "mnist1d")
        overrides.update(data_overrides(name, data or []))
        for key, value in (("labels", labels), ("ids", ids)):
            if value:
                overrides[f"dataset.{key}"] = str(Path(value).expanduser().resolve())
        if skip_unreadable:
            overrides["dataset.skip_unreadable"] = True
        ws = init_workspace(directory, overrides)
    except ALError as exc:
        _fail(exc)
    meta = ws.meta()
    console.print(
        f"workspace [bold]{ws.root}[/]: {meta['dataset']}, pool {meta['n_pool']}, test {meta['n_test']}, "
        f"{len(meta['classes'])} classes. Next: [bold]alp round {directory}[/] or [bold]alp campaign {directory}[/]"
    )


@command()
def prepare(directory: WorkspaceArg) -> None:
    """DVC stage: build the pool, test split and ground truth from params.yaml's dataset section."""
    import tasks.s3  # noqa: F401  (the reader of s3:// sample uris)
    from al_core import pipeline
    from al_core.workspace import Workspace

    try:
        meta = pipeline.prepare(Workspace(directory).require())
    except ALError as exc:
        _fail(exc)
    console.print(json.dumps(meta))


@command()
def train(directory: WorkspaceArg) -> None:
    """DVC stage: train the current round's model on the labeled set (writes models/model.pt)."""
    import tasks.s3  # noqa: F401  (the reader of s3:// sample uris)
    from al_core import pipeline
    from al_core.workspace import Workspace

    try:
        result = pipeline.train(Workspace(directory).require())
    except ALError as exc:
        _fail(exc)
    console.print(
        f"trained on {result.n_labeled} labels (+{len(result.pseudo_indices)} pseudo) in {result.seconds:.1f}s"
    )


@command()
def evaluate(directory: WorkspaceArg) -> None:
    """DVC stage: evaluate models/model.pt on the test split (writes metrics/eval.json)."""
    import tasks.s3  # noqa: F401  (the reader of s3:// sample uris)
    from al_core import pipeline
    from al_core.workspace import Workspace

    try:
        m = pipeline.evaluate_model(Workspace(directory).require())
    except ALError as exc:
        _fail(exc)
    console.print(json.dumps({k: v for k, v in m.items() if k != "confusion"}))


@command("round")
def round_(directory: WorkspaceArg) -> None:
    """Run one round: version the labeled set → train → evaluate → score → select → export the batch."""
    quiet_services()
    from flows.prefect_api import prefect_api
    from flows.round import round_flow

    with prefect_api():
        s = round_flow(str(directory.resolve()))
    if s.get("skipped"):
        console.print(f"round skipped: {s['skipped']}")
        return
    acc = s["metrics"].get("test_accuracy")
    console.print(
        f"{s['tag']}: {s['strategy']}, {s['n_labels']} labels"
        + (f", test accuracy {acc:.4f}" if acc is not None else " (cold start)")
        + f"; {s['n_queued']} samples queued in {s['queue']['batch']}"
    )


@command()
def ingest(
    directory: WorkspaceArg,
    files: Annotated[list[Path], typer.Argument(help="Returned labels: .jsonl, .csv or a Label Studio .json export.")],
    partial: Annotated[
        bool, typer.Option("--partial", help="Take the valid lines; write the rejects beside the file.")
    ] = False,
) -> None:
    """Ingest returned labels: validate the whole file, then merge it into the labeled set and version it."""
    quiet_services()
    from flows.ingest import ingest_flow
    from flows.prefect_api import prefect_api

    with prefect_api():
        results = ingest_flow(str(directory.resolve()), [str(f) for f in files], partial=partial)
    for r in results:
        if r["already_ingested"]:
            console.print(f"{r['file']}: already ingested (same content), nothing changed")
        else:
            extra = f", {len(r['rejected'])} rejected → {r['rejects_file']}" if r["rejected"] else ""
            console.print(f"{r['file']}: {r['added']} new label(s){extra}")


@command()
def campaign(
    directory: WorkspaceArg,
    rounds: Annotated[int | None, typer.Option(help="Trained rounds to run (default: acquisition.rounds).")] = None,
    strategy: Annotated[str | None, typer.Option(help="Acquisition strategy (default: acquisition.strategy).")] = None,
) -> None:
    """Simulated campaign: rounds whose batches a simulated annotator answers from the ground truth."""
    quiet_services()
    from flows.campaign import campaign_flow
    from flows.prefect_api import prefect_api

    with prefect_api():
        summaries = campaign_flow(str(directory.resolve()), rounds=rounds, strategy=strategy, progress=True)
    console.print(rounds_table([s for s in summaries if s["metrics"]], title=f"campaign {directory}"))


def rounds_table(summaries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("round", "strategy", "labels", "accuracy", "macro-F1", "queued", "champion"):
        table.add_column(col, justify="right" if col not in ("strategy",) else "left")
    for s in summaries:
        m = s.get("metrics") or {}
        table.add_row(
            s["tag"],
            s["strategy"],
            str(s["n_labels"]),
            f"{m['test_accuracy']:.4f}" if "test_accuracy" in m else "—",
            f"{m['test_macro_f1']:.4f}" if "test_macro_f1" in m else "—",
            str(s["n_queued"]),
            "★" if s.get("champion") else "",
        )
    return table


def status_data(directory: Path) -> dict[str, Any]:
    from al_core.workspace import Workspace, round_name
    from flows.serve import operations_status
    from flows.stopping import stopping_status

    ws = Workspace(directory).require()
    labeled = ws.labeled_set()
    pending = ws.pending()
    unfinished = ws.incomplete_round()
    return {
        "workspace": str(ws.root),
        "strategy": ws.params.acquisition.strategy,
        "labels": len(labeled),
        "labels_by_source": {str(k): int(v) for k, v in labeled["source"].value_counts().items()},
        "rounds": [
            {
                k: s.get(k)
                for k in ("round", "tag", "strategy", "n_labels", "n_queued", "metrics", "champion", "stopping")
            }
            for s in ws.round_summaries()
        ],
        "queue": {round_name(r): {"waiting": len(ids)} for r, ids in pending.items()},
        "next_round": ws.next_round() if unfinished is None else unfinished,
        "unfinished_round": unfinished,
        "last_writer": ws.lock_holder() or None,
        **operations_status(ws),
        "stopping": stopping_status(ws),
    }


@command()
def status(
    directory: WorkspaceArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Rounds, label counts, accuracy per round and what is waiting in the queue."""
    try:
        data = status_data(directory)
    except ALError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    console.print(
        f"[bold]{data['workspace']}[/]: {data['labels']} labels {data['labels_by_source']}, "
        f"strategy {data['strategy']}, next round {data['next_round']}"
    )
    console.print(rounds_table(data["rounds"], title="rounds"))
    if data["unfinished_round"] is not None:
        console.print(
            f"round-{data['unfinished_round']:03d} did not finish (killed or failed): "
            f"the next `alp round {directory}` resumes it"
        )
    if data["queue"]:
        for name, q in data["queue"].items():
            console.print(f"queue {name}: {q['waiting']} sample(s) waiting for labels")
    else:
        console.print("queue: nothing waiting for labels")
    print_operations(console, data)
    print_stopping(console, data)


app.add_typer(stack_app, name="stack")


from flows.serve import print_operations, serve_command  # noqa: E402  (light: Prefect is imported inside)
from flows.webhook import webhook_command  # noqa: E402

command("serve")(serve_command)
command("webhook")(webhook_command)

from flows.stopping import continue_command, print_stopping  # noqa: E402

command("continue")(continue_command)


from flows.benchmark import benchmark_command  # noqa: E402  (light: heavy imports happen inside)

command("benchmark")(benchmark_command)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
