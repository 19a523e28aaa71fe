"""The daemon on PBS, end to end, in both dialects (PBS Pro / OpenPBS and Torque).

No PBS server runs here, so the real daemon talks to the stand-in ``qsub``/``qstat``/
``qdel``/``qrls`` of ``tests/standins/pbs`` (real processes, recorded real output
formats; the jobs are real processes). Each test runs once per dialect; sweeps poll
every 0.4 s. The stand-in counts every command it is asked, so the tests say how many
``qsub``/``qdel`` calls a user's actions cost.

The tests of a running daemon share one daemon and stand-in per dialect (``served``:
starting and stopping a daemon costs ~2.7 s); each clears the stand-in's call log first
and looks only at its own sweep and jobs. The crash test has its own (it kills it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterd.testing.daemon import short_home
from clusterd.testing.instrument import CRASH_ENV, install, read_events
from tests.conftest import REPO, Daemon, process_gone, wait_for
from tests.standins.engine import Job
from tests.standins.pbs.fixture import PbsStandIn, pbs, pbs_standin
from tests.standins.pbs.site import FLAVORS

__all__ = ["pbs"]  # the fixture

#: seconds between polls (a stand-in qstat costs ~0.1 s of CPU: not much shorter on 2 cores)
POLL_INTERVAL = 0.4
HELD = "job held, too many failed attempts to run"  # PBS Pro's words (Aurora capture)

#: a trial that waits while its sweep dir holds a "hold" file
WAITER = """\
import sys, time
from pathlib import Path
while (Path(sys.argv[1]) / "hold").exists():
    time.sleep(0.1)
"""


@pytest.fixture
def pbs_daemon(pbs: PbsStandIn, stopped_daemon: Daemon) -> Iterator[Daemon]:
    """A daemon (not started) whose PATH finds the stand-in, with the PBS driver loaded."""
    stopped_daemon.env.update(pbs.daemon_env())
    yield stopped_daemon
    if stopped_daemon.running():
        stopped_daemon.cancel_everything()


@pytest.fixture(scope="module", params=FLAVORS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[PbsStandIn, Daemon]]:
    """A stand-in of one dialect and a running daemon on it, for a module's tests."""
    with pbs_standin(request.param) as server, pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        daemon = Daemon(short_home())
        daemon.env.update(server.daemon_env())
        daemon.start()
        try:
            yield server, daemon
        finally:
            try:
                daemon.cancel_everything()
            finally:
                daemon.stop()
                shutil.rmtree(daemon.home.parent, ignore_errors=True)


@pytest.fixture
def shared(served: tuple[PbsStandIn, Daemon]) -> tuple[PbsStandIn, Daemon]:
    """``served``, its stand-in's call log cleared for this test."""
    served[0].engine.clear_calls()
    return served


def jobs_of(pbs: PbsStandIn, name: str) -> list[Job]:
    """The stand-in's jobs of the sweep ``name`` (batch names are ``cd.<sweep>.<random>``)."""
    return [job for job in pbs.engine.jobs() if job.name.startswith(f"cd.{name}.")]


def quickstart(tmp_path: Path) -> Path:
    """examples/quickstart on PBS: 2 trials, each checkpoints halfway and resumes."""
    example = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", example)
    sweep = (example / "sweep.toml").read_text()
    sweep = sweep.replace('driver = "local"', 'driver = "pbs"')
    sweep = sweep.replace(
        'command = "python3 train.py"', f'command = ["{sys.executable}", "train.py"]'
    )
    sweep = sweep.replace("lr = [0.1, 0.01, 0.001]", "lr = [0.1]")
    sweep += '\n[resources]\ncpus = 1\nmemory = "200M"\n'
    sweep += f"[drivers.pbs]\npoll_interval = {POLL_INTERVAL}\n"
    (example / "sweep.toml").write_text(sweep)
    return example / "sweep.toml"


def waiting_sweep(tmp_path: Path, name: str, trials: int, *, hold: bool = True) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "trial.py").write_text(WAITER)
    if hold:
        (root / "hold").touch()
    (root / "sweep.toml").write_text(
        f'name = "{name}"\ncommand = ["{sys.executable}", "trial.py", "{root}"]\n'
        f'driver = "pbs"\nmax_concurrent = {trials}\n'
        f"[params]\ni = {list(range(trials))}\n"
        '[resources]\ncpus = 1\nmemory = "100M"\n[retry]\nmax_failures = 0\n'
        f"[drivers.pbs]\npoll_interval = {POLL_INTERVAL}\n"
    )
    return root / "sweep.toml"


def job_ids(daemon: Daemon, sweep: str, trials: int) -> list[str]:
    return [
        a["job_id"]
        for index in range(trials)
        for a in daemon.ctl_json("show", f"{sweep}/{index}")["attempt_list"]
    ]


def test_quickstart_runs_to_the_end_with_its_resume(
    shared: tuple[PbsStandIn, Daemon], tmp_path: Path
) -> None:
    pbs, daemon = shared
    daemon.ctl("submit", str(quickstart(tmp_path)))
    trials = daemon.wait_sweep_done("quickstart", timeout=60)
    assert [(t["state"], t["attempts"], t["resumes"]) for t in trials] == [("completed", 2, 1)] * 2
    show = daemon.ctl_json("show", "quickstart/0")
    assert show["metrics"]["val_loss"]["step"] == 19
    first, second = show["attempt_list"]
    server = pbs.site.server
    assert first["job_id"].endswith(f"].{server}") and "[" in first["job_id"], first["job_id"]
    assert first["job_id"] != second["job_id"] and first["host"]
    assert len(pbs.calls("qsub")) <= 3  # the first attempts together, the resumes after
    array = ["-J", "0-1"] if pbs.site.pro else ["-t", "0-1"]
    assert any(pbs.calls("qsub")[0][i : i + 2] == array for i in range(20)), pbs.calls("qsub")
    status = daemon.clusterd("status").stdout
    assert "driver    pbs: last poll" in status, status


def test_a_held_job_shows_its_reason_and_runs_once_released(
    shared: tuple[PbsStandIn, Daemon], tmp_path: Path
) -> None:
    """PBS held the job (the server's reason in its ``comment``): the trial stays queued
    showing that reason; the driver never releases it (docs/pbs.md), the user does."""
    pbs, daemon = shared
    pbs.engine.set_auto(hold_next=HELD)
    daemon.ctl("submit", str(waiting_sweep(tmp_path, "held", 1, hold=False)))

    def shown() -> str | None:
        (trial,) = daemon.ctl_json("trials", "held")
        return trial.get("waiting_for") if trial["state"] == "queued" else None

    assert HELD in wait_for(shown, 30, "the hold's reason in clusterctl trials")
    assert HELD in daemon.ctl("trials", "held").stdout
    (attempt,) = daemon.ctl_json("show", "held/0")["attempt_list"]
    assert HELD in (attempt["reason"] or ""), attempt
    assert HELD in daemon.ctl("show", "held/0").stdout
    assert [job.state for job in jobs_of(pbs, "held")] == ["held"]  # held, not released
    assert pbs.calls("qrls") == []

    released = subprocess.run(
        ["qrls", attempt["job_id"]], env=pbs.env, capture_output=True, text=True, timeout=30
    )  # as the user would, from a shell with the PBS commands on PATH
    assert released.returncode == 0, released.stderr
    (trial,) = daemon.wait_sweep_done("held", timeout=60)
    assert (trial["state"], trial["attempts"]) == ("completed", 1)


def test_a_daemon_killed_between_submit_and_commit_submits_each_attempt_once(
    pbs: PbsStandIn, pbs_daemon: Daemon, tmp_path: Path
) -> None:
    """SIGKILLed right after ``submit`` returned (the jobs are in PBS, the database never
    learned their ids): the restarted daemon finds them by name -- one qsub in all, one
    job per attempt, every trial run once."""
    daemon = pbs_daemon
    events = tmp_path / "events"
    site = tmp_path / "site"
    marker = tmp_path / "crashed"
    daemon.env.update(install(site, "pbs", events))
    daemon.env["PYTHONPATH"] = f"{site}{os.pathsep}{daemon.env['PYTHONPATH']}"
    daemon.env[CRASH_ENV] = str(marker)
    daemon.start()
    pid = daemon.pid
    daemon.ctl("submit", str(waiting_sweep(tmp_path, "crash", 3, hold=False)))
    wait_for(lambda: marker.exists() and process_gone(pid), 30, "the kill after submit")
    assert len(pbs.calls("qsub")) == 1
    daemon.start()
    trials = daemon.wait_sweep_done("crash", timeout=60)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 3
    assert len(pbs.calls("qsub")) == 1  # nothing submitted twice
    jobs = pbs.engine.jobs()
    assert [(j.cluster, j.index, j.runs) for j in jobs] == [(1, i, 1) for i in range(3)]
    tokens = [t for submit in read_events(events).submits for t in submit]
    assert len(tokens) == len(set(tokens)) == 3  # each attempt handed to submit once
    server = pbs.site.server
    assert job_ids(daemon, "crash", 3) == [f"1[{i}].{server}" for i in range(3)]


def test_cancel_sends_one_qdel(shared: tuple[PbsStandIn, Daemon], tmp_path: Path) -> None:
    pbs, daemon = shared
    daemon.ctl("submit", str(waiting_sweep(tmp_path, "stop", 3)))
    wait_for(
        lambda: sum(t["state"] == "running" for t in daemon.trials("stop")) == 3, 30, "3 to run"
    )
    daemon.ctl("cancel", "stop")
    trials = daemon.wait_sweep_done("stop", timeout=60)
    assert [t["state"] for t in trials] == ["cancelled"] * 3
    calls = pbs.calls("qdel")
    assert len(calls) == 1, calls  # one qdel, with every id, and no second one
    assert sorted(calls[0]) == sorted(job_ids(daemon, "stop", 3)), calls
    assert [job.state for job in jobs_of(pbs, "stop")] == ["removed"] * 3
