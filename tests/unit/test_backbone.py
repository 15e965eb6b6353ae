"""model.backbone: a frozen pretrained network's features, computed once at prepare."""

import textwrap

import numpy as np
import pytest
import torch

from al_core.backbone import apply_backbone, load_backbone
from al_core.config import parse_params
from al_core.data import Dataset
from al_core.errors import ConfigError

FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(2)

        def forward(self, x):
            return self.pool(torch.relu(self.conv(x))).flatten(1)

    def build():
        return Backbone()
    """
)


_NS: dict = {}
exec(FACTORY, _NS)  # the same module class the factory file builds
Backbone = _NS["Backbone"]


def _dataset(n=30):
    rng = np.random.default_rng(0)
    X = rng.random((n, 64), dtype=np.float32)
    ids = np.array([f"s-{i}" for i in range(n)])
    return Dataset(ids[:20], X[:20], np.arange(20) % 2, ids[20:], X[20:], np.arange(10) % 2, ["a", "b"], (1, 8, 8))


def _params(**model):
    return parse_params({"model": model, "training": {"device": "cpu"}})


def test_torchscript_backbone_features_replace_the_rows(tmp_path):
    torch.manual_seed(0)
    net = Backbone().eval()
    torch.jit.save(torch.jit.trace(net, torch.rand(2, 1, 8, 8)), tmp_path / "bb.pt")
    ds = _dataset()
    out, val = apply_backbone(_params(backbone=str(tmp_path / "bb.pt")), ds, None)
    assert out.input_shape == (16,) and out.pool_X.shape == (20, 16) and val is None
    with torch.no_grad():
        expected = net(torch.as_tensor(ds.test_X).reshape(10, 1, 8, 8)).numpy()
    assert np.allclose(out.test_X, expected, atol=1e-6)
    assert _params(backbone=str(tmp_path / "bb.pt")).resolved_arch() == "mlp"  # only a head is trained
    assert apply_backbone(_params(), ds, None)[0] is ds


def test_weights_with_a_factory_and_pickles_refused(tmp_path):
    (tmp_path / "bb.py").write_text(FACTORY)
    torch.manual_seed(1)
    net = Backbone()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded = load_backbone(str(tmp_path / "w.pt"), f"{tmp_path / 'bb.py'}:build")
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(loaded(x), net.eval()(x))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled.pt")  # a whole pickled module: never unpickled
    with pytest.raises(ConfigError, match="weights_only"):
        load_backbone(str(tmp_path / "pickled.pt"), f"{tmp_path / 'bb.py'}:build")
    with pytest.raises(ConfigError, match=r"not TorchScript.*torch\.jit\.save"):
        load_backbone(str(tmp_path / "w.pt"))
    with pytest.raises(ConfigError, match="no such file"):
        load_backbone(str(tmp_path / "missing.pt"))
