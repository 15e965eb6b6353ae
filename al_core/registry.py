"""A registry of named entries (data sources, architectures) filled by the modules of a package.

Each entry lives in one module of its package and calls :meth:`Registry.register` at import;
:meth:`Registry.load` imports every module of the package once (sorted, so the order is stable),
so adding an entry is adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from al_core.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name; unknown names raise ``error`` with the valid names."""

    def __init__(self, kind: str, package: str, key: str, error: type[Exception] = ConfigError):
        self.kind, self.package, self.key, self.error = kind, package, key, error
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (a module registers itself once, at import)."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def load(self) -> Registry[T]:
        """Import every module of the package, so each registers its entry."""
        if not self._loaded:
            pkg = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True
        return self

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self.load()._entries))

    def get(self, name: str) -> T:
        """The entry called ``name``; else ``error`` naming the valid ones (with a "did you mean")."""
        entries = self.load()._entries
        if name not in entries:
            raise self.error(
                f"{self.key} = {name!r} is not a registered {self.kind}.{did_you_mean(name, entries)} "
                f"Valid: {', '.join(sorted(entries))}"
            )
        return entries[name]

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs, sorted by name."""
        return iter(sorted(self.load()._entries.items()))
