"""``alp init``: a workspace with its own git repo, DVC, params.yaml, dvc.yaml and the prepared data."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from al_core import pipeline
from al_core.config import parse_params
from al_core.errors import WorkspaceError
from al_core.workspace import Workspace, atomic_write_text
from flows.byo import absolute_paths, check_model, dataset_section, render_stages
from tasks import queues, s3, versioning  # noqa: F401  (s3: the reader of s3:// sample uris)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: the repository's params.yaml and dvc.yaml: symlinks in a checkout, copies in an installed wheel
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE_PARAMS = TEMPLATES / "params.yaml"
TEMPLATE_DVC = TEMPLATES / "dvc.yaml"


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 120
    return y


def render_params(overrides: dict[str, Any]) -> str:
    """The template params.yaml with dotted-key overrides applied (comments kept), validated."""
    y = _yaml()
    doc = y.load(TEMPLATE_PARAMS.read_text())
    name = overrides.get("dataset.name", doc["dataset"]["name"])
    if name != doc["dataset"]["name"]:  # the chosen source's own keys, with their defaults
        doc["dataset"] = dataset_section(str(name), doc["dataset"])
    for key, value in overrides.items():
        node = doc
        *parents, last = key.split(".")
        for p in parents:
            if p not in node or not hasattr(node[p], "keys"):
                raise WorkspaceError(f"--set {key}: '{p}' is not a section of params.yaml")
            node = node[p]
        node[last] = value
    buf = io.StringIO()
    y.dump(doc, buf)
    text = buf.getvalue()
    queues.check(parse_params(YAML(typ="safe").load(text), "params.yaml (from alp init)").queue)
    return text


def init_workspace(directory: str | Path, overrides: dict[str, Any] | None = None) -> Workspace:
    """Create and prepare a workspace in ``directory`` (which must be new or empty)."""
    ws = Workspace(directory)
    if ws.params_path.exists() or (ws.root / ".dvc").exists():
        raise WorkspaceError(f"{ws.root} is already a workspace; use it, or pick a new directory")
    if ws.root.exists() and any(ws.root.iterdir()):
        raise WorkspaceError(f"{ws.root} exists and is not empty: give alp init a new or empty directory")
    if ws.root == PROJECT_ROOT:
        raise WorkspaceError("refusing to turn alp's own repository into a workspace: pick another directory")
    text = render_params(absolute_paths(overrides or {}))
    ws.root.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_text(ws.params_path, text)
        params = ws.params
        atomic_write_text(ws.root / "dvc.yaml", render_stages(TEMPLATE_DVC.read_text(), params))
        versioning.init_repo(ws)
        meta = pipeline.prepare(ws)
        check_model(params, tuple(meta["input_shape"]), len(meta["classes"]))
        ws.labeled_dir.mkdir(parents=True, exist_ok=True)
        (ws.labeled_dir / ".gitkeep").touch()
        versioning.commit_stage_outputs(ws, ["prepare"])
        versioning.add_labeled_set(ws)
        versioning.commit_all(ws, f"alp init: {params.dataset.name} workspace")
        versioning.push(ws)
    except BaseException:
        # leave nothing half-made behind: a failed init can simply be run again
        import shutil

        shutil.rmtree(ws.root, ignore_errors=True)
        raise
    return ws
