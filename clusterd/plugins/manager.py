"""The plugin manager: every ``clusterd`` plugin, loaded one by one, bad ones skipped.

Plugins arrive from the ``clusterd`` entry-point group (built-in ones first, so that a
third-party plugin never displaces a built-in name), then from ``CLUSTERD_PLUGINS`` (a
comma-separated list of importable module names: tests, a plugin developed in place),
then as objects handed over in-process. A plugin that cannot be imported, states an
API range this clusterd is outside of, implements an unknown hook, or whose registering
hook raises is *skipped*: one warning line in the daemon log, one entry in
``problems`` (shown by ``clusterctl drivers``), and the daemon runs with the others.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy

from clusterd.plugins import hookspecs
from clusterd.plugins.api import api_problem
from clusterd.plugins.registry import (
    ClassRegistry,
    DriverRegistry,
    PluginError,
    RuleRegistry,
    SearchRegistry,
    where,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "PluginManager",
    "PluginProblem",
    "PluginSource",
    "build_plugin_manager",
    "load_drivers",
    "load_rules",
    "load_searchers",
]

ENTRY_POINT_GROUP = "clusterd"
PLUGINS_ENV = "CLUSTERD_PLUGINS"
BUILTIN_DISTRIBUTION = "clusterd"

log = logging.getLogger("clusterd.plugins")
R = TypeVar("R", bound=ClassRegistry[Any])


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin comes from: its name for users, and its distribution if known."""

    name: str
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def label(self) -> str:
        """``name (distribution version)``, for messages."""
        if self.distribution is None:
            return self.name
        return f"{self.name} ({' '.join(filter(None, (self.distribution, self.version)))})"

    def view(self) -> dict[str, Any]:
        return {
            "plugin": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
        }


@dataclass(frozen=True)
class PluginProblem:
    """A skipped plugin and why."""

    source: PluginSource
    why: str

    def line(self) -> str:
        return f"clusterd plugin {self.source.label()} skipped: {self.why}"

    def view(self) -> dict[str, Any]:
        return {
            "plugin": self.source.name,
            "distribution": self.source.distribution,
            "version": self.source.version,
            "why": self.why,
        }


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus where each plugin came from and the plugins it skipped."""

    def __init__(self) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.problems: list[PluginProblem] = []

    def add(self, plugin: object, source: PluginSource, name: str | None = None) -> None:
        """Register ``plugin``, or skip it (a problem) if it cannot be used."""
        if self.is_registered(plugin):
            return  # a module named by an entry point and by CLUSTERD_PLUGINS
        why = api_problem(plugin) or self._register_checked(plugin, source, name)
        if why is not None:
            self.skip(source, why)

    def _register_checked(
        self, plugin: object, source: PluginSource, name: str | None
    ) -> str | None:
        """Register ``plugin``; why it cannot be (it is then left unregistered), or None."""
        try:
            name = self.register(plugin, name=name)
        except Exception as exc:  # pluggy's PluginValidationError; a taken name
            return f"cannot be registered: {exc}"
        if name is None:
            return "is blocked"
        why = self._unknown_hooks(plugin)
        if why is not None:
            self.unregister(plugin)
            return why
        self.sources[name] = source
        return None

    def skip(self, source: PluginSource, why: str) -> None:
        problem = PluginProblem(source, why)
        self.problems.append(problem)
        log.warning("%s", problem.line())

    def source(self, name: str, plugin: object) -> PluginSource:
        return self.sources.get(name) or PluginSource(describe(plugin))

    def load(self, registry: R, hook: str) -> R:
        """Call ``hook`` of each plugin on its own, in registration order (built-ins first):
        a plugin whose implementation raises adds nothing through it and is a problem."""
        for impl in getattr(self.hook, hook).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            staging = type(registry)()
            args = {"registry": staging}  # pluggy checked argnames against the hookspec
            try:
                impl.function(*[args[name] for name in impl.argnames])
                registry.absorb(staging, impl.plugin_name)
            except Exception as exc:
                message = exc.message if isinstance(exc, PluginError) else repr(exc)
                self.skip(self.source(impl.plugin_name, impl.plugin), f"{hook} failed: {message}")
        return registry

    def _unknown_hooks(self, plugin: object) -> str | None:
        """The clear message for a plugin implementing a hook nobody specified (a typo
        that would otherwise be a driver that never appears), or None."""
        unknown = sorted(
            caller.name
            for caller in self.get_hookcallers(plugin) or []
            if caller.spec is None
            and any(
                impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()
            )
        )
        if not unknown:
            return None
        known = ", ".join(sorted(n for n, c in vars(self.hook).items() if c.spec is not None))
        return (
            f"clusterd plugin {describe(plugin)} implements unknown hook {', '.join(unknown)}; "
            f"known hooks: {known}. Fix the hook's name or uninstall the plugin"
        )


def describe(plugin: object) -> str:
    """A module's name, or the class of a plugin object (its pluggy name is only an id)."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return where(type(plugin))


def build_plugin_manager(
    extra_plugins: Iterable[object] = (), *, entry_points: bool = True
) -> PluginManager:
    """A plugin manager holding every usable ``clusterd`` plugin; ``problems`` lists the rest.

    ``entry_points=False`` leaves installed plugins (the entry-point group and
    ``CLUSTERD_PLUGINS``) out, for tests that need an exact set. ``extra_plugins`` are
    registered last: module names (imported like ``CLUSTERD_PLUGINS``) or plugin objects.
    """
    pm = PluginManager()
    if entry_points:
        _add_entry_points(pm)
        _add_modules(pm, _env_modules())
    for plugin in extra_plugins:
        if isinstance(plugin, str):
            _add_modules(pm, [plugin])
        else:
            pm.add(plugin, PluginSource(describe(plugin)))
    pm.check_pending()  # every plugin with an unknown hook was skipped above
    return pm


def _add_entry_points(pm: PluginManager) -> None:
    """Import each module of the entry-point group on its own: one that fails is skipped."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(found, key=_entry_point_order):
        dist = ep.dist
        source = PluginSource(ep.name, dist.name if dist else None, dist.version if dist else None)
        if pm.get_plugin(ep.name) is not None:
            continue  # the same name from a second copy of a distribution on the path
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:
            pm.skip(source, _import_failure(ep.value, exc))
            log.debug("importing %s failed", ep.value, exc_info=True)
            continue
        pm.add(plugin, source, name=ep.name)


def _entry_point_order(ep: importlib.metadata.EntryPoint) -> tuple[bool, str, str]:
    dist = ep.dist.name if ep.dist else ""
    return dist != BUILTIN_DISTRIBUTION, dist, ep.name


def _env_modules() -> list[str]:
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def _add_modules(pm: PluginManager, names: Iterable[str]) -> None:
    """Import and register modules named in ``CLUSTERD_PLUGINS`` (or handed over by name)."""
    for name in names:
        source = PluginSource(name, *_distribution_of(name))
        try:
            module = importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            pm.skip(source, _import_failure(name, exc))
            log.debug("importing %s failed", name, exc_info=True)
            continue
        pm.add(module, source, name=name)


def _import_failure(what: str, exc: BaseException) -> str:
    return f"importing {what} failed: {type(exc).__name__}: {exc}"


def _distribution_of(module: str) -> tuple[str | None, str | None]:
    """The installed distribution that ships ``module``'s top-level package, if any."""
    names = importlib.metadata.packages_distributions().get(module.partition(".")[0], [])
    if not names:
        return None, None
    try:
        return names[0], importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return names[0], None


def load_drivers(pm: PluginManager) -> DriverRegistry:
    """Ask every plugin for its drivers; each ``clusterd_register_drivers`` runs once."""
    return pm.load(DriverRegistry(), "clusterd_register_drivers")


def load_rules(pm: PluginManager) -> RuleRegistry:
    """Ask every plugin for its stop rules."""
    return pm.load(RuleRegistry(), "clusterd_register_stop_rules")


def load_searchers(pm: PluginManager) -> SearchRegistry:
    """Ask every plugin for its adaptive search methods."""
    return pm.load(SearchRegistry(), "clusterd_register_search_methods")
