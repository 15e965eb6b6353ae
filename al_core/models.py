"""Models: an MLP, a 1-D CNN (sequences, sensor time series) and a small 2-D CNN (images).

Each network is ``trunk`` (deterministic) → ``tail`` (holds every dropout layer, ends in the
penultimate embedding) → ``head`` (linear, logits). Dropout draws its masks from an explicit
``torch.Generator`` so MC-dropout passes (Gal & Ghahramani 2016) are reproducible without any
global RNG, and the trunk can be run once per sample while the tail runs K times.

:class:`NeuralClassifier` wraps a network estimator-style (skorch/sklearn habits): ``__init__``
stores arguments only, ``fit`` sets attributes ending in ``_``.
"""

from __future__ import annotations

import copy
import io
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from al_core.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"training.device = {device!r} is not a device: use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device = {device!r} but no CUDA device is available: use auto or cpu")
    return dev


#: rows per inference chunk when ``training.chunk_size`` is null: CPU activations that stay in
#: cache (4096-row chunks of the BatchBALD CNN are 2–4× slower per row), big chunks on a GPU
AUTO_CHUNK = {"cpu": 256, "cuda": 4096}


def resolve_chunk_size(chunk_size: int | None, device: torch.device) -> int:
    """``training.chunk_size``, or when null the device's default (:data:`AUTO_CHUNK`)."""
    return chunk_size if chunk_size else AUTO_CHUNK.get(device.type, AUTO_CHUNK["cuda"])


#: what early stopping watches on the validation set
EarlyStopping = Literal["loss", "accuracy"]
EARLY_STOPPING: tuple[str, ...] = get_args(EarlyStopping)


#: weight averaging of a fixed training schedule: none, or SWA over its last quarter (Izmailov et al. 2018)
WeightAveraging = Literal["none", "swa"]
WEIGHT_AVERAGING: tuple[str, ...] = get_args(WeightAveraging)
SWA_START = 0.75


def running_average(
    avg: dict[str, torch.Tensor] | None, state: dict[str, torch.Tensor], k: int
) -> dict[str, torch.Tensor]:
    """Stochastic weight averaging's running mean (Izmailov et al. 2018): the mean of ``k`` earlier
    states ``avg`` and ``state``; non-float entries (counters) take the newest value."""
    if avg is None:
        return {name: v.detach().clone() for name, v in state.items()}
    for name, v in state.items():
        if v.is_floating_point():
            avg[name] += (v.detach() - avg[name]) / (k + 1)
        else:
            avg[name] = v.detach().clone()
    return avg


class GeneratorDropout(nn.Module):
    """Inverted dropout whose masks come from ``self.generator`` (never the global RNG).

    ``channelwise=True`` drops whole feature maps (``nn.Dropout2d``), as the BatchBALD CNN does.
    Active while the module is in training mode (a fresh mask per sample), or inside
    :func:`mc_dropout` at inference, where the rows are K stacked copies of the batch and pass k
    uses one mask for every row and every chunk: *consistent* MC dropout (Kirsch et al. 2019,
    §4), so each pass is one sampled model ω_k and BatchBALD's joint over a batch is well defined.
    """

    def __init__(self, p: float, channelwise: bool = False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"model.dropout = {p} must be in [0, 1)")
        self.p = p
        self.channelwise = channelwise
        self.generator: torch.Generator | None = None
        self.mc_samples = 0  # K while inside mc_dropout()
        self._mc_mask: torch.Tensor | None = None

    def _mask(self, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            raise RuntimeError("GeneratorDropout needs a generator: use NeuralClassifier or set_dropout_generator()")
        if self.channelwise:  # one draw per feature map: [..., C, 1, 1]
            shape = shape[: len(shape) - (x.dim() - 2)] + (1,) * (x.dim() - 2)
        keep = torch.rand(shape, generator=self.generator, device=x.device, dtype=x.dtype) >= self.p
        return keep.to(x.dtype) / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.mc_samples:
            K = self.mc_samples
            if x.shape[0] % K:
                raise RuntimeError(f"MC dropout expects K={K} stacked copies of the batch, got {x.shape[0]} rows")
            if self._mc_mask is None:  # drawn once per mc_dropout() context: [K, 1, *features]
                self._mc_mask = self._mask((K, 1, *x.shape[1:]), x)
            return (x.view(K, -1, *x.shape[1:]) * self._mc_mask).view(x.shape)
        if not self.training:
            return x
        return x * self._mask(tuple(x.shape), x)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", channelwise" if self.channelwise else "")


def set_dropout_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    for m in module.modules():
        if isinstance(m, GeneratorDropout):
            m.generator = generator


@contextmanager
def mc_dropout(module: nn.Module, generator: torch.Generator, mc_samples: int) -> Iterator[None]:
    """MC dropout at inference: inside, the module takes K = ``mc_samples`` stacked copies of a
    batch ([K·B, ...], pass-major) and pass k applies the same masks to every row, drawn once
    from ``generator`` (consistent MC dropout, as batchbald_redux does)."""
    if mc_samples < 1:
        raise ValueError(f"mc_samples must be ≥ 1, got {mc_samples}")
    drops = [m for m in module.modules() if isinstance(m, GeneratorDropout)]
    old = [(m.mc_samples, m.generator) for m in drops]
    for m in drops:
        m.mc_samples, m.generator, m._mc_mask = mc_samples, generator, None
    try:
        yield
    finally:
        for m, (k, gen) in zip(drops, old, strict=True):
            m.mc_samples, m.generator, m._mc_mask = k, gen, None


def stack_passes(h: torch.Tensor, mc_samples: int) -> torch.Tensor:
    """[B, ...] → [K·B, ...]: K copies of the batch, pass-major (the layout mc_dropout expects)."""
    return h.unsqueeze(0).expand(mc_samples, *h.shape).reshape(mc_samples * h.shape[0], *h.shape[1:])


class MaxPool2x2(nn.Module):
    """2×2 max pooling, stride 2 (``nn.MaxPool2d(2)``); without autograd it is computed as two
    elementwise maxima over strided views, ~10× faster than the pooling kernel on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return F.max_pool2d(x, 2)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class ALNet(nn.Module):
    """trunk → tail (dropout, embedding) → head."""

    def __init__(self, trunk: nn.Module, tail: nn.Module, head: nn.Linear):
        super().__init__()
        self.trunk, self.tail, self.head = trunk, tail, head

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(self.trunk(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(x))


def build_network(
    arch: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    hidden: int = 128,
    dropout: float = 0.25,
    generator: torch.Generator | None = None,
    factory: str | None = None,
) -> ALNet:
    """Build the registered architecture ``arch`` (:mod:`al_core.architectures`) as an :class:`ALNet`
    for inputs of ``input_shape`` (without the batch dimension); ``factory``: ``model.factory``.

    Built-in layers are created on the meta device and initialised from ``generator`` (seed 0 if
    None), so building a network never draws from the global RNG. 2-D conv weights are
    channels-last, which oneDNN trains ~1.7× faster on a CPU (and GPUs prefer too).
    """
    from al_core.architectures import NetSpec, get_architecture

    generator = generator if generator is not None else _generator(0, torch.device("cpu"))
    architecture = get_architecture(arch)
    spec = NetSpec(tuple(input_shape), n_classes, hidden, dropout, factory, seed=generator.initial_seed())
    if not architecture.seeded_init:
        return architecture.build(spec)
    with torch.device("meta"):
        net = architecture.build(spec)
    net = net.to_empty(device="cpu")
    init_weights(net, generator)
    if any(isinstance(m, nn.Conv2d) for m in net.modules()):
        net = net.to(memory_format=torch.channels_last)
    return net


class Reshape(nn.Module):
    """Reshape flat feature rows [N, prod(shape)] into [N, *shape]."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear/Conv initialisation, drawn from ``generator``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0


def _generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


class NeuralClassifier:
    """Estimator around an :class:`ALNet`: ``fit``, ``predict_proba``, ``predict_log_proba``, ``embed``.

    Training is Adam with early stopping on a validation split of the labeled set
    (best weights restored), judged by validation loss or, as in BatchBALD's experiments
    (Kirsch et al. 2019), validation accuracy (``early_stopping``). Fitted attributes:
    ``module_``, ``history_``, ``device_``.
    """

    def __init__(
        self,
        arch: str,
        input_shape: tuple[int, ...],
        n_classes: int,
        hidden: int = 128,
        dropout: float = 0.25,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 10,
        min_steps: int = 300,
        val_fraction: float = 0.2,
        device: str = "auto",
        seed: int = 0,
        chunk_size: int | None = None,
        epoch_samples: int | None = None,
        early_stopping: EarlyStopping = "loss",
        factory: str | None = None,
        weight_averaging: WeightAveraging = "none",
    ):
        if early_stopping not in EARLY_STOPPING:
            raise ValueError(f"early_stopping must be one of {', '.join(EARLY_STOPPING)}, got {early_stopping!r}")
        if weight_averaging not in WEIGHT_AVERAGING:
            raise ValueError(f"weight_averaging must be one of {', '.join(WEIGHT_AVERAGING)}, got {weight_averaging!r}")
        self.arch = arch
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_steps = min_steps
        self.val_fraction = val_fraction
        self.device = device
        self.seed = seed
        self.chunk_size = chunk_size
        self.epoch_samples = epoch_samples
        self.early_stopping = early_stopping
        self.factory = factory
        self.weight_averaging = weight_averaging

    # ------------------------------------------------------------------ fit
    def _init_module(self) -> None:
        self.device_ = resolve_device(self.device)
        self.module_ = build_network(
            self.arch,
            self.input_shape,
            self.n_classes,
            self.hidden,
            self.dropout,
            generator=_generator(self.seed, torch.device("cpu")),
            factory=self.factory,
        ).to(self.device_)

    def fit(
        self,
        X: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        sample_weight: np.ndarray | torch.Tensor | None = None,
        X_val: np.ndarray | torch.Tensor | None = None,
        y_val: np.ndarray | torch.Tensor | None = None,
    ) -> NeuralClassifier:
        """Train on X [N, F] and integer labels y [N]; ``sample_weight`` [N] scales each sample's loss.

        ``X_val`` [V, F], ``y_val`` [V]: a fixed labeled validation set for early stopping (else a
        stratified ``val_fraction`` of the labeled set is held out)."""
        self._init_module()
        X_t = as_tensor(X, torch.float32)
        y_t = as_tensor(y, torch.long)
        w_t = torch.ones(len(y_t)) if sample_weight is None else as_tensor(sample_weight, torch.float32)
        if len(X_t) != len(y_t) or len(w_t) != len(y_t):
            raise ValueError(f"X, y and sample_weight differ in length: {len(X_t)}, {len(y_t)}, {len(w_t)}")
        if len(y_t) == 0:
            raise ValueError("cannot fit on an empty labeled set")
        if int(y_t.min()) < 0 or int(y_t.max()) >= self.n_classes:
            raise ValueError(f"labels must be in [0, {self.n_classes}), got [{int(y_t.min())}, {int(y_t.max())}]")
        rng = np.random.default_rng(self.seed)
        dev = self.device_
        if X_val is not None and y_val is not None and len(y_val):
            train_idx, val_idx = np.arange(len(y_t)), np.arange(len(y_val))
            Xva, yva = as_tensor(X_val, torch.float32).to(dev), as_tensor(y_val, torch.long).to(dev)
        else:
            train_idx, val_idx = stratified_split(y_t.numpy(), self.val_fraction, rng)
            Xva, yva = X_t[val_idx].to(dev), y_t[val_idx].to(dev)
        Xtr, ytr, wtr = X_t[train_idx].to(dev), y_t[train_idx].to(dev), w_t[train_idx].to(dev)

        g_shuffle = _generator(self.seed + 1, torch.device("cpu"))
        set_dropout_generator(self.module_, _generator(self.seed + 2, dev))
        opt = torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        hist = FitHistory()
        best_state, best_val, bad = None, math.inf, 0
        n = len(Xtr)
        # an epoch is one pass, or the shuffled set cycled to `epoch_samples` (RandomFixedLengthSampler)
        epoch_len = max(n, self.epoch_samples or 0)
        # Small labeled sets give one or two steps per epoch: train at least `min_steps` optimizer
        # steps before early stopping may end the run, so tiny sets are not left underfit.
        steps_per_epoch = math.ceil(epoch_len / self.batch_size)
        max_epochs = max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
        # without a validation split the schedule is fixed: SWA averages its last quarter's weights
        swa_from = math.floor(SWA_START * max_epochs) if self.weight_averaging == "swa" and not len(val_idx) else None
        averaged: dict[str, torch.Tensor] | None = None
        for epoch in range(max_epochs):
            self.module_.train()
            perm = torch.cat([torch.randperm(n, generator=g_shuffle) for _ in range(math.ceil(epoch_len / n))])
            perm = perm[:epoch_len].to(dev)
            total = 0.0
            for start in range(0, epoch_len, self.batch_size):
                idx = perm[start : start + self.batch_size]
                logits = self.module_(Xtr[idx])
                loss = (F.cross_entropy(logits, ytr[idx], reduction="none") * wtr[idx]).sum() / wtr[idx].sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            hist.train_loss.append(total / epoch_len)
            if swa_from is not None and epoch >= swa_from:
                averaged = running_average(averaged, self.module_.state_dict(), epoch - swa_from)
            if len(val_idx) == 0:
                continue
            val_loss, val_acc = self._val_metrics(Xva, yva)
            hist.val_loss.append(val_loss)
            hist.val_accuracy.append(val_acc)
            val = val_loss if self.early_stopping == "loss" else -val_acc  # lower is better
            if val < best_val - 1e-6:
                best_val, bad, hist.best_epoch = val, 0, epoch
                best_state = copy.deepcopy(self.module_.state_dict())
            else:
                bad += 1
                if bad >= self.patience and (epoch + 1) * steps_per_epoch >= self.min_steps:
                    break
        if best_state is not None:
            self.module_.load_state_dict(best_state)
        if averaged is not None:
            self.module_.load_state_dict(averaged)
        self.module_.eval()
        set_dropout_generator(self.module_, None)
        self.history_ = hist
        self.n_epochs_ = len(hist.train_loss)
        return self

    @torch.no_grad()
    def _val_metrics(self, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(cross-entropy, accuracy) of the deterministic network on a validation set."""
        self.module_.eval()
        rows = resolve_chunk_size(self.chunk_size, self.device_)  # logits stay on the device
        logits = torch.cat([self.module_(X[s : s + rows]) for s in range(0, len(X), rows)])
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError("this NeuralClassifier is not fitted yet: call fit() first")

    def _map_rows(self, X: np.ndarray | torch.Tensor, fn: Any, width: int) -> torch.Tensor:
        """``fn`` over the rows of X [N, F] in chunks of ``chunk_size`` (null: the device's default)
        on the model's device → [N, width] float32 on the CPU, written into one preallocated buffer
        (small per-chunk results kept alive between large activations fragment the heap)."""
        X_t = as_tensor(X, torch.float32)
        rows = resolve_chunk_size(self.chunk_size, self.device_)
        out = torch.empty(len(X_t), width)
        for start in range(0, len(X_t), rows):
            out[start : start + rows] = fn(X_t[start : start + rows].to(self.device_, non_blocking=True))
        return out

    @torch.no_grad()
    def predict_log_proba(
        self, X: np.ndarray | torch.Tensor, mc_samples: int | None = None, seed: int = 0
    ) -> torch.Tensor:
        """Log-probabilities: [N, C] deterministic, or [N, K, C] with ``mc_samples=K`` MC-dropout passes.

        Computed in chunks of ``chunk_size`` rows (× passes); the trunk runs once per chunk and only
        the stochastic tail and head run K times, pass k with the same masks for every row
        (consistent MC dropout, see :mod:`al_core.mc_dropout`). Returned on the CPU.
        """
        self._check_fitted()
        self.module_.eval()
        if mc_samples is None:
            return self._map_rows(X, lambda xb: F.log_softmax(self.module_(xb), dim=-1), self.n_classes)
        from al_core.mc_dropout import mc_log_probs

        chunk = resolve_chunk_size(self.chunk_size, self.device_)
        return mc_log_probs(self.module_, X, mc_samples, _generator(seed, self.device_), chunk_size=chunk)

    def predict_proba(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Probabilities [N, C] from a deterministic pass (dropout off)."""
        return self.predict_log_proba(X).exp()

    def predict(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.predict_log_proba(X).argmax(dim=1)

    @torch.no_grad()
    def embed(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Penultimate-layer embeddings [N, D] (dropout off), on the CPU."""
        self._check_fitted()
        self.module_.eval()
        return self._map_rows(X, self.module_.embed, self.module_.embedding_dim)

    # ------------------------------------------------------------ persist
    def get_params(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "arch",
                "input_shape",
                "n_classes",
                "hidden",
                "dropout",
                "epochs",
                "batch_size",
                "lr",
                "weight_decay",
                "patience",
                "min_steps",
                "val_fraction",
                "device",
                "seed",
                "chunk_size",
                "epoch_samples",
                "early_stopping",
                "weight_averaging",
                "factory",
            )
        }

    def to_bytes(self) -> bytes:
        self._check_fitted()
        buf = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}
        torch.save({"params": self.get_params(), "state_dict": state}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, device: str = "auto") -> NeuralClassifier:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        params = dict(blob["params"])
        params["input_shape"] = tuple(params["input_shape"])
        params["device"] = device
        clf = cls(**params)
        clf.device_ = resolve_device(device)
        clf.module_ = build_network(
            clf.arch, clf.input_shape, clf.n_classes, clf.hidden, clf.dropout, factory=clf.factory
        )
        clf.module_.load_state_dict(blob["state_dict"])
        clf.module_.to(clf.device_).eval()
        return clf


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val) with ≈ ``fraction`` of each class in val.

    A class with fewer than 2 samples stays wholly in train; with fewer than 5 samples in all
    there is no validation split (early stopping is then off).
    """
    idx = np.arange(len(y))
    if fraction <= 0 or len(y) < 5:
        return idx, idx[:0]
    val: list[np.ndarray] = []
    for c in np.unique(y):
        members = idx[y == c]
        n_val = round(len(members) * fraction)
        if len(members) >= 2 and n_val >= 1:
            val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else idx[:0]
    train_idx = np.setdiff1d(idx, val_idx)
    return train_idx, val_idx


def as_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a tensor of ``dtype`` (read-only arrays, e.g. zero-copy from Arrow, are copied)."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    arr = np.asarray(x)
    if not arr.flags.writeable:  # e.g. zero-copy from Arrow
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype)
