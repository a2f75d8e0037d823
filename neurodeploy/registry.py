"""The one registry mechanism: neuron kinds, defenses, attacks and pipeline stages.

A :class:`Registry` maps names to entries. Entries are added by :meth:`Registry.register`
(``registry[name] = entry`` works too) in the module that defines them; the registry itself
names, in one explicit tuple, the modules that provide entries (``modules``) and imports them
the first time it is asked for something it does not hold yet. So a lookup never depends on
which modules a caller happened to import, and a lower layer (``models`` asking for the
``talif`` neuron) never imports a higher one (``defenses``) by name in its own code.

Adding an entry: register it in its module and, if that module is new, add the module to the
registry's ``modules`` tuple where the registry is created.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from neurodeploy.errors import ConfigError

T = TypeVar("T")


class Registry(MutableMapping[str, T], Generic[T]):
    """Name → entry, filled by registration; ``modules`` (explicit, in import order) are the
    modules that register entries and are imported on the first lookup of a missing name.

    Behaves as a mapping; iteration, ``len`` and ``in`` see every module's entries.
    """

    def __init__(self, what: str, modules: tuple[str, ...] = ()) -> None:
        self.what = what
        self.modules = tuple(modules)
        self._entries: dict[str, T] = {}
        self._loaded = not self.modules
        self._loading = False

    def register(self, name: str, entry: T) -> T:
        """Add (or replace) ``name``; returns ``entry`` (usable as a decorator's result)."""
        self._entries[name] = entry
        return entry

    def load(self) -> None:
        """Import every provider module once (each registers its entries on import)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for mod in self.modules:
                importlib.import_module(mod)
            self._loaded = True
        finally:
            self._loading = False

    def get_entry(self, name: str) -> T:
        """The entry for ``name``; :class:`ConfigError` listing the known names otherwise."""
        if name not in self._entries:
            self.load()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.what} {name!r}; known: {sorted(self)}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self)

    # ---- mapping protocol ----
    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            self.load()
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {sorted(self._entries)})"


def load_module(name: str) -> Any:
    """Import ``name`` on first use: the package's lazy public API (``neurodeploy.audit``)
    resolves through here, the one place that imports modules by name."""
    return importlib.import_module(name)
