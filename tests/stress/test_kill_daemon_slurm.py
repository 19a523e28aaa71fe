"""The daemon-SIGKILL loop of test_kill_daemon.py, against the real local Slurm (issue 8).

Same chaos, same audit (every trial in one final state, every attempt run once,
every metric line stored once, transition logs consistent), with the sweeps on the
``slurm`` driver of a real slurmctld/slurmd (tests/drivers/conftest.py's ``slurm``
fixture). On top, every ``sbatch`` goes through a counting shim on the daemon's PATH
that records the job id it printed: each array task Slurm was given must be the job of
exactly one attempt -- a daemon killed between ``sbatch`` and recording its job id finds
the job again by name instead of submitting it twice.

Bounded for CI (10 kills, ~2 minutes: Slurm starts a job in about a second);
``CLUSTERD_STRESS_SLURM_KILLS`` scales it, ``CLUSTERD_STRESS_SEED`` replays a seed.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.drivers.conftest import slurm  # noqa: F401  (the fixture: a running one-node Slurm)
from tests.stress import test_kill_daemon as chaos_mod
from tests.stress.test_kill_daemon import SEED, Chaos, audit

KILLS = int(os.environ.get("CLUSTERD_STRESS_SLURM_KILLS") or 10)

SBATCH_SHIM = """\
#!/bin/bash
# counting shim: run the real sbatch, log its arguments and what it printed -- the log
# first: if the daemon was killed meanwhile, printing to its closed pipe kills the shim
out=$({real} "$@")
rc=$?
echo "rc=$rc out=$out args=$*" >>{log}
printf '%s\\n' "$out"
exit $rc
"""


class SlurmChaos(Chaos):
    """The stress test's chaos, with sweeps on the slurm driver."""

    def sweep_file(self, name: str) -> Path:
        path = super().sweep_file(name)
        text = path.read_text().replace('driver = "local"', 'driver = "slurm"')
        text += '[resources]\ncpus = 1\nmemory = "100M"\n[drivers.slurm]\npoll_interval = 1\n'
        path.write_text(text)
        return path


def shim_sbatch(root: Path) -> Path:
    """A PATH directory whose sbatch logs each call to ``root/sbatch.log``."""
    bindir = root / "shims"
    bindir.mkdir()
    real = shutil.which("sbatch")
    assert real is not None, "sbatch is not on PATH"
    shim = bindir / "sbatch"
    shim.write_text(SBATCH_SHIM.format(real=real, log=root / "sbatch.log"))
    shim.chmod(0o755)
    return bindir


def submitted_tasks(log: Path) -> Counter[str]:
    """Every array task ("<job>_<index>") the successful sbatch calls created."""
    tasks: Counter[str] = Counter()
    for line in log.read_text().splitlines() if log.exists() else []:
        m = re.match(r"rc=0 out=(\d+)\S* args=.*--array=(\S+)", line)
        if not m:
            continue
        job, spec = m.group(1), m.group(2).split("%")[0]
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            for index in range(int(lo), int(hi or lo) + 1):
                tasks[f"{job}_{index}"] += 1
    return tasks


@pytest.mark.timeout(300 + 20 * KILLS)
def test_daemon_killed_at_random_on_slurm_submits_nothing_twice(
    slurm: None,  # noqa: F811
    stopped_daemon: Daemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t0 = time.monotonic()
    monkeypatch.setattr(chaos_mod, "KILLS", KILLS)  # Chaos sizes its work by the kills
    bindir = shim_sbatch(tmp_path)
    stopped_daemon.env["PATH"] = f"{bindir}{os.pathsep}{stopped_daemon.env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    chaos = SlurmChaos(stopped_daemon, work, random.Random(SEED))
    with capsys.disabled():
        print(f"\nstress/slurm: seed {SEED}, {KILLS} daemon kills (CLUSTERD_STRESS_SEED={SEED})")
    try:
        while chaos.fig.daemon_kills < KILLS:
            chaos.one_round()
        chaos.drain(timeout=240 + 10 * KILLS)
        audit(chaos)
        tasks = submitted_tasks(tmp_path / "sbatch.log")
        db = sqlite3.connect(f"file:{chaos.db}?mode=ro", uri=True)
        try:
            job_ids = [r[0] for r in db.execute("select job_id from attempts")]
        finally:
            db.close()
        twice = {t: n for t, n in tasks.items() if n > 1}
        assert not twice, f"array tasks created twice: {twice}"
        assert all(j and "_" in j for j in job_ids), job_ids
        assert len(set(job_ids)) == len(job_ids), "two attempts share a Slurm job"
        orphans = set(tasks) - set(job_ids)
        assert not orphans, f"Slurm jobs no attempt knows (submitted twice?): {sorted(orphans)}"
        assert set(job_ids) <= set(tasks), "an attempt's job id was never printed by sbatch"
    except BaseException as exc:
        keep = Path(tempfile.mkdtemp(prefix=f"clusterd-stress-slurm-{SEED}-"))
        shutil.copytree(tmp_path, keep / "work", symlinks=True, ignore=_no_socket)
        shutil.copytree(stopped_daemon.home, keep / "home", ignore=_no_socket)
        raise AssertionError(
            f"stress/slurm failed with CLUSTERD_STRESS_SEED={SEED} after "
            f"{chaos.fig.daemon_kills} daemon kills (files kept in {keep}): {exc}"
        ) from exc
    finally:
        jobs = sorted({task.split("_")[0] for task in submitted_tasks(tmp_path / "sbatch.log")})
        if jobs:  # nothing of ours left on the cluster, whatever happened
            subprocess.run(["scancel", *jobs], capture_output=True, check=False, timeout=60)
    fig = chaos.fig
    sbatch_calls = len((tmp_path / "sbatch.log").read_text().splitlines())
    with capsys.disabled():
        print(
            f"stress/slurm: seed {SEED}: survived {fig.daemon_kills} daemon kills "
            f"({fig.startup_kills} during start-up, {fig.submit_kills} during a submit) and "
            f"{fig.trial_kills} trial kills; {fig.trials} trials {dict(fig.states)}, "
            f"{fig.attempts} attempts = {len(tasks)} Slurm array tasks from {sbatch_calls} "
            f"sbatch calls, duplicate submissions 0; {fig.metric_lines} metric lines = "
            f"{fig.metric_rows} rows checked; duplicate runs {fig.duplicate_runs}; "
            f"wall {time.monotonic() - t0:.0f} s"
        )


def _no_socket(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n.endswith(".sock")]
