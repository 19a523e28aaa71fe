"""Finding drivers: the pluggy plugin manager and the registry plugins fill.

Every driver, built-in or third-party, arrives the same way: a module listed in
the ``clusterd`` entry-point group implements ``clusterd_register_drivers`` and
adds its ``Driver`` subclasses to a ``DriverRegistry`` (tox's pattern: plugins
hand over *classes*; the daemon decides when to construct them). Nothing here
runs at import time: the daemon calls ``build_plugin_manager`` then
``load_drivers`` once at start-up, and ``clusterctl drivers`` does the same.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterable, Iterator
from typing import ClassVar, Generic, TypeVar

import pluggy

from clusterd.drivers import hookspecs
from clusterd.drivers.base import Driver
from clusterd.errors import DriverError, NotFound

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClassRegistry",
    "DriverRegistry",
    "build_plugin_manager",
    "load_drivers",
]

ENTRY_POINT_GROUP = "clusterd"
T = TypeVar("T")


def _where(cls: type) -> str:
    """``module.QualName``: what a user needs to find the plugin that shipped ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class ClassRegistry(Generic[T]):
    """Plugin classes of one kind (drivers, stop rules, search methods) by their ``name``."""

    #: what the classes are, for messages ("driver", "stop rule", ...)
    kind: ClassVar[str] = "plugin"
    #: the base class every registered class must subclass
    base: ClassVar[type]
    #: what a user should check when a name is unknown
    hint: ClassVar[str] = "install the plugin that provides it"

    def __init__(self) -> None:
        self._classes: dict[str, type[T]] = {}

    def add(self, cls: type[T]) -> type[T]:
        """Register ``cls``; returns it, so it also works as a class decorator.

        Adding the very same class twice is harmless (a plugin module registered
        under two names); two *different* classes with one name is an error naming
        both, because silently picking one would run a sweep on the wrong code.
        """
        name = self._check(cls)
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise DriverError(
                f"two plugins register a {self.kind} named {name!r}: {_where(existing)} and "
                f"{_where(cls)}; uninstall one of them or give one {self.kind} another name"
            )
        self._classes[name] = cls
        return cls

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

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[type[T]]:
        return iter([self._classes[name] for name in self.names()])

    def __len__(self) -> int:
        return len(self._classes)

    def _check(self, cls: object) -> str:
        """Return ``cls.name`` after checking ``cls`` is a concrete, named subclass of base."""
        base = self.base.__name__
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise DriverError(f"registry.add() expects a {base} subclass, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise DriverError(f"{self.kind} class {_where(cls)} has no 'name'; set name = '...'")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            raise DriverError(f"{self.kind} class {_where(cls)} does not implement: {missing}")
        return name


class DriverRegistry(ClassRegistry[Driver]):
    """Driver classes by ``name``, filled by ``clusterd_register_drivers`` hooks."""

    kind = "driver"
    base = Driver
    hint = "check the sweep's 'driver' key or install the plugin that provides it"


def build_plugin_manager(
    extra_plugins: Iterable[object] = (), *, entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager holding every ``clusterd`` plugin, checked.

    ``extra_plugins`` are registered after the entry points (tests use it to add a
    plugin without installing a package); ``entry_points=False`` leaves installed
    plugins out, for tests that need an exact set. ``check_pending`` turns a
    misspelt hook name into an error at start-up instead of a driver that never
    appears.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if entry_points:
        _load_entry_points(pm)
    for plugin in extra_plugins:
        pm.register(plugin)
    _check_hooks(pm)
    return pm


def _check_hooks(pm: pluggy.PluginManager) -> None:
    """``check_pending``, with a message naming the plugin, the hook and the known hooks."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        callers = vars(pm.hook).items()
        known = ", ".join(sorted(name for name, caller in callers if caller.spec is not None))
        unknown = ", ".join(
            sorted(
                name
                for name, caller in callers
                if caller.spec is None
                and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
            )
        )
        raise DriverError(
            f"clusterd plugin {_describe_plugin(exc.plugin)} implements unknown hook {unknown}; "
            f"known hooks: {known}. Fix the hook's name or uninstall the plugin"
        ) from exc


def _describe_plugin(plugin: object) -> str:
    """A module's name, or the class of a plugin object (its pluggy name is only an id)."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return _where(type(plugin))


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Import every module of the ``clusterd`` entry-point group, naming the group on failure."""
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except Exception as exc:
        raise DriverError(
            f"loading plugins of the entry-point group {ENTRY_POINT_GROUP!r} failed: {exc!r}; "
            f"fix or uninstall the plugin named in the daemon log's traceback"
        ) from exc


def load_drivers(pm: pluggy.PluginManager) -> DriverRegistry:
    """Ask every plugin for its drivers; each ``clusterd_register_drivers`` runs once."""
    registry = DriverRegistry()
    pm.hook.clusterd_register_drivers(registry=registry)
    return registry
