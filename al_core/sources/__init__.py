"""Data sources (``dataset.name``): one module each, registered in :data:`SOURCES`.

A module declares its params model (a :class:`SourceParams` subclass with ``name: Literal[...]``),
its loader, its default architecture and its DVC dependencies, and registers a
:class:`DataSource`. The params schema (a discriminated union on ``dataset.name``), the CLI help,
the errors and the README table are built from this registry.
"""

from __future__ import annotations

from typing import Any

from al_core.data import Dataset
from al_core.registry import Registry
from al_core.sources._base import DataSource, SourceParams

SOURCES: Registry[DataSource] = Registry("data source", "al_core.sources", "dataset.name")

__all__ = ["SOURCES", "DataSource", "SourceParams", "dataset_params", "get_source", "load_dataset", "sources_table"]


def get_source(name: str) -> DataSource:
    return SOURCES.get(name)


def dataset_params(**values: Any) -> SourceParams:
    """The params model of ``values["name"]`` (default mnist1d), validated."""
    return get_source(values.setdefault("name", "mnist1d")).params(**values)


def load_dataset(p: SourceParams) -> Dataset:
    """Build the :class:`Dataset` that ``dataset`` in params.yaml describes."""
    return get_source(p.name).load(p)


def sources_table() -> str:
    """The markdown table of data sources (README, docs): name, what it is, ``--data``, default model."""
    rows = ["| `dataset.name` | what | `--data` | `model.arch: auto` |", "|---|---|---|---|"]
    for name, s in SOURCES.items():
        rows.append(f"| `{name}` | {s.summary} | {s.data_help or '—'} | `{s.default_arch}` |")
    return "\n".join(rows)
