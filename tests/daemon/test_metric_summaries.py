"""``metric_summaries``: what ``trials``, ``export``, ``best`` and ``show`` read of every
metric is kept at ingest, and always equals the aggregate over the stored values.

The reference is computed from scratch over the raw ``metrics`` rows: per trial and
name, the last value stored (largest id: arrival order, whatever its step), its step
and attempt, the lowest, the highest, how many. It must hold for any batches in any
order (steps out of order, several attempts, repeated values, rolled-back
transactions), after a sweep is removed, and on a database upgraded from the previous
release (revision 0003, whose views aggregated the raw rows with the query kept below).
Non-finite values never reach the store: ingestion refuses them (one error each).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select

from clusterd.daemon import db
from clusterd.daemon.ingest import ingest_attempt, open_cursor
from clusterd.daemon.store import MS, M, S, Store, T

_names = itertools.count()

#: (value, step, attempt, lowest, highest, count) per trial id and metric name
Reference = dict[int, dict[str, tuple[float, int, int, float, float, int]]]

NAMES = ("loss", "val_acc", "f1", "n" * 128)
EXAMPLES = 200 if os.environ.get("CLUSTERD_STRESS") else 40


class World:
    """A store with sweeps of a few trials each, and the reference aggregate."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.store = Store(engine)
        self.root = root

    def new_sweep(self, trials: int = 3) -> tuple[int, list[Any]]:
        if db.current_revision(self.engine) == "0003":
            return self._sweep_at_0003(trials)
        name = f"s{next(_names)}"
        spec = {
            "name": name,
            "driver": "fake",
            "source": str(self.root / "x.toml"),
            "output_dir": str(self.root / name),
            "metric": {"name": "loss", "mode": "min"},
        }
        params = [({"i": i}, json.dumps({"i": i})) for i in range(trials)]
        sweep_id = self.store.create_sweep(spec, params, None)
        with self.store.read() as conn:
            return sweep_id, self.store.trials(conn, sweep_id)

    def _sweep_at_0003(self, trials: int) -> tuple[int, list[Any]]:
        """A sweep stored as the 0003 release stored it: only the columns it had (the
        current ``Store.create_sweep`` reads columns a 0003 database lacks)."""
        name = f"s{next(_names)}"
        with self.store.tx() as conn:
            sweep_id = conn.execute(
                insert(S).values(
                    name=name,
                    driver="fake",
                    state="active",
                    spec={"name": name},
                    source=str(self.root / "x.toml"),
                    output_dir=str(self.root / name),
                    metric_name="loss",
                    metric_mode="min",
                    created_at=1.0,
                    updated_at=1.0,
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(T),
                [
                    {
                        "sweep_id": sweep_id,
                        "index": i,
                        "params": {"i": i},
                        "params_key": json.dumps({"i": i}),
                        "created_at": 1.0,
                        "updated_at": 1.0,
                    }
                    for i in range(trials)
                ],
            )
        with self.store.read() as conn:
            return sweep_id, self.store.trials(conn, sweep_id)

    def reference(self, trial_ids: list[int]) -> Reference:
        """The aggregate computed from scratch over every stored value."""
        out: Reference = {}
        with self.store.read() as conn:
            q = (
                select(M.c.trial_id, M.c.name, M.c.value, M.c.step, M.c.attempt)
                .where(M.c.trial_id.in_(trial_ids))
                .order_by(M.c.id)
            )
            for trial_id, name, value, step, attempt in conn.execute(q):
                seen = out.setdefault(trial_id, {})
                if name in seen:
                    _, _, _, lo, hi, n = seen[name]
                    seen[name] = (value, step, attempt, min(lo, value), max(hi, value), n + 1)
                else:
                    seen[name] = (value, step, attempt, value, value, 1)
        return out

    def stored(self, trial_ids: list[int]) -> Reference:
        """The summary rows as stored."""
        out: Reference = {}
        cols = (MS.c.last_value, MS.c.last_step, MS.c.last_attempt, MS.c.lowest, MS.c.highest)
        with self.store.read() as conn:
            q = select(MS.c.trial_id, MS.c.name, *cols, MS.c.count)
            for trial_id, name, v, s, a, lo, hi, n in conn.execute(
                q.where(MS.c.trial_id.in_(trial_ids))
            ):
                out.setdefault(trial_id, {})[name] = (v, s, a, lo, hi, n)
        return out

    def check(self, sweep_id: int, trials: list[Any]) -> None:
        """The stored summaries, and what ``metric_summaries`` answers with every way of
        narrowing it, equal the reference."""
        ids = [t.id for t in trials]
        want = self.reference(ids)
        assert self.stored(ids) == want
        by_index = {t.id: t.index for t in trials}
        views = {
            by_index[tid]: {n: (v, s, lo, hi) for n, (v, s, _, lo, hi, _) in per.items()}
            for tid, per in want.items()
        }
        with self.store.read() as conn:
            assert self.store.metric_summaries(conn, sweep_id) == views
            assert self.store.metric_names(conn, sweep_id) == sorted(
                {n for per in views.values() for n in per}
            )
            for t in trials:
                assert self.store.metric_summaries(conn, sweep_id, index=t.index) == (
                    {t.index: views[t.index]} if t.index in views else {}
                )
            some = [t.index for t in trials[::2]]
            assert self.store.metric_summaries(conn, sweep_id, indices=some) == {
                i: v for i, v in views.items() if i in some
            }
            assert self.store.metric_summaries(conn, sweep_id, state="pending") == views
            assert self.store.metric_summaries(conn, sweep_id, state="completed") == {}
            for name in NAMES:
                narrowed = {i: {name: v[name]} for i, v in views.items() if name in v}
                assert self.store.metric_summaries(conn, sweep_id, name=name) == narrowed


@pytest.fixture(params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, make_sqlite_engine: Callable[..., Engine], tmp_path: Path
) -> World:
    if request.param == "sqlite":
        engine = make_sqlite_engine()
    else:
        engine = db.make_engine(request.getfixturevalue("new_pg_url")())
        request.addfinalizer(engine.dispose)
    db.upgrade(engine)
    return World(engine, tmp_path)


values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1.0, -1.0, 1e308, -1e308, 5e-324]),  # ties, extremes
)
row = st.tuples(
    st.integers(0, 2),  # which trial
    st.integers(1, 3),  # attempt
    st.integers(0, 1 << 40),  # step: any order, not only increasing
    st.sampled_from(NAMES),
    values,
)
batch = st.tuples(st.booleans(), st.lists(row, min_size=0, max_size=30))  # (commits?, rows)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(batch, min_size=1, max_size=8))
def test_summaries_equal_the_aggregate_for_any_batches(
    world: World, batches: list[tuple[bool, list[tuple[int, int, int, str, float]]]]
) -> None:
    sweep_id, trials = world.new_sweep()
    for commits, rows in batches:
        metrics = [
            {
                "trial_id": trials[k].id,
                "attempt": attempt,
                "step": step,
                "name": name,
                "value": value,
                "t": 1.0,
            }
            for k, attempt, step, name, value in rows
        ]
        if commits:
            with world.store.tx() as conn:
                world.store.add_metrics(conn, metrics)
        else:  # the daemon died before the commit: neither values nor summaries stay
            with pytest.raises(RuntimeError), world.store.tx() as conn:
                world.store.add_metrics(conn, metrics)
                raise RuntimeError("crash before the commit")
    world.check(sweep_id, trials)


def test_last_is_the_latest_stored_not_the_highest_step(world: World) -> None:
    """A resumed attempt reports again from its checkpoint's step: its values are the
    trial's latest, though an earlier attempt reached a higher step."""
    sweep_id, trials = world.new_sweep(1)
    tid = trials[0].id

    def rows(attempt: int, steps: range, base: float) -> list[dict[str, Any]]:
        return [
            {"trial_id": tid, "attempt": attempt, "step": s, "name": "acc", "value": base + s}
            | {"t": 1.0}
            for s in steps
        ]

    with world.store.tx() as conn:
        world.store.add_metrics(conn, rows(1, range(0, 10), 0.0))
    with world.store.tx() as conn:
        world.store.add_metrics(conn, rows(2, range(5, 7), 100.0))
    with world.store.read() as conn:
        got = world.store.metric_summaries(conn, sweep_id)
    assert got == {0: {"acc": (106.0, 6, 0.0, 106.0)}}
    world.check(sweep_id, trials)


def test_a_removed_sweep_leaves_no_summaries_and_others_keep_theirs(world: World) -> None:
    gone_id, gone = world.new_sweep()
    kept_id, kept = world.new_sweep()
    with world.store.tx() as conn:
        for t in gone + kept:
            world.store.add_metrics(
                conn,
                [
                    {"trial_id": t.id, "attempt": 1, "step": s, "name": n, "value": s * 0.5}
                    | {"t": 1.0}
                    for s in range(4)
                    for n in ("loss", "acc")
                ],
            )
    before = world.stored([t.id for t in kept])
    with world.store.read() as conn:
        name = world.store.sweep_by_id(conn, gone_id).name
    world.store.delete_sweep(name)
    with world.store.read() as conn:
        left = conn.execute(select(func.count()).select_from(MS)).scalar_one()
        orphans = conn.execute(
            select(func.count()).select_from(MS).where(MS.c.trial_id.not_in(select(T.c.id)))
        ).scalar_one()
    assert orphans == 0
    assert left == len(kept) * 2
    assert world.stored([t.id for t in kept]) == before
    world.check(kept_id, kept)


def test_ingest_refuses_non_finite_values_and_the_summary_keeps_the_finite_ones(
    world: World,
) -> None:
    """NaN and infinities (which Python's json reads) are refused line by line, so a
    lowest or highest is never NaN or infinite."""
    sweep_id, trials = world.new_sweep(1)
    trial = trials[0]
    with world.store.tx() as conn:
        token = f"t{next(_names)}"
        row = {"trial_id": trial.id, "number": 1, "token": token, "state": "running"}
        world.store.add_attempts(conn, [row | {"events_offset": 0, "cancel_requested": False}])
    with world.store.read() as conn:
        sweep = world.store.sweep_by_id(conn, sweep_id)
        attempt = next(a for a in world.store.live_attempts(conn) if a.trial_id == trial.id)
    adir = world.root / sweep.name / "attempt-1"
    adir.mkdir(parents=True)
    lines = [
        '{"type": "metric", "step": 0, "values": {"loss": 2.0}}',
        '{"type": "metric", "step": 1, "values": {"loss": NaN}}',
        '{"type": "metric", "step": 2, "values": {"loss": Infinity}}',
        '{"type": "metric", "step": 3, "values": {"loss": -Infinity}}',
        '{"type": "metric", "step": 4, "values": {"loss": 1e999}}',
        '{"type": "metric", "step": 5, "values": {"loss": 1.5}}',
    ]
    (adir / "events.jsonl").write_text("\n".join(lines) + "\n")
    with world.store.tx() as conn:
        cursor = open_cursor(world.store, conn, attempt, sweep, str(adir))
        result = ingest_attempt(world.store, conn, cursor, final=True)
    assert result.metrics == 2 and result.errors == 4
    with world.store.read() as conn:
        assert world.store.metric_summaries(conn, sweep_id) == {0: {"loss": (1.5, 5, 1.5, 2.0)}}
    world.check(sweep_id, trials)


# -- a database from the previous release ----------------------------------------------


def _previous_release_summaries(world: World, sweep_id: int) -> dict[int, Any]:
    """What revision 0003's ``Store.metric_summaries`` answered: the aggregate over the
    raw rows, "last" being the largest id."""
    agg = (
        select(
            M.c.trial_id,
            M.c.name,
            func.max(M.c.id).label("last_id"),
            func.min(M.c.value).label("lo"),
            func.max(M.c.value).label("hi"),
        )
        .where(M.c.trial_id.in_(select(T.c.id).where(T.c.sweep_id == sweep_id)))
        .group_by(M.c.trial_id, M.c.name)
        .subquery()
    )
    q = (
        select(T.c.index, agg.c.name, M.c.value, M.c.step, agg.c.lo, agg.c.hi)
        .join(M, M.c.id == agg.c.last_id)
        .join(T, T.c.id == agg.c.trial_id)
    )
    out: dict[int, Any] = {}
    with world.store.read() as conn:
        for idx, metric, value, step, lo, hi in conn.execute(q):
            out.setdefault(idx, {})[metric] = (value, step, lo, hi)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def old_engine(
    request: pytest.FixtureRequest, make_sqlite_engine: Callable[..., Engine]
) -> Iterator[Engine]:
    """A database at revision 0003 (the previous release's schema)."""
    if request.param == "sqlite":
        engine = make_sqlite_engine()
    else:
        engine = db.make_engine(request.getfixturevalue("new_pg_url")())
    with db.transaction(engine) as conn:
        command.upgrade(db._alembic_config(conn), "0003")
    yield engine
    engine.dispose()


def test_upgrade_backfills_the_summaries_of_existing_metrics(
    old_engine: Engine, tmp_path: Path
) -> None:
    import random

    world = World(old_engine, tmp_path)
    rng = random.Random(18)
    sweeps = [world.new_sweep(5) for _ in range(2)]
    rows = []
    for _, trials in sweeps:
        for t in trials[:4]:  # the last trial of each sweep never reported
            for attempt in (1, 2):
                for step in rng.sample(range(30), 12):  # out of order, with gaps
                    for name in rng.sample(NAMES, 2):
                        value = rng.choice([rng.uniform(-5, 5), 1.0, -0.0])
                        rows.append((t.id, attempt, step, name, value))
    rng.shuffle(rows)
    with db.transaction(old_engine) as conn:  # as 0003 stored them: metrics alone
        conn.execute(
            insert(M),
            [
                {"trial_id": t, "attempt": a, "step": s, "name": n, "value": v, "t": 1.0}
                for t, a, s, n, v in rows
            ],
        )
    before = {sweep_id: _previous_release_summaries(world, sweep_id) for sweep_id, _ in sweeps}
    assert all(before.values())
    db.upgrade(old_engine)
    assert db.current_revision(old_engine) == db.head_revision()
    for sweep_id, trials in sweeps:
        with world.store.read() as conn:
            assert world.store.metric_summaries(conn, sweep_id) == before[sweep_id]
        world.check(sweep_id, trials)
    # and ingest goes on from the backfilled rows
    sweep_id, trials = sweeps[0]
    with world.store.tx() as conn:
        world.store.add_metrics(
            conn,
            [
                {"trial_id": trials[0].id, "attempt": 3, "step": 0, "name": "loss", "value": -9.0}
                | {"t": 1.0},
                {"trial_id": trials[4].id, "attempt": 1, "step": 7, "name": "f1", "value": 0.5}
                | {"t": 1.0},
            ],
        )
    world.check(sweep_id, trials)
