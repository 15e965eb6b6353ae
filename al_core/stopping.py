"""Stopping criteria: when to stop labeling (pure; no I/O).

- ``stabilizing_predictions`` — Bloodgood & Vijay-Shanker 2009, "A method for stopping active
  learning based on stabilizing predictions": Cohen's κ between successive rounds' predictions on a
  fixed stop set, averaged over the last ``window`` pairs; stop once κ̄ ≥ ``threshold`` (0.99).
- ``overall_uncertainty`` — Zhu, Wang & Hovy 2008, "Multi-criteria-based strategy to stop active
  learning": mean predictive entropy (normalised by log C) on the stop set ≤ ``threshold``.
- ``classification_change`` — Zhu, Wang & Hovy 2008: the share of the stop set whose predicted
  label changed since the previous round ≤ ``threshold`` (0 = no change at all).
- ``plateau`` — a validation-metric plateau with patience (baal's and early stopping's habit):
  ``patience`` rounds without the validation accuracy improving by more than ``min_delta``.
- ``budget`` — the label budget (``acquisition.label_budget``) is spent once this round's batch is labeled.

Every criterion's value is computed every round, enabled or not; ``rule`` (``any``/``all``) combines
the enabled ones into the decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from al_core.errors import ShapeError
from al_core.sections import Section

Criterion = Literal["stabilizing_predictions", "overall_uncertainty", "classification_change", "plateau", "budget"]
CRITERIA: tuple[str, ...] = Criterion.__args__  # type: ignore[attr-defined]


class StabilizingPredictionsParams(Section):
    """Bloodgood & Vijay-Shanker 2009: κ̄ over ``window`` successive round pairs ≥ ``threshold``."""

    threshold: float = Field(default=0.99, ge=-1.0, le=1.0)
    window: int = Field(default=3, ge=1)


class OverallUncertaintyParams(Section):
    """Zhu et al. 2008: mean normalised predictive entropy on the stop set ≤ ``threshold``."""

    threshold: float = Field(default=0.05, ge=0.0, le=1.0)


class ClassificationChangeParams(Section):
    """Zhu et al. 2008: share of the stop set whose predicted label changed ≤ ``threshold``."""

    threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class PlateauParams(Section):
    """``patience`` rounds without validation accuracy improving by more than ``min_delta``."""

    patience: int = Field(default=3, ge=1)
    min_delta: float = Field(default=0.005, ge=0.0)


class StopParams(Section):
    """``acquisition.stop``: which criteria stop a campaign, and how they combine."""

    #: the criteria that decide (every one is computed and logged every round regardless)
    criteria: list[Criterion] = Field(default_factory=list)
    #: any: the first enabled criterion that fires stops; all: every enabled one must fire
    rule: Literal["any", "all"] = "any"
    #: samples in the stop set: drawn once from the pool with the campaign seed, never excluded from anything
    stop_set_size: int = Field(default=1000, ge=10)
    stabilizing_predictions: StabilizingPredictionsParams = StabilizingPredictionsParams()
    overall_uncertainty: OverallUncertaintyParams = OverallUncertaintyParams()
    classification_change: ClassificationChangeParams = ClassificationChangeParams()
    plateau: PlateauParams = PlateauParams()


#: spawn key that separates the stop set's draw from every round's seeds
_STOP_SET_KEY = 0x5709


def stop_set_indices(n_pool: int, size: int, seed: int) -> np.ndarray:
    """The stop set: ``min(size, n_pool)`` sorted pool indices drawn once from the campaign ``seed``
    (fixed for the campaign, overlapping the candidates: Bloodgood & Vijay-Shanker 2009, §3)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STOP_SET_KEY,)))
    return np.sort(rng.choice(n_pool, size=min(size, n_pool), replace=False)).astype(np.int64)


def cohen_kappa(a_S: np.ndarray, b_S: np.ndarray, n_classes: int) -> float:
    """Cohen's κ = (p_o − p_e) / (1 − p_e) of two label vectors [S]; 1.0 when they agree and p_e = 1."""
    a, b = np.asarray(a_S, dtype=np.int64), np.asarray(b_S, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ShapeError(f"cohen_kappa expects two label vectors [S] of one length S > 0, got {a.shape} and {b.shape}")
    p_o = float((a == b).mean())
    p_e = float(np.dot(np.bincount(a, minlength=n_classes), np.bincount(b, minlength=n_classes))) / len(a) ** 2
    if p_e >= 1.0:
        return 1.0 if p_o == 1.0 else 0.0
    return (p_o - p_e) / (1.0 - p_e)


def mean_normalized_entropy(probs_S_C: torch.Tensor | np.ndarray) -> float:
    """Mean over the stop set of H(p)/log C ∈ [0, 1] (Zhu et al. 2008's overall uncertainty)."""
    p = torch.as_tensor(probs_S_C, dtype=torch.float64)
    if p.dim() != 2 or p.shape[1] < 2:
        raise ShapeError(f"probs_S_C must be [S, C] with C ≥ 2, got {list(p.shape)}")
    h = -(p * p.clamp_min(1e-12).log()).sum(1)
    return float(h.mean() / math.log(p.shape[1]))


@dataclass(frozen=True)
class StopObservation:
    """What round ``round`` contributes to the criteria (pairwise values against the previous round)."""

    round: int
    #: labels the round's model was trained on
    n_labels: int
    #: labels spent once the round's batch is answered (labeled + queued + this batch)
    n_spent: int
    #: κ between the previous trained round's stop-set predictions and this round's (None: first round)
    kappa: float | None
    #: share of the stop set whose predicted label changed since the previous round (None: first round)
    change: float | None
    uncertainty: float
    #: validation accuracy of this round's model (None: no validation data)
    val_metric: float | None


def observe(
    r: int,
    n_labels: int,
    n_spent: int,
    probs_S_C: torch.Tensor | np.ndarray,
    prev_pred_S: np.ndarray | None,
    val_metric: float | None,
) -> tuple[StopObservation, np.ndarray]:
    """This round's observation and its stop-set predictions [S] (to store for the next round)."""
    p = torch.as_tensor(probs_S_C)
    pred = p.argmax(1).numpy().astype(np.int64)
    kappa = change = None
    if prev_pred_S is not None:
        if len(prev_pred_S) != len(pred):
            raise ShapeError(f"the stop set changed size ({len(prev_pred_S)} → {len(pred)}) between rounds")
        kappa = cohen_kappa(prev_pred_S, pred, p.shape[1])
        change = float((np.asarray(prev_pred_S) != pred).mean())
    return StopObservation(r, n_labels, n_spent, kappa, change, mean_normalized_entropy(p), val_metric), pred


@dataclass(frozen=True)
class CriterionValue:
    """One criterion at one round: its value, threshold, whether it fires, and a line saying so."""

    name: str
    value: float | None
    threshold: float | None
    fired: bool
    text: str


@dataclass(frozen=True)
class StopDecision:
    round: int
    rule: str
    enabled: tuple[str, ...]
    criteria: tuple[CriterionValue, ...]
    stop: bool
    #: the firing criteria's lines, e.g. "κ̄ = 0.991 ≥ 0.99" (empty when not stopping)
    reason: str

    def value(self, name: str) -> CriterionValue:
        return next(c for c in self.criteria if c.name == name)

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: ``stop_<criterion>`` for every value computed, ``stop_fired`` 0/1."""
        out = {f"stop_{c.name}": float(c.value) for c in self.criteria if c.value is not None}
        out["stop_fired"] = float(self.stop)
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["enabled"] = list(self.enabled)
        d["criteria"] = {c["name"]: {k: v for k, v in c.items() if k != "name"} for c in d["criteria"]}
        return d


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _stabilizing(p: StabilizingPredictionsParams, history: Sequence[StopObservation]) -> CriterionValue:
    kappas = [o.kappa for o in history if o.kappa is not None][-p.window :]
    value = float(np.mean(kappas)) if kappas else None
    fired = len(kappas) == p.window and value is not None and value >= p.threshold
    return CriterionValue(
        "stabilizing_predictions", value, p.threshold, fired, f"κ̄ = {_fmt(value)} ≥ {p.threshold:g}" if fired else ""
    )


def _plateau(p: PlateauParams, history: Sequence[StopObservation]) -> CriterionValue:
    """Value: rounds since the validation accuracy last improved by more than ``min_delta``."""
    vals = [o.val_metric for o in history if o.val_metric is not None]
    if not vals:
        return CriterionValue("plateau", None, float(p.patience), False, "")
    best, since = -math.inf, 0
    for v in vals:
        if v > best + p.min_delta:
            best, since = v, 0
        else:
            since += 1
    fired = since >= p.patience
    text = f"validation accuracy {best:.3f} not improved by > {p.min_delta:g} for {since} rounds" if fired else ""
    return CriterionValue("plateau", float(since), float(p.patience), fired, text)


def decide(params: StopParams, history: Sequence[StopObservation], label_budget: int | None = None) -> StopDecision:
    """Every criterion's value at the last round of ``history`` and the rule's decision."""
    if not history:
        raise ValueError("decide() needs at least one observation")
    last = history[-1]
    unc, chg = params.overall_uncertainty, params.classification_change
    unc_fired = last.uncertainty <= unc.threshold
    chg_fired = last.change is not None and last.change <= chg.threshold
    budget_fired = label_budget is not None and last.n_spent >= label_budget
    values = (
        _stabilizing(params.stabilizing_predictions, history),
        CriterionValue(
            "overall_uncertainty",
            last.uncertainty,
            unc.threshold,
            unc_fired,
            f"overall uncertainty = {_fmt(last.uncertainty)} ≤ {unc.threshold:g}" if unc_fired else "",
        ),
        CriterionValue(
            "classification_change",
            last.change,
            chg.threshold,
            chg_fired,
            f"classification change = {_fmt(last.change)} ≤ {chg.threshold:g}" if chg_fired else "",
        ),
        _plateau(params.plateau, history),
        CriterionValue(
            "budget",
            float(last.n_spent),
            None if label_budget is None else float(label_budget),
            budget_fired,
            f"labels spent = {last.n_spent} ≥ budget {label_budget}" if budget_fired else "",
        ),
    )
    enabled = tuple(dict.fromkeys(params.criteria))
    fired = [c for c in values if c.name in enabled and c.fired]
    flags = [c.fired for c in values if c.name in enabled]
    stop = bool(flags) and (any(flags) if params.rule == "any" else all(flags))
    joiner = " and " if params.rule == "all" else "; "
    reason = joiner.join(c.text for c in fired) if stop else ""
    return StopDecision(last.round, params.rule, enabled, values, stop, reason)


def first_firing(
    params: StopParams, history: Sequence[StopObservation], label_budget: int | None = None
) -> dict[str, int | None]:
    """Per criterion (and ``rule``, the enabled combination), the index into ``history`` of the
    first round at which it fires, or None: for the benchmark's "labels saved vs accuracy lost"."""
    out: dict[str, int | None] = {name: None for name in (*CRITERIA, "rule")}
    for i in range(len(history)):
        d = decide(params, history[: i + 1], label_budget)
        for c in d.criteria:
            if c.fired and out[c.name] is None:
                out[c.name] = i
        if d.stop and out["rule"] is None:
            out["rule"] = i
    return out
