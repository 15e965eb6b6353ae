"""``mlp``: flatten → linear → ReLU | dropout → linear → ReLU → dropout | linear head."""

from __future__ import annotations

import numpy as np
from torch import nn

from al_core.architectures import ARCHITECTURES, Architecture, NetSpec
from al_core.models import ALNet, GeneratorDropout


def build(spec: NetSpec) -> ALNet:
    d, h, p = int(np.prod(spec.input_shape)), spec.hidden, spec.dropout
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU())
    tail = nn.Sequential(GeneratorDropout(p), nn.Linear(h, h), nn.ReLU(), GeneratorDropout(p))
    return ALNet(trunk, tail, nn.Linear(h, spec.n_classes))


ARCHITECTURES.register("mlp", Architecture("mlp", build, "two hidden layers, any input shape (tables, features)"))
