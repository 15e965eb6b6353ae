"""MC dropout with and without the cached trunk gives the same log-probabilities for the same masks."""

from __future__ import annotations

import pytest
import torch

from al_core.mc_dropout import mc_log_probs
from al_core.models import NeuralClassifier, build_network, init_weights


@pytest.mark.parametrize(("arch", "shape"), [("mlp", (12,)), ("cnn2d", (1, 8, 8))])
def test_cached_trunk_equals_full_passes_and_the_classifier(arch, shape):
    net = build_network(arch, shape, 4, hidden=16, dropout=0.3)
    init_weights(net, torch.Generator().manual_seed(0))
    X = torch.randn(37, int(torch.tensor(shape).prod()), generator=torch.Generator().manual_seed(1))
    cached = mc_log_probs(net, X, 6, torch.Generator().manual_seed(5), chunk_size=10, cache_trunk=True)
    full = mc_log_probs(net, X, 6, torch.Generator().manual_seed(5), chunk_size=10, cache_trunk=False)
    assert cached.shape == (37, 6, 4)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cached[:, 0], cached[:, 1])  # the passes do differ
    clf = NeuralClassifier(arch, shape, 4, hidden=16, dropout=0.3, chunk_size=10, device="cpu")
    clf.module_, clf.device_ = net, torch.device("cpu")
    torch.testing.assert_close(clf.predict_log_proba(X, mc_samples=6, seed=5), cached, atol=1e-5, rtol=1e-5)
