"""Waiting on conditions with a deadline, and whether a process still runs.

The kit never sleeps a fixed time: every wait polls a condition, with a deadline that
fails the check naming what it waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from clusterd.pidcheck import pid_alive as alive

__all__ = ["alive", "wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; raise
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
