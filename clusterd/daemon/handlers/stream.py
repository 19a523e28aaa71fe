"""``subscribe``: the one streaming op.

``{"id": 7, "op": "subscribe", "args": {"sweep": "x"}}`` (sweep optional) ->
``{"id": 7, "ok": true, "result": {"subscribed": true}}`` then one
``{"id": 7, "event": {...}}`` line per change until the client disconnects.
Events: ``{"type": "trial", "sweep_id", "index", "from", "state", "reason", "t"}``,
``{"type": "progress", "sweep_id", "index", "last_step", "last_value", ...}``,
``{"type": "stop", "sweep_id", "index", "decision": {...}}`` (an early-stopping
decision, by a rule or by hand), ``{"type": "sweep", "name", "state"}`` and
``{"type": "overflow"}`` (the client was too slow; it should re-read state and
subscribe again).
"""

from __future__ import annotations

import asyncio

from clusterd.daemon.handlers.context import Context, arg_opt_str
from clusterd.errors import ClusterdError
from clusterd.protocol import Request, encode, error_reply, ok_reply

__all__ = ["subscribe"]

WRITE_TIMEOUT = 10.0


async def subscribe(ctx: Context, request: Request, writer: asyncio.StreamWriter) -> None:
    try:
        sweep_id = _sweep_id(ctx, arg_opt_str(request.args, "sweep"))
    except ClusterdError as exc:
        writer.write(encode(error_reply(request.id, exc)))
        await writer.drain()
        return
    sub = ctx.hub.subscribe(sweep_id)
    try:
        writer.write(encode(ok_reply(request.id, {"subscribed": True})))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        while True:
            event = await sub.queue.get()
            if event is None:
                return
            writer.write(encode({"id": request.id, "event": event}))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
    finally:
        ctx.hub.unsubscribe(sub)


def _sweep_id(ctx: Context, name: str | None) -> int | None:
    if name is None:
        return None
    with ctx.store.read() as conn:
        return int(ctx.store.require_sweep(conn, name).id)
