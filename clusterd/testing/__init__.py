"""Testing aids for driver authors: the conformance kit (``DriverConformance``).

pytest is the kit's dependency, not clusterd's: nothing here is imported by the daemon,
and the kit's names load on first use, so ``clusterd.testing.fake_driver`` (a plugin
the daemon may import) never pulls pytest in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clusterd.testing.conformance import CHECKS, DriverConformance
    from clusterd.testing.daemon import Daemon
    from clusterd.testing.harness import Kit, SchedulerSetup
    from clusterd.testing.waiting import wait_for

__all__ = ["CHECKS", "Daemon", "DriverConformance", "Kit", "SchedulerSetup", "wait_for"]

_HOMES = {
    "CHECKS": "clusterd.testing.conformance",
    "DriverConformance": "clusterd.testing.conformance",
    "Daemon": "clusterd.testing.daemon",
    "Kit": "clusterd.testing.harness",
    "SchedulerSetup": "clusterd.testing.harness",
    "wait_for": "clusterd.testing.waiting",
}


def __getattr__(name: str) -> Any:
    """Import a kit name from its module on first use (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'clusterd.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
