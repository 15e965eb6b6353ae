"""``cnn2d``: a small 2-D CNN for images [H, W] or [C, H, W]."""

from __future__ import annotations

from torch import nn

from al_core.architectures import ARCHITECTURES, Architecture, NetSpec
from al_core.errors import ConfigError
from al_core.models import ALNet, GeneratorDropout, MaxPool2x2, Reshape


def image_shape(arch: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an image input [H, W] or [C, H, W] (else a :class:`ConfigError` naming ``arch``)."""
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    raise ConfigError(f"model.arch = {arch} needs inputs of shape [H, W] or [C, H, W], got {list(shape)}")


def build(spec: NetSpec) -> ALNet:
    channels, h, w = image_shape("cnn2d", spec.input_shape)
    trunk = nn.Sequential(
        Reshape(channels, h, w),
        nn.Conv2d(channels, 32, 5, padding=2),
        nn.ReLU(),
        MaxPool2x2(),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        MaxPool2x2(),
        nn.Flatten(),
    )
    flat, hid, p = 64 * (h // 4) * (w // 4), spec.hidden, spec.dropout
    tail = nn.Sequential(GeneratorDropout(p), nn.Linear(flat, hid), nn.ReLU(), GeneratorDropout(p))
    return ALNet(trunk, tail, nn.Linear(hid, spec.n_classes))


ARCHITECTURES.register("cnn2d", Architecture("cnn2d", build, "small 2-D CNN: images ([H, W] or [C, H, W])"))
