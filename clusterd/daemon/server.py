"""The Unix-socket server: JSON lines, one reply per request, peer uid checked.

Principle 6: the socket is created 0600 inside the 0700 ``CLUSTERD_HOME`` and
every connection's peer uid is read with SO_PEERCRED; a foreign uid gets one
``forbidden`` error line and is closed, and the refusal is logged. Lines are
capped at ``MAX_LINE``; a client that does not read its replies within
``WRITE_TIMEOUT`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from clusterd import PROTOCOL_VERSION, __version__
from clusterd.errors import ClusterdError, InvalidRequest
from clusterd.protocol import MAX_LINE, Request, decode_request, encode, error_reply, ok_reply

__all__ = ["Server", "peer_pid", "peer_uid"]

log = logging.getLogger("clusterd.server")

WRITE_TIMEOUT = 10.0
Handler = Callable[[Any, dict[str, Any]], Any]


def _peercred(sock: socket.socket) -> tuple[int, int, int]:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return int(pid), int(uid), int(gid)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    return _peercred(sock)[1]


def peer_pid(sock: socket.socket) -> int:
    """The pid at the other end, for the log line of a refusal."""
    return _peercred(sock)[0]


class Forbidden(ClusterdError):
    code = "forbidden"


class Server:
    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, Handler],
        context: Any,
        stream: Callable[[Any, Request, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        self.path = path
        self.handlers = handlers
        self.context = context
        self.stream = stream
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        """Stop accepting, then end open connections (a TUI, a subscriber) quietly."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock)
            if uid != os.getuid():
                log.warning(
                    "refused a connection from uid %d (pid %d): this daemon serves only uid %d",
                    uid,
                    peer_pid(sock),
                    os.getuid(),
                )
                err = Forbidden("this daemon serves only its owner (peer uid differs)")
                await self._write(writer, error_reply(None, err))
                # Take (and drop) a request the client sent before reading: closing with it
                # unread would reset the connection, and the client would not see why.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.read(MAX_LINE), 1.0)
                return
            hello = {"hello": "clusterd", "version": __version__, "protocol": PROTOCOL_VERSION}
            await self._write(writer, hello)
            await self._requests(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutdown (close() above, or asyncio.run's final cancel): end quietly. Ending
            # the task cancelled would make asyncio log a traceback for the connection.
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            self.connections -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    err = InvalidRequest("request line ended without a newline")
                    await self._write(writer, error_reply(None, err))
                return
            except asyncio.LimitOverrunError:
                err = InvalidRequest(f"request is longer than {MAX_LINE} bytes; closing")
                await self._write(writer, error_reply(None, err))
                return
            if not line.strip():
                continue
            try:
                request = decode_request(line)
            except InvalidRequest as exc:
                await self._write(writer, error_reply(None, exc))
                continue
            if request.op == "subscribe":
                await self.stream(self.context, request, writer)
                return
            reply = await self._dispatch(request)
            try:
                line = encode(reply)
            except (TypeError, ValueError):
                log.exception("reply to %s is not JSON", request.op)
                internal = ClusterdError(f"internal error in {request.op!r}; see the daemon log")
                line = encode(error_reply(request.id, internal))
            writer.write(line)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _dispatch(self, request: Request) -> dict[str, Any]:
        handler = self.handlers[request.op]
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(self.context, request.args)
            else:  # in a worker thread: a locked database must not freeze the socket
                result = await asyncio.to_thread(handler, self.context, request.args)
            return ok_reply(request.id, result)
        except ClusterdError as exc:
            return error_reply(request.id, exc)
        except Exception:
            log.exception("request %s failed", request.op)
            err = ClusterdError(f"internal error in {request.op!r}; see the daemon log")
            return error_reply(request.id, err)

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(encode(obj))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
