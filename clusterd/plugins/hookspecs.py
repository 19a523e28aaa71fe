"""Every hook a clusterd plugin can implement (pluggy project name ``clusterd``).

Plugins are modules or objects registered through the ``clusterd`` entry-point group
(or ``CLUSTERD_PLUGINS``); the built-in drivers, stop rules and search methods use that
same group (see ``pyproject.toml``). Each hook hands the plugin a registry to which it
adds *classes*; the daemon decides when to construct them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clusterd.plugins.registry import DriverRegistry, RuleRegistry, SearchRegistry

__all__ = [
    "clusterd_register_drivers",
    "clusterd_register_search_methods",
    "clusterd_register_stop_rules",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("clusterd")
hookimpl = pluggy.HookimplMarker("clusterd")


@hookspec
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Add ``Driver`` subclasses with ``registry.add(cls)``.

    Called once when the daemon starts (``clusterctl drivers`` asks the daemon). Every
    implementation runs, one plugin at a time; a plugin whose implementation raises (a
    driver name another plugin took, a class that is no driver) adds nothing and is
    listed under "problems" by ``clusterctl drivers``.
    """


@hookspec
def clusterd_register_stop_rules(registry: RuleRegistry) -> None:
    """Add ``clusterd.stopping.StopRule`` subclasses with ``registry.add(cls)``.

    Called once when the daemon starts. ``[early_stopping] rule = "<name>"`` picks one;
    the built-in median, asha and hyperband rules arrive through this hook too.
    """


@hookspec
def clusterd_register_search_methods(registry: SearchRegistry) -> None:
    """Add ``clusterd.search.Searcher`` subclasses with ``registry.add(cls)``.

    Called once when the daemon starts. ``[search] method = "<name>"`` picks one (grid
    and random are expanded at submit time and need no searcher).
    """
