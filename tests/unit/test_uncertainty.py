import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy, strategy_names, top_k
from al_core.acquisition.uncertainty import entropy_scores, least_confidence_scores, margin_scores
from al_core.errors import ShapeError, UnknownStrategyError


def _probs(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, c, generator=g) * 3, dim=1)


def test_registry_has_the_baseline_strategies():
    assert {"random", "least_confidence", "margin", "entropy"} <= set(strategy_names())


def test_unknown_strategy_suggests_and_lists():
    with pytest.raises(UnknownStrategyError) as e:
        get_strategy("margn")
    assert "Did you mean 'margin'" in str(e.value) and "entropy" in str(e.value)


def test_uniform_predictions_have_max_entropy():
    p = torch.full((5, 7), 1 / 7)
    assert torch.allclose(entropy_scores(p), torch.full((5,), math.log(7)), atol=1e-6)
    assert torch.allclose(least_confidence_scores(p), torch.full((5,), 1 - 1 / 7))
    assert torch.allclose(margin_scores(p), torch.ones(5))


def test_one_hot_predictions_score_zero():
    p = torch.eye(4)
    for fn in (entropy_scores, least_confidence_scores, margin_scores):
        assert torch.allclose(fn(p), torch.zeros(4), atol=1e-6)


def test_shape_errors_name_expected_and_got():
    with pytest.raises(ShapeError, match=r"\[N,C\].*got \(3,\)"):
        entropy_scores(torch.ones(3))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    c=st.integers(2, 6),
    k=st.integers(0, 50),
    seed=st.integers(0, 10_000),
    name=st.sampled_from(["least_confidence", "margin", "entropy", "random"]),
)
def test_selection_properties(n, c, k, seed, name):
    probs = _probs(n, c, seed)
    strat = get_strategy(name)
    acq = strat.select(AcquisitionInputs(n=n, probs_N_C=probs), k, torch.Generator().manual_seed(seed))
    idx = acq.indices.tolist()
    assert len(idx) == min(k, n) == len(set(idx))
    assert all(0 <= i < n for i in idx)
    again = strat.select(AcquisitionInputs(n=n, probs_N_C=probs), k, torch.Generator().manual_seed(seed))
    assert torch.equal(acq.indices, again.indices)
    if name != "random":
        assert torch.all(acq.scores[:-1] >= acq.scores[1:])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 40), c=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_permuting_the_pool_permutes_the_scores(n, c, seed):
    probs = _probs(n, c, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for fn in (entropy_scores, least_confidence_scores, margin_scores):
        assert torch.allclose(fn(probs)[perm], fn(probs[perm]))


def test_top_k_breaks_ties_by_index():
    acq = top_k(torch.tensor([1.0, 2.0, 2.0, 0.5]), 2)
    assert acq.indices.tolist() == [1, 2]
