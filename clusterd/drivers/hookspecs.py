"""Every hook a clusterd plugin can implement (pluggy project name ``clusterd``).

Plugins are modules or objects registered through the ``clusterd`` entry-point
group; the built-in drivers use that same group (see ``pyproject.toml``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clusterd.drivers.registry import DriverRegistry
    from clusterd.search.registry import SearchRegistry
    from clusterd.stopping.registry import RuleRegistry

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("clusterd")
hookimpl = pluggy.HookimplMarker("clusterd")


@hookspec
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Add ``Driver`` subclasses with ``registry.add(cls)``.

    Called once when the daemon starts (and by ``clusterctl drivers``). Every
    implementation runs; two drivers with the same ``name`` are an error that
    names both plugins.
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
