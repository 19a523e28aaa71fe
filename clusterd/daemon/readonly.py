"""Answer read-only requests from the database itself, for when the daemon is down.

``clusterd.client``'s read functions (``sweeps``, ``results``, ``metrics``) fall back to
this when nothing listens on the socket: a notebook can still read a finished sweep's
results after the login node rebooted. The same handler functions as the daemon's
answer (``handlers.HANDLERS``), over a :class:`Store` whose engine cannot write, so the
frames are the same whether the daemon is up or not.

What keeps it harmless:

- SQLite is opened through a URI with ``mode=ro`` -- and ``immutable=1`` when there is
  no ``-wal`` file (the daemon shut down cleanly and no one is writing), which creates
  no ``-shm``/``-wal`` files either; the file's bytes and mtime never change. With a
  ``-wal`` file left (the daemon crashed, or is starting) plain ``mode=ro`` reads the
  WAL too. PostgreSQL sessions are opened ``READ ONLY``.
- No migration ever runs: a database at another schema revision is refused with a
  message saying what to do, rather than read with the wrong model.
- Only the ops in :data:`READ_OPS` are served; each call says it is read-only with a
  :class:`ReadOnlyWarning`.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from clusterd.errors import InvalidRequest, StorageError

__all__ = ["READ_OPS", "ReadOnlyWarning", "Reader", "open_engine"]

#: what the reader answers: every op that only reads the database
READ_OPS = frozenset({"sweeps", "export", "metric_table", "trials", "best", "gpus", "metrics"})


class ReadOnlyWarning(UserWarning):
    """The daemon is not running: the answer was read from the database, read-only."""


def _sqlite_uri(path: Path) -> str:
    if not path.is_file():
        raise StorageError(f"no clusterd database at {path} (nothing was ever submitted here?)")
    from urllib.parse import quote

    immutable = not os.path.exists(f"{path}-wal")
    return f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")


def open_engine(db_url: str) -> Engine:
    """An engine over ``db_url`` that cannot write (see the module docstring)."""
    from clusterd.daemon import db

    url = db._parse(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = db._sqlite_path(url)
        if path is None:
            raise StorageError(f"cannot read {db.describe(url)} without the daemon")
        uri = _sqlite_uri(path)
        return create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
        )
    if backend in ("postgresql", "postgres"):
        engine = db.make_engine(db_url)
        return engine.execution_options(postgresql_readonly=True)
    raise StorageError(f"unsupported database {db.describe(url)}")


def check_revision(engine: Engine, described: str) -> None:
    """Refuse a database whose schema is not the one this clusterd reads."""
    from clusterd.daemon import db

    found = db.current_revision(engine)
    want = db.newest_revision_file()
    if found != want:
        what = "has no clusterd schema" if found is None else f"is at schema revision {found}"
        raise StorageError(
            f"the database {described} {what}; this clusterd reads revision {want} and "
            "never upgrades a database without the daemon. Start the daemon once "
            "(`clusterd start`) to upgrade it, or read it with the clusterd that wrote it."
        )


class Reader:
    """``call(op, **args)`` like :meth:`clusterd.client.Client.call`, answered from the
    database read-only (the daemon's own handlers over a read-only store)."""

    def __init__(self, db_url: str, home: str | Path | None = None) -> None:
        from clusterd.daemon import db
        from clusterd.daemon.store import Store

        self.db_url = db_url
        self.described = db.describe(db._parse(db_url))
        engine = open_engine(db_url)
        check_revision(engine, self.described)
        self.engine = engine
        self.context = SimpleNamespace(
            store=Store(engine),
            scheduler=SimpleNamespace(troubles={}),  # launch troubles live in the daemon
            home=Path(home) if home is not None else None,
            db_url=db_url,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, op: str, **args: Any) -> Any:
        if op not in READ_OPS:
            raise InvalidRequest(
                f"{op!r} needs the daemon (without it only {', '.join(sorted(READ_OPS))} "
                "can be read); start it with `clusterd start`"
            )
        from clusterd.daemon.handlers import HANDLERS

        warnings.warn(  # Python shows it once per calling line
            f"clusterd: the daemon is not running; reading {self.described} read-only "
            "(nothing is written; start the daemon for live state)",
            ReadOnlyWarning,
            stacklevel=3,
        )
        return HANDLERS[op](self.context, args)  # type: ignore[arg-type]
