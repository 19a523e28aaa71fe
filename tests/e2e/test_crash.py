"""Principle 1 in its simplest form: SIGKILL the daemon mid-sweep, start it again, lose nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

from tests.conftest import Daemon, process_gone, wait_for


def test_killed_daemon_readopts_running_trials_and_loses_no_metric(
    daemon: Daemon, tmp_path: Path
) -> None:
    (tmp_path / "t.py").write_text(
        textwrap.dedent(
            """
            import time
            from clusterd import trial
            for s in range(30):
                trial.report(s, loss=1.0 / (s + 1))
                time.sleep(0.1)
            """
        )
    )
    (tmp_path / "sweep.toml").write_text(
        f'name = "k"\ncommand = ["{sys.executable}", "t.py"]\nmax_concurrent = 3\n'
        '[metric]\nname = "loss"\n[params]\nx = [1, 2, 3, 4, 5, 6]\n'
    )
    daemon.ctl("submit", str(tmp_path / "sweep.toml"))
    wait_for(
        lambda: any((t["last_step"] or 0) >= 5 for t in daemon.trials("k")),
        30,
        "metrics to arrive",
    )
    pid = daemon.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), 10, "the kill")
    daemon.start()
    trials = daemon.wait_sweep_done("k")
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 6
    db = sqlite3.connect(daemon.home / "clusterd.db")
    rows = db.execute(
        "select trial_id, count(*), count(distinct step) from metrics group by trial_id"
    ).fetchall()
    db.close()
    assert [(n, d) for _, n, d in rows] == [(30, 30)] * 6  # every line, exactly once
