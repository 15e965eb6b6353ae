"""``cnn1d``: a 1-D CNN for sequences and multichannel sensor series, inputs [L] or [C, L]."""

from __future__ import annotations

from torch import nn

from al_core.architectures import ARCHITECTURES, Architecture, NetSpec
from al_core.errors import ConfigError
from al_core.models import ALNet, GeneratorDropout, Reshape


def _conv_len(n: int, k: int, pad: int, stride: int) -> int:
    return (n + 2 * pad - k) // stride + 1


def build(spec: NetSpec) -> ALNet:
    shape = spec.input_shape
    if len(shape) == 1:
        channels, length = 1, shape[0]
    elif len(shape) == 2:
        channels, length = shape
    else:
        raise ConfigError(f"model.arch = cnn1d needs inputs of shape [L] or [C, L], got {list(shape)}")
    trunk = nn.Sequential(
        Reshape(channels, length),
        nn.Conv1d(channels, 32, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(32, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv1d(32, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
    )
    flat = 32 * _conv_len(_conv_len(length, 3, 1, 2), 3, 1, 2)
    h, p = spec.hidden, spec.dropout
    tail = nn.Sequential(GeneratorDropout(p), nn.Linear(flat, h), nn.ReLU(), GeneratorDropout(p))
    return ALNet(trunk, tail, nn.Linear(h, spec.n_classes))


ARCHITECTURES.register("cnn1d", Architecture("cnn1d", build, "1-D CNN: sequences, sensor time series ([L] or [C, L])"))
