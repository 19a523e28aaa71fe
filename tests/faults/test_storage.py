"""Storage faults against the real daemon: a locked database, a full disk, a database
deleted or corrupted while the daemon was stopped, and a database at an old revision.

Each fault must give a clear error (what happened to which file, and what to do), lose
nothing already committed -- every events line ends up in the metrics table exactly
once -- and the daemon must recover once the fault is gone.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from clusterd.daemon import db as dbmod
from tests.conftest import Daemon, wait_for
from tests.faults.conftest import (
    alive,
    holds_for,
    metric_count,
    metric_diff,
    metrics_exactly_once,
    query,
    sweep_state,
    write_sweep,
)

LOCKED = "is locked by another process"


@contextlib.contextmanager
def exclusive_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another process's view: a sqlite3 connection holding BEGIN EXCLUSIVE."""
    other = sqlite3.connect(db, isolation_level=None, timeout=60)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield other
    finally:
        other.close()  # rolls back: nothing of ours was written


def ping(home: Path, timeout: float) -> float:
    """Seconds a raw ping round trip took; raises TimeoutError past ``timeout``."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(home / "clusterd.sock"))
        f = s.makefile("rb")
        f.readline()  # greeting
        s.sendall(b'{"id": 1, "op": "ping"}\n')
        assert b'"pong":true' in f.readline()
    return time.monotonic() - t0


# --------------------------------------------------------------------------- locked


def test_locked_database_is_a_clear_error_and_loses_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """A sqlite3 shell holds the write lock for longer than the busy timeout while trials
    report metrics: the log names the file and what to do; once the lock is gone every
    line is ingested exactly once."""
    db = daemon.home / "clusterd.db"
    daemon.ctl("submit", str(write_sweep(tmp_path, "lk", trials=3, steps=100, pause=0.02)))
    wait_for(lambda: metric_count(db) > 0, 30, "the first metrics")
    pid = daemon.pid
    with exclusive_lock(db):
        wait_for(lambda: LOCKED in daemon.log(), dbmod.DEFAULT_BUSY_TIMEOUT + 15, "the error")
    line = next(x for x in daemon.log().splitlines() if LOCKED in x)
    assert str(db) in line and "sqlite3 shell" in line and "fuser" in line, line
    assert alive(pid), "the daemon stopped while the database was locked"
    wait_for(lambda: sweep_state(db, "lk") == "done", 60, "the sweep to finish")
    assert metrics_exactly_once(db, tmp_path / "runs" / "lk") == 3 * 100


def test_daemon_outlives_a_lock_held_past_its_heartbeat(daemon: Daemon) -> None:
    """A lock held past one heartbeat's busy timeout is logged and retried; only a lease
    really taken over by another daemon stops this one."""
    pid = daemon.pid
    db = daemon.home / "clusterd.db"
    sock = daemon.home / "clusterd.sock"
    with exclusive_lock(db):
        # heartbeat every 10 s + a 30 s busy timeout: 45 s covers one failed heartbeat
        serving = holds_for(
            lambda: alive(pid) and sock.exists(), 10 + dbmod.DEFAULT_BUSY_TIMEOUT + 5
        )
    assert serving, f"the daemon stopped while the database was locked:\n{daemon.log()[-800:]}"
    assert ping(daemon.home, 10) < 10
    assert "could not renew the database lease (will retry)" in daemon.log()


def test_daemon_answers_while_the_database_is_locked(daemon: Daemon, tmp_path: Path) -> None:
    db = daemon.home / "clusterd.db"
    daemon.ctl("submit", str(write_sweep(tmp_path, "la", trials=2, steps=300, pause=0.01)))
    wait_for(lambda: metric_count(db) > 0, 30, "the first metrics")
    slowest, deadline = 0.0, time.monotonic() + 4  # passes (every ~1 s) try to write
    with exclusive_lock(db):
        while time.monotonic() < deadline:
            slowest = max(slowest, ping(daemon.home, 3))
    assert slowest < 3


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root and CAP_SYS_ADMIN); skipped where it cannot be mounted."""
    mnt = Path(tempfile.mkdtemp(prefix="cd-full-", dir="/tmp"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a small tmpfs for the disk-full test: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full."""
    chunk = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 512)


def test_full_disk_is_a_clear_error_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    """CLUSTERD_HOME on a tmpfs that fills up while trials report metrics: a submit is
    refused with a clear message and persists nothing, the daemon stays up, and once space
    is freed it catches up: every line exactly once, and the refused submit now works."""
    daemon = Daemon(small_disk / "home")
    daemon.start()
    try:
        db = daemon.home / "clusterd.db"
        daemon.ctl("submit", str(write_sweep(tmp_path, "df", trials=3, steps=200, pause=0.01)))
        wait_for(lambda: metric_count(db) > 0, 30, "the first metrics")
        ballast = small_disk / "ballast"
        fill(ballast)
        refused = daemon.ctl("submit", str(write_sweep(tmp_path / "b", "df2")), check=False)
        assert refused.returncode == 1, refused
        message = refused.stderr.strip()
        assert f"the database {db} cannot grow: the disk is full" in message, message
        assert "free space on that filesystem" in message and "Traceback" not in message
        assert alive(daemon.pid) and ping(daemon.home, 10) < 10
        ballast.unlink()
        wait_for(lambda: sweep_state(db, "df") == "done", 60, "the sweep to finish")
        assert sweep_state(db, "df2") is None  # the refused submit persisted nothing
        daemon.ctl("submit", str(tmp_path / "b" / "df2.toml"))
        lines, missing, extra = metric_diff(db, tmp_path / "runs" / "df")
        assert lines == 3 * 200 and not extra, extra[:3]
        assert not missing, f"{len(missing)} metric values lost while the disk was full"
    finally:
        daemon.stop()


def test_a_failed_commit_loses_no_metric_line(tmp_path: Path) -> None:
    """The real scheduler, store and ingestion on a real SQLite file; one COMMIT fails the
    way SQLite fails on a full disk. The next pass must ingest what the failed one read."""
    from sqlalchemy import event, exc

    from clusterd.daemon.scheduler import DriverSet, Scheduler
    from clusterd.daemon.store import Store
    from clusterd.errors import StorageError

    engine = dbmod.make_engine(f"sqlite:///{tmp_path / 'clusterd.db'}")
    dbmod.upgrade(engine)
    store = Store(engine)
    out = tmp_path / "runs"
    spec: dict[str, Any] = {"name": "s", "driver": "local", "source": str(tmp_path / "s.toml")}
    spec["command"] = ["true"]
    spec |= {"output_dir": str(out), "metric": {"name": "loss", "mode": "min"}}
    store.create_sweep(spec, [({"x": 1}, "1"), ({"x": 2}, "2")], None)
    with store.tx() as conn:
        rows = [
            {"trial_id": t.id, "number": 1, "token": f"t{t.index}", "state": "running"}
            for t in store.trials(conn, 1)
        ]
        store.add_attempts(
            conn, [r | {"events_offset": 0, "cancel_requested": False} for r in rows]
        )
    for index in (0, 1):
        adir = out / str(index) / "attempt-1"
        adir.mkdir(parents=True)
        lines = [
            f'{{"type": "metric", "step": {s}, "values": {{"loss": {1 / (s + 1)}}}}}\n'
            for s in range(5)
        ]
        (adir / "events.jsonl").write_text("".join(lines))
    scheduler = Scheduler(store, DriverSet({}, lambda: None))
    with store.read() as conn:
        sweeps = {s.id: s for s in store.list_sweeps(conn)}

    def disk_full(conn: Any) -> None:
        event.remove(engine, "commit", disk_full)
        raise exc.OperationalError(
            "COMMIT", {}, sqlite3.OperationalError("database or disk is full")
        )

    event.listen(engine, "commit", disk_full)
    with pytest.raises(StorageError, match="the disk is full"):
        scheduler._ingest_live(sweeps)
    scheduler._last_ingest = 0.0  # the next pass, as soon as the disk has room again
    scheduler._ingest_live(sweeps)
    engine.dispose()
    assert metrics_exactly_once(tmp_path / "clusterd.db", out) == 10


# --------------------------------------------------------------------------- deleted, corrupt


def finished_sweep(daemon: Daemon, tmp_path: Path) -> Path:
    """A database holding one finished sweep (fake driver: no processes); daemon stopped."""
    path = tmp_path / "fk.toml"
    path.write_text('name = "fk"\ncommand = ["true"]\ndriver = "fake"\n[params]\nx = [1, 2, 3]\n')
    daemon.start()
    daemon.ctl("submit", str(path))
    db = daemon.home / "clusterd.db"
    wait_for(lambda: sweep_state(db, "fk") == "done", 30, "the sweep to finish")
    daemon.stop()
    return db


def corrupt(db: Path, how: str) -> None:
    if how == "header":  # the first 100 bytes: "SQLite format 3" and the page size
        with open(db, "r+b") as fh:
            fh.write(os.urandom(100))
    elif how == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif how == "table page":  # the b-tree page of the trials table gets a bad page type
        conn = sqlite3.connect(db)
        root = conn.execute("select rootpage from sqlite_master where name = 'trials'").fetchone()
        size = conn.execute("pragma page_size").fetchone()[0]
        conn.close()
        with open(db, "r+b") as fh:
            fh.seek((root[0] - 1) * size)
            fh.write(b"\x07")


@pytest.mark.parametrize(
    "how",
    [
        "header",
        "truncated",
        "table page",  # found by PRAGMA quick_check at start
    ],
)
def test_corrupt_database_refuses_to_start_and_says_what_to_do(
    stopped_daemon: Daemon, tmp_path: Path, how: str
) -> None:
    db = finished_sweep(stopped_daemon, tmp_path)
    corrupt(db, how)
    damaged = db.read_bytes()
    started = stopped_daemon.clusterd("start", check=False)
    assert started.returncode == 1, started.stdout
    message = started.stderr
    assert f"the database {db} is" in message, message
    assert "move the file aside" in message and "Traceback" not in message
    assert db.read_bytes() == damaged  # kept as it was, for `sqlite3 FILE .recover`
    # doing what the message says: move it aside, start with a new database
    db.rename(db.with_name("clusterd.db.corrupt"))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    stopped_daemon.clusterd("start", "--new-database")
    assert stopped_daemon.ctl_json("sweeps") == []


def test_a_corrupt_table_is_a_storage_error_for_clients(daemon: Daemon, tmp_path: Path) -> None:
    """A page corrupted under a running daemon (start-up's quick_check cannot see it):
    reads answer storage_error naming the file and the remedy, not 'internal error'."""
    path = tmp_path / "fk.toml"
    path.write_text('name = "fk"\ncommand = ["true"]\ndriver = "fake"\n[params]\nx = [1, 2]\n')
    daemon.ctl("submit", str(path))
    db = daemon.home / "clusterd.db"
    wait_for(lambda: sweep_state(db, "fk") == "done", 30, "the sweep to finish")
    checkpoint = sqlite3.connect(db)
    checkpoint.execute("pragma wal_checkpoint(truncate)")  # every page in the main file
    checkpoint.close()
    corrupt(db, "table page")
    done = wait_for(
        lambda: (d := daemon.ctl("trials", "fk", check=False)).returncode != 0 and d,
        30,
        "a read to hit the corrupt page",
    )
    assert done.returncode == 1
    assert f"the database {db} is corrupt" in done.stderr, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_missing_database_is_not_silently_replaced(
    stopped_daemon: Daemon, tmp_path: Path, how: str
) -> None:
    """The marker clusterd leaves next to a database it created remembers it: a start
    (or `clusterd db upgrade`) refuses to forget every sweep without a word, changes
    nothing, and `clusterd start --new-database` is the explicit way to start afresh."""
    db = finished_sweep(stopped_daemon, tmp_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "emptied":
        db.write_bytes(b"")
    for command in (("start",), ("db", "upgrade")):
        started = stopped_daemon.clusterd(*command, check=False)
        assert started.returncode == 1, started.stdout
        message = started.stderr
        assert f"the database {db} is {'missing' if how == 'deleted' else 'empty'}" in message
        assert "clusterd start --new-database" in message and "Traceback" not in message
        assert db.exists() == (how == "emptied") and not Path(f"{db}-wal").exists()
    stopped_daemon.clusterd("start", "--new-database")
    assert stopped_daemon.ctl_json("sweeps") == []
    stopped_daemon.clusterd("stop")
    stopped_daemon.start()  # and the new database is remembered in its turn
    assert stopped_daemon.ctl_json("sweeps") == []


# --------------------------------------------------------------------------- old schema


def _first_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(dbmod._alembic_config())
    base = script.get_base()
    assert isinstance(base, str)
    return base


def _populate(conn: Any) -> None:
    """A finished sweep with trials, attempts, metrics, checkpoints and transitions, written
    with the columns of the first revision (later revisions must carry them over)."""
    now = time.time()
    conn.execute(
        text(
            "insert into sweeps (id, name, driver, state, spec, source, output_dir, "
            "metric_name, metric_mode, repro, created_at, updated_at) values "
            "(1, 'old', 'local', 'done', :spec, '/x/old.toml', '/x/runs/old', 'loss', 'min', "
            "null, :t, :t)"
        ),
        {"spec": '{"name": "old"}', "t": now},
    )
    for i in range(3):
        conn.execute(
            text(
                'insert into trials (id, sweep_id, "index", params, params_key, state, '
                "attempts, failures, resumes, last_step, last_value, best_value, best_step, "
                "reason, created_at, updated_at) values (:id, 1, :i, :p, :p, 'completed', 1, "
                "0, 0, 9, :v, :v, 9, 'exit code 0', :t, :t)"
            ),
            {"id": i + 1, "i": i, "p": f'{{"x": {i}}}', "v": 1.0 / (10 + i), "t": now},
        )
        conn.execute(
            text(
                "insert into attempts (trial_id, number, token, state, job_id, outcome, "
                "exit_code, events_offset, cancel_requested, submitted_at, started_at, "
                "ended_at) values (:id, 1, :tok, 'ended', '1:2', 'completed', 0, 1234, 0, "
                ":t, :t, :t)"
            ),
            {"id": i + 1, "tok": f"cd-old-{i}-1-abc", "t": now},
        )
        for step in range(10):
            conn.execute(
                text(
                    "insert into metrics (trial_id, attempt, step, name, value, t) "
                    "values (:id, 1, :s, 'loss', :v, :t)"
                ),
                {"id": i + 1, "s": step, "v": 1.0 / (step + 1 + i), "t": now},
            )
        conn.execute(
            text(
                "insert into checkpoints (trial_id, attempt, step, path, t) "
                "values (:id, 1, 5, '/x/ck', :t)"
            ),
            {"id": i + 1, "t": now},
        )
        chain = [None, "pending", "queued", "running", "completed"]
        for j, (a, b) in enumerate(itertools.pairwise(chain)):
            conn.execute(
                text(
                    "insert into transitions (sweep_id, trial_id, attempt, from_state, to_state, "
                    "reason, t) values (1, :id, :a, :f, :to, 'r', :t)"
                ),
                {"id": i + 1, "a": j and 1, "f": a, "to": b, "t": now + j},
            )


def _dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("sweeps", "trials", "attempts", "metrics", "checkpoints", "transitions")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for table in tables:
            columns = [f'"{c[1]}"' for c in conn.execute(f"pragma table_info({table})")]
            out[table] = sorted(conn.execute(f"select {', '.join(columns)} from {table}"))
        return out
    finally:
        conn.close()


def test_database_at_the_first_revision_is_upgraded_with_its_data(
    stopped_daemon: Daemon,
) -> None:
    """A populated database at the first revision: `clusterd db upgrade` (twice: it is
    idempotent) and the daemon's own upgrade at start keep every row; the daemon serves it."""
    from alembic import command

    db = stopped_daemon.home / "clusterd.db"
    first = _first_revision()
    engine = dbmod.make_engine(f"sqlite:///{db}")
    try:
        with dbmod.transaction(engine) as conn:
            command.upgrade(dbmod._alembic_config(conn), first)
            _populate(conn)
        assert dbmod.current_revision(engine) == first
    finally:
        engine.dispose()
    before = _dump(db)
    head = dbmod.head_revision()

    once = stopped_daemon.clusterd("db", "upgrade").stdout
    assert head in once
    twice = stopped_daemon.clusterd("db", "upgrade").stdout
    assert twice.strip() == f"database is up to date (revision {head})"
    after = _dump(db)
    for table, rows in before.items():  # a later revision may add columns, never drop rows
        assert [r[: len(rows[0])] for r in after[table]] == rows, table

    stopped_daemon.start()
    trials = stopped_daemon.trials("old")
    assert [(t["index"], t["state"], t["last_step"]) for t in trials] == [
        (i, "completed", 9) for i in range(3)
    ]
    shown = stopped_daemon.ctl_json("show", "old/2")
    # the metric summaries were backfilled by the upgrade (revision 0004)
    assert shown["metrics"]["loss"]["last"] == pytest.approx(1 / 12), shown["metrics"]
    assert shown["metrics"]["loss"]["mode"] == "min"
    assert [(x["from"], x["to"]) for x in shown["transitions"]][-1] == (
        "running",
        "completed",
    )
    stopped_daemon.stop()
    assert query(db, "select count(*) from metrics") == [(30,)]
    final = _dump(db)
    for table in ("metrics", "checkpoints", "transitions"):
        assert final[table] == after[table], table
