"""Ingestion at the edges and figures that are right, through the real daemon (local driver).

A trial that reports 300,000 steps (35 MB) keeps all of them, also when the daemon is
killed while it writes; a 50 MB line is one error and every line after it is kept; a
retry from scratch does not count the discarded attempt's metrics for "best".
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

from tests.conftest import Daemon, process_gone, wait_for

STEPS = 300_000


def sweep_file(tmp_path: Path, name: str, script: str, extra: str = "") -> Path:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(script))
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = ["{sys.executable}", "{name}.py"]\n'
        f'[metric]\nname = "validation_loss"\nmode = "min"\n[params]\nx = [1]\n{extra}'
    )
    return path


def metric_counts(daemon: Daemon) -> tuple[int, int, int]:
    db = sqlite3.connect(f"file:{daemon.home / 'clusterd.db'}?mode=ro", uri=True)
    try:
        rows, steps = db.execute("select count(*), count(distinct step) from metrics").fetchone()
        errors = db.execute("select count(*) from trial_errors").fetchone()[0]
        return rows, steps, errors
    finally:
        db.close()


BIG = f"""
    from clusterd import trial
    for s in range({STEPS}):
        trial.report(s, validation_loss=1.0 / (s + 1))
"""


def test_an_attempt_that_reports_300k_steps_keeps_them_all(daemon: Daemon, tmp_path: Path) -> None:
    daemon.ctl("submit", str(sweep_file(tmp_path, "big", BIG)))
    trials = daemon.wait_sweep_done("big", timeout=300)
    assert trials[0]["state"] == "completed" and trials[0]["last_step"] == STEPS - 1
    events = tmp_path / "runs" / "big" / "0" / "attempt-1" / "events.jsonl"
    assert events.stat().st_size > 30_000_000  # the old code kept 2 x 8 MB of the end
    assert metric_counts(daemon) == (STEPS, STEPS, 0)


def test_300k_steps_written_while_the_daemon_is_down_are_kept_once(
    daemon: Daemon, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = f"""
        import os, time
        from clusterd import trial
        for s in range(10_000):
            trial.report(s, validation_loss=1.0 / (s + 1))
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        for s in range(10_000, {STEPS}):
            trial.report(s, validation_loss=1.0 / (s + 1))
    """
    daemon.ctl("submit", str(sweep_file(tmp_path, "down", script)))
    wait_for(lambda: (daemon.trials("down")[0]["last_step"] or 0) >= 9_999, 60, "first lines")
    pid = daemon.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), 10, "the kill")
    go.touch()
    status = tmp_path / "runs" / "down" / "0" / "attempt-1" / "status.json"
    wait_for(status.exists, 120, "the trial to end while the daemon is down")
    daemon.start()
    trials = daemon.wait_sweep_done("down", timeout=300)
    assert (trials[0]["state"], trials[0]["last_step"]) == ("completed", STEPS - 1)
    assert metric_counts(daemon) == (STEPS, STEPS, 0)  # all, once, no "truncated" error


def test_a_50_mb_line_is_one_error_and_the_lines_after_it_are_kept(
    daemon: Daemon, tmp_path: Path
) -> None:
    script = """
        import json, os
        def line(s):
            values = {"validation_loss": 1.0}
            return json.dumps({"type": "metric", "step": s, "values": values}) + "\\n"
        with open(os.environ["CLUSTERD_EVENTS"], "a") as fh:
            fh.writelines(line(s) for s in range(1000))
            fh.write('{"type": "metric", "step": 1000, "values": {}, "junk": "')
            for _ in range(50):
                fh.write("z" * (1 << 20))
            fh.write('"}\\n')
            fh.writelines(line(s) for s in range(1001, 2000))
    """
    daemon.ctl("submit", str(sweep_file(tmp_path, "long", script)))
    trials = daemon.wait_sweep_done("long", timeout=120)
    assert trials[0]["state"] == "completed" and trials[0]["last_step"] == 1999
    assert metric_counts(daemon) == (1999, 1999, 1)
    errors = daemon.ctl_json("show", "long/0")["errors"]
    assert len(errors) == 1 and "longer than 1 MiB" in errors[0]["message"], errors


def test_best_counts_only_the_lineage_that_produced_the_result(
    daemon: Daemon, tmp_path: Path
) -> None:
    """x=0: 100*attempt + step, attempt 1 crashes at step 5, the retry starts from
    scratch: best is 200 (attempt 2), not 100. x=1: attempt 1 checkpoints at step 3,
    then reports -1000 at steps 4..6 and crashes; attempt 2 resumes from step 3: the
    values up to the checkpoint count (best 7 at step 3), the superseded ones do not."""
    script = """
        import os, sys
        from clusterd import trial
        attempt = int(os.environ["CLUSTERD_ATTEMPT"])
        if trial.params()["x"] == 0:
            for s in range(10):
                trial.report(s, validation_loss=100.0 * attempt + s)
                if attempt == 1 and s == 5:
                    sys.exit(1)
        else:
            ckpt = trial.last_checkpoint()
            for s in range(ckpt.step + 1 if ckpt else 0, 10):
                late = -1000.0 if attempt == 1 else 100.0 + s  # after the checkpoint
                trial.report(s, validation_loss=10.0 - s if s <= 3 else late)
                if s == 3 and ckpt is None:
                    path = os.path.join(trial.checkpoint_dir(), "c3")
                    open(path, "w").close()
                    trial.checkpoint(path, 3)
                if attempt == 1 and s == 6:
                    sys.exit(1)
    """
    path = sweep_file(tmp_path, "lineage", script, "[retry]\nmax_failures = 1\n")
    path.write_text(path.read_text().replace("x = [1]", "x = [0, 1]"))
    daemon.ctl("submit", str(path))
    trials = daemon.wait_sweep_done("lineage", timeout=120)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 2)] * 2
    want = {0: (200.0, 0), 1: (7.0, 3)}
    assert {t["index"]: (t["best_value"], t["best_step"]) for t in trials} == want
    for i in (0, 1):
        show = daemon.ctl_json("show", f"lineage/{i}")
        assert (show["best_value"], show["best_step"]) == want[i]
    best = daemon.ctl_json("best", "lineage", "-n", "2")["trials"]
    assert [(b["best"], b["best_step"]) for b in best] == [want[1], want[0]]
    rows = list(csv.DictReader(io.StringIO(daemon.ctl("export", "lineage").stdout)))
    best_of = {
        int(r["index"]): (float(r["validation_loss_best"]), int(r["best_step"])) for r in rows
    }
    assert best_of == want


def test_an_attempts_runtime_is_the_runners(daemon: Daemon, tmp_path: Path) -> None:
    script = """
        import time
        time.sleep(2.5)
    """
    daemon.ctl("submit", str(sweep_file(tmp_path, "rt", script)))
    daemon.wait_sweep_done("rt", timeout=60)
    attempt = daemon.ctl_json("show", "rt/0")["attempt_list"][0]
    status = json.loads((tmp_path / "runs" / "rt" / "0" / "attempt-1" / "status.json").read_text())
    assert abs(attempt["runtime"] - (status["ended_at"] - status["started_at"])) < 1.0
    assert abs(attempt["started_at"] - status["started_at"]) < 1.0
