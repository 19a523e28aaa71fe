"""Ingestion at the edges, against a real SQLite store (docs/reliability.md).

Any sequence of appends (lines of any size, lines over the cap, partial writes) read
by any sequence of calls, chunk sizes, rolled-back transactions and restarts yields
every complete valid line exactly once and each over-long line as one error; files
that shrink or turn into symlinks are reported once; "best" follows the lineage.
"""

from __future__ import annotations

import itertools
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from clusterd.daemon import db
from clusterd.daemon.ingest import AttemptCursor, ingest_attempt, open_cursor
from clusterd.daemon.store import Store
from clusterd.node import events

_names = itertools.count()


class World:
    """A store, and one trial with attempts whose events files we write."""

    def __init__(self, root: Path, mode: str = "min") -> None:
        engine = db.make_engine(f"sqlite:///{root}/c.db")
        db.upgrade(engine)
        self.root = root
        self.store = Store(engine)
        self.mode = mode

    def new_trial(self) -> tuple[Any, Any]:
        name = f"s{next(_names)}"
        spec = {
            "name": name,
            "driver": "fake",
            "source": str(self.root / "x.toml"),
            "output_dir": str(self.root / name),
            "metric": {"name": "loss", "mode": self.mode},
        }
        sweep_id = self.store.create_sweep(spec, [({"i": 0}, '{"i":0}')], None)
        with self.store.read() as conn:
            sweep = self.store.sweep_by_id(conn, sweep_id)
            trial = self.store.trials(conn, sweep_id)[0]
        return sweep, trial

    def new_attempt(self, sweep: Any, trial: Any, number: int) -> tuple[Any, Path]:
        with self.store.tx() as conn:
            self.store.add_attempts(
                conn,
                [
                    {
                        "trial_id": trial.id,
                        "number": number,
                        "token": f"{sweep.name}-{number}",
                        "state": "running",
                        "events_offset": 0,
                        "cancel_requested": False,
                    }
                ],
            )
        adir = Path(sweep.output_dir) / "0" / f"attempt-{number}"
        adir.mkdir(parents=True)
        return self.attempt(trial, number), adir

    def attempt(self, trial: Any, number: int) -> Any:
        with self.store.read() as conn:
            live = [a for a in self.store.live_attempts(conn) if a.trial_id == trial.id]
        return next(a for a in live if a.number == number)

    def cursor(self, sweep: Any, trial: Any, number: int, adir: Path) -> AttemptCursor:
        """What the scheduler builds after a restart: everything from the database."""
        with self.store.read() as conn:
            return open_cursor(self.store, conn, self.attempt(trial, number), sweep, str(adir))

    def rows(self, trial: Any) -> list[tuple[int, int, float]]:
        with self.store.read() as conn:
            q = text("select attempt, step, value from metrics where trial_id = :t order by id")
            return [tuple(r) for r in conn.execute(q, {"t": trial.id})]

    def errors(self, trial: Any) -> list[str]:
        with self.store.read() as conn:
            return [e.message for e in self.store.trial_errors(conn, trial.id, 1000)]

    def trial_row(self, trial: Any) -> Any:
        with self.store.read() as conn:
            return self.store.trial_by_id(conn, trial.id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield World(tmp_path_factory.mktemp("ingest"))


def metric(step: int, value: float | None = None, pad: int = 0) -> bytes:
    v = float(step) if value is None else value
    body = {"type": "metric", "step": step, "values": {"loss": v}, "pad": "x" * pad}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


# -- any appends, any calls: each complete valid line exactly once ---------------------

CAP = 200  # events.MAX_LINE in this test, so that over-long lines are cheap

line_kind = st.one_of(
    st.tuples(st.just("ok"), st.integers(0, 150)),  # a metric line padded by this much
    st.tuples(st.just("long"), st.integers(CAP + 1, 6 * CAP)),  # over the cap
    st.tuples(st.just("junk"), st.integers(1, 40)),  # not JSON
)
action = st.one_of(
    st.tuples(st.just("write"), st.integers(1, 500)),  # append the next n bytes
    st.tuples(st.just("ingest"), st.integers(1, 400)),  # one call with this chunk limit
    st.tuples(st.just("rollback"), st.integers(1, 400)),  # a call whose commit never came
    st.tuples(st.just("restart"), st.just(0)),  # a new daemon: cursor from the database
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kinds=st.lists(line_kind, min_size=1, max_size=25),
    actions=st.lists(action, max_size=40),
    tail=st.one_of(st.just(0), st.integers(1, 2 * CAP)),
)
def test_any_appends_across_any_calls_keep_each_line_once(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    kinds: list[tuple[str, int]],
    actions: list[tuple[str, int]],
    tail: int,
) -> None:
    monkeypatch.setattr(events, "MAX_LINE", CAP)
    sweep, trial = world.new_trial()
    _, adir = world.new_attempt(sweep, trial, 1)
    content, want, longs = b"", [], 0
    for step, (kind, size) in enumerate(kinds):
        if kind in ("ok", "long"):
            line = metric(step, pad=size)
            content += line
            if len(line) - 1 > CAP:
                longs += 1
            else:
                want.append((1, step, float(step)))
        else:
            content += b"{" * size + b"\n"
    # the attempt may end in the middle of a last line, without its newline
    if tail:
        content += metric(len(kinds), pad=tail)[:-1]
        longs += len(metric(len(kinds), pad=tail)) - 1 > CAP
    path = adir / "events.jsonl"
    written = 0
    cursor = world.cursor(sweep, trial, 1, adir)
    for what, n in actions:
        if what == "write":
            with open(path, "ab") as fh:
                fh.write(content[written : written + n])
            written = min(len(content), written + n)
        elif what == "ingest":
            with world.store.tx() as conn:
                ingest_attempt(world.store, conn, cursor, limit=n)
        elif what == "rollback":
            with pytest.raises(RuntimeError), world.store.tx() as conn:
                ingest_attempt(world.store, conn, cursor, limit=n)
                raise RuntimeError("crash before the commit")
            cursor = world.cursor(sweep, trial, 1, adir)
        else:
            cursor = world.cursor(sweep, trial, 1, adir)
    with open(path, "ab") as fh:
        fh.write(content[written:])
    for _ in range(200):  # live passes until the backlog is read, then the final read
        with world.store.tx() as conn:
            if not ingest_attempt(world.store, conn, cursor, limit=64).more:
                break
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, cursor, final=True)
    assert world.rows(trial) == want
    errors = world.errors(trial)
    assert sum("longer than 1 MiB" in e for e in errors) == longs, errors
    truncated = [e for e in errors if "truncated" in e]
    ends_partial = not content.endswith(b"\n")
    last = content[content.rfind(b"\n") + 1 :]
    assert len(truncated) == (ends_partial and len(last) <= CAP), errors
    assert cursor.offset == len(content)


# -- one 50 MB line: one error, what follows kept, never held whole --------------------


def test_a_50_mb_line_is_one_error_and_is_never_read_whole(world: World, tmp_path: Path) -> None:
    sweep, trial = world.new_trial()
    _, adir = world.new_attempt(sweep, trial, 1)
    with open(adir / "events.jsonl", "wb") as fh:
        fh.writelines(metric(s) for s in range(100))
        fh.write(b'{"type":"metric","step":100,"values":{"loss":1},"pad":"')
        for _ in range(50):
            fh.write(b"y" * (1 << 20))
        fh.write(b'"}\n')
        fh.writelines(metric(s) for s in range(101, 201))
    cursor = world.cursor(sweep, trial, 1, adir)
    tracemalloc.start()
    try:
        with world.store.tx() as conn:
            ingest_attempt(world.store, conn, cursor, final=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [s for _, s, _ in world.rows(trial)] == [*range(100), *range(101, 201)]
    errors = world.errors(trial)
    assert len(errors) == 1 and "longer than 1 MiB" in errors[0], errors
    assert peak < 40 << 20, f"peak {peak / 2**20:.0f} MiB while reading a 50 MiB line"


def test_a_live_pass_reads_one_chunk_and_says_more_remains(world: World) -> None:
    sweep, trial = world.new_trial()
    _, adir = world.new_attempt(sweep, trial, 1)
    (adir / "events.jsonl").write_bytes(b"".join(metric(s) for s in range(100_000)))
    cursor = world.cursor(sweep, trial, 1, adir)
    passes = 0
    while True:
        passes += 1
        with world.store.tx() as conn:
            result = ingest_attempt(world.store, conn, cursor, limit=1 << 20)
        if not result.more:
            break
    assert passes > 3 and len(world.rows(trial)) == 100_000


# -- files that change under us --------------------------------------------------------


def test_a_truncated_file_is_one_error_and_read_again_from_its_start(world: World) -> None:
    sweep, trial = world.new_trial()
    _, adir = world.new_attempt(sweep, trial, 1)
    path = adir / "events.jsonl"
    path.write_bytes(b"".join(metric(s) for s in range(10)))
    cursor = world.cursor(sweep, trial, 1, adir)
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, cursor)
    path.write_bytes(b"".join(metric(s) for s in range(100, 103)))  # truncated, rewritten
    for restart in (False, True, False):
        if restart:
            cursor = world.cursor(sweep, trial, 1, adir)
        with world.store.tx() as conn:
            ingest_attempt(world.store, conn, cursor)
    path.write_bytes(metric(200))  # shrinks again: not said twice
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, cursor, final=True)
    steps = [s for _, s, _ in world.rows(trial)]
    assert steps == [*range(10), 100, 101, 102, 200]
    errors = world.errors(trial)
    assert len(errors) == 1 and "shrank" in errors[0] and "truncated" in errors[0], errors


def test_a_symlinked_events_file_is_not_followed_and_said_once(
    world: World, tmp_path: Path
) -> None:
    sweep, trial = world.new_trial()
    _, adir = world.new_attempt(sweep, trial, 1)
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(b"".join(metric(s) for s in range(5)))
    os.symlink(secret, adir / "events.jsonl")
    cursor = world.cursor(sweep, trial, 1, adir)
    for restart in (False, False, True):
        if restart:
            cursor = world.cursor(sweep, trial, 1, adir)
        with world.store.tx() as conn:
            ingest_attempt(world.store, conn, cursor, final=restart)
    assert world.rows(trial) == []
    errors = world.errors(trial)
    assert len(errors) == 1 and "symbolic link" in errors[0], errors


# -- "best" over the lineage -----------------------------------------------------------


def _attempt_with(
    world: World, sweep: Any, trial: Any, number: int, lines: list[bytes]
) -> AttemptCursor:
    _, adir = world.new_attempt(sweep, trial, number)
    (adir / "events.jsonl").write_bytes(b"".join(lines))
    cursor = world.cursor(sweep, trial, number, adir)
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, cursor, final=True)
    with world.store.tx() as conn:
        world.store.update_attempt(conn, cursor.attempt_id, state="ended")
    return cursor


def ckpt(step: int) -> bytes:
    return json.dumps({"type": "checkpoint", "step": step, "path": f"/c/{step}"}).encode() + b"\n"


def test_a_retry_from_scratch_discards_the_earlier_attempts_best(world: World) -> None:
    """100*attempt + step, mode min: attempt 1 (crashed at step 5) must not give best 100."""
    sweep, trial = world.new_trial()
    _attempt_with(world, sweep, trial, 1, [metric(s, 100.0 + s) for s in range(6)])
    assert (world.trial_row(trial).best_value, world.trial_row(trial).best_step) == (100.0, 0)
    _, adir = world.new_attempt(sweep, trial, 2)
    cursor = world.cursor(sweep, trial, 2, adir)
    with world.store.tx() as conn:  # nothing reported yet: the discarded best is gone
        ingest_attempt(world.store, conn, cursor)
    assert world.trial_row(trial).best_value is None
    (adir / "events.jsonl").write_bytes(b"".join(metric(s, 200.0 + s) for s in range(4)))
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, cursor, final=True)
    row = world.trial_row(trial)
    assert (row.best_value, row.best_step, row.last_step) == (200.0, 0, 3)


def test_a_resume_keeps_values_up_to_the_checkpoint_also_after_a_restart(world: World) -> None:
    sweep, trial = world.new_trial()
    # attempt 1: steps 0..3 checkpointed at 3, then steps 4..6 (superseded) reach 1000
    lines = [metric(s, 10.0 * s) for s in range(4)] + [ckpt(3)]
    lines += [metric(s, -1000.0) for s in range(4, 7)]
    _attempt_with(world, sweep, trial, 1, lines)
    # attempt 2 resumed from step 3 and crashed at 8 without a checkpoint: all superseded
    _attempt_with(world, sweep, trial, 2, [metric(s, -5000.0) for s in range(4, 9)])
    # attempt 3 resumes from step 3 again (LATEST.json is still attempt 1's)
    _, adir = world.new_attempt(sweep, trial, 3)
    (adir / "events.jsonl").write_bytes(b"".join(metric(s, 5.0 - s) for s in range(4, 6)))
    cursor = world.cursor(sweep, trial, 3, adir)
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, cursor)
    with world.store.read() as conn:
        assert world.store.lineage(conn, trial.id, 3) == [(3, None), (1, 3)]
    row = world.trial_row(trial)
    assert (row.best_value, row.best_step) == (0.0, 0)  # attempt 1 step 0 (min: 0, 10, ...)
    with open(adir / "events.jsonl", "ab") as fh:
        fh.write(metric(6, -1.0))
    restarted = world.cursor(sweep, trial, 3, adir)  # a new daemon: the same best
    assert (restarted.best_value, restarted.best_step) == (0.0, 0)
    with world.store.tx() as conn:
        ingest_attempt(world.store, conn, restarted, final=True)
    row = world.trial_row(trial)
    assert (row.best_value, row.best_step, row.last_step) == (-1.0, 6, 6)
    with world.store.read() as conn:
        assert world.store.lineage_best(conn, trial.id, 3, "loss", "min") == (-1.0, 6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attempts=st.lists(
        st.tuples(
            st.lists(st.integers(-50, 50), min_size=0, max_size=6),  # values at steps
            st.one_of(st.none(), st.integers(0, 5)),  # checkpoint step, if any
        ),
        min_size=1,
        max_size=4,
    ),
    mode=st.sampled_from(["min", "max"]),
)
def test_running_best_matches_the_lineage_definition(
    tmp_path_factory: pytest.TempPathFactory,
    attempts: list[tuple[list[int], int | None]],
    mode: str,
) -> None:
    """The incremental best (cursor by cursor, as the daemon runs) equals the best over
    the lineage computed from scratch by walking the definition in Python."""
    world = _WORLDS.setdefault(mode, World(tmp_path_factory.mktemp(mode), mode))
    sweep, trial = world.new_trial()
    for number, (values, ck) in enumerate(attempts, 1):
        lines = [metric(s, float(v)) for s, v in enumerate(values)]
        if ck is not None:
            lines.append(ckpt(ck))
        _attempt_with(world, sweep, trial, number, lines)
    # the definition, in plain Python: walk back from the last attempt
    head = len(attempts)
    counted: list[tuple[int, int, float]] = []
    limit: float = float("inf")
    number = head
    while True:
        values = attempts[number - 1][0]
        counted += [(number, s, float(v)) for s, v in enumerate(values) if s <= limit]
        bases = [(b, attempts[b - 1][1]) for b in range(number - 1, 0, -1)]
        base = next(((b, k) for b, k in bases if k is not None), None)
        if base is None:
            break
        number, step = base
        limit = min(limit, float(step))
    counted.sort(key=lambda r: (r[0], r[1]))  # report order: attempt, then file order
    want = None
    for _, s, v in counted:
        if want is None or (v > want[0] if mode == "max" else v < want[0]):
            want = (v, s)
    row = world.trial_row(trial)
    assert (row.best_value, row.best_step) == (want or (None, None))


_WORLDS: dict[str, World] = {}
