"""TtlCache: loads once per ttl, per key; a failed load is not kept."""

from __future__ import annotations

import pytest

from clusterd.drivers.batch.cache import TtlCache


def test_a_value_is_loaded_once_until_its_ttl_passes() -> None:
    ttl = [3600.0]
    cache: TtlCache[str, int] = TtlCache(lambda: ttl[0])
    loads: list[str] = []

    def load(key: str) -> int:
        loads.append(key)
        return len(loads)

    assert cache.get("a", lambda: load("a")) == 1
    assert cache.get("a", lambda: load("a")) == 1
    assert cache.get("b", lambda: load("b")) == 2
    ttl[0] = 0  # a driver attribute shortened after construction governs it
    assert cache.get("a", lambda: load("a")) == 3
    assert loads == ["a", "b", "a"]


def test_drop_forgets() -> None:
    cache: TtlCache[None, int] = TtlCache()
    cache.get(None, lambda: 1)
    assert cache.get(None, lambda: 2) == 1
    cache.drop()
    assert cache.get(None, lambda: 3) == 3


def test_a_failed_load_is_tried_again() -> None:
    cache: TtlCache[None, int] = TtlCache()

    def fail() -> int:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        cache.get(None, fail)
    assert cache.get(None, lambda: 4) == 4
