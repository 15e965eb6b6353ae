"""``bbald_cnn``: the MNIST CNN of BatchBALD (Kirsch et al. 2019; batchbald_redux's BayesianConvNet)."""

from __future__ import annotations

from torch import nn

from al_core.architectures import ARCHITECTURES, Architecture, NetSpec
from al_core.architectures.cnn2d import image_shape
from al_core.errors import ConfigError
from al_core.models import ALNet, GeneratorDropout, MaxPool2x2, Reshape


def build(spec: NetSpec) -> ALNet:
    """conv 32 5×5 → dropout2d → maxpool → ReLU, conv 64 5×5 → dropout2d → maxpool → ReLU,
    fc ``hidden`` (128) → dropout → ReLU → (head) fc C.

    A channel-dropout mask is ≥ 0 and constant over each feature map, so it commutes with max
    pooling and ReLU: each dropout sits after its pool and ReLU here (the same function, 4× fewer
    elements to mask), and the trunk (conv1 → pool → ReLU) holds no dropout."""
    channels, h, w = image_shape("bbald_cnn", spec.input_shape)
    oh, ow = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
    if oh < 1 or ow < 1:
        raise ConfigError(f"model.arch = bbald_cnn needs images of at least 16×16, got {h}×{w}: use cnn2d")
    p = spec.dropout
    trunk = nn.Sequential(Reshape(channels, h, w), nn.Conv2d(channels, 32, 5), MaxPool2x2(), nn.ReLU())
    tail = nn.Sequential(
        GeneratorDropout(p, channelwise=True),
        nn.Conv2d(32, 64, 5),
        MaxPool2x2(),
        nn.ReLU(),
        GeneratorDropout(p, channelwise=True),
        nn.Flatten(),
        nn.Linear(64 * oh * ow, spec.hidden),
        GeneratorDropout(p),
        nn.ReLU(),
    )
    return ALNet(trunk, tail, nn.Linear(spec.hidden, spec.n_classes))


ARCHITECTURES.register(
    "bbald_cnn",
    Architecture("bbald_cnn", build, "the BatchBALD paper's MNIST CNN (Kirsch et al. 2019); images ≥ 16×16"),
)
