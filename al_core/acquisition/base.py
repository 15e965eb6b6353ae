"""Acquisition building blocks: inputs, result type, shape checks and the strategy registry.

Conventions (after batchbald_redux, baal, skorch): tensors carry their shape in their
name (``probs_N_C``, ``log_probs_N_K_C``, ``embeddings_N_D``), shapes are checked at entry,
every random choice takes an explicit ``torch.Generator``, and a strategy returns a frozen
:class:`Acquisition` with ``min(k, N)`` unique pool indices, best first.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from al_core.errors import ShapeError, UnknownStrategyError

if TYPE_CHECKING:
    from al_core.config import AcquisitionParams

#: What a strategy can ask the round to compute for it.
PROBS = "probs"  # [N, C] predictive probabilities (deterministic forward pass)
MC_LOG_PROBS = "mc_log_probs"  # [N, K, C] log-probabilities of K MC-dropout passes
EMBEDDINGS = "embeddings"  # [N, D] penultimate-layer embeddings of the pool
LABELED_EMBEDDINGS = "labeled_embeddings"  # [M, D] embeddings of the labeled set


@dataclass(frozen=True)
class AcquisitionInputs:
    """Everything a strategy may read about the candidate pool (N samples).

    Only the fields named in the strategy's ``needs`` are filled in.
    """

    n: int
    probs_N_C: torch.Tensor | None = None
    log_probs_N_K_C: torch.Tensor | None = None
    embeddings_N_D: torch.Tensor | None = None
    labeled_embeddings_M_D: torch.Tensor | None = None

    def require(self, field: str) -> torch.Tensor:
        value = getattr(self, field)
        if value is None:
            raise ShapeError(
                f"this strategy needs '{field}', which the caller did not compute; "
                "compute the inputs listed in the strategy's `needs`."
            )
        return value


@dataclass(frozen=True)
class Acquisition:
    """The chosen batch: ``indices`` [B] (long, unique, into the pool) and their ``scores`` [B]."""

    indices: torch.Tensor
    scores: torch.Tensor

    def __post_init__(self) -> None:
        if self.indices.ndim != 1 or self.scores.shape != self.indices.shape:
            raise ShapeError(
                f"Acquisition needs 1-D indices and scores of one length, got "
                f"{tuple(self.indices.shape)} and {tuple(self.scores.shape)}"
            )


def check_shape(name: str, tensor: torch.Tensor, ndim: int, dims: str) -> None:
    """Raise :class:`ShapeError` unless ``tensor`` has ``ndim`` dimensions (named ``dims``, e.g. 'N,C')."""
    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor [{dims}], got {type(tensor).__name__}")
    if tensor.ndim != ndim:
        raise ShapeError(f"{name} must have shape [{dims}] ({ndim}-D), got {tuple(tensor.shape)}")
    if tensor.numel() == 0 and tensor.shape[0] != 0:
        raise ShapeError(f"{name} has an empty dimension: shape {tuple(tensor.shape)}, expected [{dims}]")


def check_k(k: int) -> None:
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"batch size must be a non-negative int, got {k!r}")


def top_k(scores_N: torch.Tensor, k: int) -> Acquisition:
    """The ``min(k, N)`` highest scores, best first (ties broken by the lower index)."""
    check_shape("scores_N", scores_N, 1, "N")
    check_k(k)
    k = min(k, scores_N.shape[0])
    # A stable descending sort breaks ties by index, so results do not depend on the backend.
    order = torch.sort(scores_N, descending=True, stable=True).indices[:k]
    return Acquisition(indices=order, scores=scores_N[order])


class Strategy(abc.ABC):
    """An acquisition strategy: reads :class:`AcquisitionInputs`, returns an :class:`Acquisition`."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    #: True when :meth:`pseudo_labels` may return samples (CEAL): training then needs the candidates
    pseudo_labelling: ClassVar[bool] = False
    #: True when the batch is the top k of a per-sample score (:meth:`topk_scores`): such a strategy
    #: is scored shard by shard and picks exactly what it picks on the whole pool at once
    is_top_k: ClassVar[bool] = False

    @classmethod
    def from_params(cls, params: AcquisitionParams | None = None) -> Strategy:
        """Build the strategy from the ``acquisition`` section of params.yaml."""
        return cls()

    @abc.abstractmethod
    def select(self, inputs: AcquisitionInputs, k: int, generator: torch.Generator) -> Acquisition:
        """Pick ``min(k, inputs.n)`` unique pool indices, best first."""

    def topk_scores(self, inputs: AcquisitionInputs) -> torch.Tensor | None:
        """The per-sample score [N] whose top k :meth:`select` returns; None for a strategy that picks
        jointly (BADGE, core-set, BatchBALD), which needs its whole candidate set at once."""
        return None

    def pseudo_labels(self, probs_N_C: torch.Tensor, round_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Semi-supervised hook (CEAL): ``(pool indices, labels)`` to train on besides the labeled set.

        ``None`` (the default) means no pseudo-labelling. Pseudo-labels are per-round training
        inputs only, never written to the versioned labeled set.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_REGISTRY: dict[str, type[Strategy]] = {}
_WRAPPERS: dict[str, Callable[..., Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy usable by its ``name`` in params.yaml."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name '{cls.name}' is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def register_wrapper(prefix: str, factory: Callable[..., Strategy]) -> None:
    """Register a wrapper usable as ``PREFIX+NAME`` (e.g. ``ceal+entropy``).

    ``factory(base_strategy, params)`` returns the wrapped strategy.
    """
    _WRAPPERS[prefix] = factory


def _ensure_loaded() -> None:
    # Importing the package registers every built-in strategy.
    import al_core.acquisition  # noqa: F401


def strategy_names() -> list[str]:
    """Every usable base name (wrappers apply on top: ``ceal+entropy``)."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def all_strategy_names() -> list[str]:
    """Base names plus every wrapper applied to every base name."""
    names = strategy_names()
    return names + [f"{w}+{n}" for w in sorted(_WRAPPERS) for n in names]


def validate_strategy_name(name: str) -> str:
    """Return ``name`` if it resolves to a strategy, else raise :class:`UnknownStrategyError`."""
    _ensure_loaded()
    base = name
    while "+" in base:
        prefix, base = base.split("+", 1)
        if prefix not in _WRAPPERS:
            raise UnknownStrategyError(name, all_strategy_names())
    if base not in _REGISTRY:
        raise UnknownStrategyError(name, all_strategy_names())
    return name


def get_strategy(name: str, params: AcquisitionParams | None = None) -> Strategy:
    """Look a strategy up by name (``entropy``, ``ceal+badge``) and build it from ``params``."""
    validate_strategy_name(name)
    if "+" in name:
        prefix, rest = name.split("+", 1)
        return _WRAPPERS[prefix](get_strategy(rest, params), params)
    return _REGISTRY[name].from_params(params)
