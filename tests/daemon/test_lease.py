"""One scheduler per database: the lease, on SQLite and on a real PostgreSQL.

Each test gets a factory of engines on one upgraded database; separate engines have
separate connection pools, as two daemons would.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from clusterd.daemon import db, models
from clusterd.daemon.lease import HolderInfo, Lease, acquire, heartbeat, pid_alive, release
from clusterd.errors import LeaseHeld

TABLE = models.Base.metadata.tables["lease"]
EngineFactory = Callable[[], Engine]


@pytest.fixture(params=["sqlite", "postgresql"])
def same_db(request: pytest.FixtureRequest) -> EngineFactory:
    """Factory of engines on one database (PostgreSQL only when a server is available)."""
    if request.param == "sqlite":
        make = request.getfixturevalue("make_sqlite_engine")
        db.upgrade(make())
        return make
    url = request.getfixturevalue("new_pg_url")()
    engines: list[Engine] = []

    def make_pg() -> Engine:
        engines.append(db.make_engine(url))
        return engines[-1]

    def dispose_all() -> None:
        for engine in engines:
            engine.dispose()

    request.addfinalizer(dispose_all)
    db.upgrade(make_pg())
    return make_pg


def remote(name: str, pid: int = 4242) -> HolderInfo:
    """A daemon on another login node: its pid means nothing here."""
    return HolderInfo(host=name, pid=pid, nonce=f"nonce-{name}-{pid}")


def backdate(engine: Engine, seconds: float) -> None:
    """Pretend the holder's last heartbeat was ``seconds`` earlier than it was."""
    with db.transaction(engine) as conn:
        conn.execute(update(TABLE).values(heartbeat_at=TABLE.c.heartbeat_at - seconds))


def holder_in_db(engine: Engine) -> str | None:
    with db.transaction(engine, write=False) as conn:
        return conn.execute(select(TABLE.c.holder)).scalar_one_or_none()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


def test_second_daemon_is_refused_and_told_who_holds(same_db: EngineFactory) -> None:
    first, second = same_db(), same_db()
    acquire(first, HolderInfo.current())
    with pytest.raises(LeaseHeld) as info:
        acquire(second, HolderInfo.current())
    assert re.fullmatch(
        rf"another clusterd \(pid {os.getpid()} on {re.escape(socket.gethostname())}\) holds "
        r"this database; last heartbeat \d+ s ago\. Stop it with `clusterd stop` there, "
        r"or wait (29|30) s if it died\.",
        info.value.message,
    ), info.value.message
    assert info.value.code == "lease_held"


def test_live_remote_holder_is_named(same_db: EngineFactory) -> None:
    engine = same_db()
    acquire(engine, remote("login2", 123))
    backdate(engine, 4)
    with pytest.raises(LeaseHeld, match=r"pid 123 on login2\).*last heartbeat 4 s ago.*wait 26 s"):
        acquire(same_db(), remote("login1"))


def test_expired_lease_is_taken_over(same_db: EngineFactory) -> None:
    old_engine, new_engine = same_db(), same_db()
    old = acquire(old_engine, remote("login2", 123), ttl=30)
    backdate(old_engine, 31)
    new = acquire(new_engine, remote("login1", 456), ttl=30)
    assert holder_in_db(new_engine) == new.info.holder
    with pytest.raises(LeaseHeld, match=r"lost its lease .* \(pid 456 on login1\)"):
        heartbeat(old_engine, old)
    release(old_engine, old)  # the loser's clean stop must not free the winner's lease
    assert holder_in_db(new_engine) == new.info.holder


def test_dead_holder_on_this_host_is_taken_over_at_once(same_db: EngineFactory) -> None:
    engine = same_db()
    crashed = HolderInfo(host=socket.gethostname(), pid=dead_pid(), nonce="crashed")
    acquire(engine, crashed)
    mine = acquire(same_db(), HolderInfo.current())  # no ttl wait
    assert holder_in_db(engine) == mine.info.holder


def test_dead_pid_on_another_host_is_not_ours_to_judge(same_db: EngineFactory) -> None:
    engine = same_db()
    acquire(engine, HolderInfo(host="login2", pid=dead_pid(), nonce="elsewhere"))
    with pytest.raises(LeaseHeld, match="on login2"):
        acquire(same_db(), HolderInfo.current())


def test_reacquiring_our_own_lease_keeps_it(same_db: EngineFactory) -> None:
    engine = same_db()
    me = remote("login1")
    first = acquire(engine, me)
    again = acquire(engine, me)
    assert again.acquired_at == first.acquired_at
    assert again.heartbeat_at >= first.heartbeat_at


def test_heartbeat_renews(same_db: EngineFactory) -> None:
    engine = same_db()
    lease = acquire(engine, remote("login1"), ttl=30)
    backdate(engine, 25)
    renewed = heartbeat(engine, lease)
    assert renewed.heartbeat_at >= lease.heartbeat_at
    with pytest.raises(LeaseHeld):  # fresh again: nobody can take it
        acquire(same_db(), remote("login2"))


def test_release_frees_the_lease(same_db: EngineFactory) -> None:
    engine = same_db()
    lease = acquire(engine, remote("login1"))
    release(engine, lease)
    assert holder_in_db(engine) is None
    acquire(same_db(), remote("login2"))
    with pytest.raises(LeaseHeld, match=r"was removed|lost its lease"):
        heartbeat(engine, lease)


def _race(engines: list[Engine], infos: list[HolderInfo]) -> list[Lease | Exception]:
    """All engines call acquire at the same instant; returns each one's result."""
    barrier = threading.Barrier(len(engines))
    results: list[Lease | Exception] = [RuntimeError("did not run")] * len(engines)

    def contend(i: int) -> None:
        barrier.wait()
        try:
            results[i] = acquire(engines[i], infos[i], ttl=30)
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_racing_daemons_never_both_win(same_db: EngineFactory) -> None:
    """Rounds of 8 simultaneous acquires, alternating a free lease and an expired one."""
    engines = [same_db() for _ in range(8)]
    infos = [remote(f"login{i}", 100 + i) for i in range(8)]
    for round_ in range(12):
        results = _race(engines, infos)
        winners = [i for i, r in enumerate(results) if isinstance(r, Lease)]
        assert len(winners) == 1, results
        losers = [r for r in results if not isinstance(r, Lease)]
        assert all(isinstance(r, LeaseHeld) for r in losers), losers
        assert holder_in_db(engines[0]) == infos[winners[0]].holder
        if round_ % 2:
            release(engines[winners[0]], results[winners[0]])  # type: ignore[arg-type]
        else:
            backdate(engines[0], 60)


ACTORS = {name: remote(name) for name in ("login1", "login2", "login3")}
TTL = 30.0


class LeaseMachine(RuleBasedStateMachine):
    """Random acquire / heartbeat / release / clock jumps, checked against a model.

    The model says who holds the lease and whether it has expired; every operation's
    outcome must agree with it, so a second holder can never appear.
    """

    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        with db.transaction(self.engine) as conn:
            conn.execute(TABLE.delete())
        self.holder: str | None = None
        self.expired = False
        self.leases: dict[str, Lease] = {}  # what each actor believes it holds

    @rule(actor=st.sampled_from(sorted(ACTORS)))
    def acquire(self, actor: str) -> None:
        may = self.holder in (None, actor) or self.expired
        try:
            self.leases[actor] = acquire(self.engine, ACTORS[actor], ttl=TTL)
        except LeaseHeld:
            assert not may
            return
        assert may
        self.holder, self.expired = actor, False

    @rule(actor=st.sampled_from(sorted(ACTORS)))
    def heartbeat(self, actor: str) -> None:
        if actor not in self.leases:
            return
        try:
            heartbeat(self.engine, self.leases[actor])
        except LeaseHeld:
            assert self.holder != actor
            del self.leases[actor]
            return
        assert self.holder == actor
        self.expired = False

    @rule(actor=st.sampled_from(sorted(ACTORS)))
    def release(self, actor: str) -> None:
        if actor in self.leases:
            release(self.engine, self.leases.pop(actor))
            if self.holder == actor:
                self.holder = None

    @rule()
    def time_passes(self) -> None:
        backdate(self.engine, 2 * TTL)
        self.expired = self.holder is not None

    @invariant()
    def database_agrees_with_model(self) -> None:
        expected = ACTORS[self.holder].holder if self.holder else None
        assert holder_in_db(self.engine) == expected


def test_lease_state_machine(same_db: EngineFactory) -> None:
    LeaseMachine.engine = same_db()
    run_state_machine_as_test(
        LeaseMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )
