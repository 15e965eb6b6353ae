"""The small-data training protocol: a fixed schedule on every label, with stochastic weight averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.models import NeuralClassifier, running_average


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=8))
@settings(max_examples=40)
def test_running_average_is_the_mean_of_the_states(values):
    avg = None
    for k, v in enumerate(values):
        avg = running_average(avg, {"w": torch.tensor([v], dtype=torch.float64), "n": torch.tensor(k)}, k)
    assert float(avg["w"]) == pytest.approx(float(np.mean(values)), abs=1e-9)
    assert int(avg["n"]) == len(values) - 1  # integer buffers take the newest value


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 6)) + 2.0 * np.eye(3, 6)[y]).astype(np.float32)
    return X, y


def _clf(**kw):
    base = {"arch": "mlp", "input_shape": (6,), "n_classes": 3, "hidden": 16, "epochs": 150, "min_steps": 0}
    return NeuralClassifier(**{**base, "device": "cpu", "seed": 3, **kw})


def test_swa_averages_a_fixed_schedule_and_is_deterministic():
    X, y = _blobs(60, 0)
    plain = _clf(val_fraction=0.0).fit(X, y)
    swa = _clf(val_fraction=0.0, weight_averaging="swa").fit(X, y)
    again = _clf(val_fraction=0.0, weight_averaging="swa").fit(X, y)
    assert plain.n_epochs_ == swa.n_epochs_ == 150  # no validation split: the whole schedule runs
    w = [m.head.weight for m in (plain.module_, swa.module_, again.module_)]
    assert not torch.equal(w[0], w[1]) and torch.equal(w[1], w[2])
    Xt, yt = _blobs(300, 1)
    assert (swa.predict(Xt).numpy() == yt).mean() > 0.7
    # a saved SWA model predicts the same after loading
    loaded = NeuralClassifier.from_bytes(swa.to_bytes(), device="cpu")
    assert loaded.weight_averaging == "swa" and torch.equal(loaded.predict(Xt), swa.predict(Xt))


def test_weight_averaging_name_is_checked():
    with pytest.raises(ValueError, match="weight_averaging must be one of none, swa"):
        _clf(weight_averaging="ema")
