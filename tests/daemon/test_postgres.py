"""The same database layer on a real PostgreSQL server (see conftest.py for where it comes from).

The lease tests in test_lease.py run on PostgreSQL too (parametrized); these cover what
is specific to it: the driver, the schema, server-side failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url, text
from sqlalchemy.engine import Engine

from clusterd.daemon import db, models
from clusterd.daemon.lease import HolderInfo, acquire
from clusterd.errors import LeaseHeld, StorageError

Snapshot = Callable[[Engine], dict[str, dict[str, Any]]]


@pytest.fixture
def make_pg_engine(new_pg_url: Callable[[], str]) -> Iterator[Callable[[], Engine]]:
    engines: list[Engine] = []

    def make() -> Engine:
        engines.append(db.make_engine(new_pg_url()))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def test_plain_postgresql_url_uses_psycopg3(make_pg_engine: Callable[[], Engine]) -> None:
    engine = make_pg_engine()
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.dialect.driver == "psycopg"
    assert engine.pool._pre_ping


def test_upgrade_creates_every_table(make_pg_engine: Callable[[], Engine]) -> None:
    engine = make_pg_engine()
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    insp = inspect(engine)
    assert set(insp.get_table_names()) - {"alembic_version"} == set(models.Base.metadata.tables)
    for name, table in models.Base.metadata.tables.items():
        columns = {c["name"]: c["nullable"] for c in insp.get_columns(name)}
        assert columns == {c.name: c.nullable for c in table.columns}, name
    assert db.current_revision(engine) == db.head_revision()


def test_migration_and_models_agree_on_postgres(
    make_pg_engine: Callable[[], Engine], snapshot: Snapshot
) -> None:
    migrated, reference = make_pg_engine(), make_pg_engine()
    db.upgrade(migrated)
    models.Base.metadata.create_all(reference)
    assert snapshot(migrated) == snapshot(reference)  # includes constraint names here
    with migrated.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, models.Base.metadata) == []


def test_upgrade_is_idempotent_on_postgres(
    make_pg_engine: Callable[[], Engine], snapshot: Snapshot
) -> None:
    engine = make_pg_engine()
    db.upgrade(engine)
    before = snapshot(engine)
    db.upgrade(engine)
    assert snapshot(engine) == before


def test_lease_works_on_postgres(new_pg_url: Callable[[], str]) -> None:
    url = new_pg_url()
    first, second = db.make_engine(url), db.make_engine(url)
    try:
        db.upgrade(first)
        acquire(first, HolderInfo(host="login1", pid=11, nonce="a"))
        with pytest.raises(LeaseHeld, match=r"pid 11 on login1"):
            acquire(second, HolderInfo(host="login2", pid=22, nonce="b"))
    finally:
        first.dispose()
        second.dispose()


def test_lost_server_connection_is_a_storage_error(make_pg_engine: Callable[[], Engine]) -> None:
    engine = make_pg_engine()
    db.upgrade(engine)
    with pytest.raises(StorageError) as info, db.transaction(engine) as conn:
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    masked = make_url(str(engine.url.set(drivername="postgresql"))).render_as_string(
        hide_password=True
    )
    assert info.value.message.startswith(f"the database {masked} cannot be reached")
    with db.transaction(engine) as conn:  # the pool recovers: the next transaction works
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_wrong_database_name_is_a_storage_error(pg_server: str) -> None:
    url = make_url(pg_server).set(drivername="postgresql", database="no_such_db")
    with pytest.raises(StorageError, match=r"no_such_db.*cannot be reached or refused"):
        db.make_engine(url.render_as_string(hide_password=False))


def test_missing_schema_says_run_upgrade_on_postgres(make_pg_engine: Callable[[], Engine]) -> None:
    with pytest.raises(StorageError, match=r"has no clusterd schema.*run `clusterd db upgrade`"):
        acquire(make_pg_engine(), HolderInfo(host="login1", pid=11, nonce="a"))


def test_read_only_transaction_is_a_storage_error(make_pg_engine: Callable[[], Engine]) -> None:
    engine = make_pg_engine()
    db.upgrade(engine)
    with (
        pytest.raises(StorageError, match=r"is read-only.*primary"),
        db.transaction(engine) as conn,
    ):
        conn.execute(text("SET TRANSACTION READ ONLY"))
        conn.execute(text("DELETE FROM lease"))
