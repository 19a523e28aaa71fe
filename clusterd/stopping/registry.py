"""The built-in stop rules, registered through the same hook as any plugin's.

This module is in the ``clusterd`` entry-point group; the registry itself is
``clusterd.plugins.RuleRegistry``.
"""

from __future__ import annotations

from clusterd.plugins import RuleRegistry, hookimpl
from clusterd.stopping.asha import AshaRule, HyperbandRule
from clusterd.stopping.median import MedianRule

__all__ = ["CLUSTERD_API", "RuleRegistry", "clusterd_register_stop_rules"]

CLUSTERD_API = ">=1,<2"


@hookimpl
def clusterd_register_stop_rules(registry: RuleRegistry) -> None:
    """The built-in rules."""
    for cls in (MedianRule, AshaRule, HyperbandRule):
        registry.add(cls)
