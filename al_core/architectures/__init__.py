"""Architectures (``model.arch``): one module each, registered in :data:`ARCHITECTURES`.

A module registers an :class:`Architecture` whose ``build(spec)`` returns an
:class:`~al_core.models.ALNet` (trunk → tail with every dropout → linear head). Built-in
networks are created on the meta device and initialised from an explicit generator by
:func:`~al_core.models.build_network`; ``custom`` wraps the user's own ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from al_core.errors import ConfigError
from al_core.registry import Registry

if TYPE_CHECKING:
    from al_core.models import ALNet


@dataclass(frozen=True)
class NetSpec:
    """What a network is built for: one sample's shape, the classes and the ``model.*`` params."""

    input_shape: tuple[int, ...]
    n_classes: int
    hidden: int = 128
    dropout: float = 0.25
    #: ``model.factory`` (custom): "package.module:build" or "path/to/file.py:build"
    factory: str | None = None
    #: the seed of the weights (custom models build under it; built-ins draw from a generator)
    seed: int = 0


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[NetSpec], ALNet]
    #: one line for the README table, the CLI help and errors
    summary: str
    #: built on the meta device, then initialised by alp from the seed's generator
    seeded_init: bool = True


ARCHITECTURES: Registry[Architecture] = Registry("architecture", "al_core.architectures", "model.arch", ConfigError)


def get_architecture(name: str) -> Architecture:
    return ARCHITECTURES.get(name)


def architectures_table() -> str:
    """The markdown table of architectures (README)."""
    rows = ["| `model.arch` | network |", "|---|---|"]
    rows += [f"| `{name}` | {a.summary} |" for name, a in ARCHITECTURES.items()]
    return "\n".join(rows)
