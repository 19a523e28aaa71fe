"""The built-in adaptive search methods, registered through the same hook as any plugin's.

This module is in the ``clusterd`` entry-point group; the registry itself is
``clusterd.plugins.SearchRegistry``. ``grid`` and ``random`` are expanded at submit time
(``clusterd.spec.expand``) and are not searchers. This module imports no Optuna: the
Optuna-backed methods import it when a sweep uses them (and nevergrad likewise).
"""

from __future__ import annotations

from clusterd.plugins import SearchRegistry, hookimpl
from clusterd.search.cem import CemSearcher
from clusterd.search.nevergrad_search import NevergradSearcher
from clusterd.search.optuna_samplers import OptunaSearcher, TpeSearcher

__all__ = ["CLUSTERD_API", "STATIC_METHODS", "SearchRegistry", "clusterd_register_search_methods"]

CLUSTERD_API = ">=1,<2"

#: methods whose trials are all known at submit time
STATIC_METHODS = frozenset({"grid", "random"})


@hookimpl
def clusterd_register_search_methods(registry: SearchRegistry) -> None:
    """The built-in adaptive methods."""
    for cls in (CemSearcher, TpeSearcher, OptunaSearcher, NevergradSearcher):
        registry.add(cls)
