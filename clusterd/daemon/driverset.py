"""The drivers the scheduler talks to, and calls into them that back off when they fail.

``DriverSet`` creates each installed driver on first use with the user's config file
applied (request handlers use it too: ``clusterctl drivers``, submit checks).
``DriverCalls`` is the scheduler's side: it runs a driver method in a worker thread and
keeps each driver's ``DriverHealth``, so a failing driver backs off alone (2 s doubling
to 5 min, ``backoff.backoff_delay``) while the others go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from clusterd.config import UserConfig
from clusterd.daemon.backoff import backoff_delay, describe
from clusterd.drivers.base import Driver
from clusterd.errors import ClusterdError, NotFound
from clusterd.plugins.manager import PluginSource
from clusterd.spec.model import SweepSpec

__all__ = ["DriverCalls", "DriverHealth", "DriverSet"]

log = logging.getLogger("clusterd.scheduler")
R = TypeVar("R")


class DriverSet:
    """Driver instances by name, created on first use from the registry's classes, with
    the user's config file applied: its driver-wide keys go to the constructor, its sweep
    keys are defaults under each sweep's ``[drivers.<name>]`` table (``options``)."""

    def __init__(
        self,
        classes: dict[str, type[Driver]],
        wakeup: Callable[[], None],
        may_launch: Callable[[], bool] = lambda: True,
        config: UserConfig | None = None,
        sources: Mapping[str, PluginSource] | None = None,
    ) -> None:
        self.classes = classes
        self.config = config or UserConfig(Path(os.devnull))
        #: the plugin each driver came from (``clusterctl drivers``)
        self.sources = dict(sources or {})
        self._instances: dict[str, Driver] = {}
        self._wakeup = wakeup
        self._may_launch = may_launch
        self._lock = threading.Lock()  # the scheduler and request handlers both ask

    def get(self, name: str) -> Driver:
        with self._lock:
            if name not in self._instances:
                cls = self._class(name)
                driver = cls(self.config.driver_options(cls))
                driver.set_wakeup(self._wakeup)
                driver.set_launch_guard(self._may_launch)
                self._instances[name] = driver
            return self._instances[name]

    def options(self, name: str, spec: SweepSpec) -> dict[str, Any]:
        """The sweep's ``[drivers.<name>]`` table over the user's defaults (sweep wins)."""
        table = spec.driver_options.get(name, {})
        cls = self.classes.get(name)
        return dict(table) if cls is None else self.config.merged(cls, table)

    def with_defaults(self, spec: SweepSpec) -> SweepSpec:
        """``spec`` as its driver should judge it: its table merged over the defaults."""
        merged = {**spec.driver_options, spec.driver: self.options(spec.driver, spec)}
        return dataclasses.replace(spec, driver_options=merged)

    def _class(self, name: str) -> type[Driver]:
        if name not in self.classes:
            known = ", ".join(sorted(self.classes)) or "none"
            raise NotFound(f"no driver named {name!r} is installed (installed: {known})")
        return self.classes[name]

    def close(self) -> None:
        for driver in self._instances.values():
            try:
                driver.close()
            except Exception:
                log.exception("closing driver %s failed", driver.name)


@dataclass
class DriverHealth:
    last_poll_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    next_try_at: float = 0.0


class DriverCalls:
    """The scheduler's calls into its drivers, with each driver's health (``health``, by
    driver name, shown by ``status``) and its backoff."""

    def __init__(self, drivers: DriverSet) -> None:
        self.drivers = drivers
        self.health: dict[str, DriverHealth] = {}

    def health_of(self, name: str) -> DriverHealth:
        return self.health.setdefault(name, DriverHealth())

    def get(self, name: str) -> Driver | None:
        """The driver, or None (reported once, kept in its health) if none is installed."""
        try:
            return self.drivers.get(name)
        except NotFound as exc:
            health = self.health_of(name)
            if health.last_error != exc.message:
                log.error("%s", exc.message)
            health.last_error, health.last_error_at = exc.message, time.time()
            return None

    def failed(self, name: str, exc: BaseException) -> None:
        """A poll (or the recovery of unconfirmed launches) failed outside the driver call:
        noted in the driver's health; the next pass tries again, other drivers go on."""
        health = self.health_of(name)
        message = describe(exc)
        health.last_error, health.last_error_at = message, time.time()
        log.warning("driver %s: tracking jobs failed: %s", name, message)

    async def call(self, name: str, fn: Callable[..., R], *args: Any) -> R | None:
        """Run a driver method in a thread; on failure back off (2 s doubling to 5 min), with
        jitter so that many users' daemons don't retry a recovering slurmctld in lockstep."""
        health = self.health_of(name)
        try:
            result = await asyncio.to_thread(fn, *args)
        except Exception as exc:
            health.failures += 1
            delay = backoff_delay(health.failures)
            health.next_try_at = time.time() + delay
            message = exc.message if isinstance(exc, ClusterdError) else repr(exc)
            health.last_error, health.last_error_at = message, time.time()
            log.warning(
                "driver %s: %s failed: %s (retry in %.0f s)", name, fn.__name__, message, delay
            )
            return None
        health.failures = 0
        health.next_try_at = 0.0
        return result
