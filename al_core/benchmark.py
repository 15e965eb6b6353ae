"""Label efficiency, measured: the benchmark's configuration and its pure analysis.

Learning curves are (labels, test accuracy) points, one per trained round. The summaries follow the
usual active-learning reporting: labels needed to reach a target accuracy (Kirsch et al. 2019,
Table 1 of BatchBALD), the area under the learning curve normalised by its label range (mean
accuracy over the budget; e.g. Beck et al. 2021, "Effective evaluation of deep active learning on
image classification tasks"), mean ± std over seeds, and the class balance of the acquired labels
(normalised entropy of their class histogram; Ash et al. 2020 discuss the diversity it reflects).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from al_core.config import DATASETS, Params, parse_params
from al_core.errors import ConfigError, UnknownStrategyError, did_you_mean
from al_core.stopping import CRITERIA, StopObservation, StopParams, first_firing


# ---------------------------------------------------------------------------------- config
class BenchmarkConfig(BaseModel):
    """A benchmark YAML: every strategy × seed runs as a simulated campaign of the same protocol."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: names the MLflow experiment and the output folder
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    dataset: str
    #: model.arch (auto picks by dataset)
    model: str = "auto"
    strategies: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    #: cold-start labels (round 0)
    initial_size: int = Field(ge=1)
    #: draw the cold-start labels class-balanced (BatchBALD protocol: 2 per class)
    initial_balanced: bool = False
    #: labels acquired per round
    batch_size: int = Field(ge=1)
    #: the last model is trained on at most this many labels
    budget: int = Field(ge=1)
    #: test accuracies whose labels-to-target the table reports
    targets: list[float] = Field(default_factory=list)
    #: parallel worker processes (each runs whole campaigns on 1 torch thread); the CLI can override
    workers: int = Field(default=2, ge=1)
    #: any params.yaml overrides: dotted keys (``training.epochs: 30``) or nested sections
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset '{v}'.{did_you_mean(v, DATASETS)} Valid: {', '.join(DATASETS)}")
        return v

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        from al_core.acquisition import validate_strategy_name

        for name in v:
            validate_strategy_name(name)  # UnknownStrategyError names the valid ones
        if len(set(v)) != len(v):
            raise ValueError(f"strategies repeat a name: {v}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat a value: {v}")
        return v

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[float]) -> list[float]:
        bad = [t for t in v if not 0.0 < t <= 1.0]
        if bad:
            raise ValueError(f"targets are test accuracies in (0, 1], got {bad}")
        return sorted(v)

    @model_validator(mode="after")
    def _budget(self) -> BenchmarkConfig:
        if self.budget < self.initial_size:
            raise ValueError(f"budget ({self.budget}) is below initial_size ({self.initial_size})")
        return self

    def label_grid(self) -> list[int]:
        """Labels each trained round sees: initial_size, + batch_size, ... up to the budget."""
        return list(range(self.initial_size, self.budget + 1, self.batch_size))

    def overrides(self) -> dict[str, Any]:
        """params.yaml overrides shared by every campaign (dotted keys), ``params`` last."""
        grid = self.label_grid()
        base: dict[str, Any] = {
            "dataset.name": self.dataset,
            "model.arch": self.model,
            "acquisition.initial_size": self.initial_size,
            "acquisition.initial_balanced": self.initial_balanced,
            "acquisition.batch_size": self.batch_size,
            # the round trained on the last grid point still queues a batch; then the budget stops it
            "acquisition.label_budget": grid[-1] + self.batch_size,
            "acquisition.rounds": len(grid),
            "training.cpu_threads": 1,
            "tracking.log_model": False,  # speed: per-round models are not logged in a benchmark
            "versioning.push": False,  # speed: the workspace's DVC cache holds every version
        }
        base.update(flatten_params(self.params))
        return base

    def campaign_params(self, source: str = "benchmark config") -> Params:
        """The validated params of the first campaign (every campaign's but for strategy and seed)."""
        probe = _nest(self.job_overrides(self.strategies[0], self.seeds[0]), source)
        return parse_params(probe, f"{source} (params)")

    def job_overrides(self, strategy: str, seed: int) -> dict[str, Any]:
        """One campaign: its strategy and seed (the seed also picks the cold-start batch)."""
        return {**self.overrides(), "seed": seed, "acquisition.initial_seed": seed, "acquisition.strategy": strategy}


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"epochs": 3}}`` and ``{"training.epochs": 3}`` → ``{"training.epochs": 3}``."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):  # params.yaml values are never mappings: only its sections are
            out.update(flatten_params(v, key + "."))
        else:
            out[key] = v
    return out


def _nest(dotted: Mapping[str, Any], source: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in dotted.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: params.{key}: '{p}' is a value, not a section")
        node[last] = value
    return data


def parse_benchmark_config(data: Any, source: str = "benchmark config") -> BenchmarkConfig:
    """Validate a benchmark mapping; :class:`ConfigError` names the key, the value and the valid choices."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with keys {', '.join(BenchmarkConfig.model_fields)}")
    try:
        cfg = BenchmarkConfig.model_validate(data)
    except UnknownStrategyError as exc:
        raise ConfigError(f"{source}: strategies: {exc}") from exc
    except ValidationError as exc:
        msgs = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if e["type"] == "extra_forbidden":
                valid = list(BenchmarkConfig.model_fields)
                hint = did_you_mean(str(e["loc"][-1]), valid)
                msgs.append(f"{source}: unknown key '{loc}'.{hint} Valid keys: {', '.join(valid)}")
            else:
                msgs.append(f"{source}: {loc}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(msgs)) from exc
    # every campaign's params must validate: unknown params keys and bad values stop here, not in a worker
    cfg.campaign_params(source)
    return cfg


# ---------------------------------------------------------------------------------- analysis
def labels_to_target(labels: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """Labels at which the learning curve first reaches ``target`` (first crossing; None if never).

    The first measured point at or above the target: no interpolation, so the answer is a label
    count that was actually trained on (as in BatchBALD's Table 1)."""
    x, y = _curve(labels, accuracy)
    hit = np.flatnonzero(y >= target)
    return float(x[hit[0]]) if len(hit) else None


def aulc(labels: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under the learning curve (trapezoid) divided by its label range: the mean test accuracy
    over the budget, in [0, 1]; a single point gives its accuracy."""
    x, y = _curve(labels, accuracy)
    if len(x) == 0:
        return float("nan")
    if len(x) == 1 or x[-1] == x[0]:
        return float(y[-1])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / (x[-1] - x[0]))


def censored_median(values: Sequence[float | None], bounds: Sequence[float]) -> tuple[float, bool]:
    """Median labels-to-target over seeds where some never got there: a seed's ``None`` counts as its
    ``bounds`` entry (its final label count, a lower bound of what it needs). Returns the median and
    whether it is itself such a lower bound ('≥ median')."""
    if len(values) != len(bounds) or not values:
        raise ValueError(f"need one bound per value, got {len(values)} values and {len(bounds)} bounds")
    filled = [float(b) if v is None else float(v) for v, b in zip(values, bounds, strict=True)]
    med = float(np.median(filled))
    censored = [float(b) for v, b in zip(values, bounds, strict=True) if v is None]
    return med, bool(censored) and med >= min(censored)


def _curve(labels: Sequence[float], accuracy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(labels, dtype=float), np.asarray(accuracy, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"labels and accuracy must be 1-D of one length, got {x.shape} and {y.shape}")
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


@dataclass(frozen=True)
class MeanCurve:
    """A strategy's learning curve over seeds: labels [P], mean and std [P], seeds per point [P]."""

    labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray


def mean_std_curve(curves: Sequence[tuple[Sequence[float], Sequence[float]]]) -> MeanCurve:
    """Mean ± std (population, ddof=0) of accuracy per label count, over the seeds that have that point."""
    points: dict[float, list[float]] = {}
    for labels, acc in curves:
        for x, y in zip(*_curve(labels, acc), strict=True):
            points.setdefault(float(x), []).append(float(y))
    xs = sorted(points)
    return MeanCurve(
        labels=np.array(xs),
        mean=np.array([np.mean(points[x]) for x in xs]),
        std=np.array([np.std(points[x]) for x in xs]),
        n=np.array([len(points[x]) for x in xs]),
    )


def class_balance(counts: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Class balance of acquired labels from their class histogram [C]: the largest class's share and
    the entropy normalised by log C (1 = perfectly balanced, 0 = one class)."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0 or len(c) < 2:
        return {"max_class_share": float("nan"), "class_entropy": float("nan")}
    p = c / total
    nz = p[p > 0]
    return {"max_class_share": float(p.max()), "class_entropy": float(-(nz * np.log(nz)).sum() / math.log(len(c)))}


@dataclass
class RunResult:
    """One finished strategy × seed campaign."""

    strategy: str
    seed: int
    labels: list[int]
    accuracy: list[float]
    seconds_per_round: float
    acquired_counts: list[int]
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return (float(np.mean(v)), float(np.std(v))) if v else (float("nan"), float("nan"))


def summarize(runs: Sequence[RunResult], targets: Sequence[float]) -> list[dict[str, Any]]:
    """One row per strategy (first-seen order): labels-to-target, AULC, final accuracy, s/round and
    class balance, each as mean and std over its seeds; ``reached`` counts the seeds that got there."""
    by: dict[str, list[RunResult]] = {}
    for r in runs:
        by.setdefault(r.strategy, []).append(r)
    rows = []
    for strategy, rs in by.items():
        row: dict[str, Any] = {"strategy": strategy, "seeds": sorted(r.seed for r in rs)}
        for t in targets:
            hits = [labels_to_target(r.labels, r.accuracy, t) for r in rs]
            got = [h for h in hits if h is not None]
            row[f"labels_to_{t:g}"] = _mean_std(got) if got else (float("nan"), float("nan"))
            row[f"reached_{t:g}"] = len(got)
        row["aulc"] = _mean_std([aulc(r.labels, r.accuracy) for r in rs])
        row["final_accuracy"] = _mean_std([r.accuracy[-1] for r in rs if r.accuracy])
        row["final_labels"] = max((r.labels[-1] for r in rs if r.labels), default=0)
        row["seconds_per_round"] = _mean_std([r.seconds_per_round for r in rs])
        balance = [class_balance(r.acquired_counts) for r in rs]
        row["max_class_share"] = _mean_std([b["max_class_share"] for b in balance])
        row["class_entropy"] = _mean_std([b["class_entropy"] for b in balance])
        rows.append(row)
    return rows


def _fmt(ms: tuple[float, float], digits: int = 3) -> str:
    m, s = ms
    return "—" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _ratio(labels: float | None, base: dict[str, Any] | None, t: float) -> str:
    """labels / the baseline's labels to target ``t``; '< x' when the baseline never got there (its
    final label count is then a lower bound of what it needs)."""
    if labels is None or base is None:
        return "—"
    if base[f"reached_{t:g}"]:
        return f"{labels / base[f'labels_to_{t:g}'][0]:.2f}"
    return f"< {labels / base['final_labels']:.2f}"


def markdown_table(rows: Sequence[dict[str, Any]], targets: Sequence[float], baseline: str = "random") -> str:
    """The results table (markdown). Labels-to-target shows mean ± std over the seeds that reached it,
    '(k/n)' when only k of n seeds did, '> B' when none did within the budget B, and the ratio to
    ``baseline``'s mean ('< x' when the baseline never reached the target within its budget)."""
    base = next((r for r in rows if r["strategy"] == baseline), None)
    head = ["strategy", "seeds"]
    for t in targets:
        head += [f"labels to {t:g}", f"× {baseline}"]
    head += ["AULC", "final acc", "s / round", "max-class share", "class entropy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = len(r["seeds"])
        cells = [r["strategy"], str(n)]
        for t in targets:
            k = r[f"reached_{t:g}"]
            m, s = r[f"labels_to_{t:g}"]
            if k == 0:
                cells.append(f"> {r['final_labels']}")
            else:
                cells.append(f"{m:.0f} ± {s:.0f}" + ("" if k == n else f" ({k}/{n})"))
            cells.append(_ratio(m if k else None, base, t))
        cells += [
            _fmt(r["aulc"]),
            _fmt(r["final_accuracy"]),
            _fmt(r["seconds_per_round"], 1),
            _fmt(r["max_class_share"], 2),
            _fmt(r["class_entropy"], 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- stopping
@dataclass(frozen=True)
class StopPoint:
    """Where one stopping criterion fires in one campaign, against the full budget: labels saved vs
    accuracy lost (Bloodgood & Vijay-Shanker 2009 evaluate stopping methods the same way)."""

    strategy: str
    seed: int
    criterion: str
    #: the round it first fires, the labels trained on there and the test accuracy there (None: never)
    round: int | None
    labels: int | None
    accuracy: float | None
    final_labels: int
    final_accuracy: float

    @property
    def labels_saved(self) -> int | None:
        return None if self.labels is None else self.final_labels - self.labels

    @property
    def accuracy_lost(self) -> float | None:
        return None if self.accuracy is None else self.final_accuracy - self.accuracy


def stop_points(
    run: RunResult, observations: Sequence[StopObservation], params: StopParams, label_budget: int | None
) -> list[StopPoint]:
    """Per criterion (and ``rule`` when criteria are enabled), where it first fires in ``run``'s
    rounds (``observations``: one per trained round, in order, as the rounds stored them)."""
    acc = dict(zip(run.labels, run.accuracy, strict=True))
    final_labels, final_acc = run.labels[-1], run.accuracy[-1]
    first = first_firing(params, observations, label_budget)
    names = [*CRITERIA, *(["rule"] if params.criteria else [])]
    out = []
    for name in names:
        i = first[name]
        o = observations[i] if i is not None else None
        out.append(
            StopPoint(
                run.strategy,
                run.seed,
                name,
                o.round if o else None,
                o.n_labels if o else None,
                acc.get(o.n_labels) if o else None,
                final_labels,
                final_acc,
            )
        )
    return out


def stopping_markdown(points: Sequence[StopPoint]) -> str:
    """Two tables: per strategy × seed where each criterion fires (round · labels · accuracy) next to
    the full budget; per strategy × criterion the mean labels saved and accuracy lost."""
    names = list(dict.fromkeys(p.criterion for p in points))
    by_run: dict[tuple[str, int], dict[str, StopPoint]] = {}
    for p in points:
        by_run.setdefault((p.strategy, p.seed), {})[p.criterion] = p
    head = ["strategy", "seed", *names, "full budget"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (strategy, seed), row in by_run.items():
        cells = ["—" if (p := row[n]).round is None else f"r{p.round} · {p.labels} · {p.accuracy:.3f}" for n in names]
        any_p = next(iter(row.values()))
        lines.append(
            f"| {strategy} | {seed} | " + " | ".join(cells) + f" | {any_p.final_labels} · {any_p.final_accuracy:.3f} |"
        )
    lines += ["", "| strategy | criterion | fired | labels saved | accuracy lost |", "|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[StopPoint]] = {}
    for p in points:
        groups.setdefault((p.strategy, p.criterion), []).append(p)
    for (strategy, name), ps in groups.items():
        fired = [p for p in ps if p.round is not None]
        saved = _mean_std([float(p.labels_saved) for p in fired])
        lost = _mean_std([float(p.accuracy_lost) for p in fired])
        lines.append(f"| {strategy} | {name} | {len(fired)}/{len(ps)} | {_fmt(saved, 0)} | {_fmt(lost)} |")
    return "\n".join(lines) + "\n"
