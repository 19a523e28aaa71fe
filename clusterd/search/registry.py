"""Adaptive search methods by name: the built-in ones and those of plugins, one hook.

``grid`` and ``random`` are expanded at submit time (``clusterd.spec.expand``) and are
not searchers. This module imports no Optuna: the Optuna-backed methods import it when
a sweep uses them.
"""

from __future__ import annotations

import pluggy

from clusterd.drivers.hookspecs import hookimpl
from clusterd.drivers.registry import ClassRegistry
from clusterd.search.base import Searcher
from clusterd.search.cem import CemSearcher
from clusterd.search.optuna_samplers import OptunaSearcher, TpeSearcher

__all__ = ["STATIC_METHODS", "SearchRegistry", "clusterd_register_search_methods", "load_searchers"]

#: methods whose trials are all known at submit time
STATIC_METHODS = frozenset({"grid", "random"})


class SearchRegistry(ClassRegistry[Searcher]):
    kind = "search method"
    base = Searcher
    hint = 'use "grid", "random", or install the plugin that provides it'


@hookimpl
def clusterd_register_search_methods(registry: SearchRegistry) -> None:
    """The built-in adaptive methods (this module is in the ``clusterd`` entry-point group)."""
    for cls in (CemSearcher, TpeSearcher, OptunaSearcher):
        registry.add(cls)


def load_searchers(pm: pluggy.PluginManager) -> SearchRegistry:
    registry = SearchRegistry()
    pm.hook.clusterd_register_search_methods(registry=registry)
    return registry
