"""Adaptive search: methods that propose the next trial from the results so far.

See docs/early-stopping.md ("Adaptive search"). The daemon-side glue (rebuilding a
searcher from the database, adding proposed trials) is ``clusterd.daemon.searching``.
"""

from clusterd.search.base import Result, Searcher
from clusterd.search.space import Space

__all__ = ["Result", "Searcher", "Space"]
