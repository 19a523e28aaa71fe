"""The daemon's write guard: it writes only while it holds the lease and its database file.

Two things make a running daemon's writes wrong, and both are checked at the start of
every write transaction (``db.set_write_guard``) and every ``WATCH_INTERVAL`` seconds:

- another daemon took the lease over (this one was paused past the ttl): the fence of
  ``lease.Fence``;
- the SQLite file was deleted or replaced (``db.FileIdentity``): SQLite would go on
  writing into the unlinked file, and everything written would vanish at exit.

The first failure halts the daemon: every later write is refused at once (the
transaction rolls back), the scheduler stops, the reason goes to the log, to
``clusterd status`` while the daemon stops, and to ``$CLUSTERD_HOME/clusterd.halted``
for ``clusterd status`` afterwards; the daemon exits with status 1.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from clusterd.daemon.db import FileIdentity, WritesRefused
from clusterd.daemon.lease import Fence

__all__ = ["HALTED_FILE", "WATCH_INTERVAL", "WriteGuard", "read_halted", "write_halted"]

log = logging.getLogger("clusterd")

#: seconds between checks of the database file's identity when nothing is written
WATCH_INTERVAL = 1.0
HALTED_FILE = "clusterd.halted"


class WriteGuard:
    """The lease fence and the file identity, with one halt for both."""

    def __init__(
        self,
        fence: Fence,
        identity: FileIdentity | None,
        on_halt: Callable[[str], Any],
    ) -> None:
        self.fence = fence
        self.identity = identity
        self.halted: str | None = None
        self.halted_at: float | None = None
        self._on_halt = on_halt
        self._lock = threading.Lock()

    @property
    def database_gone(self) -> bool:
        """Whether the file went away (the daemon must then not touch it, not even to
        release the lease: a new connection would create an empty file in its place)."""
        return self.identity is not None and self.identity.problem() is not None

    def __call__(self, conn: Connection) -> None:
        """The write guard proper: raise WritesRefused unless this daemon may write."""
        if self.halted is not None:
            raise WritesRefused(self.halted)
        self.check_file()
        try:
            self.fence.check(conn)
        except WritesRefused as exc:
            self.halt(exc.message)
            raise

    def check_file(self) -> None:
        """Halt (and raise) if the database file is gone or another one."""
        problem = self.identity.problem() if self.identity is not None else None
        if problem is not None:
            message = (
                f"{problem}; clusterd stops writing and exits. Restore the file (and its -wal) "
                "from a backup, or start afresh with `clusterd start --new-database`."
            )
            self.halt(message)
            raise WritesRefused(message)

    def halt(self, message: str) -> None:
        """Refuse every write from now on; the first reason is the one kept and reported."""
        with self._lock:
            if self.halted is not None:
                return
            self.halted, self.halted_at = message, time.time()
        log.error("clusterd halts: %s", message)
        self._on_halt(message)


def write_halted(home: Path, message: str) -> None:
    """Leave the reason for ``clusterd status`` once the daemon is gone."""
    path = home / HALTED_FILE
    try:
        path.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {message}\n")
    except OSError as err:
        log.warning("cannot write %s: %s", path, err)


def read_halted(home: Path) -> str | None:
    """The reason the last daemon of ``home`` halted, if it did (None otherwise)."""
    try:
        return (home / HALTED_FILE).read_text().strip() or None
    except OSError:
        return None
