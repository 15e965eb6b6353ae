"""model.arch: custom — a user's nn.Module from a module path or a .py file, and its contract check."""

import textwrap

import numpy as np
import pytest
import torch

from al_core.architectures import NetSpec
from al_core.architectures.custom import check_network
from al_core.errors import ConfigError
from al_core.mc_dropout import mc_log_probs
from al_core.models import GeneratorDropout, NeuralClassifier, build_network

NETS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class SensorNet(nn.Module):
        def __init__(self, input_shape, n_classes):
            super().__init__()
            c, length = input_shape
            self.trunk = nn.Sequential(nn.Conv1d(c, 8, 3, padding=1), nn.ReLU(), nn.Flatten())
            self.tail = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * length, 16), nn.ReLU())
            self.head = nn.Linear(16, n_classes)

        def embed(self, x):
            return self.tail(self.trunk(x))

        def forward(self, x):
            return self.head(self.embed(x))

    class PlainNet(nn.Module):
        def __init__(self, input_shape, n_classes, dropout=0.2):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), 12),
                                      nn.ReLU(), nn.Dropout(dropout))
            self.head = nn.Linear(12, n_classes)

        def embed(self, x):
            return self.body(x)

        def forward(self, x):
            return self.head(self.embed(x))

    def build(input_shape, n_classes):
        return SensorNet(input_shape, n_classes)

    def build_plain(input_shape, n_classes):
        return PlainNet(input_shape, n_classes)

    def build_no_dropout(input_shape, n_classes):
        return PlainNet(input_shape, n_classes, dropout=0.0)

    def build_not_a_module(input_shape, n_classes):
        return "a model"

    def build_no_head(input_shape, n_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), n_classes))

    def build_wrong_classes(input_shape, n_classes):
        return PlainNet(input_shape, n_classes + 1)
    """
)


@pytest.fixture
def nets_file(tmp_path):
    path = tmp_path / "my_nets.py"
    path.write_text(NETS)
    return path


def _data(n=60, shape=(3, 10), seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, *shape)).astype(np.float32) + y[:, None, None]
    return X.reshape(n, -1), y


def test_custom_model_from_a_file_trains_scores_and_round_trips(nets_file):
    X, y = _data()
    state = torch.random.get_rng_state()
    clf = NeuralClassifier("custom", (3, 10), 3, factory=f"{nets_file}:build", epochs=5, min_steps=20, seed=1)
    clf.fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)  # the factory ran under a forked RNG
    assert clf.predict_proba(X).argmax(1).float().eq(torch.as_tensor(y)).float().mean() > 0.6
    # consistent MC dropout; the trunk cache gives the same passes as full passes
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    cached = mc_log_probs(clf.module_, X[:7], 4, g(), chunk_size=8, cache_trunk=True)
    full = mc_log_probs(clf.module_, X[:7], 4, g(), chunk_size=8, cache_trunk=False)
    assert cached.shape == (7, 4, 3) and torch.allclose(cached, full, atol=1e-5)
    assert not torch.allclose(cached[:, 0], cached[:, 1])  # passes differ: dropout is active
    assert clf.embed(X).shape == (60, 16)
    again = NeuralClassifier.from_bytes(clf.to_bytes(), device="cpu")
    assert torch.allclose(again.predict_log_proba(X), clf.predict_log_proba(X))
    # same seed, same weights
    a = build_network("custom", (3, 10), 3, factory=f"{nets_file}:build", generator=torch.Generator().manual_seed(3))
    b = build_network("custom", (3, 10), 3, factory=f"{nets_file}:build", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_custom_model_from_a_module_path(nets_file, monkeypatch):
    monkeypatch.syspath_prepend(str(nets_file.parent))
    net = build_network("custom", (1, 4, 4), 2, factory="my_nets:build_plain")
    assert sum(isinstance(m, GeneratorDropout) for m in net.modules()) == 1  # nn.Dropout swapped
    check_network(net, NetSpec((1, 4, 4), 2, factory="my_nets:build_plain"), mc_strategy="bald")
    assert net(torch.zeros(5, 16)).shape == (5, 2)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        ("build_not_a_module", "returned str, not a torch nn.Module"),
        ("build_no_head", "needs `head`"),
        ("build_wrong_classes", "head has 3 outputs but the data has 2 classes"),
        ("nope", "has no function 'nope'"),
    ],
)
def test_factory_that_breaks_the_contract_is_named(nets_file, fn, match):
    with pytest.raises(ConfigError, match=match):
        build_network("custom", (1, 4, 4), 2, factory=f"{nets_file}:{fn}")


def test_bald_without_dropout_is_refused_and_bad_specs_say_the_form(nets_file, tmp_path):
    factory = f"{nets_file}:build_no_dropout"
    net = build_network("custom", (1, 4, 4), 2, factory=factory)
    check_network(net, NetSpec((1, 4, 4), 2, factory=factory))  # fine for entropy
    with pytest.raises(ConfigError, match="bald needs dropout in the model: none found"):
        check_network(net, NetSpec((1, 4, 4), 2, factory=factory), mc_strategy="bald")
    with pytest.raises(ConfigError, match="no file"):
        build_network("custom", (4,), 2, factory=f"{tmp_path}/missing.py:build")
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        build_network("custom", (4,), 2, factory="just_a_name")
    with pytest.raises(ConfigError, match="cannot import"):
        build_network("custom", (4,), 2, factory="no_such_pkg_xyz:build")


def test_params_tie_factory_to_custom():
    from al_core.config import parse_params

    with pytest.raises(ConfigError, match=r"model\.arch = custom needs model\.factory"):
        parse_params({"model": {"arch": "custom"}})
    with pytest.raises(ConfigError, match=r"set model\.arch: custom"):
        parse_params({"model": {"arch": "mlp", "factory": "x.py:build"}})
    assert parse_params({"model": {"arch": "custom", "factory": "x.py:build"}}).resolved_arch() == "custom"
