"""Opening, upgrading and transacting on the daemon's database (SQLite or PostgreSQL).

Everything that can go wrong with storage surfaces here as a
:class:`clusterd.errors.StorageError` that names the database and says what to do,
never as a raw SQLAlchemy traceback:

- :func:`make_engine` opens the database and proves it works (a probe connection),
  so a bad URL, a missing server or a network filesystem fail at ``clusterd start``.
  A SQLite file that clusterd created once and that is now gone or empty is not
  silently replaced: a marker next to it (``.<name>.created``) remembers that it
  existed, and only ``allow_new=True`` (``clusterd start --new-database``) starts afresh.
- :func:`check_integrity` runs SQLite's ``PRAGMA quick_check`` at start, so a corrupt
  page is a clear refusal then, not a failure hours later.
- :func:`upgrade` brings the schema to the newest alembic revision, on the daemon's
  own connection, in one transaction.
- :func:`transaction` is the one way writers touch the database: commit on success,
  rollback on error, storage failures translated. A daemon registers a write guard
  (:func:`set_write_guard`) that every write transaction runs right after BEGIN: the
  lease fence and the file identity check (:class:`FileIdentity`) live there, so a
  daemon that lost its lease or its database file writes nothing more.

SQLite is run in WAL mode (readers never block the writer) with ``synchronous=NORMAL``
(durable across process crashes, which is what "kill the daemon at any instant" needs)
and foreign keys on. SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN``, so DDL is
transactional and a write transaction can take the write lock up front
(``BEGIN IMMEDIATE``) instead of failing half-way when another writer appears.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, exc, make_url, text
from sqlalchemy.engine import URL, Connection, Engine

from clusterd.daemon import fscheck
from clusterd.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FileIdentity",
    "WritesRefused",
    "check_integrity",
    "check_write_guard",
    "created_marker",
    "current_revision",
    "describe",
    "head_revision",
    "make_engine",
    "may_launch",
    "newest_revision_file",
    "set_write_guard",
    "sqlite_file",
    "storage_error",
    "transaction",
    "upgrade",
]

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite statement waits for another writer's lock before giving up."""

_PG_CONNECT_TIMEOUT = 10
_PG_UPGRADE_LOCK = 0x636C7573  # "clus": advisory lock key serialising schema upgrades
_WRITE_OPTION = "clusterd_write"  # execution option: take SQLite's write lock at BEGIN
_VERSION_TABLE = "alembic_version"


# --------------------------------------------------------------------------- URLs


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except exc.ArgumentError as err:
        raise StorageError(
            f"cannot parse the database URL {url!r}: {err}. Set CLUSTERD_DB_URL to "
            "sqlite:////absolute/path.db or postgresql://user:password@host/dbname."
        ) from err


def _sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory / URI-mode database."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("uri") == "true":
        return None
    return Path(database).expanduser().absolute()


def describe(url: URL | Engine) -> str:
    """How messages name a database: the file for SQLite, the URL minus password otherwise."""
    if isinstance(url, Engine):
        url = url.url
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        return str(path) if path else "the in-memory SQLite database"
    # The scheme as users write it: the +psycopg driver is our business, not theirs.
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- errors

# (substring of the driver's message, what happened, what to do), checked in order.
_SQLITE_FAILURES: tuple[tuple[str, str, str], ...] = (
    (
        "database is locked",
        "is locked by another process (waited {timeout:g} s)",
        "check that no other clusterd or sqlite3 shell is writing to it "
        "(`clusterd status`, `fuser FILE`), then retry",
    ),
    (
        "database table is locked",
        "has a table locked by another connection",
        "retry; if it persists, restart clusterd",
    ),
    (
        "database or disk is full",
        "cannot grow: the disk is full",
        "free space on that filesystem (`df -h DIR`) or move CLUSTERD_HOME to a larger disk",
    ),
    (
        "readonly database",
        "is read-only",
        "make the file and its directory writable by you (WAL needs to create "
        "-wal/-shm files next to it), or point CLUSTERD_HOME elsewhere",
    ),
    (
        "disk image is malformed",
        "is corrupt",
        "stop clusterd, move the file aside (keep it for recovery with `sqlite3 FILE .recover`) "
        "and start again with a fresh database (`clusterd start --new-database`)",
    ),
    (
        "file is not a database",
        "is not a SQLite database (or is encrypted/corrupt)",
        "check CLUSTERD_DB_URL / CLUSTERD_HOME points at clusterd's database; "
        "move the file aside to start afresh",
    ),
    (
        "unable to open database file",
        "cannot be opened",
        "check that its directory exists and is writable by you",
    ),
    (
        "disk i/o error",
        "hit an I/O error",
        "check the disk (`dmesg`); SQLite on a network filesystem also fails like this",
    ),
    (
        "no such table",
        "has no clusterd schema (or an old one)",
        "run `clusterd db upgrade`",
    ),
)

_GENERIC_SQLITE = ("failed", "see the daemon log for details; `clusterd db upgrade` may help")


def _sqlite_failure(message: str) -> tuple[str, str]:
    lowered = message.lower()
    for needle, what, todo in _SQLITE_FAILURES:
        if needle in lowered:
            return what, todo
    return _GENERIC_SQLITE


# PostgreSQL SQLSTATEs worth their own advice: (what happened, what to do).
_PG_FAILURES: dict[str, tuple[str, str]] = {
    "42P01": ("has no clusterd schema (or an old one)", "run `clusterd db upgrade`"),
    "25006": (
        "is read-only (a standby server?)",
        "point CLUSTERD_DB_URL at the primary server",
    ),
    "53100": ("cannot grow: the server's disk is full", "ask the server's administrator"),
    "53300": (
        "refused the connection: too many connections",
        "stop other clients or raise max_connections on the server",
    ),
}


def _sqlstate(err: exc.DBAPIError) -> str | None:
    return getattr(err.orig, "sqlstate", None)


def _postgres_failure(err: exc.DBAPIError) -> tuple[str, str]:
    detail = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
    known = _PG_FAILURES.get(_sqlstate(err) or "")
    if known:
        return f"{known[0]} ({detail})", known[1]
    if err.connection_invalidated or isinstance(err, exc.OperationalError):
        return (
            f"cannot be reached or refused the operation ({detail})",
            "check that the server is up and CLUSTERD_DB_URL (host, port, user, password, "
            "database) is right",
        )
    return f"failed ({detail})", "see the daemon log; `clusterd db upgrade` may help"


def storage_error(
    err: exc.DBAPIError, url: URL | Engine, *, timeout: float | None = None
) -> StorageError:
    """Translate a SQLAlchemy/driver error into a StorageError naming the database."""
    if isinstance(url, Engine):
        url = url.url
    where = describe(url)
    if url.get_backend_name() == "sqlite":
        what, todo = _sqlite_failure(str(err.orig or err))
        what = what.format(timeout=timeout if timeout is not None else DEFAULT_BUSY_TIMEOUT)
        detail = f" [{str(err.orig or err).strip()}]"
    else:
        what, todo = _postgres_failure(err)
        detail = ""
    return StorageError(f"the database {where} {what}{detail}; {todo}.")


def _is_storage_failure(err: exc.DBAPIError) -> bool:
    """Operational trouble (locks, disk, connection, corruption), not a bug in our SQL.

    IntegrityError and ProgrammingError are left alone: they mean clusterd asked for
    something wrong, and callers (the lease, ``--extend``) handle some of them.
    """
    if isinstance(err, exc.OperationalError) or _sqlstate(err) in _PG_FAILURES:
        return True
    return type(err) is exc.DatabaseError  # sqlite3 raises "malformed"/"not a database" so


# --------------------------------------------------------------------------- engines


def make_engine(
    url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, allow_new: bool = False
) -> Engine:
    """Open the database at ``url`` (SQLite or PostgreSQL) and check that it answers.

    SQLite: creates the parent directory, refuses a network filesystem unless
    ``CLUSTERD_ALLOW_NETWORK_FS=1``, creates the file with mode 0600 -- unless clusterd
    created it before and it vanished or was emptied, which is refused unless
    ``allow_new`` -- and sets the WAL pragmas on every connection. PostgreSQL: uses
    psycopg 3 with ``pool_pre_ping`` so a server restart costs one reconnect, not a
    crash. ``busy_timeout`` is how long a SQLite statement waits for a lock held by
    another process.
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        check_sqlite_version()
        engine = _sqlite_engine(parsed, busy_timeout, allow_new)
    elif backend in ("postgresql", "postgres"):
        engine = _postgres_engine(parsed)
    else:
        raise StorageError(
            f"unsupported database {describe(parsed)}: clusterd works with SQLite and "
            "PostgreSQL. Set CLUSTERD_DB_URL to sqlite:////path.db or postgresql://host/db."
        )
    _probe(engine, busy_timeout)
    return engine


#: the oldest SQLite library clusterd runs on: ``INSERT ... ON CONFLICT DO UPDATE``
#: (the metric summaries kept at ingest) arrived in 3.24 (2018)
MIN_SQLITE = (3, 24, 0)


def check_sqlite_version(found: tuple[int, ...] | None = None) -> None:
    """Refuse, with the versions in words, a SQLite library too old for clusterd's SQL."""
    import sqlite3

    found = found or sqlite3.sqlite_version_info
    if tuple(found) < MIN_SQLITE:
        need = ".".join(map(str, MIN_SQLITE))
        raise StorageError(
            f"this Python's SQLite library is {'.'.join(map(str, found))}; clusterd needs "
            f"{need} or newer (a newer Python, or CLUSTERD_DB_URL=postgresql://...)"
        )


def _sqlite_engine(url: URL, busy_timeout: float, allow_new: bool) -> Engine:
    path = _sqlite_path(url)
    if path is not None:
        if not allow_new:
            _refuse_lost_database(path)
        _prepare_sqlite_file(path)
        url = url.set(database=str(path))  # "~" expanded: open the file we checked
    engine = create_engine(url, connect_args={"timeout": busy_timeout})
    event.listen(engine, "connect", _sqlite_on_connect(busy_timeout))
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def created_marker(path: Path) -> Path:
    """The file that says clusterd created the SQLite database ``path`` (next to it,
    hidden, so that ``rm clusterd.db*`` does not take it along)."""
    return path.with_name(f".{path.name}.created")


def _refuse_lost_database(path: Path) -> None:
    """A database clusterd created once is missing or empty now: say so, change nothing."""
    marker = created_marker(path)
    if not marker.exists():
        return
    try:
        size: int | None = path.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError:
        return  # _prepare_sqlite_file reports it
    wal = Path(f"{path}-wal")
    if size is not None and (size > 0 or (wal.exists() and wal.stat().st_size > 0)):
        return
    what = "is missing" if size is None else "is empty (0 bytes)"
    raise StorageError(
        f"the database {path} {what}, but clusterd created it there before ({marker} "
        "says so); starting would forget every sweep, trial and metric. Restore the file "
        "(and its -wal file) from a backup, or start with a new, empty database: "
        "`clusterd start --new-database`."
    )


def _mark_created(engine: Engine) -> None:
    """Write the marker of :func:`created_marker` once the schema exists (a database killed
    during its first upgrade has no data to lose, so no marker yet)."""
    path = _sqlite_path(engine.url)
    if path is None or engine.url.get_backend_name() != "sqlite":
        return
    marker = created_marker(path)
    if marker.exists():
        return
    try:
        marker.write_text(
            f"created {time.strftime('%Y-%m-%d %H:%M:%S')}; clusterd refuses to start "
            "afresh if the database next to this file disappears\n"
        )
        os.chmod(marker, 0o600)
    except OSError as err:
        log.warning("cannot write %s: %s", marker, err)


def check_integrity(engine: Engine) -> None:
    """Refuse a corrupt SQLite database at start (``PRAGMA quick_check``, which reads the
    whole file) instead of failing on the first query that reaches the bad page."""
    if engine.url.get_backend_name() != "sqlite":
        return
    with transaction(engine, write=False) as conn:
        rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(3)")]
    if rows != ["ok"]:
        _what, todo = _sqlite_failure("disk image is malformed")
        found = "; ".join(rows)
        raise StorageError(
            f"the database {describe(engine)} is corrupt (quick_check: {found}); {todo}."
        )


def _prepare_sqlite_file(path: Path) -> None:
    """Create the directory and a private (0600) file before SQLite opens it.

    Creating the file ourselves avoids a window in which it exists with the umask's
    mode; SQLite gives the -wal and -shm files the database file's permissions.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fscheck.refuse_network_fs(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            info = os.fstat(fd)
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as err:
        raise StorageError(
            f"cannot create the database {path}: {err.strerror or err}; check that "
            f"{path.parent} is writable by you, or set CLUSTERD_HOME to a directory that is."
        ) from err


def _sqlite_on_connect(busy_timeout: float) -> Any:
    """Build the per-connection hook: pragmas, and SQLAlchemy-controlled BEGIN."""

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Stop the sqlite3 module from emitting BEGIN itself (it skips DDL and starts
        # transactions late); _sqlite_on_begin emits it instead. SQLAlchemy's recipe.
        dbapi_connection.isolation_level = None
        connection_record.info["busy_timeout"] = busy_timeout  # (set by connect_args) for messages
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return on_connect


def _sqlite_on_begin(conn: Connection) -> None:
    """Emit BEGIN; writers ask for IMMEDIATE so the lock wait happens here, under busy_timeout.

    A deferred transaction that reads and then writes can fail with SQLITE_BUSY at the
    write without any wait, if another connection wrote in between.
    """
    write = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_engine(url: URL) -> Engine:
    url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT
    if "application_name" not in url.query:
        connect_args["application_name"] = "clusterd"
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except ImportError as err:
        raise StorageError(
            f"cannot use {describe(url)}: the PostgreSQL driver psycopg 3 is not installed; "
            "run `pip install 'clusterd[postgres]'`."
        ) from err


def _probe(engine: Engine, busy_timeout: float) -> None:
    """Connect once so that an unusable database fails now, with a clear message."""
    try:
        with engine.connect():
            pass
    except exc.DBAPIError as err:
        engine.dispose()
        raise storage_error(err, engine, timeout=busy_timeout) from err


# --------------------------------------------------------------------------- write guard


class WritesRefused(StorageError):
    """This daemon must not write to its database any more (its lease was taken over, or
    the database file was deleted or replaced); the transaction was rolled back."""

    code = "writes_refused"


WriteGuard = Callable[[Connection], None]
_GUARDS: weakref.WeakKeyDictionary[Engine, WriteGuard] = weakref.WeakKeyDictionary()


def set_write_guard(engine: Engine, guard: WriteGuard | None) -> None:
    """Run ``guard(conn)`` at the start of every write transaction on ``engine`` (inside
    it, after BEGIN); it raises :class:`WritesRefused` to roll the transaction back.

    On SQLite, BEGIN IMMEDIATE holds the write lock from then to COMMIT, so what the
    guard read stays true for the whole transaction; on PostgreSQL the guard locks the
    row it reads (``FOR SHARE``) for the same effect.
    """
    if guard is None:
        _GUARDS.pop(engine, None)
    else:
        _GUARDS[engine] = guard


def check_write_guard(engine: Engine) -> None:
    """Run the guard now, in a transaction of its own (before an action outside the
    database that must not happen once the guard refuses, such as submitting a job)."""
    if engine in _GUARDS:
        with transaction(engine):
            pass


def may_launch(engine: Engine) -> bool:
    """Whether this daemon may start a job now: the write guard, asked in a read transaction.

    Drivers that start jobs on their own threads (the local driver starts queued jobs as
    slots free up) ask this first: a daemon resumed after a pause past the lease's ttl must
    not start a job that the daemon which took the lease over now owns. A plain read takes
    no write lock, so a driver thread holding its own lock cannot deadlock the scheduler.
    """
    guard = _GUARDS.get(engine)
    if guard is None:
        return True
    try:
        with transaction(engine, write=False) as conn:
            guard(conn)
    except WritesRefused:
        return False
    except StorageError:
        return False  # cannot tell: start nothing now, the next poll asks again
    return True


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite engine; None for PostgreSQL or an in-memory database."""
    if engine.url.get_backend_name() != "sqlite":
        return None
    return _sqlite_path(engine.url)


class FileIdentity:
    """Which file a SQLite database is (device and inode), as opened at start.

    A database deleted or replaced under a running daemon goes on accepting writes --
    into the unlinked file, lost when the daemon exits. :meth:`problem` notices it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        info = os.stat(path)
        self.identity = (info.st_dev, info.st_ino)

    def problem(self) -> str | None:
        """None while the path still names the file opened at start; else what happened."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return f"the database {self.path} was deleted while clusterd was running"
        except OSError as err:
            return f"the database {self.path} cannot be checked ({err.strerror or err})"
        if (info.st_dev, info.st_ino) != self.identity:
            return f"the database {self.path} was replaced by another file while clusterd ran"
        return None


# --------------------------------------------------------------------------- transactions


@contextmanager
def transaction(
    engine: Engine, *, write: bool = True, guarded: bool = True
) -> Iterator[Connection]:
    """Run the block in one transaction: commit if it returns, roll back if it raises.

    Operational failures (locked, disk full, read-only, corrupt, server gone) become a
    StorageError naming the database and the remedy; IntegrityError and other errors
    pass through unchanged. ``write=True`` takes SQLite's write lock at BEGIN and runs
    the engine's write guard (:func:`set_write_guard`) unless ``guarded=False`` (the
    lease's own transactions, which the guard's fence is made of).
    """
    timeout: float | None = None
    guard = _GUARDS.get(engine) if write and guarded else None
    try:
        with engine.connect() as conn:
            timeout = conn.info.get("busy_timeout")
            conn.execution_options(**{_WRITE_OPTION: write})
            with conn.begin():
                if guard is not None:
                    guard(conn)
                yield conn
    except exc.DBAPIError as err:
        if not _is_storage_failure(err):
            raise
        raise storage_error(err, engine, timeout=timeout) from err


# --------------------------------------------------------------------------- migrations


def _alembic_config(connection: Connection | None = None) -> Config:
    """The alembic Config, built in code: no alembic.ini ships with clusterd."""
    from alembic.config import Config

    config = Config()
    location = resources.files("clusterd.migrations")
    config.set_main_option("script_location", str(location))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this clusterd knows (alembic's own answer)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StorageError("clusterd's migrations are missing; reinstall clusterd.")
    return head


def newest_revision_file() -> str:
    """The head revision read off the file names alone (``versions/NNNN_slug.py``).

    Lets the daemon's start skip importing alembic (~100 ms, nearly all of an
    up-to-date upgrade) when the database is already at head. The naming convention,
    and that this agrees with :func:`head_revision`, are checked by the tests.
    """
    versions = resources.files("clusterd.migrations").joinpath("versions")
    revisions = [
        entry.name.split("_", 1)[0]
        for entry in versions.iterdir()
        if entry.name.endswith(".py") and entry.name[:4].isdigit()
    ]
    return max(revisions)


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database; None for a database never upgraded."""
    with transaction(engine, write=False) as conn:
        if not conn.dialect.has_table(conn, _VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().first()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision, atomically, on this engine's connection.

    Runs at every daemon start, so the up-to-date case is one query and no alembic
    import. A database stamped with a revision this clusterd does not know (made by a
    newer version) is refused rather than touched.
    """
    current = current_revision(engine)
    if current is not None and current == newest_revision_file():
        _mark_created(engine)
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise StorageError(
            f"the database {describe(engine)} has schema revision {current}, which this "
            f"clusterd (newest revision {head}) does not know; it was made by a newer "
            "clusterd. Upgrade clusterd, or set CLUSTERD_DB_URL to another database."
        )
    log.info("upgrading the schema of %s from %s to %s", describe(engine), current, head)
    with transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Two daemons starting at once against one server: the second waits here,
            # then finds the schema at head (SQLite's BEGIN IMMEDIATE does the same).
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK})")
        command.upgrade(_alembic_config(conn), "head")
    _mark_created(engine)
