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


@pytest.mark.parametrize(("arch", "shape"), [("mlp", (12,)), ("cnn1d", (40,)), ("bbald_cnn", (1, 16, 16))])
def test_each_pass_is_one_model_for_every_row_and_every_chunk(arch, shape):
    """Consistent MC dropout (Kirsch et al. 2019): pass k applies the same masks to all rows, so
    identical inputs get identical predictions within a pass, whatever the chunking."""
    net = build_network(arch, shape, 5, hidden=16, dropout=0.5)
    x = torch.randn(1, int(torch.tensor(shape).prod()), generator=torch.Generator().manual_seed(2))
    X = torch.cat([x.repeat(9, 1), torch.randn(14, x.shape[1], generator=torch.Generator().manual_seed(3))])
    lp = mc_log_probs(net, X, 7, torch.Generator().manual_seed(4), chunk_size=7 * 4)  # 4 rows per chunk
    torch.testing.assert_close(lp[:9], lp[:1].expand(9, -1, -1))  # rows 0-8 span three chunks
    assert not torch.allclose(lp[0, 0], lp[0, 1])  # while the passes differ
    whole = mc_log_probs(net, X, 7, torch.Generator().manual_seed(4), chunk_size=10_000)
    torch.testing.assert_close(lp, whole, atol=1e-5, rtol=1e-5)


def test_channel_dropout_drops_whole_feature_maps_in_training():
    from al_core.models import GeneratorDropout

    drop = GeneratorDropout(0.5, channelwise=True).train()
    drop.generator = torch.Generator().manual_seed(0)
    out = drop(torch.ones(8, 16, 5, 5))
    per_map = out.flatten(2)
    assert torch.equal(per_map.amin(2), per_map.amax(2))  # each map is all 0 or all 2
    assert set(per_map[..., 0].unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(per_map[0, :, 0], per_map[1, :, 0])  # a mask per sample while training


def test_fast_max_pool_equals_torch_max_pool_and_keeps_its_gradient():
    import torch.nn.functional as F

    from al_core.models import MaxPool2x2

    x = torch.randn(3, 4, 9, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), F.max_pool2d(x, 2))
        assert torch.equal(MaxPool2x2()(x.to(memory_format=torch.channels_last)), F.max_pool2d(x, 2))
    xg = x.clone().requires_grad_()
    MaxPool2x2()(xg).sum().backward()
    assert xg.grad.sum() == 3 * 4 * 4 * 3  # one gradient entry per pooled window, as max_pool2d
