"""The stopping rule on the command line: ``alp status``'s criteria table and stop line, ``alp continue``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from al_core.stopping import CRITERIA
from al_core.workspace import Workspace

#: table headings of the criteria
HEADINGS = {
    "stabilizing_predictions": "κ̄",
    "overall_uncertainty": "uncertainty",
    "classification_change": "change",
    "plateau": "plateau (rounds)",
    "budget": "spent",
}


def stopping_status(ws: Workspace) -> dict[str, Any]:
    """For ``alp status --json``: the enabled criteria, the rule, and where it fired (or None)."""
    from tasks.stopping import stop_state, stopped_message

    sp = ws.params.acquisition.stop
    state = stop_state(ws)
    stopped = state["stopped"]
    return {
        "criteria": list(sp.criteria),
        "rule": sp.rule,
        "stopped": {**stopped, "message": stopped_message(ws, stopped)} if stopped else None,
        "continued_after": state["continued_after"],
    }


def stopping_table(rounds: list[dict[str, Any]], enabled: list[str]) -> Table | None:
    """Every criterion's value per trained round (enabled ones starred); None before any."""
    rows = [r for r in rounds if r.get("stopping")]
    if not rows:
        return None
    table = Table(title="stopping criteria (* decides)")
    table.add_column("round")
    for name in CRITERIA:
        table.add_column(HEADINGS[name] + ("*" if name in enabled else ""), justify="right")
    table.add_column("fired")
    for r in rows:
        crit = r["stopping"]["criteria"]
        cells = [_cell(name, crit[name]) for name in CRITERIA]
        table.add_row(r["tag"], *cells, "■ stop" if r["stopping"]["stop"] else "")
    return table


def _cell(name: str, c: dict[str, Any]) -> str:
    v = c["value"]
    if v is None:
        return "—"
    text = f"{v:.0f}" if name in ("plateau", "budget") else f"{v:.3f}"
    return f"{text} ✓" if c["fired"] else text


def print_stopping(console: Any, data: dict[str, Any]) -> None:
    """``alp status``: the criteria table and the rule's state."""
    stop = data["stopping"]
    table = stopping_table(data["rounds"], stop["criteria"])
    if table is not None:
        console.print(table)
    if stop["stopped"]:
        console.print(f"[bold]{stop['stopped']['message']}[/] — `alp continue {data['workspace']}` labels on")
    elif stop["criteria"]:
        joined = f" {stop['rule']} ".join(stop["criteria"])
        console.print(f"stopping rule: {joined} — not fired")
    else:
        console.print("stopping rule: none enabled (acquisition.stop.criteria); the values above are logged only")


def continue_command(directory: Annotated[Path, typer.Argument(help="The workspace directory.")]) -> None:
    """Go on labeling after the stopping rule fired: clear it, resume the served round's schedule and trigger."""
    from flows.cli import console
    from flows.options import quiet_services

    quiet_services()
    from tasks.stopping import continue_campaign, stopped_message

    ws = Workspace(directory).require()
    out = continue_campaign(ws)
    if out["stopped"] is None:
        console.print(f"{ws.root}: the stopping rule has not fired; nothing to continue")
        return
    resumed = f"; resumed {', '.join(out['resumed'])}" if out["resumed"] else ""
    console.print(
        f"{ws.root}: was {stopped_message(ws, out['stopped'])}; the rule is checked again from the next round{resumed}"
    )
