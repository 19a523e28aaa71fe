"""Everything plugin-wide: the hooks, the plugin manager, the registries, the API version.

Plugins (drivers, stop rules, search methods) import from here: ``hookimpl`` and the
registry types. The daemon builds the manager once at start-up
(``build_plugin_manager``) and asks it for each kind (``load_drivers``, ``load_rules``,
``load_searchers``); nothing here runs at import time.

The plugin API is versioned: ``API_VERSION`` is a semantic version MAJOR.MINOR.PATCH
of what plugins use -- the hooks in ``clusterd.plugins.hookspecs``, the registries, the
``Driver`` contract (``clusterd.drivers.base``), ``clusterd.drivers.options``, the
``StopRule`` and ``Searcher`` bases. A MAJOR bump removes or changes something a plugin
may rely on (a hook's arguments, a ``Driver`` method's signature or meaning); a MINOR
bump only adds (a new hook, an optional method with a default, a new ``JobRequest``
field with a default); a PATCH changes no interface. A plugin states the range it
supports with a module attribute ``CLUSTERD_API = ">=1.0,<2"`` (clauses ``>=``, ``>``,
``<=``, ``<``, ``==``, ``!=``, joined by commas); a plugin outside its range, one whose
import fails, one with an unknown hook and one whose registering hook raises are skipped
with one line in the daemon log and in ``clusterctl drivers``; a plugin that states
nothing is accepted.
"""

from clusterd.plugins.api import API_VERSION
from clusterd.plugins.hookspecs import hookimpl, hookspec
from clusterd.plugins.manager import (
    ENTRY_POINT_GROUP,
    PLUGINS_ENV,
    PluginManager,
    PluginProblem,
    PluginSource,
    build_plugin_manager,
    load_drivers,
    load_rules,
    load_searchers,
)
from clusterd.plugins.registry import (
    ClassRegistry,
    DriverRegistry,
    PluginError,
    RuleRegistry,
    SearchRegistry,
)

__all__ = [
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "ClassRegistry",
    "DriverRegistry",
    "PluginError",
    "PluginManager",
    "PluginProblem",
    "PluginSource",
    "RuleRegistry",
    "SearchRegistry",
    "build_plugin_manager",
    "hookimpl",
    "hookspec",
    "load_drivers",
    "load_rules",
    "load_searchers",
]
