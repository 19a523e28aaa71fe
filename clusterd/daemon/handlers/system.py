"""Daemon-level ops: ping, status, shutdown, drivers, cluster."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

from clusterd import __version__
from clusterd.daemon import gpu_idle
from clusterd.daemon.handlers.context import Context, arg_bool, arg_opt_str
from clusterd.drivers.base import Driver
from clusterd.drivers.options import option_rows
from clusterd.plugins import API_VERSION, PluginSource

__all__ = ["cluster", "drivers", "ping", "shutdown", "status"]


async def ping(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "ping"}`` -> ``{"pong": true, "version": "0.1.0"}``; answered on the event
    loop itself (no database, no worker thread), so it measures whether the daemon is
    alive, not how busy its workers are."""
    return {"pong": True, "version": __version__}


def status(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "status"}`` -> pid, uptime, db url, counts, driver health."""
    with ctx.store.read() as conn:
        counts = ctx.store.counts(conn)
        idle = gpu_idle.flagged_trials(conn)
    health = {
        name: {
            "last_poll_at": h.last_poll_at,
            "last_error": h.last_error,
            "last_error_at": h.last_error_at,
            # failed calls in a row; while > 0 the daemon backs off until next_try_at
            "failures": h.failures,
            "next_try_at": h.next_try_at if h.failures else None,
        }
        for name, h in list(ctx.scheduler.health.items())
    }
    return {
        "pid": os.getpid(),
        "version": __version__,
        "uptime": time.time() - ctx.started_at,
        "db_url": _mask(ctx.db_url),
        "home": str(ctx.home),
        "counts": counts,
        # running trials whose GPUs sit idle ([gpu] idle_warning): "sweep/index"
        "gpu_idle": [f"{name}/{index}" for name, index, _ in idle],
        "drivers": health,
        # plugins skipped at start (a failed import, an API mismatch, a raising hook)
        "plugin_problems": [p.view() for p in getattr(ctx.extra.get("plugins"), "problems", [])],
        "subscribers": len(ctx.hub),
        "fds": _fds(),
        "clients": _clients(ctx),
        "stats": {
            "passes": ctx.scheduler.stats.ticks,
            "submitted": ctx.scheduler.stats.submitted,
            "ended": ctx.scheduler.stats.ended,
            "lines": ctx.scheduler.stats.lines,
        },
    }


async def shutdown(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "shutdown"}`` -> ``{"stopping": true}``; running trials keep running.
    (A coroutine: it runs on the daemon's loop, whose shutdown it schedules.)"""
    asyncio.get_running_loop().call_soon(ctx.request_shutdown)
    return {"stopping": True, "pid": os.getpid()}


def drivers(ctx: Context, args: dict[str, Any]) -> Any:
    """``{"op": "drivers"}`` -> ``[{"name": "local", "class": "...", "poll_interval": 1.0,
    "doc", "distribution": "clusterd", "version": "0.1.0", "builtin": true, "options":
    [{"name", "must", "default", "help", "sweep"}], "config": {key: value}}]``; ``config``
    is the user's config-file table the daemon read at start.

    ``{"op": "drivers", "args": {"problems": true}}`` -> ``{"drivers": [...], "problems":
    [{"plugin", "distribution", "version", "why"}], "config_file", "api_version"}``: the
    plugins the daemon skipped too (what ``clusterctl drivers`` shows)."""
    driver_set = ctx.scheduler.drivers
    rows = [
        _driver_row(name, cls, driver_set.sources.get(name), driver_set.config.table(name))
        for name, cls in sorted(driver_set.classes.items())
    ]
    if not arg_bool(args, "problems"):
        return rows
    plugins = ctx.extra.get("plugins")
    return {
        "drivers": rows,
        "problems": [p.view() for p in getattr(plugins, "problems", [])],
        "config_file": str(driver_set.config.path),
        "api_version": API_VERSION,
    }


def _driver_row(
    name: str, cls: type[Driver], source: PluginSource | None, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "poll_interval": cls.poll_interval,
        "doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        "distribution": source.distribution if source else None,
        "version": source.version if source else None,
        "builtin": source.builtin if source else False,
        "options": option_rows(cls.option_specs),
        "config": config,
    }


async def cluster(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "cluster", "args": {"driver": "slurm"}}`` -> what the driver sees."""
    name = arg_opt_str(args, "driver") or "local"
    driver = ctx.scheduler.drivers.get(name)
    info = await asyncio.to_thread(driver.describe_cluster)
    return {
        "driver": info.driver,
        "partitions": info.partitions,
        "nodes": info.nodes,
        "gpus": info.gpus,
        "queue": info.queue,
        "notes": info.notes,
    }


def _fds() -> dict[str, int | None]:
    """Open descriptors and the soft RLIMIT_NOFILE: running out stops accept() and launches."""
    from clusterd.daemon.server import fd_usage

    count, limit = fd_usage()
    return {"open": count, "limit": limit}


def _clients(ctx: Context) -> dict[str, Any] | None:
    """Socket clients now, the limit, and how many were turned away (None: no server)."""
    server = ctx.extra.get("server")
    if server is None:
        return None
    return {
        "connected": server.connections,
        "limit": server.max_clients,
        "refused": server.refused,
        "idle_timeout": server.idle_timeout,
        "accept_errors": server.accept_errors,
        "accept_paused_since": server.accept_paused_since,
    }


def _mask(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
