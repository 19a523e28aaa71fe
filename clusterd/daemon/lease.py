"""One scheduler per database (principle 5): a lease in the single-row ``lease`` table.

A daemon :func:`acquire`\\ s the lease at start, :func:`heartbeat`\\ s it every few
seconds (ttl/3 is a good period) and :func:`release`\\ s it on a clean stop. Another
daemon, on this or another login node, may take the lease over only when

- there is no lease row (first start, or the last holder released it),
- the row is already its own (same holder string),
- the holder's heartbeat is older than ``ttl`` (it died or hangs), or
- the holder ran on this very host and its pid is gone (no need to wait ``ttl``).

The decision is made in Python on the row as read, then written with a
compare-and-swap UPDATE (``WHERE holder = <seen> AND heartbeat_at = <seen>``) whose
rowcount says whether the row was still as read; the very first holder is written
with an INSERT on the fixed primary key, which only one racer can win. Both are
atomic in SQLite and PostgreSQL alike, so two racing daemons never both win.

Time comes from the database server on PostgreSQL, whose daemons may run on hosts
with skewed clocks, and from this host on SQLite (which is never shared across hosts:
``fscheck`` refuses network filesystems).

The lease is also a **fence** (:class:`Fence`): a daemon paused past ``ttl`` (SIGSTOP,
a swapped-out VM) wakes up believing it still schedules. So every write transaction
first reads the lease row and requires it to name this daemon's holder string *and*
acquisition time -- the pair is the lease's generation: the nonce in ``holder`` is new
for every daemon run and a takeover writes a new ``acquired_at``, so no schema column
is needed. A mismatch raises :class:`LeaseLost` (a ``db.WritesRefused``) and the
transaction rolls back; the daemon then stops. The read is inside the transaction, after
SQLite's BEGIN IMMEDIATE (no one can take the lease before our COMMIT) or with
PostgreSQL's ``FOR SHARE`` (a takeover's UPDATE waits for our COMMIT).

``CLUSTERD_LEASE_TTL`` (seconds, default 30) shortens the ttl for tests.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from clusterd.daemon import models
from clusterd.daemon.db import WritesRefused, transaction
from clusterd.errors import LeaseHeld, StorageError
from clusterd.pidcheck import pid_alive

__all__ = [
    "DEFAULT_TTL",
    "Fence",
    "HolderInfo",
    "Lease",
    "LeaseLost",
    "acquire",
    "heartbeat",
    "pid_alive",
    "release",
    "ttl_from_env",
]

DEFAULT_TTL = 30.0
"""Seconds without a heartbeat after which a lease is considered abandoned."""

_LEASE_ID = 1
_TABLE = models.Base.metadata.tables[models.Lease.__tablename__]
_RACE_RETRIES = 5
_SERVER_NOW = text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
_FENCE_READ = select(_TABLE.c.holder, _TABLE.c.acquired_at, _TABLE.c.pid, _TABLE.c.host).where(
    _TABLE.c.id == _LEASE_ID
)
_FENCE_READ_PG = _FENCE_READ.with_for_update(read=True)


class LeaseLost(WritesRefused, LeaseHeld):
    """Another daemon holds the lease now: this one must write nothing more."""

    code = "lease_lost"


def ttl_from_env() -> float:
    """The lease ttl: ``CLUSTERD_LEASE_TTL`` seconds if set (tests), else DEFAULT_TTL."""
    raw = os.environ.get("CLUSTERD_LEASE_TTL")
    if not raw:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if not 0.5 <= ttl <= 3600:
        raise StorageError(
            f"CLUSTERD_LEASE_TTL={raw!r} is not a number of seconds between 0.5 and 3600"
        )
    return ttl


@dataclass(frozen=True)
class HolderInfo:
    """Who wants the lease: this host and process, plus a nonce unique to this daemon run.

    The nonce tells a restarted daemon (which may reuse a pid) from its predecessor.
    """

    host: str
    pid: int
    nonce: str

    @classmethod
    def current(cls) -> HolderInfo:
        """The running process, with a fresh nonce."""
        return cls(host=socket.gethostname(), pid=os.getpid(), nonce=uuid.uuid4().hex[:12])

    @property
    def holder(self) -> str:
        """The string stored in ``lease.holder``: ``host:pid:nonce``."""
        return f"{self.host}:{self.pid}:{self.nonce}"


@dataclass(frozen=True)
class Lease:
    """A lease this process holds (as of ``heartbeat_at``, in the lease's clock)."""

    info: HolderInfo
    ttl: float
    acquired_at: float
    heartbeat_at: float


class _Raced(Exception):
    """The row changed between our read and our write; read again."""


def _now(conn: Connection) -> float:
    """Seconds since the epoch: the server's clock on PostgreSQL, ours on SQLite."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(_SERVER_NOW).scalar_one())
    return time.time()


def _read(conn: Connection) -> Row | None:
    return conn.execute(select(_TABLE).where(_TABLE.c.id == _LEASE_ID)).first()


def _held_message(row: Row, now: float, ttl: float) -> str:
    age = max(0.0, now - row.heartbeat_at)
    wait = max(0, math.ceil(ttl - age))
    return (
        f"another clusterd (pid {row.pid} on {row.host}) holds this database; "
        f"last heartbeat {age:.0f} s ago. Stop it with `clusterd stop` there, "
        f"or wait {wait} s if it died."
    )


def _may_take(row: Row, info: HolderInfo, now: float, ttl: float) -> bool:
    """The takeover rule of the module docstring, for an existing row."""
    if row.holder == info.holder or now - row.heartbeat_at > ttl:
        return True
    return row.host == info.host and not pid_alive(row.pid)


def _try_acquire(conn: Connection, info: HolderInfo, ttl: float) -> Lease:
    now = _now(conn)
    row = _read(conn)
    if row is None:
        conn.execute(insert(_TABLE).values(id=_LEASE_ID, **_fields(info, now)))
        return Lease(info=info, ttl=ttl, acquired_at=now, heartbeat_at=now)
    if not _may_take(row, info, now, ttl):
        raise LeaseHeld(_held_message(row, now, ttl))
    acquired_at = row.acquired_at if row.holder == info.holder else now
    swapped = conn.execute(
        update(_TABLE)
        .where(
            _TABLE.c.id == _LEASE_ID,
            _TABLE.c.holder == row.holder,
            _TABLE.c.heartbeat_at == row.heartbeat_at,
        )
        .values(**_fields(info, now) | {"acquired_at": acquired_at})
    )
    if swapped.rowcount != 1:
        raise _Raced
    return Lease(info=info, ttl=ttl, acquired_at=acquired_at, heartbeat_at=now)


def _fields(info: HolderInfo, now: float) -> dict[str, object]:
    return {
        "holder": info.holder,
        "host": info.host,
        "pid": info.pid,
        "acquired_at": now,
        "heartbeat_at": now,
    }


def acquire(
    engine: Engine, holder_info: HolderInfo | None = None, ttl: float = DEFAULT_TTL
) -> Lease:
    """Take the database's lease for ``holder_info`` (default: this process), or raise LeaseHeld.

    The message of LeaseHeld names the holder's pid and host and its last heartbeat.
    """
    info = holder_info or HolderInfo.current()
    for _ in range(_RACE_RETRIES):
        try:
            with transaction(engine, guarded=False) as conn:
                return _try_acquire(conn, info, ttl)
        except (_Raced, IntegrityError):
            continue  # another daemon wrote the row meanwhile: decide again on what it wrote
    raise LeaseHeld(
        "the lease on this database keeps changing hands; another clusterd is starting "
        "at the same time. Stop it with `clusterd stop` there, then retry."
    )


def heartbeat(engine: Engine, lease: Lease) -> Lease:
    """Renew ``lease``; raise LeaseHeld if another daemon took it over meanwhile.

    A daemon that gets LeaseHeld here must stop scheduling at once: the other daemon
    believes our lease expired, and now acts as the only writer.
    """
    with transaction(engine, guarded=False) as conn:
        now = _now(conn)
        renewed = conn.execute(
            update(_TABLE)
            .where(_TABLE.c.id == _LEASE_ID, _TABLE.c.holder == lease.info.holder)
            .values(heartbeat_at=now)
        )
        if renewed.rowcount == 1:
            return replace(lease, heartbeat_at=now)
        row = _read(conn)
    if row is None:
        raise LeaseHeld(
            "this clusterd's lease on its database was removed by someone else; "
            "stop this daemon (`clusterd stop`) and start it again."
        )
    raise LeaseHeld(
        f"this clusterd lost its lease on the database to another clusterd (pid {row.pid} "
        f"on {row.host}), which took it over because our heartbeat was more than "
        f"{lease.ttl:g} s old. Stop this daemon (`clusterd stop`); the other one schedules now."
    )


def release(engine: Engine, lease: Lease) -> None:
    """Give the lease up (clean stop) so the next daemon need not wait; no-op if not ours."""
    with transaction(engine, guarded=False) as conn:
        conn.execute(
            delete(_TABLE).where(_TABLE.c.id == _LEASE_ID, _TABLE.c.holder == lease.info.holder)
        )


class Fence:
    """The write guard of a daemon holding ``lease`` (see the module docstring).

    ``check`` runs inside every write transaction; the first mismatch is remembered
    (``lost``), reported once to ``on_lost`` and refuses every later write at once,
    without asking the database again. Thread-safe: the scheduler's thread and the
    request handlers' workers write concurrently.
    """

    def __init__(self, lease: Lease, on_lost: Callable[[str], None] | None = None) -> None:
        self.lease = lease
        self.lost: str | None = None
        self._on_lost = on_lost
        self._lock = threading.Lock()

    def check(self, conn: Connection) -> None:
        """Raise LeaseLost unless the lease row still names this daemon's generation."""
        if self.lost is not None:
            raise LeaseLost(self.lost)
        read = _FENCE_READ_PG if conn.dialect.name == "postgresql" else _FENCE_READ
        row = conn.execute(read).first()
        mine = self.lease
        generation = (mine.info.holder, mine.acquired_at)
        if row is not None and (row.holder, row.acquired_at) == generation:
            return
        self.refuse(_lost_message(row, mine))

    def refuse(self, message: str) -> None:
        """Stop all writes from now on (first reason wins) and raise LeaseLost."""
        with self._lock:
            first = self.lost is None
            if first:
                self.lost = message
        if first and self._on_lost is not None:
            self._on_lost(message)
        raise LeaseLost(self.lost or message)


def _lost_message(row: Row | None, mine: Lease) -> str:
    if row is None:
        return (
            "this clusterd's lease on its database was removed by someone else; it writes "
            "nothing more and stops. Start it again with `clusterd start`."
        )
    return (
        f"this clusterd lost its lease on the database to another clusterd (pid {row.pid} "
        f"on {row.host}), which took it over because our heartbeat was more than "
        f"{mine.ttl:g} s old (was this daemon paused?); it writes nothing more and stops."
    )
