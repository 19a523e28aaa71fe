"""Two daemons on one database, a SIGSTOP between them: no attempt runs twice.

Each round pauses the daemon that schedules (SIGSTOP) while its trials run, starts a
second daemon on the same database once the lease's ttl is over (it takes the lease
over), then lets the paused one continue (SIGCONT). The woken daemon must write
nothing more and exit; the new one carries on. At the end the audit reads the database
and the attempt dirs: every attempt ran once (one runner "starting" line) and no metric
row is stored twice.

``CLUSTERD_STRESS_FENCE_ROUNDS`` (default 3, ~20 s; the issue asks for >= 20) sets the
rounds, ``CLUSTERD_STRESS_SEED`` the seed. See docs/reliability.md.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, process_gone, wait_for

ROUNDS = int(os.environ.get("CLUSTERD_STRESS_FENCE_ROUNDS") or 3)
SEED = int(os.environ.get("CLUSTERD_STRESS_SEED") or random.SystemRandom().randrange(1 << 32))
TTL = 2.0

TRIAL = textwrap.dedent(
    """
    import os
    import time
    from clusterd import trial

    # one line per run of an attempt, whoever started it (a refused second runner never
    # runs this script, and never writes to the first runner's runner.log either)
    with open(os.path.join(os.environ["CLUSTERD_TRIAL_DIR"], "runs.txt"), "a") as fh:
        fh.write(os.environ["CLUSTERD_ATTEMPT"] + "\\n")
    for step in range(150):
        trial.report(step, loss=1.0 / (step + 1))
        time.sleep(0.005)
    """
)


@pytest.fixture
def shared() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cd-fence-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def daemon_on(home: Path, db: Path) -> Daemon:
    d = Daemon(home)
    d.env["CLUSTERD_DB_URL"] = f"sqlite:///{db}"
    d.env["CLUSTERD_LEASE_TTL"] = str(TTL)
    return d


def start_when_lease_free(d: Daemon) -> None:
    """``clusterd start`` is refused while the paused daemon's lease is fresh: retry."""
    wait_for(lambda: d.clusterd("start", check=False).returncode == 0, 30, "the lease")


def test_a_paused_daemon_that_lost_its_lease_never_runs_an_attempt_twice(shared: Path) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}, rounds {ROUNDS}")
    db = shared / "clusterd.db"
    daemons = [daemon_on(shared / "h1", db), daemon_on(shared / "h2", db)]
    (shared / "trial.py").write_text(TRIAL)
    sweep = shared / "sweep.toml"
    sweep.write_text(
        f'name = "fence"\ncommand = ["{sys.executable}", "trial.py"]\nmax_concurrent = 3\n'
        f"[params]\nx = {list(range(3 * ROUNDS + 3))}\n"
    )
    current = daemons[0]
    current.start()
    halts = 0
    try:
        current.ctl("submit", str(sweep), cwd=shared)
        for round_ in range(ROUNDS):
            time.sleep(rng.uniform(0.1, 1.0))
            old, new = current, daemons[(round_ + 1) % 2]
            old_pid = old.pid
            os.kill(old_pid, signal.SIGSTOP)
            try:
                start_when_lease_free(new)
                time.sleep(rng.uniform(0.0, 0.5))
            finally:
                os.kill(old_pid, signal.SIGCONT)
            gone = functools.partial(process_gone, old_pid)
            wait_for(gone, 30, f"daemon {old_pid} to halt")
            assert "lost its lease" in old.log(), (
                f"seed {SEED}: round {round_}: {old.log()[-2000:]}"
            )
            halts += 1
            current = new
        trials = current.wait_sweep_done("fence", timeout=120)
    finally:
        for d in daemons:
            d.stop()
    # The woken daemon's local driver asks the lease before it starts a queued job
    # (db.may_launch), so no trial is lost to a second launch either: all complete.
    not_completed = [
        (t["index"], t["state"], t["reason"]) for t in trials if t["state"] != "completed"
    ]
    assert not_completed == [], (SEED, not_completed)

    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = ro.execute(
        'SELECT s.output_dir, t."index", a.number FROM attempts a '
        "JOIN trials t ON a.trial_id = t.id JOIN sweeps s ON t.sweep_id = s.id"
    ).fetchall()
    duplicates = ro.execute(
        "SELECT COUNT(*) - COUNT(DISTINCT trial_id || '/' || attempt || '/' || step || '/' || name)"
        " FROM metrics"
    ).fetchone()[0]
    ro.close()
    runs_twice = []
    for output_dir in {row[0] for row in rows}:
        for runs in Path(output_dir).glob("*/runs.txt"):
            numbers = runs.read_text().split()
            if len(numbers) != len(set(numbers)):
                runs_twice.append(f"{runs}: {numbers}")
    print(
        f"rounds {ROUNDS}: {halts} halts, {len(rows)} attempts, {len(runs_twice)} ran twice, "
        f"{duplicates} duplicate metric rows"
    )
    assert halts == ROUNDS
    assert runs_twice == [], f"seed {SEED}: attempts ran twice: {runs_twice}"
    assert duplicates == 0, f"seed {SEED}: {duplicates} metric rows stored twice"
