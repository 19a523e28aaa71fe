"""The idle-GPU watch (daemon/gpu_idle.py): the rule itself, and the watch on a database.

The rule is checked against a brute-force reading of docs/gpu.md's "Idle GPUs" for any
sample sequence (hypothesis), fed whole, in chunks, and across a daemon restart. The
watch runs on a real database with real scheduler passes (fake driver): the flag, the
log entries, the views, the ``stop`` action, a restart, and its cost in queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine

from clusterd.config import ConfigError, UserConfig, read_config
from clusterd.daemon import db, gpu_idle
from clusterd.daemon.gpu_idle import GpuIdleWatch, IdlePolicy, IdleState, fold, policy_of
from clusterd.daemon.handlers.context import Context
from clusterd.daemon.handlers.sweeps import list_sweeps
from clusterd.daemon.handlers.system import status
from clusterd.daemon.handlers.trials import list_trials, show
from clusterd.daemon.hub import Hub
from clusterd.daemon.models import GpuSample
from clusterd.daemon.scheduler import DriverSet, Scheduler
from clusterd.daemon.store import Store
from clusterd.errors import SpecError
from clusterd.spec import parse_sweep
from clusterd.spec.expand import expand, params_key
from clusterd.spec.model import GpuConfig
from clusterd.testing.fake_driver import FakeDriver

Point = tuple[float, list[float | None]]

# -- the rule ---------------------------------------------------------------------------


def reference(points: Sequence[Point], policy: IdlePolicy) -> tuple[float | None, bool]:
    """docs/gpu.md, read literally: the longest tail of idle points without a hole over
    ``max_gap``; flagged iff it spans ``after``. Returns (its start, flagged)."""
    tail: list[float] = []
    for t, utils in points:
        idle = bool(utils) and all(u is not None and u < policy.threshold for u in utils)
        if not idle:
            tail = []
        elif tail and t - tail[-1] > policy.max_gap:
            tail = [t]
        else:
            tail.append(t)
    if not tail:
        return None, False
    return tail[0], tail[-1] - tail[0] >= policy.after


util = st.one_of(st.none(), st.floats(0, 100), st.sampled_from([0.0, 4.99, 5.0, 5.01]))


@st.composite
def sequences(draw: Any) -> tuple[list[Point], IdlePolicy]:
    interval = draw(st.sampled_from([0.5, 10.0]))
    policy = IdlePolicy(
        after=draw(st.sampled_from([3.0, 30.0, 1800.0])),
        threshold=draw(st.sampled_from([1.0, 5.0, 50.0])),
        interval=interval,
    )
    gpus = draw(st.integers(1, 3))
    steps = draw(st.lists(st.floats(0.1, 200.0), max_size=60))
    t, points = 1_000_000.0, []
    for step in steps:
        t += step
        points.append((t, draw(st.lists(util, min_size=gpus, max_size=gpus))))
    return points, policy


@settings(max_examples=300, deadline=None)
@given(sequences(), st.data())
def test_any_sample_sequence_is_flagged_iff_the_rule_holds(
    case: tuple[list[Point], IdlePolicy], data: st.DataObject
) -> None:
    points, policy = case
    since, flagged = reference(points, policy)
    whole = fold(IdleState(), points, policy)
    assert (whole.since, whole.flagged) == (since, flagged)

    # in passes of any size, each seeing some points again (a re-read): the same
    cuts = sorted(data.draw(st.lists(st.integers(0, len(points)), max_size=5)))
    state, start = IdleState(), 0
    for cut in [*cuts, len(points)]:
        again = data.draw(st.integers(0, start))
        state = fold(state, points[again:cut], policy)
        start = max(start, cut)
    assert (state.since, state.flagged) == (since, flagged)

    # a restart after any prefix: only since/flagged survive (the attempts row); the
    # restarted watch reads back from anywhere between the run's start and the last
    # point it had seen (one window back: a daemon down longer may miss a hole)
    at = data.draw(st.integers(0, len(points)))
    before = fold(IdleState(), points[:at], policy)
    kept = IdleState(since=before.since, flagged=before.flagged)
    last = max(0, at - 1)
    first = next((i for i, p in enumerate(points) if p[0] >= (before.since or 0)), last)
    if before.since is None:
        first = last
    reread = points[data.draw(st.integers(min(first, last), last)) :]
    after = fold(kept, reread, policy)
    assert (after.since, after.flagged) == (since, flagged)


def test_mig_without_utilisation_is_never_idle() -> None:
    policy = IdlePolicy(after=30.0, interval=10.0)
    points: list[Point] = [(float(t), [None]) for t in range(0, 600, 10)]
    assert fold(IdleState(), points, policy) == IdleState(None, 590.0, False)
    mixed: list[Point] = [(float(t), [0.0, None]) for t in range(0, 600, 10)]
    assert not fold(IdleState(), mixed, policy).flagged


def test_a_hole_in_the_samples_restarts_the_count() -> None:
    policy = IdlePolicy(after=120.0, interval=10.0)  # holes over 60 s break a run
    points: list[Point] = [(0.0, [0.0]), (50.0, [0.0]), (200.0, [1.0]), (250.0, [2.0])]
    state = fold(IdleState(), points, policy)
    assert state.since == 200.0 and not state.flagged  # 50 s covered since the hole
    state = fold(state, [(300.0, [0.0]), (330.0, [0.0])], policy)
    assert state.flagged  # 130 s of samples, none busy, no hole over 60 s


def test_the_sweep_wins_over_the_user_default_and_off_turns_it_off() -> None:
    user = GpuConfig(idle_warning_seconds=1800.0, idle_threshold=10.0, idle_action="stop")
    assert policy_of(GpuConfig(), None) is None
    assert policy_of(GpuConfig(), user) == IdlePolicy(1800.0, 10.0, "stop", 10.0)
    mine = GpuConfig(interval=2.0, idle_warning_seconds=60.0, idle_action="warn")
    assert policy_of(mine, user) == IdlePolicy(60.0, 10.0, "warn", 2.0)
    assert policy_of(GpuConfig(idle_warning_seconds=0.0), user) is None  # "off"
    assert policy_of(GpuConfig(idle_warning_seconds=5.0), None) == IdlePolicy(5.0)


# -- the watch on a database --------------------------------------------------------------


def add_sweep(store: Store, tmp_path: Path, name: str, gpu: str, trials: int = 2) -> None:
    text = (
        f'name = "{name}"\ncommand = "true"\ndriver = "fake"\nmax_concurrent = {trials}\n'
        f'output_dir = "{tmp_path / name}"\n[params]\nx = {list(range(trials))}\n'
        "[drivers.fake]\nsteps_queued = 0\nsteps_running = 100000\n"
        "[early_stopping]\ngrace_period = 0\n"
        f"[gpu]\n{gpu}\n"
    )
    spec = parse_sweep(text, source=str(tmp_path / f"{name}.toml"), base_dir=str(tmp_path))
    store.create_sweep(spec.to_dict(), [(p, params_key(p)) for p in expand(spec)], None)


class World:
    """A database, a scheduler over the fake driver, and GPU samples written as ingest
    writes them; ``clock`` is the watch's time."""

    def __init__(self, engine: Engine, config: UserConfig | None = None) -> None:
        self.store = Store(engine)
        self.scheduler = Scheduler(
            self.store, DriverSet({"fake": FakeDriver}, lambda: None, config=config)
        )
        self.events: list[dict[str, Any]] = []
        self.store.on_change(self.events.extend)
        self.clock = 1_000_000.0

    def tick(self) -> None:
        self.scheduler._poll_now = True
        asyncio.run(self.scheduler.tick())

    def running(self, sweep: str) -> dict[int, Any]:
        """The running attempts of ``sweep``, by trial index."""
        with self.store.read() as conn:
            s = self.store.sweep_by_name(conn, sweep)
            return {
                a.index: a for a in self.store.live_attempts(conn, s.id) if a.state == "running"
            }

    def sample(self, sweep: str, utils: dict[int, list[float | None]], dt: float = 1.0) -> None:
        """One sample line per trial index (util per GPU), ``dt`` seconds after the last."""
        self.clock += dt
        attempts = self.running(sweep)
        rows = [
            {"trial_id": attempts[i].trial_id, "attempt": attempts[i].number, "gpu": g,
             "util": u, "mem_used": 1.0, "mem_total": 10.0, "t": self.clock}
            for i, us in utils.items()
            for g, u in enumerate(us)
        ]  # fmt: skip
        with self.store.tx() as conn:
            conn.execute(insert(GpuSample), rows)

    def watch(self, watch: GpuIdleWatch | None = None) -> GpuIdleWatch:
        watch = watch or GpuIdleWatch(self.scheduler)
        watch._next_at = 0.0
        with self.store.read() as conn:
            live = self.store.live_attempts(conn)
            sweeps = {s.id: s for s in self.store.list_sweeps(conn)}
        watch.run(live, sweeps, now=self.clock)
        return watch

    def ctx(self) -> Context:
        return Context(
            store=self.store,
            scheduler=self.scheduler,
            hub=Hub(),
            db_url="sqlite://",
            home=Path("/nonexistent"),
            started_at=0.0,
            request_shutdown=lambda: None,
        )


@pytest.fixture
def engine(make_sqlite_engine: Callable[..., Engine]) -> Iterator[Engine]:
    FakeDriver.reset()
    engine = make_sqlite_engine()
    db.upgrade(engine)
    yield engine
    FakeDriver.reset()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """SQLite, and a real PostgreSQL (skipped where none can be started)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("engine")
        return
    FakeDriver.reset()
    engine = db.make_engine(request.getfixturevalue("new_pg_url")())
    db.upgrade(engine)
    yield engine
    engine.dispose()
    FakeDriver.reset()


def test_an_idle_trial_is_flagged_then_cleared_and_the_views_say_so(
    any_engine: Engine, tmp_path: Path
) -> None:
    world = World(any_engine)
    add_sweep(world.store, tmp_path, "lr", 'idle_warning = "3s"\ninterval = 0.5')
    world.tick()
    world.tick()
    assert set(world.running("lr")) == {0, 1}
    watch = world.watch()
    for _ in range(4):  # trial 0 idle (all its GPUs < 5 %), trial 1 busy on one of two
        world.sample("lr", {0: [0.0, 4.0], 1: [0.0, 80.0]})
        world.watch(watch)
    running = world.running("lr")
    assert running[0].gpu_idle_flagged and running[0].gpu_idle_since == 1_000_001.0
    assert not running[1].gpu_idle_flagged and running[1].gpu_idle_since is None

    ctx = world.ctx()
    trials = {t["index"]: t for t in list_trials(ctx, {"sweep": "lr"})}
    assert trials[0]["gpu_idle_since"] == 1_000_001.0 and "gpu_idle_since" not in trials[1]
    assert show(ctx, {"trial": "lr/0"})["gpu_idle_since"] == 1_000_001.0
    log = show(ctx, {"trial": "lr/0"})["transitions"][-1]
    assert log["from"] == log["to"] == "running"
    assert log["reason"] == "GPU idle for 3s (util < 5 %)"
    assert [s["gpu_idle"] for s in list_sweeps(ctx, {})] == [1]
    assert status(ctx, {})["gpu_idle"] == ["lr/0"]
    flag = [e for e in world.events if e["type"] == "gpu_idle"]
    assert [(e["index"], e["idle"]) for e in flag] == [(0, True)]

    world.sample("lr", {0: [30.0, 0.0], 1: [90.0, 0.0]})  # its first GPU gets busy
    world.watch(watch)
    assert not world.running("lr")[0].gpu_idle_flagged
    assert show(ctx, {"trial": "lr/0"})["transitions"][-1]["reason"] == "GPU busy again"
    assert status(ctx, {})["gpu_idle"] == [] and list_sweeps(ctx, {})[0]["gpu_idle"] == 0
    assert [e["idle"] for e in world.events if e["type"] == "gpu_idle"] == [True, False]


def test_stop_action_stops_the_idle_trial_through_the_stop_path(
    any_engine: Engine, tmp_path: Path
) -> None:
    world = World(any_engine)
    add_sweep(world.store, tmp_path, "st", 'idle_warning = 2\nidle_action = "stop"\ninterval = 1')
    world.tick()
    world.tick()
    watch = world.watch()
    for _ in range(3):
        world.sample("st", {0: [1.0], 1: [70.0]})
        world.watch(watch)
    ctx = world.ctx()
    decision = show(ctx, {"trial": "st/0"})["stop_decision"]
    assert decision["rule"] == "gpu-idle"
    assert decision["reason"] == "GPU idle for 2s (util < 5 %)"
    assert show(ctx, {"trial": "st/1"})["stop_decision"] is None
    for _ in range(3):  # grace_period = 0: the driver ends it; it ends stopped
        world.tick()
    states = {t["index"]: (t["state"], t["reason"]) for t in list_trials(ctx, {"sweep": "st"})}
    assert states[0] == ("stopped", "stopped early (gpu-idle: GPU idle for 2s (util < 5 %))")
    assert states[1][0] == "running"


def test_a_restarted_daemon_goes_on_from_the_stored_run(engine: Engine, tmp_path: Path) -> None:
    world = World(engine)
    add_sweep(world.store, tmp_path, "rs", 'idle_warning = "10s"\ninterval = 1', trials=1)
    world.tick()
    world.tick()
    watch = world.watch()
    for _ in range(6):
        world.sample("rs", {0: [0.0]}, dt=1.0)
        world.watch(watch)
    assert world.running("rs")[0].gpu_idle_since == 1_000_001.0
    assert not world.running("rs")[0].gpu_idle_flagged
    restarted = World(engine)  # a new daemon: nothing in memory
    restarted.clock = world.clock
    watch = restarted.watch()
    for _ in range(5):
        restarted.sample("rs", {0: [2.0]}, dt=1.0)
        restarted.watch(watch)
    attempt = restarted.running("rs")[0]
    assert attempt.gpu_idle_flagged and attempt.gpu_idle_since == 1_000_001.0


def test_the_user_default_applies_and_a_sweep_turns_it_off(engine: Engine, tmp_path: Path) -> None:
    config = UserConfig(Path("/dev/null"), gpu=GpuConfig(idle_warning_seconds=2.0))
    world = World(engine, config)
    add_sweep(world.store, tmp_path, "on", "interval = 1", trials=1)
    add_sweep(world.store, tmp_path, "off", 'idle_warning = "off"\ninterval = 1', trials=1)
    world.tick()
    world.tick()
    watch = world.watch()
    for _ in range(4):
        world.sample("on", {0: [0.0]}, dt=0.0)
        world.sample("off", {0: [0.0]})
        world.watch(watch)
    assert world.running("on")[0].gpu_idle_flagged
    assert not world.running("off")[0].gpu_idle_flagged


def test_a_pass_reads_only_new_samples_in_one_query(engine: Engine, tmp_path: Path) -> None:
    world = World(engine)
    add_sweep(world.store, tmp_path, "q", 'idle_warning = "1h"\ninterval = 1', trials=20)
    world.tick()
    world.tick()
    watch = world.watch()
    for _ in range(50):
        world.sample("q", {i: [50.0, 0.0] for i in range(20)})
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        world.watch(watch)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    reads = [s for s in statements if "gpu_samples" in s]
    assert len(reads) == 2, reads  # the cursor's top id, and the new samples
    assert not any("UPDATE" in s for s in statements)  # nothing changed: nothing written
    with world.store.read() as conn:
        seen = conn.execute(select(GpuSample.__table__.c.id)).all()
    assert watch._last_id == max(r[0] for r in seen)


def test_the_watch_runs_at_most_every_few_seconds(engine: Engine, tmp_path: Path) -> None:
    world = World(engine)
    add_sweep(world.store, tmp_path, "slow", 'idle_warning = "30m"', trials=1)
    world.tick()
    world.tick()
    watch = world.watch()
    assert watch._next_at == world.clock + gpu_idle.WATCH_EVERY


# -- where the policy comes from ------------------------------------------------------------


def test_the_sweep_file_keys_are_checked_with_clear_errors() -> None:
    base = 'name = "a"\ncommand = "true"\n[params]\nx = [1]\n[gpu]\n'
    spec = parse_sweep(base + 'idle_warning = "1h30m"\nidle_threshold = 2.5\nidle_action = "stop"')
    assert spec.gpu == GpuConfig(10.0, 5400.0, 2.5, "stop")
    assert parse_sweep(base + "idle_warning = false").gpu.idle_warning_seconds == 0.0
    for bad, why in [
        ("idle_threshold = 0", "gpu.idle_threshold: expected a number > 0"),
        ("idle_threshold = 120", "gpu.idle_threshold: expected a percentage <= 100"),
        ('idle_action = "kill"', 'gpu.idle_action: expected "warn" or "stop"'),
        ('idle_warning = "soon"', "gpu.idle_warning: expected a duration"),
    ]:
        with pytest.raises(SpecError, match=why):
            parse_sweep(base + bad)


def test_the_config_file_gpu_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[gpu]\nidle_warning = "30m"\nidle_action = "stop"\n')
    assert read_config(path).gpu == GpuConfig(idle_warning_seconds=1800.0, idle_action="stop")
    path.write_text("[gpu]\ninterval = 3\n")  # the sampling interval is the sweep's own
    with pytest.raises(ConfigError, match=r"config.toml: gpu.interval: unknown key"):
        read_config(path)
    path.write_text("[gpu]\nidle_threshold = -1\n")
    with pytest.raises(ConfigError, match=r"gpu.idle_threshold: expected a number > 0"):
        read_config(path)
