"""The stopping criteria of a round (al_core/stopping.py) and what follows when the rule fires.

Each trained round predicts the fixed stop set, keeps the predictions in ``.alp/stop/round-NNN.npy``
(the next round's κ and classification change compare with them) and its observation in
``.alp/stop/round-NNN.json``, and decides with every observation so far. A fired rule is recorded in
``.alp/stop/state.json`` (versioned with the round): later rounds and campaigns refuse to run until
``alp continue``. Under ``alp serve`` the round deployment's schedule and trigger are paused, and a
Prefect artifact and the flow run's message say why (Bloodgood & Vijay-Shanker 2009; Zhu et al. 2008).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from al_core.errors import CampaignStoppedError
from al_core.models import NeuralClassifier
from al_core.pipeline import RoundData
from al_core.stopping import StopObservation, decide, observe, stop_set_indices
from al_core.training import TrainResult
from al_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, round_name

log = logging.getLogger(__name__)


def stop_dir(ws: Workspace) -> Path:
    return ws.alp_dir / "stop"


def state_path(ws: Workspace) -> Path:
    return stop_dir(ws) / "state.json"


def stop_state(ws: Workspace) -> dict[str, Any]:
    """``{"stopped": {"round", "reason"} | None, "continued_after": round | None}``."""
    path = state_path(ws)
    state = json.loads(path.read_text()) if path.exists() else {}
    return {"stopped": state.get("stopped"), "continued_after": state.get("continued_after")}


def stopped_message(ws: Workspace, stopped: dict[str, Any]) -> str:
    return f"stopped at round {stopped['round']}: {stopped['reason']}"


def require_not_stopped(ws: Workspace, r: int) -> None:
    """Refuse round ``r`` once the rule fired in an earlier round (re-running that round is allowed)."""
    stopped = stop_state(ws)["stopped"]
    if stopped is not None and stopped["round"] < r:
        raise CampaignStoppedError(
            f"{ws.root}: {stopped_message(ws, stopped)} (acquisition.stop). Labeling more is not expected to pay; "
            f"to go on anyway run `alp continue {ws.root}` (or change acquisition.stop in params.yaml first)"
        )


def _observation_path(ws: Workspace, r: int) -> Path:
    return stop_dir(ws) / f"{round_name(r)}.json"


def observations(ws: Workspace, before: int | None = None) -> list[StopObservation]:
    """The stored observations of the trained rounds (before round ``before``), in round order."""
    found = [StopObservation(**json.loads(p.read_text())) for p in stop_dir(ws).glob("round-*.json")]
    return sorted((o for o in found if before is None or o.round < before), key=lambda o: o.round)


def _previous_predictions(ws: Workspace, r: int) -> np.ndarray | None:
    for prev in range(r - 1, -1, -1):
        path = stop_dir(ws) / f"{round_name(prev)}.npy"
        if path.exists():
            return np.load(path)
    return None


def validation_accuracy(ws: Workspace, model: NeuralClassifier) -> float | None:
    """Accuracy on the fixed validation split (``dataset.val_size``), else the fit's best-epoch
    accuracy on its split of the labeled set, else None."""
    val = ws.val_set()
    if val is not None and len(val[1]):
        X, y = val
        return float((model.predict(X).numpy() == np.asarray(y)).mean())
    hist = getattr(model, "history_", None)
    if hist is not None and hist.val_accuracy:
        return float(hist.val_accuracy[hist.best_epoch])
    return None


@task(name="stopping-criteria")
def stopping_criteria(root: str, data: RoundData, trained: TrainResult) -> dict[str, Any]:
    """Every criterion's value at this round and the rule's decision (``StopDecision.to_dict()``
    plus ``metrics`` for MLflow); records a fired rule in the stop state."""
    ws = Workspace(root)
    params = ws.params
    sp = params.acquisition.stop
    r = data.round
    idx = stop_set_indices(len(data.pool_ids), sp.stop_set_size, params.seed)
    probs = trained.model.predict_proba(data.X_pool[idx])
    n_spent = len(ws.queued()) + min(params.acquisition.batch_size, len(data.candidate_idx))
    prev = _previous_predictions(ws, r)
    obs, pred = observe(r, len(data.labeled_idx), n_spent, probs, prev, validation_accuracy(ws, trained.model))
    stop_dir(ws).mkdir(parents=True, exist_ok=True)
    buf = _npy_bytes(pred.astype(np.int16 if probs.shape[1] < 2**15 else np.int64))
    atomic_write_bytes(stop_dir(ws) / f"{round_name(r)}.npy", buf)
    atomic_write_json(_observation_path(ws, r), asdict(obs))
    decision = decide(sp, [*observations(ws, r), obs], params.acquisition.label_budget)
    state = stop_state(ws)
    out = {**decision.to_dict(), "metrics": decision.metrics()}
    if decision.stop and (state["continued_after"] is None or r > state["continued_after"]):
        atomic_write_json(state_path(ws), {**state, "stopped": {"round": r, "reason": decision.reason}})
        log.info("%s: stopping rule fired at round %d: %s", ws.name, r, decision.reason)
    else:
        out["stop"], out["reason"] = False, ""
    return out


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def stopped_in(summary: dict[str, Any]) -> bool:
    """Whether the rule fired in the round of ``summary``."""
    return bool((summary.get("stopping") or {}).get("stop"))


def conclude(root: str, summary: dict[str, Any]) -> Any:
    """The round flow's return: ``summary``, or once the rule fired a Completed state whose message
    says why (after publishing the artifact and pausing a served round deployment)."""
    if not stopped_in(summary):
        return summary
    from prefect.states import Completed

    ws = Workspace(root)
    message = stopped_message(ws, {"round": summary["round"], "reason": summary["stopping"]["reason"]})
    paused = pause_served_round(ws, message)
    publish_stop_artifact(ws, summary, message, paused)
    print(f"{message}; " + (f"paused {', '.join(paused)}" if paused else "alp continue goes on"))
    return Completed(message=message, data=summary)


def stop_artifact_key(ws: Workspace) -> str:
    from tasks.events import slug

    return f"alp-{slug(ws.name)}-stopped"


def publish_stop_artifact(ws: Workspace, summary: dict[str, Any], message: str, paused: list[str]) -> None:
    from prefect.artifacts import create_markdown_artifact

    crit = summary["stopping"]["criteria"]
    enabled = summary["stopping"]["enabled"]
    rows = [
        f"| {name}{' (enabled)' if name in enabled else ''} | {_cell(c['value'])} | {_cell(c['threshold'])} | "
        f"{'yes' if c['fired'] else 'no'} |"
        for name, c in crit.items()
    ]
    md = "\n".join(
        [
            f"# Campaign `{ws.name}` {message}",
            "",
            f"{summary['n_labels']} labels; test accuracy {summary['metrics'].get('test_accuracy', float('nan')):.4f}.",
            f"Paused: {', '.join(paused)}." if paused else "",
            f"To label on: `alp continue {ws.root}`.",
            "",
            "| criterion | value | threshold | fired |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    create_markdown_artifact(markdown=md + "\n", key=stop_artifact_key(ws), description=f"alp {ws.name}: {message}")


def _cell(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _round_deployment_and_trigger(ws: Workspace) -> tuple[str, str]:
    from flows.serve import deployment_name
    from tasks.events import slug

    return f"alp-round/{deployment_name(ws)}", f"alp-{slug(ws.name)}-next-round-on-labels"


def pause_served_round(ws: Workspace, message: str) -> list[str]:
    """Inside a run of the served round deployment: pause that deployment (its schedule) and the
    automation of its label trigger. Outside a deployment (alp round, alp campaign): nothing."""
    from prefect.runtime import deployment

    if not deployment.id:
        return []
    return set_round_paused(ws, True)


def set_round_paused(ws: Workspace, paused: bool) -> list[str]:
    """Pause or resume the round deployment of ``ws`` and its trigger's automation on the Prefect
    server; returns what was changed (empty when no server or no deployment)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return []
    dep_name, trigger = _round_deployment_and_trigger(ws)
    changed = []
    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(dep_name)
        except ObjectNotFound:
            return []
        (client.pause_deployment if paused else client.resume_deployment)(dep.id)
        changed.append(f"deployment {dep_name}")
        for auto in client.read_automations_by_name(trigger):
            (client.pause_automation if paused else client.resume_automation)(auto.id)
            changed.append(f"trigger {trigger}")
    return changed


def continue_campaign(ws: Workspace) -> dict[str, Any]:
    """``alp continue``: clear a fired rule (the criteria are checked again from the next round on)
    and resume the served round deployment and its trigger; returns what changed."""
    from tasks import versioning

    state = stop_state(ws)
    stopped = state["stopped"]
    if stopped is None:
        return {"stopped": None, "resumed": []}
    with versioning.dvc_lock(ws):
        atomic_write_json(state_path(ws), {"stopped": None, "continued_after": stopped["round"]})
        versioning.commit_all(ws, f"continue after the stopping rule fired at {round_name(stopped['round'])}")
    return {"stopped": stopped, "resumed": set_round_paused(ws, False)}
