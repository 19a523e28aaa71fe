"""Helpers for driving the TUI with Textual's pilot: wait on conditions, never on sleeps."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import pytest

try:
    import textual  # noqa: F401
except ImportError:  # without the 'tui' extra there is nothing to test here
    collect_ignore_glob = ["test_*.py"]

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from clusterd.tui.app import ClusterApp


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Timestamps render in local time; snapshots need one zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with ``asyncio.run`` (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def demo_app(**kwargs: Any) -> ClusterApp:
    """The app on fixed data and a fixed clock (snapshots, quick behaviour tests)."""
    from clusterd.tui.app import ClusterApp
    from clusterd.tui.fake import NOW, FakeBackend

    backend = kwargs.pop("backend", None) or FakeBackend()
    return ClusterApp(backend, clock=lambda: NOW, **kwargs)


async def settle(
    pilot: Pilot[Any],
    until: Callable[[], object] | None = None,
    timeout: float = 15.0,
    what: str = "the TUI to settle",
) -> None:
    """Wait until no request worker runs, every posted message is handled, and ``until()``."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3:
        await pilot.pause(0.02)
        busy = any(w.group != "feed" and not w.is_finished for w in app.workers)
        ok = not busy and (until is None or until())
        quiet = quiet + 1 if ok else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def loaded(app: ClusterApp, screen_type: type) -> Callable[[], bool]:
    return lambda: isinstance(app.screen, screen_type) and bool(getattr(app.screen, "loaded", 0))
