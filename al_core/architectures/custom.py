"""``custom``: your own ``nn.Module``, built by ``model.factory`` ("package.module:build" or
"path/to/file.py:build").

The contract (checked at ``alp init`` by :func:`check_network`):

* ``build(input_shape, n_classes) -> nn.Module``; ``input_shape`` is one sample's shape without the
  batch dimension (e.g. ``(1, 28, 28)``, ``(6, 100)``), and the module takes ``[N, *input_shape]``.
* ``module.embed(x) -> [N, d]`` (the penultimate features: BADGE, core-set) and ``module.head``, an
  ``nn.Linear(d, n_classes)`` with ``module(x) == module.head(module.embed(x))`` (logits).
* Dropout as ``nn.Dropout`` / ``nn.Dropout1d`` / ``nn.Dropout2d`` modules (not ``F.dropout``) for the
  MC-dropout strategies (bald, batchbald, variation_ratio, mean_std): alp swaps them for its own
  seeded dropout, so the passes use consistent masks (one per pass for every sample).
* Optional ``module.trunk`` and ``module.tail`` (modules) with ``embed(x) == tail(trunk(x))`` and no
  dropout in ``trunk``: MC dropout then runs the trunk once per sample and only tail + head K times.

The module is built with the global torch RNG seeded from the round's seed inside a forked RNG
state, so its initial weights are reproducible and nothing outside changes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from al_core.architectures import ARCHITECTURES, Architecture, NetSpec
from al_core.errors import ConfigError
from al_core.models import ALNet, GeneratorDropout, Reshape

DROPOUTS: dict[type[nn.Module], bool] = {nn.Dropout: False, nn.Dropout1d: True, nn.Dropout2d: True, nn.Dropout3d: True}


def load_callable(spec: str, key: str) -> Callable[..., Any]:
    """``"package.module:fn"`` or ``"path/to/file.py:fn"`` → ``fn`` (errors name ``key`` and the fix)."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"{key} = {spec!r}: expected 'package.module:function' or 'path/to/file.py:function'")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{key} = {spec!r}: no file {path}; give the path of your .py file")
        module = _load_file(str(path), path.stat().st_mtime_ns)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            hint = "install it, or give the path of a .py file"
            raise ConfigError(f"{key} = {spec!r}: cannot import {target} ({exc}); {hint}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{key} = {spec!r}: {target} has no function '{attr}'")
    return fn


@functools.lru_cache(maxsize=16)
def _load_file(path: str, mtime_ns: int) -> Any:
    """Import a .py file once per version; pickled by value, so MLflow's logged model loads without it."""
    import cloudpickle

    name = f"alp_user_{Path(path).stem}_{hashlib.sha256(path.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    return module


def build(spec: NetSpec) -> ALNet:
    """Call the factory under a seeded, forked RNG and wrap its module as trunk → tail → head."""
    if not spec.factory:
        raise ConfigError("model.arch = custom needs model.factory: 'package.module:build' or 'file.py:build'")
    factory = load_callable(spec.factory, "model.factory")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        module = factory(tuple(spec.input_shape), spec.n_classes)
    return wrap(module, spec)


class _Embed(nn.Module):
    """The tail of a custom model without a trunk: its ``embed``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def wrap(module: Any, spec: NetSpec) -> ALNet:
    """``module`` as an :class:`ALNet` (its dropout layers swapped for seeded ones), once it has
    what the contract needs; else a :class:`ConfigError` naming what is missing."""
    where = f"model.factory {spec.factory!r}"
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{where} returned {type(module).__name__}, not a torch nn.Module")
    head = getattr(module, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"{where}: the module needs `head`, an nn.Linear(d, n_classes) giving the logits; none found")
    if head.out_features != spec.n_classes:
        raise ConfigError(f"{where}: head has {head.out_features} outputs but the data has {spec.n_classes} classes")
    if not callable(getattr(module, "embed", None)):
        raise ConfigError(f"{where}: the module needs `embed(x) -> [N, d]`, the features its head reads; none found")
    swap_dropout(module)
    trunk, tail = getattr(module, "trunk", None), getattr(module, "tail", None)
    if isinstance(trunk, nn.Module) and isinstance(tail, nn.Module):
        if any(isinstance(m, GeneratorDropout) for m in trunk.modules()):
            raise ConfigError(f"{where}: `trunk` holds dropout; move it into `tail` (the trunk must be deterministic)")
        return ALNet(nn.Sequential(Reshape(*spec.input_shape), trunk), tail, head)
    return ALNet(Reshape(*spec.input_shape), _Embed(module), head)


def swap_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout*`` in ``module`` by a :class:`GeneratorDropout` of the same rate
    (channelwise for 1-/2-/3-D); returns how many dropout layers the module has now."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) in DROPOUTS:
                setattr(parent, name, GeneratorDropout(child.p, channelwise=DROPOUTS[type(child)]))
    return sum(isinstance(m, GeneratorDropout) and m.p > 0 for m in module.modules())


@torch.no_grad()
def check_network(net: ALNet, spec: NetSpec, mc_strategy: str | None = None) -> None:
    """Run ``net`` on two samples and check the contract: logits [N, C], ``embed`` [N, d] matching
    the head, ``forward == head(embed)``, and dropout present when ``mc_strategy`` needs MC dropout."""
    x = torch.rand(2, *spec.input_shape, generator=torch.Generator().manual_seed(0)).reshape(2, -1)
    net.eval()
    where = f"model.arch = custom ({spec.factory})" if spec.factory else "the model"
    try:
        h = net.embed(x)
        logits = net.head(h)
    except Exception as exc:  # any failure of the user's code is reported with the shapes it got
        raise ConfigError(f"{where} failed on a batch of shape {[2, *spec.input_shape]}: {exc}") from exc
    if h.dim() != 2 or h.shape[1] != net.head.in_features:
        raise ConfigError(f"{where}: embed(x) gave {list(h.shape)}; expected [N, {net.head.in_features}] for the head")
    if list(logits.shape) != [2, spec.n_classes]:
        raise ConfigError(f"{where}: logits have shape {list(logits.shape)}; expected [N, {spec.n_classes}]")
    inner = getattr(net.tail, "model", None)
    if inner is not None and not torch.allclose(inner(x.reshape(2, *spec.input_shape)), logits, atol=1e-5):
        raise ConfigError(f"{where}: module(x) differs from head(embed(x)); forward must return head(embed(x))")
    if mc_strategy and not any(isinstance(m, GeneratorDropout) and m.p > 0 for m in net.modules()):
        raise ConfigError(
            f"{mc_strategy} needs dropout in the model: none found. Add nn.Dropout layers before the head "
            "(model.dropout > 0 for the built-in architectures), or pick a strategy without MC dropout"
        )


ARCHITECTURES.register(
    "custom",
    Architecture("custom", build, "your own nn.Module from `model.factory` (see the contract)", seeded_init=False),
)
