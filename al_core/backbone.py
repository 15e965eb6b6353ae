"""A frozen pretrained backbone (``model.backbone``): its features are computed once per sample at
``prepare`` and stored as the pool's features, so each round trains only the head (``model.arch``,
``auto`` = mlp) — active learning with a pretrained image model on a CPU.

The file is TorchScript (``torch.jit.save``), or weights (a state dict) loaded with
``weights_only=True`` into the module ``model.backbone_factory`` builds; never an arbitrary pickle.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from al_core.data import Dataset
from al_core.errors import ConfigError

if TYPE_CHECKING:
    from al_core.config import Params


def load_backbone(path: str, factory: str | None = None) -> nn.Module:
    """The backbone in eval mode, on the CPU (TorchScript, or weights into ``factory()``'s module)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.backbone = {path}: no such file; give a TorchScript .pt (torch.jit.save)")
    try:
        net = torch.jit.load(str(file), map_location="cpu")
    except RuntimeError as jit_error:
        if not factory:
            raise ConfigError(
                f"model.backbone = {path} is not TorchScript ({str(jit_error).splitlines()[0]}); save it with "
                "torch.jit.save, or set model.backbone_factory to the function building the module its weights fit"
            ) from jit_error
        from al_core.architectures.custom import load_callable

        net = load_callable(factory, "model.backbone_factory")()
        _load_weights(net, file, factory)
    return net.eval()


def _load_weights(net: object, file: Path, factory: str) -> None:
    """Load a state dict read with ``weights_only=True`` (no pickled code) into ``net``."""
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.backbone_factory = {factory} returned {type(net).__name__}, not an nn.Module")
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code: say so
        raise ConfigError(f"model.backbone = {file}: not weights torch.load(weights_only=True) reads ({exc})") from exc
    try:
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ConfigError(f"model.backbone = {file}: the weights do not fit backbone_factory's module ({exc})") from exc


@torch.no_grad()
def backbone_features(
    net: nn.Module, X: np.ndarray, input_shape: tuple[int, ...], chunk: int = 256, device: str = "cpu"
) -> np.ndarray:
    """X [N, F] (rows of ``input_shape``) → the backbone's features [N, d] float32, in chunks."""
    net = net.to(device)
    out: list[np.ndarray] = []
    for s in range(0, len(X), chunk):
        xb = torch.as_tensor(np.ascontiguousarray(X[s : s + chunk]), dtype=torch.float32).to(device)
        h = net(xb.reshape(len(xb), *input_shape))
        if not isinstance(h, torch.Tensor) or h.dim() < 2:
            raise ConfigError(f"model.backbone must map [N, {', '.join(map(str, input_shape))}] to features [N, d]")
        out.append(h.reshape(len(xb), -1).float().cpu().numpy())
    d = out[0].shape[1] if out else 0
    return np.concatenate(out) if out else np.zeros((0, d), dtype=np.float32)


def apply_backbone(params: Params, ds: Dataset, val: Dataset | None) -> tuple[Dataset, Dataset | None]:
    """``ds`` (and ``val``) with their rows replaced by the backbone's features (uris kept for the
    queue); unchanged without ``model.backbone``."""
    m = params.model
    if not m.backbone:
        return ds, val
    from al_core.models import resolve_device

    net = load_backbone(m.backbone, m.backbone_factory)
    device = str(resolve_device(params.training.device))

    def f(X: np.ndarray) -> np.ndarray:
        return backbone_features(net, X, ds.input_shape, device=device)

    pool_X, test_X = f(ds.pool_X), f(ds.test_X)
    out = replace(ds, pool_X=pool_X, test_X=test_X, input_shape=(pool_X.shape[1],), decode=None)
    if val is not None:
        val = replace(val, pool_X=f(val.pool_X), test_X=f(val.test_X), input_shape=out.input_shape, decode=None)
    return out, val
