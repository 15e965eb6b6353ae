"""``alp serve DIR``: a campaign's deployments on the Prefect server, served by this process.

Two deployments, named after the workspace (``alp-round/<name>``, ``alp-inbox/<name>``):

- **alp-round**: on the cron schedule ``schedule.round_cron`` (if set), and on the event
  ``alp.batch.ready`` of this campaign (a deployment trigger: an automation in the Prefect UI) with
  ``after_batch`` = the ready batch's round, so a second event for one batch is a no-op. Deployment
  concurrency limit 1 (plus the round lock): never two rounds of one campaign at once.
- **alp-inbox**: every ``schedule.inbox_interval_s`` seconds, ingests new files from the queue's
  inbox and announces a ready batch.

On start, a batch that was completed while ``alp serve`` was down (its ``alp.batch.ready`` had no
trigger to fire, or went to a server that was not there) starts its round once: a flow run of the
round deployment with ``after_batch`` = that batch, unless one for it is already waiting or running
(:func:`start_missed_round`).

Both can be paused, edited and run with other parameters from the Prefect UI. Process-based serving
(``prefect.serve``): no work pool; runs execute as subprocesses of this command until it stops
(Ctrl-C; schedules are paused on shutdown). For work-pool deployments see ``infra/prefect/``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from al_core.workspace import Workspace
from tasks.events import BATCH_READY, campaign_resource, slug

ROUND_TEMPLATE = "{{ event.payload.round }}"


def deployment_name(ws: Workspace) -> str:
    return slug(ws.name)


def ready_trigger(ws: Workspace, enabled: bool = True) -> Any:
    """Run the round deployment when this campaign's newest batch is announced ready."""
    from prefect.events import DeploymentEventTrigger

    resource = campaign_resource(ws)
    return DeploymentEventTrigger(
        name=f"alp-{slug(ws.name)}-next-round-on-labels",
        description=f"next round of {ws.root} once its newest batch is labeled (schedule.trigger_*)",
        expect={BATCH_READY},
        enabled=enabled,
        match={"prefect.resource.id": resource["prefect.resource.id"], "alp.workspace": resource["alp.workspace"]},
        parameters={
            "workspace": str(ws.root),
            # rendered from the event, then parsed as JSON: an int, as the flow's parameter schema wants
            "after_batch": {"__prefect_kind": "json", "value": {"__prefect_kind": "jinja", "template": ROUND_TEMPLATE}},
        },
    )


def build_deployments(ws: Workspace) -> list[Any]:
    """The round and inbox deployments of ``ws`` (not yet registered)."""
    from prefect.deployments.runner import EntrypointType

    from flows.inbox import inbox_flow
    from flows.round import round_flow
    from tasks.stopping import stop_state

    sched = ws.params.schedule
    name = deployment_name(ws)
    # the stopping rule fired (acquisition.stop): registered paused until `alp continue`
    stopped = stop_state(ws)["stopped"] is not None
    common: dict[str, Any] = {
        "name": name,
        "parameters": {"workspace": str(ws.root)},
        "concurrency_limit": 1,
        "tags": ["alp", name],
        "entrypoint_type": EntrypointType.MODULE_PATH,
    }
    round_dep = round_flow.to_deployment(
        cron=sched.round_cron,
        triggers=[ready_trigger(ws, enabled=not stopped)],
        paused=True if stopped else None,
        description=f"An active-learning round of {ws.root}: train, evaluate, score, select, export the next batch.",
        **common,
    )
    inbox_dep = inbox_flow.to_deployment(
        interval=timedelta(seconds=sched.inbox_interval_s),
        description=f"Ingest new label files from the inbox of {ws.root}; announce a ready batch.",
        **common,
    )
    return [round_dep, inbox_dep]


def missed_batch(ws: Workspace) -> int | None:
    """The newest batch's round when it is ready (``schedule.trigger_*``) but its next round has not
    been exported, and the campaign is not stopped: a round that should have started; else None."""
    from tasks.events import batch_fill, is_ready
    from tasks.stopping import stop_state

    fill = batch_fill(ws)
    if fill is None or not is_ready(fill, ws.params.schedule) or ws.next_round() != fill["round"] + 1:
        return None
    return None if stop_state(ws)["stopped"] is not None else int(fill["round"])


WAITING_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")


def start_missed_round(ws: Workspace, round_deployment: Any) -> dict[str, Any] | None:
    """Register the round deployment and start the round of a batch completed while nothing served it.

    Once: nothing when no batch is waiting for its round (:func:`missed_batch`), or a run of the
    deployment with ``after_batch`` = that batch is already scheduled, pending or running (e.g. made
    by the trigger while this process was down: ``serve`` runs it). Returns the run started, or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    r = missed_batch(ws)
    if r is None:
        return None
    dep_id = round_deployment.apply()
    with get_client(sync_client=True) as client:
        waiting = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType[s] for s in WAITING_STATES]))
            ),
        )
        mine = {"workspace": str(ws.root), "after_batch": r}
        if any(all(run.parameters.get(k) == v for k, v in mine.items()) for run in waiting):
            return None
        run = client.create_flow_run_from_deployment(
            dep_id,
            parameters=mine,
            tags=["alp", "missed-batch"],
        )
    print(  # the CLI's own line: Prefect's console logging is quiet
        f"alp serve: batch round-{r:03d} was labeled while nothing served {ws.name}: "
        f"its round starts now (flow run {run.name})",
        flush=True,
    )
    return {"round": r, "flow_run_id": str(run.id), "flow_run_name": run.name}


def serve_workspace(directory: str, limit: int | None = None) -> None:
    """Register the deployments, start a round missed while down, run their flow runs until interrupted."""
    from prefect import serve

    ws = Workspace(directory).require()
    deployments = build_deployments(ws)
    start_missed_round(ws, deployments[0])
    serve(*deployments, limit=limit, print_starting_message=True)


def next_scheduled_round(ws: Workspace) -> dict[str, Any] | None:
    """The round deployment's next scheduled run from the Prefect API (PREFECT_API_URL), or None.

    None when no API is configured, the deployment does not exist, or it has no active schedule.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    import httpx
    from prefect.exceptions import ObjectNotFound

    name = f"alp-round/{deployment_name(ws)}"
    try:
        return _next_scheduled(name)
    except ObjectNotFound:
        return None
    except (httpx.HTTPError, OSError) as exc:  # server down or unreachable: say so, status goes on
        return {"deployment": name, "paused": False, "next": None, "error": f"Prefect API unreachable: {exc}"}


def _next_scheduled(name: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(name)
        active = [s for s in dep.schedules if s.active]
        if dep.paused or not active:
            return {"deployment": f"alp-round/{dep.name}", "paused": bool(dep.paused), "next": None}
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )
    nxt = runs[0].expected_start_time if runs else None
    return {"deployment": f"alp-round/{dep.name}", "paused": False, "next": nxt.isoformat() if nxt else None}


def serve_command(
    directory: Annotated[Path, typer.Argument(help="The workspace directory.")],
    limit: Annotated[int | None, typer.Option(help="Flow runs executed at once by this process.")] = None,
) -> None:
    """Serve the campaign's deployments on the Prefect server (PREFECT_API_URL): scheduled rounds,
    inbox polling, and the next round when a batch's labels are in. Runs until Ctrl-C."""
    from flows.cli import _fail
    from flows.options import quiet_services

    quiet_services()
    from prefect.settings import PREFECT_API_URL

    from al_core.errors import ALError

    if not PREFECT_API_URL.value():
        _fail(ALError('alp serve needs a Prefect server: set PREFECT_API_URL (e.g. eval "$(alp stack env)")'))
    try:
        serve_workspace(str(directory.resolve()), limit=limit)
    except ALError as exc:
        _fail(exc)


def operations_status(ws: Workspace) -> dict[str, Any]:
    """For `alp status`: the next scheduled round, the newest batch's fill level, the last trigger."""
    from tasks.events import batch_fill, runtime_state

    fill = batch_fill(ws)
    return {
        "schedule": next_scheduled_round(ws),
        "fill": {k: fill[k] for k in ("round", "labeled", "batch_size")} if fill else None,
        "last_trigger": runtime_state(ws).get("last_batch_ready"),
    }


def print_operations(console: Any, data: dict[str, Any]) -> None:
    sched = data.get("schedule")
    if sched is not None and sched.get("error"):
        console.print(f"schedule: unknown ({sched['error']})")
    elif sched is None:
        console.print("schedule: no schedule (no Prefect server in PREFECT_API_URL, or no `alp serve` deployment)")
    elif sched["paused"]:
        console.print(f"schedule: {sched['deployment']} is paused")
    else:
        console.print(f"schedule: next round {sched['next'] or 'not scheduled (no cron)'} ({sched['deployment']})")
    fill = data.get("fill")
    if fill:
        console.print(f"fill: round-{fill['round']:03d} batch {fill['labeled']}/{fill['batch_size']} labeled")
    last = data.get("last_trigger")
    console.print(
        f"last trigger: batch round-{last['round']:03d} ready at {last['at']} ({last['labeled']}/{last['batch_size']})"
        if last
        else "last trigger: none yet"
    )
