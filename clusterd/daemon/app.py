"""The daemon in the foreground: open the database, take the lease, serve, schedule.

Start-up order matters: plugins are loaded first (one that cannot be used is skipped
with a warning; a bad config file refuses the start, before the database is touched),
the lease is taken before anything is scheduled (one scheduler per database), the
schema is upgraded before any query, and the socket accepts only once all of that
worked -- ``clusterd start`` waits for exactly that moment.

From then on every write transaction passes the write guard (``guard.py``): a daemon
whose lease was taken over, or whose database file was deleted or replaced, writes
nothing more, stops scheduling at once and exits with status 1 (the reason in the log,
in ``clusterd status`` and in ``$CLUSTERD_HOME/clusterd.halted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from clusterd import paths
from clusterd.config import UserConfig, load_config
from clusterd.daemon import db, lease
from clusterd.daemon.guard import WATCH_INTERVAL, WriteGuard, write_halted
from clusterd.daemon.handlers import HANDLERS, Context, subscribe
from clusterd.daemon.hub import Hub
from clusterd.daemon.scheduler import DriverSet, Scheduler
from clusterd.daemon.searching import Proposer
from clusterd.daemon.server import Server
from clusterd.daemon.stopper import Stopper
from clusterd.daemon.store import Store
from clusterd.errors import ClusterdError, LeaseHeld
from clusterd.plugins import (
    DriverRegistry,
    PluginManager,
    PluginSource,
    build_plugin_manager,
    load_drivers,
    load_rules,
    load_searchers,
)

__all__ = ["run_foreground"]

log = logging.getLogger("clusterd")

HEARTBEAT_INTERVAL = 10.0
"""Seconds between lease renewals at the default ttl (always ttl/3)."""


def run_foreground(*, new_database: bool = False) -> int:
    """Run the daemon until SIGTERM/SIGINT or a ``shutdown`` request; return an exit code.

    ``new_database``: start with an empty database where one clusterd created was lost.
    """
    home = paths.ensure_home()
    return asyncio.run(_main(home, new_database))


async def _main(home: Path, new_database: bool = False) -> int:
    plugins, registry, config = _load_plugins()  # a bad config file refuses the start here
    url = paths.db_url()
    engine = db.make_engine(url, allow_new=new_database)
    try:
        db.check_integrity(engine)  # a corrupt page: refuse now, not hours into a sweep
        db.upgrade(engine)  # before the lease: the lease lives in the schema (atomic)
        ttl = lease.ttl_from_env()
    except BaseException:
        engine.dispose()
        raise
    holder = lease.acquire(engine, ttl=ttl)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    path = db.sqlite_file(engine)
    guard = WriteGuard(
        lease.Fence(holder),
        db.FileIdentity(path) if path is not None else None,
        lambda _message: loop.call_soon_threadsafe(stop.set),
    )
    db.set_write_guard(engine, guard)
    with contextlib.suppress(FileNotFoundError):
        (home / "clusterd.halted").unlink()
    try:
        store = Store(engine)
        hub = Hub()

        # the hub lives on this loop; changes are committed on other threads too
        def publish(changes: list[dict[str, Any]]) -> None:
            loop.call_soon_threadsafe(hub.publish, changes)

        store.on_change(publish)
        scheduler: Scheduler
        drivers = DriverSet(
            registry.by_name(),
            lambda: scheduler.wake(),
            lambda: db.may_launch(engine),
            config=config,
            sources=_driver_sources(plugins, registry),
        )
        scheduler = Scheduler(
            store,
            drivers,
            stopper=Stopper(store, load_rules(plugins).by_name()),
            proposer=Proposer(store, load_searchers(plugins).by_name()),
        )
        ctx = Context(
            store=store,
            scheduler=scheduler,
            hub=hub,
            db_url=url,
            home=home,
            started_at=time.time(),
            request_shutdown=stop.set,
            extra={"plugins": plugins},
        )
        handlers = {**HANDLERS, "status": _status_handler(guard, HANDLERS["status"])}
        server = Server(paths.socket_path(), handlers, ctx, subscribe)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        log.info("clusterd %s serving on %s (db %s)", os.getpid(), server.path, url)
        passes = scheduler.start_thread()
        tasks = [
            asyncio.create_task(_heartbeat(engine, holder, guard, stop), name="lease"),
            asyncio.create_task(_watch(guard, stop), name="watch"),
        ]
        await stop.wait()
        if guard.halted:
            scheduler.stop()  # before anything else: not one more pass
            drivers.close()  # nor one more job from a driver's own queue (local)
            log.error("stopping after a halt: running trials keep running")
        else:
            log.info("stopping: running trials keep running")
        await server.close()
        scheduler.stop()
        await asyncio.to_thread(passes.join, 30)
        for task in tasks:
            task.cancel()
        drivers.close()
        return 1 if guard.halted else 0
    finally:
        if guard.halted:
            write_halted(home, guard.halted)
        if not guard.database_gone:  # a new connection would create an empty file there
            with contextlib.suppress(Exception):
                lease.release(engine, holder)
        db.set_write_guard(engine, None)
        engine.dispose()


def _load_plugins() -> tuple[PluginManager, DriverRegistry, UserConfig]:
    """Every usable plugin (bad ones are skipped, with a warning, and listed by
    ``clusterctl drivers``), and the user's config file checked against the drivers:
    unlike a bad plugin, a bad config file refuses the start (``ConfigError``)."""
    plugins = build_plugin_manager()
    registry = load_drivers(plugins)
    config, warnings = load_config(registry.by_name())
    for warning in warnings:
        log.warning("%s", warning)
    return plugins, registry, config


def _driver_sources(plugins: PluginManager, registry: DriverRegistry) -> dict[str, PluginSource]:
    """Driver name -> the ``PluginSource`` of the plugin that registered it."""
    return {
        name: plugins.sources[origin]
        for name in registry.names()
        if (origin := registry.origin(name)) in plugins.sources
    }


def _status_handler(guard: WriteGuard, base: Any) -> Any:
    """``status`` plus what the write guard and the scheduler's scoped failures know: why
    the daemon halted, and which sweeps cannot launch and why."""

    def status(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        scheduler = ctx.scheduler
        if guard.halted is not None and guard.database_gone:
            result: dict[str, Any] = {
                "pid": os.getpid(),
                "version": "",
                "uptime": time.time() - ctx.started_at,
                "db_url": ctx.db_url,
                "home": str(ctx.home),
                "counts": {"sweeps": 0, "trials": 0},
                "drivers": {},
            }
        else:
            result = base(ctx, args)
        now = time.time()
        result["halted"] = (
            None if guard.halted is None else {"reason": guard.halted, "at": guard.halted_at}
        )
        result["lease"] = {
            "holder": guard.fence.lease.info.holder,
            "acquired_at": guard.fence.lease.acquired_at,
            "ttl": guard.fence.lease.ttl,
        }
        result["stuck_sweeps"] = {
            name: trouble.view() for name, trouble in list(scheduler.troubles.items())
        }
        result["crash_backoff"] = sum(1 for t in list(scheduler.retry_waits()) if t > now)
        return result

    status.__doc__ = base.__doc__
    return status


async def _watch(guard: WriteGuard, stop: asyncio.Event) -> None:
    """Check the database file's identity every WATCH_INTERVAL, so that a deleted or
    replaced database is noticed within a second even when nothing is written."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)
            return
        except TimeoutError:
            pass
        with contextlib.suppress(db.WritesRefused):
            guard.check_file()  # halts the daemon (stop is set) on a problem


async def _heartbeat(
    engine: Engine, holder: lease.Lease, guard: WriteGuard, stop: asyncio.Event
) -> None:
    """Renew the lease every ttl/3; halt the daemon only if it was taken over.

    A failed renewal (the database locked past the busy timeout, a full disk, a server
    restart) is logged and retried: our lease outlives it by ``ttl``, and if another
    daemon took it over meanwhile, the next renewal says so (LeaseHeld) and we halt.
    The renewal runs in a thread, so a locked database never freezes the socket.
    """
    interval = holder.ttl / 3
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except TimeoutError:
            pass
        if guard.halted is not None or guard.database_gone:
            return  # the watch halts the daemon; never touch a replaced file
        try:
            holder = await asyncio.to_thread(lease.heartbeat, engine, holder)
        except LeaseHeld as exc:
            guard.halt(f"lost the database lease: {exc.message}")
        except Exception as exc:
            message = exc.message if isinstance(exc, ClusterdError) else repr(exc)
            log.warning("could not renew the database lease (will retry): %s", message)
