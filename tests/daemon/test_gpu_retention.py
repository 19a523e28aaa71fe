"""GPU sample retention: old raw samples become per-minute rows, and nothing a user sees
changes. The figures (``gpustats``: mean and peak utilisation, peak and own memory,
energy, GPU-seconds, idle seconds) computed from raw samples and rollups together equal
those from the raw samples alone, for any rollup boundary and batch size; a pass is
idempotent, atomic per transaction (a failure between writing minutes and deleting raw
rows leaves both as they were) and bounded in rows per transaction. The deterministic
tests run on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, func, insert, select

from clusterd.daemon import db, gpu_retention, gpustats
from clusterd.daemon.gpu_retention import Retention, roll_up
from clusterd.daemon.gpustats import GM, G, attempt_gpu_figures, trial_util_means
from clusterd.daemon.store import A, Store
from clusterd.errors import StorageError

EXAMPLES = 300 if os.environ.get("CLUSTERD_STRESS") else 60
T0 = 1_700_000_000.0
_names = itertools.count()


def new_trials(store: Store, root: Path, n: int, ended_at: float | None = None) -> list[int]:
    """A sweep of ``n`` trials, each with attempt 1 (ended at ``ended_at``, else running)."""
    name = f"g{next(_names)}"
    spec = {"name": name, "driver": "fake", "source": str(root / "x.toml"),
            "output_dir": str(root / name)}  # fmt: skip
    sweep_id = store.create_sweep(spec, [({"i": i}, json.dumps({"i": i})) for i in range(n)], None)
    with store.read() as conn:
        ids = [t.id for t in store.trials(conn, sweep_id)]
    with store.tx() as conn:
        store.add_attempts(
            conn,
            [{"trial_id": i, "number": 1, "token": f"{name}-{i}", "cancel_requested": False,
              "state": "ended" if ended_at else "running", "ended_at": ended_at}
             for i in ids],
        )  # fmt: skip
    return ids


def sample(trial_id: int, t: float, gpu: int = 0, attempt: int = 1, **kw: Any) -> dict[str, Any]:
    row = {"trial_id": trial_id, "attempt": attempt, "gpu": gpu, "t": t, "util": 50.0,
           "mem_used": 1000.0, "mem_total": 80000.0, "power_w": 200.0, "temp_c": 60,
           "own_procs": 1, "own_mem": 900}  # fmt: skip
    row.update(kw)
    return row


def add(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.tx() as conn:
        store.add_gpu_samples(conn, rows)


def figures(store: Store, ids: list[int]) -> dict[Any, dict[str, Any]]:
    """Every figure per (trial, attempt, gpu), and each trial's mean util (trials op)."""
    with store.read() as conn:
        per = attempt_gpu_figures(conn, ids)
        means = trial_util_means(conn, ids)
    out: dict[Any, dict[str, Any]] = {}
    for trial_id, gpus in per.items():
        for (attempt, gpu), f in gpus.items():
            out[(trial_id, attempt, gpu)] = {
                "samples": f.samples,
                "util_mean": f.util_mean,
                "util_peak": f.util_peak,
                "mem_peak": f.mem_peak,
                "own_mem_peak": f.own_mem_peak,
                "power_mean": f.power_mean,
                "energy_j": f.energy_j,
                "seconds": f.seconds,
                "idle_seconds": f.idle_seconds,
            }
    for trial_id, mean in means.items():
        out[("mean", trial_id)] = {"util": mean}
    return out


def assert_close(a: dict[Any, dict[str, Any]], b: dict[Any, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for name, x in a[key].items():
            y = b[key][name]
            if x is None or y is None:
                assert x == y, (key, name, x, y)
            else:
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), (key, name, x, y)


def counts(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        raw = conn.execute(select(func.count()).select_from(G)).scalar_one()
        minutes = conn.execute(select(func.count()).select_from(GM)).scalar_one()
    return int(raw), int(minutes)


# -- backends -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, make_sqlite_engine: Callable[..., Engine]
) -> Iterator[Store]:
    """A store at head on SQLite, then on a real PostgreSQL (tests/daemon/conftest.py)."""
    if request.param == "sqlite":
        engine = make_sqlite_engine()
    else:
        engine = db.make_engine(request.getfixturevalue("new_pg_url")())
    db.upgrade(engine)
    yield Store(engine)
    engine.dispose()


# -- the policy ---------------------------------------------------------------------------


def test_a_pass_keeps_the_window_raw_and_rolls_up_whole_minutes_before_it(
    store: Store, tmp_path: Path
) -> None:
    (trial,) = new_trials(store, tmp_path, 1)
    add(store, [sample(trial, T0 + 10 * k, util=float(k % 100)) for k in range(3 * 360)])  # 3 h
    before = figures(store, [trial])
    last = T0 + 10 * (3 * 360 - 1)
    result = roll_up(store, now=last + 5)
    boundary = gpustats.minute_of(last - gpu_retention.RAW_WINDOW) * 60
    with store.read() as conn:
        oldest_raw = conn.execute(select(func.min(G.c.t))).scalar_one()
        minutes = conn.execute(select(GM.c.minute, GM.c.samples).order_by(GM.c.minute)).all()
    assert oldest_raw >= boundary and oldest_raw - boundary < 60  # the window stays raw
    assert last - oldest_raw >= gpu_retention.RAW_WINDOW
    assert minutes[-1][0] * 60 < boundary  # only minutes wholly before it
    assert sum(n for _, n in minutes) == result.rows == int((boundary - T0) / 10)
    assert_close(figures(store, [trial]), before)
    assert roll_up(store, now=last + 5).rows == 0  # again: nothing left to do
    assert_close(figures(store, [trial]), before)


def test_an_attempt_ended_long_ago_is_rolled_up_whole(store: Store, tmp_path: Path) -> None:
    old, recent = new_trials(store, tmp_path, 2, ended_at=T0 + 600)
    add(store, [sample(i, T0 + 10 * k, gpu=g) for i in (old, recent) for k in range(60)
                for g in (0, 1)])  # fmt: skip
    before = figures(store, [old, recent])
    with store.tx() as conn:  # "recent" ended just now: raw for ENDED_GRACE more
        conn.execute(A.update().where(A.c.trial_id == recent).values(ended_at=T0 + 90_000))
    roll_up(store, now=T0 + 90_000)
    with store.read() as conn:
        q = select(G.c.trial_id, func.count()).group_by(G.c.trial_id)
        raw: dict[int, int] = {int(i): int(n) for i, n in conn.execute(q)}
    assert raw == {recent: 120}
    assert_close(figures(store, [old, recent]), before)
    minutes = gpustats.minute_of(T0 + 590) - gpustats.minute_of(T0) + 1  # T0 is :20
    assert counts(store) == (120, 2 * minutes)


def test_each_transaction_rolls_up_at_most_a_batch_cut_at_a_minute(
    store: Store, tmp_path: Path
) -> None:
    (trial,) = new_trials(store, tmp_path, 1)
    add(store, [sample(trial, T0 + 2.5 * k, gpu=g) for k in range(2000) for g in range(4)])
    before = figures(store, [trial])
    result = roll_up(store, series=[(trial, 1, T0 + 4000.0)], batch=500)
    per_minute = 4 * 24  # 4 GPUs, a sample every 2.5 s
    assert result.rows == 4 * 1600
    assert result.transactions >= result.rows / 500
    assert all(n <= 500 for n in [result.rows // result.transactions])
    with store.read() as conn:
        sizes = conn.execute(select(GM.c.minute, func.sum(GM.c.samples)).group_by(GM.c.minute))
        assert {n for _, n in sizes} <= {per_minute, 4 * 16}  # whole minutes (T0 is :20)
    assert_close(figures(store, [trial]), before)


def test_a_failure_between_writing_minutes_and_deleting_samples_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    (trial,) = new_trials(store, tmp_path, 1)
    add(store, [sample(trial, T0 + 10 * k, util=float(k)) for k in range(100)])
    before, stored = figures(store, [trial]), counts(store)

    def crash(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM GPU_SAMPLES"):
            raise RuntimeError("killed between the rollup insert and the raw delete")

    event.listen(store.engine, "before_cursor_execute", crash)
    try:
        with pytest.raises((RuntimeError, StorageError)):
            roll_up(store, series=[(trial, 1, T0 + 900.0)])
    finally:
        event.remove(store.engine, "before_cursor_execute", crash)
    assert counts(store) == stored  # no minute row written, no sample lost
    roll_up(store, series=[(trial, 1, T0 + 900.0)])
    assert counts(store)[1] > 0
    assert_close(figures(store, [trial]), before)  # nothing counted twice


def test_a_late_sample_for_a_rolled_up_minute_is_merged_into_it(
    store: Store, tmp_path: Path
) -> None:
    (trial,) = new_trials(store, tmp_path, 1)
    add(store, [sample(trial, T0 + 10 * k, util=10.0, power_w=100.0) for k in range(30)])
    roll_up(store, series=[(trial, 1, T0 + 240.0)])
    add(store, [sample(trial, T0 + 5, util=90.0, mem_used=5000.0, power_w=None)])  # late
    roll_up(store, series=[(trial, 1, T0 + 240.0)])
    with store.read() as conn:
        rows = conn.execute(select(GM).where(GM.c.minute == gpustats.minute_of(T0))).all()
    (row,) = rows  # one row per minute, never two
    assert row.samples == 5  # T0 is 20 s into its minute: 4 samples, and the late one
    assert row.util_max == 90.0 and row.mem_max == 5000.0
    assert math.isclose(row.util_mean, (4 * 10.0 + 90.0) / 5)
    assert row.power_mean == 100.0  # the late sample had no power reading


def test_the_daemon_paces_its_passes(store: Store, tmp_path: Path) -> None:
    (trial,) = new_trials(store, tmp_path, 1, ended_at=1.0)  # ended long ago
    add(store, [sample(trial, T0 + 10 * k) for k in range(10)])
    assert Retention(store, every=3600).maybe_run() is None  # not due yet
    pacer = Retention(store, every=0)
    result = pacer.maybe_run()
    assert result is not None and result.rows == 10
    assert counts(store) == (0, 2)


def test_a_pass_out_of_budget_goes_on_at_the_next_one(store: Store, tmp_path: Path) -> None:
    ids = new_trials(store, tmp_path, 3, ended_at=1.0)
    add(store, [sample(i, T0 + 10 * k) for i in ids for k in range(10)])
    first = roll_up(store, budget=0.0)
    assert first.unfinished and first.rows == 0 and len(first.remaining) == 3
    pacer = Retention(store, every=3600)
    pacer.last = first  # the pass before was cut short: the next one runs at once
    assert pacer.maybe_run() is not None
    assert counts(store)[0] == 0


# -- any boundary: raw + minutes == raw ----------------------------------------------------

reading = st.one_of(st.floats(0, 100), st.sampled_from([0.0, 4.99, 5.0, 100.0]))


@st.composite
def histories(draw: Any) -> list[dict[str, Any]]:
    """Samples of a few attempts and GPUs: irregular gaps (some over ``MAX_GAP``, some
    equal times), readings or nulls per series (MIG: no utilisation; no power)."""
    rows = []
    for trial in range(draw(st.integers(1, 2))):
        for attempt in (1, 2)[: draw(st.integers(1, 2))]:
            for gpu in range(draw(st.integers(1, 2))):
                has_util, has_power = draw(st.booleans()), draw(st.booleans())
                t = T0 + draw(st.floats(0, 120))
                for _ in range(draw(st.integers(1, 40))):
                    t += draw(st.sampled_from([0.0, 1.0, 10.0, 10.0, 59.5, 400.0]))
                    rows.append(
                        {"trial": trial, "attempt": attempt, "gpu": gpu, "t": t,
                         "util": draw(reading) if has_util else None,
                         "power_w": draw(st.floats(0, 700)) if has_power else None,
                         "mem_used": draw(st.one_of(st.none(), st.floats(0, 80000))),
                         "own_mem": draw(st.one_of(st.none(), st.integers(0, 80000)))}
                    )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path_factory.mktemp('gpu') / 'c.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=histories(),
    cuts=st.lists(st.floats(0, 3000), min_size=1, max_size=3),
    batch=st.integers(1, 30),
    seed=st.integers(0, 1000),
)
def test_figures_from_raw_and_minutes_equal_figures_from_raw_only(
    shared_engine: Engine,
    tmp_path: Path,
    rows: list[dict[str, Any]],
    cuts: list[float],
    batch: int,
    seed: int,
) -> None:
    store = Store(shared_engine)
    ids = new_trials(store, tmp_path, 2)
    stored = [
        sample(ids[r["trial"]], r["t"], gpu=r["gpu"], attempt=r["attempt"], util=r["util"],
               power_w=r["power_w"], mem_used=r["mem_used"], own_mem=r["own_mem"])
        for r in rows
    ]  # fmt: skip
    random.Random(seed).shuffle(stored)  # arrival order is not time order
    add(store, stored)
    reference = figures(store, ids)
    series = {(ids[r["trial"]], r["attempt"]) for r in rows}
    for cut in sorted(cuts):  # successive passes, each at its own boundary
        before = gpustats.minute_of(T0 + cut) * 60.0
        roll_up(store, series=[(i, a, before) for i, a in sorted(series)], batch=batch)
        assert_close(figures(store, ids), reference)
    with store.read() as conn:
        assert conn.execute(
            select(func.count()).select_from(G).where(G.c.trial_id.in_(ids))
        ).scalar_one() == sum(1 for r in rows if r["t"] >= gpustats.minute_of(T0 + max(cuts)) * 60)
        # every sample is counted exactly once, raw or in its minute
        total = conn.execute(select(func.sum(GM.c.samples)).where(GM.c.trial_id.in_(ids)))
        assert (total.scalar_one() or 0) + conn.execute(
            select(func.count()).select_from(G).where(G.c.trial_id.in_(ids))
        ).scalar_one() == len(rows)


def test_ingest_path_rows_roll_up_too(store: Store, tmp_path: Path) -> None:
    """Rows shaped as ingest writes them (integer readings, a missing key) roll up."""
    (trial,) = new_trials(store, tmp_path, 1)
    with store.tx() as conn:
        conn.execute(
            insert(G),
            [{"trial_id": trial, "attempt": 1, "gpu": 0, "t": T0 + 10 * k, "util": k % 7,
              "mem_used": 10, "mem_total": 20} for k in range(20)],
        )  # fmt: skip
    before = figures(store, [trial])
    roll_up(store, series=[(trial, 1, T0 + 200.0)])
    assert_close(figures(store, [trial]), before)
    assert before[(trial, 1, 0)]["energy_j"] is None  # no power reading: no energy


def test_a_scheduling_pass_runs_the_rollup_when_it_is_due(store: Store, tmp_path: Path) -> None:
    from clusterd.daemon.driverset import DriverSet
    from clusterd.daemon.scheduler import Scheduler
    from clusterd.testing.fake_driver import FakeDriver

    (trial,) = new_trials(store, tmp_path, 1, ended_at=1.0)  # ended long ago
    add(store, [sample(trial, T0 + 10 * k) for k in range(30)])
    scheduler = Scheduler(store, DriverSet({"fake": FakeDriver}, lambda: None))
    gpu_retention._PACERS[store] = Retention(store, every=3600)  # the daemon's pacing
    asyncio.run(scheduler.tick())
    assert counts(store)[0] == 30  # not due yet
    gpu_retention._PACERS[store] = Retention(store, every=0)
    asyncio.run(scheduler.tick())
    assert counts(store)[0] == 0 and counts(store)[1] > 0
