"""CEAL wrapper (Wang et al. 2016): threshold schedule, pseudo-labels, delegation to the base."""

from __future__ import annotations

import pytest
import torch
from _acq_helpers import gen, mc_log_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.acquisition import AcquisitionInputs, get_strategy
from al_core.acquisition.ceal import ceal_pseudo_labels, ceal_threshold
from al_core.acquisition.uncertainty import entropy_scores
from al_core.config import AcquisitionParams, CealParams


def test_threshold_schedule_decreases_linearly_and_reaches_zero():
    assert ceal_threshold(0.05, 0.01, 0) == pytest.approx(0.05)
    assert ceal_threshold(0.05, 0.01, 3) == pytest.approx(0.02)
    assert ceal_threshold(0.05, 0.01, 5) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        ceal_threshold(0.05, 0.01, -1)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 60), st.integers(2, 6), st.floats(0.0, 1.0), st.floats(0.0, 0.2), st.integers(0, 10))
def test_pseudo_labels_are_the_confident_samples_with_their_argmax(N, C, delta0, decay, t):
    g = gen(N * 7 + C)
    probs = torch.softmax(torch.randn(N, C, generator=g) * 4, dim=-1)
    idx, labels = ceal_pseudo_labels(probs, delta0, decay, t)
    delta = delta0 - decay * t
    if delta <= 0:
        assert idx.numel() == 0 and labels.numel() == 0
        return
    want = (entropy_scores(probs) < delta).nonzero().squeeze(1)
    assert idx.tolist() == want.tolist()
    assert labels.tolist() == probs[want].argmax(1).tolist()
    assert idx.dtype == labels.dtype == torch.long


@pytest.mark.parametrize("base", ["entropy", "badge", "batchbald", "coreset", "random"])
def test_wrapper_delegates_select_and_needs(base):
    params = AcquisitionParams(strategy=f"ceal+{base}", ceal=CealParams(delta0=0.3, decay=0.1))
    s = get_strategy(f"ceal+{base}", params)
    b = get_strategy(base, params)
    assert s.name == f"ceal+{base}" and s.needs == b.needs | {"probs"}
    lp = mc_log_probs(0, 30, 4, 3)
    g2 = torch.Generator().manual_seed(1)
    inputs = AcquisitionInputs(
        n=30,
        probs_N_C=lp.exp().mean(1),
        log_probs_N_K_C=lp,
        embeddings_N_D=torch.randn(30, 5, generator=g2),
        labeled_embeddings_M_D=torch.randn(2, 5, generator=g2),
    )
    assert s.select(inputs, 5, gen(3)).indices.tolist() == b.select(inputs, 5, gen(3)).indices.tolist()
    assert b.pseudo_labels(inputs.probs_N_C, 0) is None
    idx, _ = s.pseudo_labels(inputs.probs_N_C, 0)
    assert idx.tolist() == (entropy_scores(inputs.probs_N_C) < 0.3).nonzero().squeeze(1).tolist()
    assert s.pseudo_labels(inputs.probs_N_C, 3)[0].numel() == 0  # δ_3 = 0
