"""A sample's bytes by uri: local paths here; other schemes (``s3://``) are read by a reader the I/O
layer registers (tasks/s3.py), so al_core holds no network client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from al_core.errors import DatasetError

#: scheme → function(uri) -> bytes, registered by the I/O layer
READERS: dict[str, Callable[[str], bytes]] = {}
#: scheme → function() -> a pyarrow filesystem for it (big tables read through pyarrow datasets)
FILESYSTEMS: dict[str, Callable[[], Any]] = {}


def register_filesystem(scheme: str, factory: Callable[[], Any]) -> None:
    FILESYSTEMS[scheme] = factory


def filesystem_for(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) for a local path or a ``scheme://…`` uri (None: local)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None, str(Path(uri).expanduser())
    factory = FILESYSTEMS.get(scheme)
    if factory is None:
        raise DatasetError(
            f"no filesystem for {scheme}:// tables ({uri}); known: {', '.join(sorted(FILESYSTEMS)) or 'none'}"
        )
    return factory(), rest


def register_reader(scheme: str, reader: Callable[[str], bytes]) -> None:
    READERS[scheme] = reader


def read_bytes(uri: str) -> bytes:
    """The bytes of a local file, or of a ``scheme://…`` object through its registered reader."""
    scheme, sep, _ = uri.partition("://")
    if not sep:
        return Path(uri).read_bytes()
    reader = READERS.get(scheme)
    if reader is None:
        raise DatasetError(f"no reader for {scheme}:// uris ({uri}); known: {', '.join(sorted(READERS)) or 'none'}")
    return reader(uri)
