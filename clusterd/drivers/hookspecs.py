"""Every hook a clusterd plugin can implement (pluggy project name ``clusterd``).

Plugins are modules or objects registered through the ``clusterd`` entry-point
group; the built-in drivers use that same group (see ``pyproject.toml``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clusterd.drivers.registry import DriverRegistry

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
