"""Fixtures for the daemon's storage: SQLite engines in ``tmp_path`` and a real PostgreSQL.

PostgreSQL (principle 7: real parts in tests) comes from, in order:

1. ``CLUSTERD_TEST_PG_URL`` — an existing server; the role needs CREATEDB, since every
   test gets a database of its own;
2. the server binaries (``initdb``, ``pg_ctl``) found via ``CLUSTERD_TEST_PG_BIN``, else
   the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout), else ``$PATH``: a
   throw-away cluster in a temporary directory, reachable only over a Unix socket
   there, stopped and deleted at the end of the session. PostgreSQL refuses to run as
   root, so under root it runs as ``nobody`` (``CLUSTERD_TEST_PG_USER`` overrides).

Tests needing PostgreSQL are skipped only when neither is available.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, make_url
from sqlalchemy.engine import Engine

from clusterd.daemon import db

PG_PORT = 5432  # only names the socket file; nothing listens on TCP


# --------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a not-yet-existing SQLite database, in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path / 'home' / 'clusterd.db'}"


@pytest.fixture
def make_sqlite_engine(sqlite_url: str) -> Iterator[Callable[..., Engine]]:
    """Factory: ``make_sqlite_engine(busy_timeout=...)`` on ``sqlite_url``; all disposed at end."""
    engines: list[Engine] = []

    def make(url: str = sqlite_url, **kwargs: Any) -> Engine:
        engine = db.make_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def engine(make_sqlite_engine: Callable[..., Engine]) -> Engine:
    """A fresh SQLite database upgraded to head."""
    engine = make_sqlite_engine()
    db.upgrade(engine)
    return engine


# --------------------------------------------------------------------------- schema


def schema_snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """Everything the inspector reports about the tables, in comparable form.

    Used to prove that the alembic revisions and the models build the same schema.
    """
    insp = inspect(engine)
    snapshot: dict[str, dict[str, Any]] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        snapshot[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk.get("options") or {}).get("ondelete"),
                )
                for fk in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in insp.get_indexes(table)
            ),
            "uniques": sorted(
                (uc["name"] or "", tuple(uc["column_names"]))
                for uc in insp.get_unique_constraints(table)
            ),
        }
    return snapshot


@pytest.fixture
def snapshot() -> Callable[[Engine], dict[str, dict[str, Any]]]:
    """The ``schema_snapshot`` function, as a fixture (tests import nothing from here)."""
    return schema_snapshot


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    """Directory holding initdb and pg_ctl, or None if PostgreSQL is not installed."""
    explicit = os.environ.get("CLUSTERD_TEST_PG_BIN")
    candidates = [explicit] if explicit else []
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    candidates += reversed(debian)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


class PgServer:
    """A throw-away PostgreSQL cluster in a temporary directory, Unix socket only."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="clusterd-pg-"))  # short: socket paths ≤ 107
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam(os.environ.get("CLUSTERD_TEST_PG_USER", "nobody"))
            os.chown(self.base, account.pw_uid, account.pw_gid)
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.base}&port={PG_PORT}"

    def _run(self, *args: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **self.user,
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed:\n{result.stdout}{result.stderr}{log}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.base}'\n"
                f"port = {PG_PORT}\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 50\n"
            )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Admin URL of a PostgreSQL server for this session (see the module docstring)."""
    given = os.environ.get("CLUSTERD_TEST_PG_URL")
    if given:
        yield given
        return
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
            "or $PATH: install them (`apt-get install -y postgresql`) or set CLUSTERD_TEST_PG_URL"
        )
    server = PgServer(bindir)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def new_pg_url(pg_server: str) -> Iterator[Callable[[], str]]:
    """Factory: a URL (plain ``postgresql://``) of a new, empty database; dropped at the end."""
    admin = create_engine(
        make_url(pg_server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    created: list[str] = []

    def new() -> str:
        name = f"clusterd_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = make_url(pg_server).set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    yield new
    with admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
