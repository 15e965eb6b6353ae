"""MLflow: one experiment per campaign, a parent run per campaign, a nested run per round.

Default store: SQLite ``mlflow.db`` inside the workspace with artifacts in ``mlartifacts/``;
``tracking.uri`` in params.yaml or ``$MLFLOW_TRACKING_URI`` point elsewhere (an MLflow server).
The best model so far carries the registered-model alias ``champion``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from al_core.config import Params
from al_core.workspace import Workspace
from tasks.versioning import quiet_loggers

log = logging.getLogger(__name__)
CHAMPION = "champion"


#: URIs alp itself handed to ``mlflow.set_tracking_uri``, which also exports them as
#: $MLFLOW_TRACKING_URI: that variable then no longer says what the user asked for.
_SET_BY_ALP: set[str] = set()
_USER_URI: dict[str, str] = {}


def _users_tracking_uri() -> str | None:
    """$MLFLOW_TRACKING_URI as the user set it (not as alp's own set_tracking_uri calls left it)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env is None:
        return None
    if env not in _SET_BY_ALP:
        _USER_URI["uri"] = env
        return env
    return _USER_URI.get("uri")


def tracking_uri(ws: Workspace) -> str:
    """params' ``tracking.uri``, else the user's $MLFLOW_TRACKING_URI, else SQLite in the workspace."""
    return ws.params.tracking.uri or _users_tracking_uri() or f"sqlite:///{ws.root / 'mlflow.db'}"


def experiment_name(ws: Workspace) -> str:
    return ws.params.tracking.experiment or ws.name


def model_name(ws: Workspace) -> str:
    return ws.params.tracking.model_name or f"{experiment_name(ws)}-model"


def _mlflow(ws: Workspace):
    import mlflow

    uri = tracking_uri(ws)
    if uri != _users_tracking_uri():
        _SET_BY_ALP.add(uri)  # not the user's choice: the next workspace must not inherit it
    mlflow.set_tracking_uri(uri)
    return mlflow


def experiment_id(ws: Workspace) -> str:
    mlflow = _mlflow(ws)
    name = experiment_name(ws)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    uri = tracking_uri(ws)
    if uri.startswith("sqlite:///"):  # a file store: keep artifacts beside the database, not in the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def campaign_run(ws: Workspace, params: Params, label: str | None = None) -> str:
    """The parent run of the workspace's campaign (created once, then reused).

    A benchmark nests it under its own run: ``parent_run_id`` (and ``campaign_run_name``) in the
    workspace state (``.alp/state.json``); without them a campaign run is top-level, as in production."""
    mlflow = _mlflow(ws)
    exp_id = experiment_id(ws)
    state = ws.state()
    run_id = state.get("campaign_run_id")
    if run_id and state.get("tracking_uri") == tracking_uri(ws):
        try:
            mlflow.get_run(run_id)
            return run_id
        except Exception as exc:
            log.warning("campaign run %s not found (%s); starting a new one", run_id, exc)
    client = mlflow.MlflowClient()
    tags = {"alp.kind": "campaign"}
    if state.get("parent_run_id"):
        tags["mlflow.parentRunId"] = state["parent_run_id"]
    name = label or state.get("campaign_run_name") or f"campaign-{ws.name}"
    run = client.create_run(exp_id, run_name=name, tags=tags)
    safe = flatten(params.model_dump(mode="json", exclude={"tracking", "versioning"}))
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in safe.items()])
    ws.update_state(campaign_run_id=run.info.run_id, tracking_uri=tracking_uri(ws), experiment_id=exp_id)
    return run.info.run_id


def learning_curve_figure(history: list[dict[str, Any]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    pts = [(h["n_labels"], h["metrics"]["test_accuracy"]) for h in history if h.get("metrics")]
    if pts:
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title("learning curve")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(confusion: list[list[int]], classes: list[str]) -> plt.Figure:
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 12 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 12:
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7)
    ax.set_title("confusion matrix (test)")
    fig.tight_layout()
    return fig


def log_round(
    ws: Workspace,
    parent_run_id: str,
    r: int,
    params: Params,
    run_params: dict[str, Any],
    metrics: dict[str, float],
    history: list[dict[str, Any]],
    confusion: list[list[int]] | None,
    model: Any | None,
    input_example: np.ndarray | None,
    tags: dict[str, str],
    artifacts: dict[str, str] | None = None,
    batch_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Log round ``r`` as a nested run; register its model and move ``champion`` if it is the best."""
    mlflow = _mlflow(ws)
    exp_id = experiment_id(ws)
    out: dict[str, Any] = {}
    with (
        quiet_loggers("mlflow", "torch._export", "torch.export", level=logging.ERROR),
        mlflow.start_run(run_id=parent_run_id, experiment_id=exp_id),
    ):
        with mlflow.start_run(run_name=f"round-{r:03d}", nested=True, experiment_id=exp_id, tags=tags) as run:
            out["run_id"] = run.info.run_id
            mlflow.log_params({k: str(v) for k, v in run_params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=r)
            mlflow.log_figure(learning_curve_figure(history), "figures/learning_curve.png")
            plt.close("all")
            if confusion is not None:
                mlflow.log_figure(confusion_figure(confusion, ws.classes), "figures/confusion_matrix.png")
                plt.close("all")
            if batch_report:
                mlflow.log_dict(batch_report, "batch_report.json")
                if "max_class_share" in batch_report:
                    mlflow.log_metric("batch_max_class_share", batch_report["max_class_share"], step=r)
            for name, path in (artifacts or {}).items():
                mlflow.log_artifact(path, artifact_path=name)
            if model is not None and params.tracking.log_model:
                import mlflow.pytorch
                from mlflow.utils.logging_utils import disable_logging, enable_logging

                disable_logging()  # registration prints "Created version ..." straight to stderr
                try:
                    info = mlflow.pytorch.log_model(
                        model.module_.cpu(),
                        name="model",
                        input_example=input_example,
                        pip_requirements=["torch==2.13.0", "numpy"],
                        registered_model_name=model_name(ws),
                    )
                finally:
                    enable_logging()
                    model.module_.to(model.device_)
                out["model_uri"] = info.model_uri
                out["model_version"] = str(info.registered_model_version)
        # the parent carries the latest figures too, so the campaign run tells the story
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k.startswith("test_")}, step=r)
    if out.get("model_version"):
        out["champion"] = promote_champion(ws, out["model_version"], metrics.get("test_accuracy", 0.0))
    return out


def discard_partial_round(ws: Workspace, parent_run_id: str, r: int) -> int:
    """Delete what an interrupted logging of round ``r`` left (its nested runs and their model versions),
    so the resumed round is tracked once. Returns how many runs were discarded."""
    mlflow = _mlflow(ws)
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [experiment_id(ws)],
        filter_string=f"tags.`alp.round` = '{r}' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
    )
    for run in runs:
        try:
            versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        except mlflow.exceptions.MlflowException:
            versions = []
        for v in versions:
            client.delete_model_version(v.name, v.version)
        client.delete_run(run.info.run_id)
        log.warning("round %d resumed: discarded its interrupted MLflow run %s", r, run.info.run_id)
    return len(runs)


def promote_champion(ws: Workspace, version: str, accuracy: float) -> bool:
    """Point ``champion`` at ``version`` if its test accuracy beats the current champion's."""
    mlflow = _mlflow(ws)
    client = mlflow.MlflowClient()
    name = model_name(ws)
    client.set_model_version_tag(name, version, "test_accuracy", f"{accuracy:.6f}")
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        best = float(current.tags.get("test_accuracy", "-1"))
    except mlflow.exceptions.MlflowException:
        best = -1.0
    if accuracy > best:
        client.set_registered_model_alias(name, CHAMPION, version)
        return True
    return False


def artifact_root(ws: Workspace) -> Path:
    return ws.root / "mlartifacts"
