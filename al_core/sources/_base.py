"""What a data source is: its params model, its loader, its default architecture, its DVC deps.

A source turns its ``dataset.*`` params into a :class:`~al_core.data.Dataset` (``load``), and can
hand the pool out in shards (``iter_pool``: (ids, X) chunks) so a pool too big for memory can be
streamed. A source whose pool lives in files (``uri`` pools, e.g. images) also ``decode``\\ s rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from al_core.data import Dataset
from al_core.sections import Section


class SourceParams(Section):
    """Keys every data source takes; each source adds its own (and ``name``, the union's tag)."""

    name: str
    seed: int = Field(default=0, description="seed of data generation and splits")
    val_size: int | None = Field(
        default=None,
        ge=1,
        description="a labeled validation split taken out of the pool by prepare (early stopping, never queued)",
    )


@dataclass(frozen=True)
class PreparedFiles:
    """Where the prepare stage writes a workspace's pool, test and validation tables and the ground truth."""

    pool: Path
    test: Path
    val: Path
    truth: Path


#: decode(uris [N], digests [N], spec) -> X [N, F] float32: how a uri pool's rows become features
Decoder = Callable[[np.ndarray, np.ndarray, dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class DataSource:
    """One registered data source (``dataset.name``)."""

    name: str
    params: type[SourceParams]
    load: Callable[[Any], Dataset]
    #: the architecture ``model.arch: auto`` picks for this source
    default_arch: str
    #: one line for the CLI help, the README table and errors
    summary: str
    #: params keys that hold input files, in the order ``alp init --data`` fills them; their
    #: local paths are the prepare stage's DVC dependencies
    path_keys: tuple[str, ...] = ()
    #: what ``--data`` means for this source (CLI help, README)
    data_help: str = ""
    decode: Decoder | None = None
    extra_deps: Callable[[Any], list[str]] = field(default=lambda p: [])
    #: prepare_stream(params, files) -> meta, or None when this input must be loaded whole: writes
    #: the prepared files from the input read in shards (a table of millions of rows)
    prepare_stream: Callable[[Any, PreparedFiles], dict[str, Any] | None] | None = None

    def arch_for(self, p: SourceParams, input_shape: tuple[int, ...] | None = None) -> str:
        """``model.arch: auto``: cnn1d for a declared [C, L] shape, cnn2d for [C, H, W], else the default."""
        shape = tuple(getattr(p, "shape", None) or input_shape or ())
        return {2: "cnn1d", 3: "cnn2d"}.get(len(shape), self.default_arch)

    def dvc_deps(self, p: SourceParams) -> list[str]:
        """Local input files and folders the prepare stage depends on (S3 objects are not DVC deps)."""
        paths = [getattr(p, k) for k in self.path_keys] + self.extra_deps(p)
        return [str(Path(v).expanduser().resolve()) for v in paths if v and not str(v).startswith("s3://")]

    def iter_pool(self, p: SourceParams, shard_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The pool as (ids [n], X [n, F]) shards of at most ``shard_size`` rows, in pool order."""
        ds = self.load(p)
        for start in range(0, len(ds.pool_ids), shard_size):
            yield ds.pool_ids[start : start + shard_size], ds.pool_X[start : start + shard_size]
