"""The registries plugins fill: classes of one kind (drivers, stop rules, search methods).

tox's pattern: a hook hands a plugin a registry and the plugin adds *classes*; the
daemon decides when to construct them. Every registry checks what it is given the same
way; only the kind, the base class and the hint for an unknown name differ.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import ClassVar, Generic, TypeVar

from clusterd.drivers.base import Driver
from clusterd.errors import ClusterdError, NotFound
from clusterd.search.base import Searcher
from clusterd.stopping.base import StopRule

__all__ = ["ClassRegistry", "DriverRegistry", "PluginError", "RuleRegistry", "SearchRegistry"]

T = TypeVar("T")


class PluginError(ClusterdError):
    """A plugin cannot be used: a class it registers is unusable or its name is taken, its
    API range excludes this clusterd, its import failed. The daemon skips that plugin."""


def where(cls: type) -> str:
    """``module.QualName``: what a user needs to find the plugin that shipped ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class ClassRegistry(Generic[T]):
    """Plugin classes of one kind by their ``name``, and the plugin that added each."""

    #: what the classes are, for messages ("driver", "stop rule", ...)
    kind: ClassVar[str] = "plugin"
    #: the base class every registered class must subclass
    base: ClassVar[type]
    #: what a user should check when a name is unknown
    hint: ClassVar[str] = "install the plugin that provides it"

    def __init__(self) -> None:
        self._classes: dict[str, type[T]] = {}
        self._origins: dict[str, str] = {}

    def add(self, cls: type[T]) -> type[T]:
        """Register ``cls``; returns it, so it also works as a class decorator.

        Adding the very same class twice is harmless (a plugin module registered
        under two names); two *different* classes with one name is an error naming
        both, because silently picking one would run a sweep on the wrong code.
        """
        self._classes[self._unclaimed(cls)] = cls
        return cls

    def absorb(self, other: ClassRegistry[T], origin: str) -> None:
        """Add every class of ``other`` (what one plugin registered), all or none, noting
        ``origin`` (the plugin's name) for each: a plugin that fails half-way adds nothing."""
        names = [(self._unclaimed(cls), cls) for cls in other]
        for name, cls in names:
            self._classes[name] = cls
            self._origins.setdefault(name, origin)

    def origin(self, name: str) -> str | None:
        """The plugin that added ``name`` (None: added directly with ``add``)."""
        return self._origins.get(name)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; ``NotFound`` lists what is available."""
        try:
            return self._classes[name]
        except KeyError:
            available = ", ".join(self.names()) or "none"
            raise NotFound(
                f"no {self.kind} named {name!r} (available: {available}); {self.hint}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted (what ``clusterctl drivers`` lists)."""
        return sorted(self._classes)

    def by_name(self) -> dict[str, type[T]]:
        """``{name: class}``, sorted by name (what the daemon hands its users)."""
        return {name: self._classes[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[type[T]]:
        return iter(self.by_name().values())

    def __len__(self) -> int:
        return len(self._classes)

    def _unclaimed(self, cls: type[T]) -> str:
        """``cls.name``, checked, unless another class holds it: an error naming both."""
        name = self._check(cls)
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise PluginError(
                f"two plugins register a {self.kind} named {name!r}: {where(existing)} and "
                f"{where(cls)}; uninstall one of them or give one {self.kind} another name"
            )
        return name

    def _check(self, cls: object) -> str:
        """Return ``cls.name`` after checking ``cls`` is a concrete, named subclass of base."""
        base = self.base.__name__
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(f"registry.add() expects a {base} subclass, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind} class {where(cls)} has no 'name'; set name = '...'")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            raise PluginError(f"{self.kind} class {where(cls)} does not implement: {missing}")
        return name


class DriverRegistry(ClassRegistry[Driver]):
    """Driver classes by ``name``, filled by ``clusterd_register_drivers`` hooks."""

    kind = "driver"
    base = Driver
    hint = "check the sweep's 'driver' key or install the plugin that provides it"


class RuleRegistry(ClassRegistry[StopRule]):
    """Stop rules by ``name``, filled by ``clusterd_register_stop_rules`` hooks."""

    kind = "stop rule"
    base = StopRule
    hint = "check [early_stopping] rule, or install the plugin that provides it"


class SearchRegistry(ClassRegistry[Searcher]):
    """Adaptive search methods by ``name``, filled by ``clusterd_register_search_methods``."""

    kind = "search method"
    base = Searcher
    hint = 'use "grid", "random", or install the plugin that provides it'
