"""The daemon in the foreground: open the database, take the lease, serve, schedule.

Start-up order matters: the lease is taken before anything is scheduled (one
scheduler per database), the schema is upgraded before any query, drivers are
loaded (a mistyped plugin hook fails here, loudly), and the socket accepts only
once all of that worked -- ``clusterd start`` waits for exactly that moment.
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
from clusterd.daemon import db, lease
from clusterd.daemon.handlers import HANDLERS, Context, subscribe
from clusterd.daemon.hub import Hub
from clusterd.daemon.scheduler import DriverSet, Scheduler
from clusterd.daemon.searching import Proposer
from clusterd.daemon.server import Server
from clusterd.daemon.stopper import Stopper
from clusterd.daemon.store import Store
from clusterd.drivers.registry import build_plugin_manager, load_drivers
from clusterd.errors import ClusterdError, LeaseHeld
from clusterd.search.registry import load_searchers
from clusterd.stopping.registry import load_rules

__all__ = ["run_foreground"]

log = logging.getLogger("clusterd")

HEARTBEAT_INTERVAL = 10.0


def run_foreground(*, new_database: bool = False) -> int:
    """Run the daemon until SIGTERM/SIGINT or a ``shutdown`` request; return an exit code.

    ``new_database``: start with an empty database where one clusterd created was lost.
    """
    home = paths.ensure_home()
    return asyncio.run(_main(home, new_database))


async def _main(home: Path, new_database: bool = False) -> int:
    url = paths.db_url()
    engine = db.make_engine(url, allow_new=new_database)
    try:
        db.check_integrity(engine)  # a corrupt page: refuse now, not hours into a sweep
        db.upgrade(engine)  # before the lease: the lease lives in the schema (atomic)
    except BaseException:
        engine.dispose()
        raise
    holder = lease.acquire(engine)
    try:
        store = Store(engine)
        hub = Hub()
        loop = asyncio.get_running_loop()

        # the hub lives on this loop; changes are committed on other threads too
        def publish(changes: list[dict[str, Any]]) -> None:
            loop.call_soon_threadsafe(hub.publish, changes)

        store.on_change(publish)
        plugins = build_plugin_manager()
        registry = load_drivers(plugins)
        scheduler: Scheduler
        drivers = DriverSet({cls.name: cls for cls in registry}, lambda: scheduler.wake())
        scheduler = Scheduler(
            store,
            drivers,
            stopper=Stopper(store, {cls.name: cls for cls in load_rules(plugins)}),
            proposer=Proposer(store, {cls.name: cls for cls in load_searchers(plugins)}),
        )
        stop = asyncio.Event()
        ctx = Context(
            store=store,
            scheduler=scheduler,
            hub=hub,
            db_url=url,
            home=home,
            started_at=time.time(),
            request_shutdown=stop.set,
        )
        server = Server(paths.socket_path(), HANDLERS, ctx, subscribe)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        log.info("clusterd %s serving on %s (db %s)", os.getpid(), server.path, url)
        passes = scheduler.start_thread()
        lease_task = asyncio.create_task(_heartbeat(engine, holder, stop), name="lease")
        await stop.wait()
        log.info("stopping: running trials keep running")
        await server.close()
        scheduler.stop()
        await asyncio.to_thread(passes.join, 30)
        lease_task.cancel()
        drivers.close()
        return 0
    finally:
        with contextlib.suppress(Exception):
            lease.release(engine, holder)
        engine.dispose()


async def _heartbeat(engine: Engine, holder: lease.Lease, stop: asyncio.Event) -> None:
    """Renew the lease every HEARTBEAT_INTERVAL; stop the daemon only if it was taken over.

    A failed renewal (the database locked past the busy timeout, a full disk, a server
    restart) is logged and retried: our lease outlives it by ``ttl``, and if another
    daemon took it over meanwhile, the next renewal says so (LeaseHeld) and we stop.
    The renewal runs in a thread, so a locked database never freezes the socket.
    """
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL)
            return
        except TimeoutError:
            pass
        try:
            holder = await asyncio.to_thread(lease.heartbeat, engine, holder)
        except LeaseHeld as exc:
            log.error("lost the database lease: %s; stopping", exc.message)
            stop.set()
        except Exception as exc:
            message = exc.message if isinstance(exc, ClusterdError) else repr(exc)
            log.warning("could not renew the database lease (will retry): %s", message)
