"""Acquisition strategies, registered by name (see :func:`get_strategy`).

Importing this package registers every built-in strategy.
"""

from al_core.acquisition import (  # noqa: F401  (each module registers its strategies)
    badge,
    bald,
    batchbald,
    ceal,
    coreset,
    uncertainty,
)
from al_core.acquisition.base import (
    EMBEDDINGS,
    LABELED_EMBEDDINGS,
    MC_LOG_PROBS,
    PROBS,
    Acquisition,
    AcquisitionInputs,
    Strategy,
    all_strategy_names,
    get_strategy,
    register,
    register_wrapper,
    strategy_names,
    top_k,
    validate_strategy_name,
)

__all__ = [
    "EMBEDDINGS",
    "LABELED_EMBEDDINGS",
    "MC_LOG_PROBS",
    "PROBS",
    "Acquisition",
    "AcquisitionInputs",
    "Strategy",
    "all_strategy_names",
    "get_strategy",
    "register",
    "register_wrapper",
    "strategy_names",
    "top_k",
    "validate_strategy_name",
]
