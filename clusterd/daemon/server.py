"""The Unix-socket server: JSON lines, one reply per request, peer uid checked.

Principle 6: the socket is created 0600 inside the 0700 ``CLUSTERD_HOME`` and
every connection's peer uid is read with SO_PEERCRED; a foreign uid gets one
``forbidden`` error line and is closed, and the refusal is logged.

Bounded under load and fd exhaustion (docs/reliability.md, "Exhausted resources"):

- the accept loop is our own: EMFILE/ENFILE/ENOBUFS/ENOMEM on ``accept()`` pause
  it with a growing delay (50 ms doubling to 2 s), one log line when an episode
  starts and one when it ends (asyncio's own loop logs a traceback per try);
- at most ``CLUSTERD_MAX_CLIENTS`` (default 256) connections at once; one more
  gets a single ``busy`` error line and is closed;
- a client that sends nothing for ``CLUSTERD_IDLE_TIMEOUT`` seconds (default 600)
  between requests is told so and closed; a ``subscribe`` stream is never idle;
- request lines are capped at ``MAX_LINE`` (an error line, then the connection
  closes); replies are written in ``WRITE_CHUNK`` pieces under a per-client
  buffer bound of ``WRITE_BUFFER`` bytes, and a client that stays over it for
  ``WRITE_TIMEOUT`` seconds (it does not read) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import resource
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from clusterd import PROTOCOL_VERSION, __version__
from clusterd.errors import ClusterdError, InvalidRequest
from clusterd.protocol import MAX_LINE, Request, decode_request, encode, error_reply, ok_reply

__all__ = ["Server", "fd_usage", "peer_pid", "peer_uid"]

log = logging.getLogger("clusterd.server")

#: seconds a client may stay over WRITE_BUFFER unread bytes before it is dropped
WRITE_TIMEOUT = 10.0
#: bytes handed to the transport at a time, and the bound on what one client buffers
WRITE_CHUNK = 64 * 1024
WRITE_BUFFER = 256 * 1024
MAX_CLIENTS_ENV = "CLUSTERD_MAX_CLIENTS"
DEFAULT_MAX_CLIENTS = 256
IDLE_TIMEOUT_ENV = "CLUSTERD_IDLE_TIMEOUT"
DEFAULT_IDLE_TIMEOUT = 600.0
LISTEN_BACKLOG = 128
#: accept() pauses after a resource error: from ACCEPT_PAUSE, doubling up to ACCEPT_PAUSE_MAX
ACCEPT_PAUSE = 0.05
ACCEPT_PAUSE_MAX = 2.0
#: at most one accept() episode is logged (start and end) per this many seconds
ACCEPT_LOG_EVERY = 30.0
#: accept() errors that mean "out of descriptors or memory now", not "broken"
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
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


def fd_usage() -> tuple[int | None, int]:
    """``(open descriptors, soft RLIMIT_NOFILE)`` of this process; the count is None when
    it cannot be read (listing /proc/self/fd needs a descriptor of its own)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        count: int | None = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:
        count = None
    return count, soft


def _env_number(name: str, default: float, minimum: float) -> float:
    """A positive number from the environment; a bad value is logged and the default used."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum or value != value:
        log.error("%s=%r is not a number >= %g; using %g", name, raw, minimum, default)
        return default
    return value


class Forbidden(ClusterdError):
    code = "forbidden"


class Busy(ClusterdError):
    code = "busy"


class Server:
    """Serve ``handlers`` on the Unix socket at ``path``; see the module docstring."""

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
        self.max_clients = int(_env_number(MAX_CLIENTS_ENV, DEFAULT_MAX_CLIENTS, 1))
        self.idle_timeout = _env_number(IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT, 0.001)
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        #: counters for ``status``: connections turned away, accept() resource errors
        self.refused = 0
        self.accept_errors = 0
        self.accept_paused_since: float | None = None
        self._busy_logged = False
        extra = getattr(context, "extra", None)
        if isinstance(extra, dict):
            extra["server"] = self  # for the status op (connections, limits)

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop(sock))

    async def close(self) -> None:
        """Stop accepting, then end open connections (a TUI, a subscriber) quietly."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._accepting
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- accepting ---------------------------------------------------------------------

    async def _accept_loop(self, sock: socket.socket) -> None:
        """Accept forever; out of descriptors, pause with a growing delay. An episode is
        logged when it starts and when it ends, at most one episode per ACCEPT_LOG_EVERY."""
        loop = asyncio.get_running_loop()
        pause, failed, logged, last_log = ACCEPT_PAUSE, 0, False, -ACCEPT_LOG_EVERY
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRNOS:
                    log.warning("accept() failed: %s; retrying", exc)
                    await asyncio.sleep(ACCEPT_PAUSE_MAX)
                    continue
                self.accept_errors += 1
                failed += 1
                if self.accept_paused_since is None:
                    self.accept_paused_since = time.time()
                    logged = time.monotonic() - last_log >= ACCEPT_LOG_EVERY
                    if logged:
                        last_log = time.monotonic()
                        self._log_paused(exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, ACCEPT_PAUSE_MAX)
                continue
            if self.accept_paused_since is not None:
                if logged:
                    log.warning(
                        "accepting connections again after %.1f s (%d failed accept() calls)",
                        time.time() - self.accept_paused_since,
                        failed,
                    )
                self.accept_paused_since, failed, pause = None, 0, ACCEPT_PAUSE
            try:
                self._admit(conn)
            except Exception:  # never let one connection end the accept loop
                log.exception("could not serve a new connection")
                conn.close()

    def _log_paused(self, exc: OSError) -> None:
        count, limit = fd_usage()
        log.warning(
            "cannot accept connections: %s (open descriptors %s, limit %d, clients %d); "
            "pausing accept() and retrying with growing pauses",
            exc.strerror or exc,
            "unknown" if count is None else count,
            limit,
            self.connections,
        )

    def _admit(self, conn: socket.socket) -> None:
        """Serve ``conn``, or tell it the daemon is at its client limit and close it."""
        conn.setblocking(False)
        if self.connections >= self.max_clients:
            self.refused += 1
            if not self._busy_logged:
                self._busy_logged = True
                log.warning(
                    "turning connections away: %d clients connected, the limit is %d (%s)",
                    self.connections,
                    self.max_clients,
                    MAX_CLIENTS_ENV,
                )
            err = Busy(
                f"the daemon is serving {self.connections} clients, its limit "
                f"({MAX_CLIENTS_ENV}={self.max_clients}); try again when some have closed"
            )
            with contextlib.suppress(OSError):
                conn.send(encode(error_reply(None, err)))
                conn.shutdown(socket.SHUT_WR)
                with contextlib.suppress(BlockingIOError):
                    conn.recv(MAX_LINE)  # a request sent already: closing on it would reset
            conn.close()
            return
        if self._busy_logged and self.connections < self.max_clients * 3 // 4:
            self._busy_logged = False  # the next time the limit is reached is logged again
        self.connections += 1
        task = asyncio.get_running_loop().create_task(self._open(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_LINE)
        except (OSError, asyncio.CancelledError):
            self.connections -= 1
            conn.close()
            return
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        await self._serve(reader, writer)

    # -- one connection ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), self.idle_timeout)
            except TimeoutError:
                err = InvalidRequest(
                    f"no request for {self.idle_timeout:g} s; closing the idle connection "
                    f"({IDLE_TIMEOUT_ENV})"
                )
                await self._write(writer, error_reply(None, err))
                return
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
            del line
            if request.op == "subscribe":
                await self.stream(self.context, request, writer)
                return
            data = self._encode(request, await self._dispatch(request))
            await self._send(writer, data)

    @staticmethod
    def _encode(request: Request, reply: dict[str, Any]) -> bytes:
        try:
            return encode(reply)
        except (TypeError, ValueError):
            log.exception("reply to %s is not JSON", request.op)
            internal = ClusterdError(f"internal error in {request.op!r}; see the daemon log")
            return encode(error_reply(request.id, internal))

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
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write ``data`` a chunk at a time: the transport never holds more than about
        WRITE_BUFFER + WRITE_CHUNK bytes for this client, and a client that does not read
        for WRITE_TIMEOUT seconds raises TimeoutError (and is dropped by ``_serve``)."""
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            writer.write(view[start : start + WRITE_CHUNK])
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    @classmethod
    async def _write(cls, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        await cls._send(writer, encode(obj))
