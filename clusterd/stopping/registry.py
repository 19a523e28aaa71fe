"""Stop rules by name: the built-in ones and those of plugins, through the same hook."""

from __future__ import annotations

import pluggy

from clusterd.drivers.hookspecs import hookimpl
from clusterd.drivers.registry import ClassRegistry
from clusterd.stopping.asha import AshaRule, HyperbandRule
from clusterd.stopping.base import StopRule
from clusterd.stopping.median import MedianRule

__all__ = ["RuleRegistry", "clusterd_register_stop_rules", "load_rules"]


class RuleRegistry(ClassRegistry[StopRule]):
    kind = "stop rule"
    base = StopRule
    hint = "check [early_stopping] rule, or install the plugin that provides it"


@hookimpl
def clusterd_register_stop_rules(registry: RuleRegistry) -> None:
    """The built-in rules (this module is in the ``clusterd`` entry-point group)."""
    for cls in (MedianRule, AshaRule, HyperbandRule):
        registry.add(cls)


def load_rules(pm: pluggy.PluginManager) -> RuleRegistry:
    registry = RuleRegistry()
    pm.hook.clusterd_register_stop_rules(registry=registry)
    return registry
