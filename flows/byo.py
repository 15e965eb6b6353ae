"""Bring your own data and model, at ``alp init``: the dataset section of the chosen source, the
DVC stages' extra inputs (your data files, your model file, a backbone), ``--data`` paths, and the
check that a custom model meets alp's contract before any round runs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from al_core.config import Params
from al_core.errors import ConfigError
from al_core.sources import SOURCES, get_source


def dataset_section(name: str, old: Any) -> CommentedMap:
    """The ``dataset`` section for source ``name``: each of its keys with its default and description
    (``seed`` and ``val_size`` kept from ``old``)."""
    params = get_source(name).params
    section = CommentedMap()
    for key, field in params.model_fields.items():
        value = name if key == "name" else old.get(key, field.default) if key in ("seed", "val_size") else field.default
        section[key] = value
        comment = " | ".join(SOURCES.names()) if key == "name" else ""
        if field.description or comment:
            section.yaml_add_eol_comment(comment or field.description, key, column=29)
    return section


def data_overrides(name: str, data: list[str]) -> dict[str, str]:
    """``alp init --data PATH ...`` → the source's path keys, in order (local paths made absolute)."""
    source = get_source(name)
    if len(data) > len(source.path_keys):
        keys = ", ".join(f"dataset.{k}" for k in source.path_keys) or "none"
        raise ConfigError(f"--dataset {name} takes {len(source.path_keys)} --data path(s) ({keys}), got {len(data)}")
    return {f"dataset.{k}": _absolute(v) for k, v in zip(source.path_keys, data, strict=False)}


def _absolute(path: str) -> str:
    return path if path.startswith("s3://") else str(Path(path).expanduser().resolve())


def model_file(spec: str | None) -> str | None:
    """The local file of a ``file.py:fn`` spec (a DVC dependency), else None."""
    if not spec or ":" not in spec:
        return None
    path = spec.rsplit(":", 1)[0]
    return _absolute(path) if path.endswith(".py") else None


def render_stages(template: str, params: Params) -> str:
    """The workspace's dvc.yaml: the template plus the inputs this workspace's stages read."""
    y = YAML()
    y.width = 120
    doc = y.load(template)
    stages = doc["stages"]
    prepare_deps = get_source(params.dataset.name).dvc_deps(params.dataset)
    if params.model.backbone:
        prepare_deps.append(_absolute(params.model.backbone))
        stages["prepare"]["params"].extend(["model.backbone", "model.backbone_factory"])
    prepare_deps += [f for f in [model_file(params.model.backbone_factory)] if f]
    if prepare_deps:
        stages["prepare"]["deps"] = prepare_deps
    factory = model_file(params.model.factory)
    if factory:
        stages["train"]["deps"].append(factory)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def check_model(params: Params, input_shape: tuple[int, ...], n_classes: int) -> None:
    """Build the workspace's model once and check alp's contract (a :class:`ConfigError` naming what
    is missing), so a bad factory or a strategy the model cannot serve fails at ``alp init``."""
    from al_core.acquisition import MC_LOG_PROBS, get_strategy
    from al_core.architectures import NetSpec
    from al_core.architectures.custom import check_network
    from al_core.models import build_network

    m = params.model
    arch = params.resolved_arch(input_shape)
    net = build_network(arch, input_shape, n_classes, m.hidden, m.dropout, factory=m.factory)
    strategy = get_strategy(params.acquisition.strategy, params.acquisition)
    mc = params.acquisition.strategy if MC_LOG_PROBS in strategy.needs else None
    check_network(net, NetSpec(input_shape, n_classes, m.hidden, m.dropout, m.factory), mc_strategy=mc)


#: params keys that may name a local file: made absolute at ``alp init`` (the workspace runs elsewhere)
MODEL_PATH_KEYS = ("model.factory", "model.backbone", "model.backbone_factory")


def absolute_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with relative ``file.py:fn`` and backbone paths made absolute (cwd of ``alp init``)."""
    out = dict(overrides)
    for key in MODEL_PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value:
            file = model_file(value)
            if file:
                out[key] = f"{file}:{value.rsplit(':', 1)[1]}"
            elif key == "model.backbone":
                out[key] = _absolute(value)
    return out
