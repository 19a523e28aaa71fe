"""The TUI's side of the socket: a ``Backend`` the app calls from worker threads.

The app never touches the socket itself; it holds a ``Backend``, so tests,
screenshots and benchmarks can hand it ``FakeBackend`` (fixed data, no daemon)
while ``clusterctl tui`` hands it ``SocketBackend``. Every method may block and
is called from a ``@work(thread=True)`` worker, never from the event loop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from clusterd.client import Client
from clusterd.errors import ClusterdError, DaemonUnreachable, InvalidRequest

__all__ = ["Backend", "EventStream", "LogChunk", "SocketBackend", "read_log"]

#: Ops that change nothing: resent once if the kept connection turns out to be stale.
READ_OPS = frozenset(
    {"ping", "sweeps", "trials", "show", "logs", "export", "gpus", "metrics", "gpu_samples"}
)
#: How much of a log file the first read of a tail returns.
LOG_TAIL_BYTES = 64 << 10


class EventStream(Protocol):
    """Events of one subscription, in order; iteration ends when the stream closes."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None:
        """Make a blocked iteration end soon; safe from any thread."""


class Backend(Protocol):
    """What the app needs from the daemon; ``SocketBackend`` and ``FakeBackend`` implement it."""

    #: where the daemon is, for the header ("/home/u/.local/share/clusterd/clusterd.sock")
    address: str

    def call(self, op: str, **args: Any) -> Any:
        """One request; the result, or raise the daemon's ``ClusterdError``."""

    def subscribe(self, sweep: str | None) -> EventStream:
        """Subscribe to change events (one sweep's, or all); raise if unreachable."""

    def read_log(self, path: str, offset: int | None) -> LogChunk:
        """Bytes of a log file from ``offset`` (None: its last ``LOG_TAIL_BYTES``)."""

    def close(self) -> None:
        """Drop connections; later calls reconnect."""


class LogChunk:
    """Text read from a log file and the offset to read from next time."""

    __slots__ = ("missing", "offset", "reset", "text")

    def __init__(self, text: str, offset: int, reset: bool, missing: bool = False) -> None:
        self.text = text
        self.offset = offset
        self.reset = reset  # True: replace what is shown (first read, or the file shrank)
        self.missing = missing


def read_log(path: str, offset: int | None, tail: int = LOG_TAIL_BYTES) -> LogChunk:
    """Read new bytes of ``path``; the daemon only names the file (``logs`` op), we read it.

    A first read (``offset`` None) returns the last ``tail`` bytes, starting at a line
    boundary; a file that shrank (truncated, rotated) is read again from its tail.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return LogChunk("", 0, reset=offset is None, missing=True)
    reset = offset is None or size < offset
    start = max(0, size - tail) if reset else offset
    assert start is not None
    if size == start and not reset:
        return LogChunk("", start, reset=False)
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    if reset and start > 0:
        data = data.partition(b"\n")[2]
    elif not reset:
        # leave a partial last line for the next read, so lines are never split
        cut = data.rfind(b"\n") + 1
        data, size = data[:cut], start + cut
    return LogChunk(data.decode("utf-8", "replace"), size, reset=reset)


class _TuiClient(Client):
    """``Client`` whose blocked reader another thread can wake (to switch subscriptions)."""

    def interrupt(self) -> None:
        """Unblock a reader in another thread (``close`` alone does not wake it)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _SocketStream:
    def __init__(self, client: _TuiClient) -> None:
        self._client = client

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            while True:
                try:
                    msg = self._client._read()
                except (ClusterdError, OSError, ValueError):
                    return
                event = msg.get("event")
                if isinstance(event, dict):
                    yield event
        finally:
            self._client.close()

    def close(self) -> None:
        self._client.interrupt()


class SocketBackend:
    """The daemon over its Unix socket: one shared request connection, one per stream.

    Requests from several worker threads share one connection under a lock (replies
    come in order, so requests must not interleave); a broken connection is dropped
    and the next call reconnects, which is how the TUI survives a daemon restart.
    """

    def __init__(self, socket_path: str | Path | None = None, timeout: float = 60.0) -> None:
        self._client = _TuiClient(socket_path, timeout=timeout)
        self.address = str(self._client.path)
        self._timeout = timeout
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        with self._lock:
            reused = self._client._sock is not None
            try:
                return self._call(op, args)
            except DaemonUnreachable:
                if not (reused and op in READ_OPS):
                    raise
            # the kept connection went stale (the daemon restarted): a read is safe to resend
            return self._call(op, args)

    def _call(self, op: str, args: dict[str, Any]) -> Any:
        try:
            if self._client._sock is None:
                self._client.connect()
            return self._client.call(op, **args)
        except (DaemonUnreachable, InvalidRequest, OSError) as exc:
            self._client.close()
            if isinstance(exc, ClusterdError):
                raise
            raise DaemonUnreachable(f"lost the connection to the daemon: {exc}") from None

    def subscribe(self, sweep: str | None) -> EventStream:
        client = _TuiClient(self.address, timeout=self._timeout)
        client.connect()
        try:
            client.call("subscribe", **({"sweep": sweep} if sweep else {}))
        except BaseException:
            client.close()
            raise
        assert client._sock is not None
        client._sock.settimeout(None)  # a quiet sweep sends nothing for hours
        return _SocketStream(client)

    def read_log(self, path: str, offset: int | None) -> LogChunk:
        return read_log(path, offset)

    def close(self) -> None:
        with self._lock:
            self._client.close()
