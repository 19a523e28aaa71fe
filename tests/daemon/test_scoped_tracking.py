"""One sweep's unwritable files never stop the tracking of another sweep's jobs (#13).

An attempt left 'submitting' (its submit failed, or the daemon crashed before the commit)
is found or resubmitted on a later pass, which writes its launch.json again. On a full
disk that write fails: the sweep must back off alone, while the same driver's other jobs
are still polled. (A CI run found the whole local driver's tracking stuck behind it.)
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from clusterd.daemon import db
from clusterd.daemon import scheduler as scheduler_module
from clusterd.daemon.scheduler import DriverSet, Scheduler
from clusterd.daemon.store import Store
from clusterd.drivers.base import JobRequest
from clusterd.errors import DriverError
from clusterd.spec import parse_sweep
from clusterd.spec.expand import expand, params_key
from clusterd.testing.fake_driver import FakeDriver


def add_sweep(store: Store, tmp_path: Path, name: str) -> None:
    text = (
        f'name = "{name}"\ncommand = "true"\ndriver = "fake"\n'
        f'output_dir = "{tmp_path / name}"\n[params]\nx = [1, 2]\n'
        "[drivers.fake]\nsteps_queued = 1\nsteps_running = 1\n"
    )
    spec = parse_sweep(text, source=str(tmp_path / f"{name}.toml"), base_dir=str(tmp_path))
    store.create_sweep(spec.to_dict(), [(p, params_key(p)) for p in expand(spec)], None)


def trial_states(store: Store, sweep: str) -> list[str]:
    with store.read() as conn:
        return [t.state for t in store.trials(conn, store.sweep_by_name(conn, sweep).id)]


def test_a_full_disk_on_a_resubmit_stops_only_its_own_sweep(
    make_sqlite_engine: Callable[..., Engine],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeDriver.reset()
    engine = make_sqlite_engine()
    db.upgrade(engine)
    store = Store(engine)
    add_sweep(store, tmp_path, "stuck")
    add_sweep(store, tmp_path, "healthy")

    real_submit = FakeDriver.submit

    def submit_refusing_stuck(self: FakeDriver, jobs: Sequence[JobRequest]) -> dict[str, str]:
        if any(job.sweep == "stuck" for job in jobs):
            raise DriverError("fake: the controller did not answer")  # rows stay 'submitting'
        return real_submit(self, jobs)

    real_write = scheduler_module.write_attempt_launch

    def write_on_a_full_disk(sweep: Any, *args: Any) -> str | None:
        if sweep.name == "stuck":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(sweep, *args)

    monkeypatch.setattr(FakeDriver, "submit", submit_refusing_stuck)
    scheduler = Scheduler(store, DriverSet({"fake": FakeDriver}, lambda: None))
    asyncio.run(scheduler.tick())  # both sweeps launch; stuck's submit fails
    assert "stuck" in scheduler.troubles

    monkeypatch.setattr(scheduler_module, "write_attempt_launch", write_on_a_full_disk)
    for _ in range(6):
        scheduler.troubles.clear()  # its backoff is over: the resubmit is tried every pass
        scheduler._poll_now = True
        asyncio.run(scheduler.tick())

    assert trial_states(store, "healthy") == ["completed", "completed"]
    assert "No space left on device" in scheduler.troubles["stuck"].reason
    assert trial_states(store, "stuck") == ["queued", "queued"]
    assert scheduler.health["fake"].last_error is None  # its polls never failed
