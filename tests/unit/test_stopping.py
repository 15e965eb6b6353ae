"""Stopping criteria on constructed sequences whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.config import parse_params
from al_core.errors import ConfigError, ShapeError
from al_core.stopping import (
    StopObservation,
    StopParams,
    cohen_kappa,
    decide,
    first_firing,
    mean_normalized_entropy,
    observe,
    stop_set_indices,
)

labels = st.lists(st.integers(0, 4), min_size=1, max_size=60)


@given(labels)
def test_kappa_of_identical_predictions_is_one(a):
    assert cohen_kappa(np.array(a), np.array(a), 5) == pytest.approx(1.0)


@given(labels, st.data())
@settings(max_examples=50)
def test_kappa_is_symmetric_and_at_most_one(a, data):
    b = data.draw(st.lists(st.integers(0, 4), min_size=len(a), max_size=len(a)))
    k = cohen_kappa(np.array(a), np.array(b), 5)
    assert k == pytest.approx(cohen_kappa(np.array(b), np.array(a), 5))
    assert k <= 1.0 + 1e-12


def test_kappa_known_values():
    a = np.array([0, 0, 1, 1])
    assert cohen_kappa(a, 1 - a, 2) == pytest.approx(-1.0)  # total disagreement
    # p_o = 0.75, p_e = (2·3 + 2·1)/16 = 0.5 → κ = 0.5
    assert cohen_kappa(a, np.array([0, 0, 1, 0]), 2) == pytest.approx(0.5)
    with pytest.raises(ShapeError, match="one length"):
        cohen_kappa(a, a[:3], 2)


def test_normalized_entropy_bounds():
    assert mean_normalized_entropy(torch.full((7, 4), 0.25)) == pytest.approx(1.0)
    assert mean_normalized_entropy(torch.eye(4)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ShapeError, match=r"\[S, C\]"):
        mean_normalized_entropy(torch.ones(3))


def test_stop_set_is_fixed_seeded_and_unique():
    a, b = stop_set_indices(500, 100, seed=3), stop_set_indices(500, 100, seed=3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100 and a.max() < 500
    assert not np.array_equal(a, stop_set_indices(500, 100, seed=4))
    assert len(stop_set_indices(20, 100, seed=0)) == 20  # a small pool is wholly the stop set


def obs(r, kappa=None, change=None, uncertainty=0.5, val=None, n=10):
    return StopObservation(r, n * (r + 1), n * (r + 2), kappa, change, uncertainty, val)


def stab(window=3, threshold=0.99, rule="any"):
    return StopParams(
        criteria=["stabilizing_predictions"],
        rule=rule,
        stabilizing_predictions={"threshold": threshold, "window": window},
    )


def test_stabilizing_predictions_fire_only_on_a_full_window_at_threshold():
    hist = [obs(0), obs(1, kappa=0.995), obs(2, kappa=0.999)]
    d = decide(stab(), hist)
    assert not d.stop and d.value("stabilizing_predictions").value == pytest.approx(0.997)  # 2 of 3 pairs
    d = decide(stab(), [*hist, obs(3, kappa=0.99)])
    assert d.stop and d.reason == "κ̄ = 0.995 ≥ 0.99"
    # one unstable pair inside the window keeps it from firing
    assert not decide(stab(), [*hist, obs(3, kappa=0.9)]).stop


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12), st.integers(1, 4))
@settings(max_examples=60)
def test_stabilizing_value_is_the_window_mean(kappas, window):
    hist = [obs(0)] + [obs(i + 1, kappa=k) for i, k in enumerate(kappas)]
    c = decide(stab(window=window, threshold=0.5), hist).value("stabilizing_predictions")
    assert c.value == pytest.approx(float(np.mean(kappas[-window:])))
    assert c.fired == (len(kappas) >= window and c.value >= 0.5)


def test_plateau_fires_after_patience_rounds_without_improvement():
    p = StopParams(criteria=["plateau"], plateau={"patience": 2, "min_delta": 0.01})
    rising = [obs(i, val=v) for i, v in enumerate([0.5, 0.6, 0.7, 0.8])]
    assert not decide(p, rising).stop
    flat = [obs(i, val=v) for i, v in enumerate([0.5, 0.7, 0.705, 0.69])]  # +0.005 is within min_delta
    d = decide(p, flat)
    assert d.stop and d.value("plateau").value == 2 and "0.700" in d.reason
    assert not decide(p, flat[:3]).stop  # one round without improvement < patience
    assert decide(p, [obs(0)]).value("plateau").value is None  # no validation data: no value, no fire


def test_overall_uncertainty_classification_change_and_budget():
    p = StopParams(criteria=["overall_uncertainty"], overall_uncertainty={"threshold": 0.1})
    assert decide(p, [obs(0, uncertainty=0.09)]).stop
    assert not decide(p, [obs(0, uncertainty=0.2)]).stop
    p = StopParams(criteria=["classification_change"])
    assert not decide(p, [obs(0)]).stop  # nothing to compare with in the first round
    assert decide(p, [obs(0), obs(1, change=0.0)]).stop
    assert not decide(p, [obs(0), obs(1, change=0.01)]).stop
    p = StopParams(criteria=["budget"])
    assert decide(p, [obs(0, n=50)], label_budget=100).reason == "labels spent = 100 ≥ budget 100"
    assert not decide(p, [obs(0, n=49)], label_budget=100).stop
    assert not decide(p, [obs(0, n=10**6)], label_budget=None).stop


def test_rules_any_and_all_and_nothing_enabled():
    hist = [obs(0, uncertainty=0.01), obs(1, change=0.5, uncertainty=0.01)]
    both = {"criteria": ["overall_uncertainty", "classification_change"]}
    assert decide(StopParams(**both, rule="any"), hist).stop
    assert not decide(StopParams(**both, rule="all"), hist).stop
    hist[-1] = obs(1, change=0.0, uncertainty=0.01)
    d = decide(StopParams(**both, rule="all"), hist)
    assert d.stop and " and " in d.reason
    d = decide(StopParams(), hist)  # values computed, nothing decides
    assert not d.stop and d.value("classification_change").fired
    assert d.metrics()["stop_overall_uncertainty"] == pytest.approx(0.01) and d.metrics()["stop_fired"] == 0.0


def test_observe_pairs_rounds_and_first_firing():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    o0, pred0 = observe(0, 10, 20, probs, None, 0.5)
    assert o0.kappa is None and pred0.tolist() == [0, 1, 0]
    o1, _ = observe(1, 20, 30, probs, pred0, 0.6)
    assert o1.kappa == pytest.approx(1.0) and o1.change == 0.0
    with pytest.raises(ShapeError, match="stop set changed size"):
        observe(2, 30, 40, probs, pred0[:2], None)
    hist = [o0, o1, obs(2, kappa=1.0, change=0.0), obs(3, kappa=1.0, change=0.0)]
    first = first_firing(stab(window=2), hist)
    assert first["stabilizing_predictions"] == 2 and first["rule"] == 2 and first["classification_change"] == 1


def test_params_reject_unknown_criteria_and_keys():
    with pytest.raises(ConfigError, match="criteria"):
        parse_params({"acquisition": {"stop": {"criteria": ["kappa"]}}})
    with pytest.raises(ConfigError, match=r"unknown key 'acquisition\.stop\.windw'"):
        parse_params({"acquisition": {"stop": {"windw": 3}}})
    p = parse_params({"acquisition": {"stop": {"criteria": ["plateau", "budget"], "rule": "all"}}})
    assert p.acquisition.stop.criteria == ["plateau", "budget"]


def test_benchmark_stop_points_labels_saved_and_accuracy_lost():
    from al_core.benchmark import RunResult, stop_points, stopping_markdown

    run = RunResult("entropy", 0, [100, 200, 300, 400], [0.5, 0.7, 0.8, 0.82], 1.0, [])
    hist = [
        StopObservation(1, 100, 200, None, None, 0.5, 0.5),
        StopObservation(2, 200, 300, 0.8, 0.1, 0.4, 0.7),
        StopObservation(3, 300, 400, 0.995, 0.0, 0.3, 0.8),
        StopObservation(4, 400, 500, 0.999, 0.0, 0.2, 0.81),
    ]
    p = StopParams(stabilizing_predictions={"window": 2}, criteria=["stabilizing_predictions"])
    points = {s.criterion: s for s in stop_points(run, hist, p, label_budget=500)}
    stab = points["stabilizing_predictions"]  # κ̄(0.995, 0.999) ≥ 0.99 at round 4 only
    assert (stab.round, stab.labels, stab.accuracy, stab.labels_saved) == (4, 400, 0.82, 0)
    chg = points["classification_change"]  # no change from round 3 on
    assert (chg.round, chg.labels, chg.labels_saved) == (3, 300, 100)
    assert chg.accuracy_lost == pytest.approx(0.02)
    assert points["overall_uncertainty"].round is None and points["budget"].round == 4
    assert points["rule"].round == 4
    md = stopping_markdown(list(points.values()))
    assert "| entropy | 0 | r4 · 400 · 0.820 | — |" in md
    assert "| entropy | classification_change | 1/1 | 100 ± 0 | 0.020 ± 0.000 |" in md
