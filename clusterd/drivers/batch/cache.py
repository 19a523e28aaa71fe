"""Answers that change rarely, kept a while: submit limits, node names, eligible hosts.

Schedulers' accounting daemons (slurmdbd & co) would rather not hear from every poll,
and what they say (a user's limits, the cluster's nodes) changes with an admin's hand.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key, each trusted ``ttl()`` seconds after it was loaded.

    ``ttl`` is asked at every look-up, so that a driver attribute (which tests shorten)
    governs it: ``TtlCache(lambda: self.limits_ttl)``. ``math.inf``: load once.
    """

    def __init__(self, ttl: Callable[[], float] = lambda: math.inf) -> None:
        self._ttl = ttl
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The cached value of ``key``, or ``load()``'s (kept only if it returns)."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self._ttl():
            entry = self._entries[key] = (now, load())
        return entry[1]

    def drop(self, key: K | None = None) -> None:
        """Forget ``key`` (every key when None): the next look-up loads it again."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
