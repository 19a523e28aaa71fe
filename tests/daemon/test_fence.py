"""The write guard: a daemon that lost its lease, or its database file, writes nothing more.

Two engines on one database stand for two daemons (separate pools, as two processes
would have). The old daemon's lease is taken over the way a paused daemon's is: its
heartbeat is backdated past the ttl and the new one acquires.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from clusterd.daemon import db, models
from clusterd.daemon.db import FileIdentity, WritesRefused
from clusterd.daemon.guard import WriteGuard
from clusterd.daemon.lease import Fence, HolderInfo, LeaseLost, acquire, ttl_from_env
from clusterd.daemon.scheduler import DriverSet, Scheduler
from clusterd.daemon.store import A, S, Store
from clusterd.errors import StorageError
from clusterd.spec import parse_sweep
from clusterd.spec.expand import expand, params_key
from clusterd.testing.fake_driver import FakeDriver

LEASE = models.Base.metadata.tables["lease"]
EngineFactory = Callable[[], Engine]


@pytest.fixture(params=["sqlite", "postgresql"])
def same_db(request: pytest.FixtureRequest) -> Iterator[EngineFactory]:
    """Factory of engines on one upgraded database (PostgreSQL when a server is available)."""
    engines: list[Engine] = []
    if request.param == "sqlite":
        make_sqlite = request.getfixturevalue("make_sqlite_engine")

        def make() -> Engine:
            engines.append(make_sqlite())
            return engines[-1]
    else:
        url = request.getfixturevalue("new_pg_url")()

        def make() -> Engine:
            engines.append(db.make_engine(url))
            return engines[-1]

    db.upgrade(make())
    yield make
    for engine in engines:
        db.set_write_guard(engine, None)
        engine.dispose()


def holder(name: str) -> HolderInfo:
    return HolderInfo(host=name, pid=4242, nonce=f"nonce-{name}")


def take_over(engine: Engine) -> None:
    """What a second daemon does once the first one's heartbeat is older than the ttl."""
    with db.transaction(engine, guarded=False) as conn:
        conn.execute(update(LEASE).values(heartbeat_at=LEASE.c.heartbeat_at - 60))
    acquire(engine, holder("login2"), ttl=30)


def add_sweep(store: Store, tmp_path: Path, name: str) -> None:
    text = f'name = "{name}"\ncommand = "true"\ndriver = "fake"\n[params]\nx = [1, 2]\n'
    spec = parse_sweep(text, source=str(tmp_path / "sweep.toml"), base_dir=str(tmp_path))
    trials = [(params, params_key(params)) for params in expand(spec)]
    store.create_sweep(spec.to_dict(), trials, None)


def guarded_store(engine: Engine, halts: list[str]) -> tuple[Store, WriteGuard]:
    lease = acquire(engine, holder("login1"), ttl=30)
    guard = WriteGuard(Fence(lease), None, halts.append)
    db.set_write_guard(engine, guard)
    return Store(engine), guard


def count(engine: Engine, table: object) -> int:
    with db.transaction(engine, write=False) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_writes_after_a_takeover_are_refused_in_the_transaction(
    same_db: EngineFactory, tmp_path: Path
) -> None:
    old_engine, new_engine = same_db(), same_db()
    halts: list[str] = []
    store, guard = guarded_store(old_engine, halts)
    add_sweep(store, tmp_path, "before")  # holds the lease: written

    take_over(new_engine)
    with pytest.raises(LeaseLost, match=r"lost its lease .* \(pid 4242 on login2\)"):
        add_sweep(store, tmp_path, "after")

    assert count(new_engine, S) == 1  # rolled back: the sweep row is not there
    assert len(halts) == 1 and "lost its lease" in halts[0]
    assert guard.halted == halts[0]
    with pytest.raises(WritesRefused), store.tx():  # refused from now on, even a bare write
        pass
    assert len(halts) == 1  # reported once


def test_a_scheduler_that_lost_the_lease_submits_nothing_and_stops(
    same_db: EngineFactory, tmp_path: Path
) -> None:
    old_engine, new_engine = same_db(), same_db()
    FakeDriver.reset()
    store, _guard = guarded_store(old_engine, [])
    add_sweep(store, tmp_path, "s")
    scheduler = Scheduler(store, DriverSet({"fake": FakeDriver}, lambda: None))

    take_over(new_engine)
    with pytest.raises(WritesRefused):
        asyncio.run(scheduler.tick())
    asyncio.run(scheduler.run())  # the loop itself: halts at its first pass, does not spin

    assert scheduler.halted is not None and "lost its lease" in scheduler.halted
    assert FakeDriver.submitted == []
    assert count(new_engine, A) == 0  # no write-ahead attempt rows either


def test_submit_checks_the_lease_right_before_calling_the_driver(
    same_db: EngineFactory, tmp_path: Path
) -> None:
    """The write-ahead rows were committed under the lease; the lease is lost before the
    driver is called: the job is not submitted (the new holder recovers the attempt)."""
    old_engine, new_engine = same_db(), same_db()
    FakeDriver.reset()
    store, _guard = guarded_store(old_engine, [])
    add_sweep(store, tmp_path, "s")
    scheduler = Scheduler(store, DriverSet({"fake": FakeDriver}, lambda: None))
    sent: list[int] = []
    real_send = scheduler._send

    async def send_after_takeover(*args: object) -> None:
        take_over(new_engine)
        sent.append(1)
        await real_send(*args)  # type: ignore[arg-type]

    scheduler._send = send_after_takeover  # type: ignore[method-assign,assignment]
    with pytest.raises(WritesRefused):
        asyncio.run(scheduler.tick())

    assert sent and FakeDriver.submitted == []
    with db.transaction(new_engine, write=False) as conn:
        states = set(conn.execute(select(A.c.state)).scalars())
    assert states == {"submitting"}  # left for the new holder's recovery


def test_a_deleted_database_is_refused_before_the_next_write(
    make_sqlite_engine: Callable[[], Engine], tmp_path: Path
) -> None:
    engine = make_sqlite_engine()
    db.upgrade(engine)
    path = db.sqlite_file(engine)
    assert path is not None
    halts: list[str] = []
    lease = acquire(engine, holder("login1"), ttl=30)
    guard = WriteGuard(Fence(lease), FileIdentity(path), halts.append)
    db.set_write_guard(engine, guard)
    store = Store(engine)
    add_sweep(store, tmp_path, "kept")

    os.unlink(path)
    with pytest.raises(WritesRefused, match="was deleted while clusterd was running"):
        add_sweep(store, tmp_path, "lost")
    assert guard.database_gone and len(halts) == 1
    db.set_write_guard(engine, None)


def test_a_replaced_database_is_noticed(make_sqlite_engine: Callable[[], Engine]) -> None:
    engine = make_sqlite_engine()
    path = db.sqlite_file(engine)
    assert path is not None
    identity = FileIdentity(path)
    assert identity.problem() is None
    os.rename(path, f"{path}.old")
    path.write_bytes(b"")
    assert "was replaced by another file" in (identity.problem() or "")


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1e9"])
def test_a_bad_lease_ttl_is_one_clear_error(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERD_LEASE_TTL", raw)
    with pytest.raises(StorageError, match=r"^CLUSTERD_LEASE_TTL=.* is not a number of seconds"):
        ttl_from_env()
