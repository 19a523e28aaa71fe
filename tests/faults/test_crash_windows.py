"""The daemon SIGKILLed at chosen instants, not random ones (tests/stress does those).

A ``sitecustomize`` on the daemon's PYTHONPATH wraps one function of the daemon and
SIGKILLs the process right before or after its first call (once: a marker file
remembers it). The next ``clusterd start`` must finish the sweep with every attempt run
exactly once, every metric line stored exactly once and one final transition per trial.
The instants are the windows of write-ahead submission and ingestion (principle 1):

* the attempt row is committed, the driver was never called;
* the driver started the job, the database never learned its job id;
* the job was spawned, job.json still says "starting";
* ingested rows were inserted, their transaction never committed;
* an attempt was ended and its trial moved on, uncommitted;
* job.json says "starting", the runner was never spawned: the restarted driver wins
  the spawn's claim and queues the job again.
"""

from __future__ import annotations

import itertools
import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_for
from tests.faults.conftest import alive, metrics_exactly_once, query, sweep_state, write_sweep

INJECT = textwrap.dedent(
    '''
    """Test fault injection (tests/faults/test_crash_windows.py): SIGKILL the daemon at
    one function's call, once."""
    import os
    import sys

    def _install(spec, marker):
        import asyncio
        import importlib
        import signal

        module_name, qualname, when = spec.split(":")
        module = importlib.import_module(module_name)
        owner_name, _, name = qualname.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        original = getattr(owner, name)

        def crash():
            if not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(qualname)
                os.kill(os.getpid(), signal.SIGKILL)

        def after(result):
            if when == "after" or (when == "after_lines" and getattr(result, "lines", 0)):
                crash()
            return result

        if asyncio.iscoroutinefunction(original):
            async def wrapper(*args, **kwargs):
                if when == "before":
                    crash()
                return after(await original(*args, **kwargs))
        else:
            def wrapper(*args, **kwargs):
                if when == "before":
                    crash()
                return after(original(*args, **kwargs))

        setattr(owner, name, wrapper)

    if "--foreground" in sys.argv and os.environ.get("CLUSTERD_TEST_CRASH"):
        _install(os.environ["CLUSTERD_TEST_CRASH"], os.environ["CLUSTERD_TEST_CRASH_MARKER"])
    '''
)

TRIALS = 2
STEPS = 30


def crash_once(daemon: Daemon, tmp_path: Path, where: str) -> Path:
    """Start the daemon armed to die at ``where``, submit a sweep, wait for the death."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT)
    marker = tmp_path / "crashed"
    daemon.env["PYTHONPATH"] = f"{inject}{os.pathsep}{daemon.env['PYTHONPATH']}"
    daemon.env["CLUSTERD_TEST_CRASH"] = where
    daemon.env["CLUSTERD_TEST_CRASH_MARKER"] = str(marker)
    daemon.start()
    pid = daemon.pid
    daemon.ctl("submit", str(write_sweep(tmp_path, "cw", trials=TRIALS, steps=STEPS)))
    wait_for(lambda: marker.exists() and not alive(pid), 30, f"the crash at {where}")
    return marker


def audit(daemon: Daemon, tmp_path: Path) -> None:
    db = daemon.home / "clusterd.db"
    wait_for(lambda: sweep_state(db, "cw") == "done", 60, "the sweep to finish")
    rows = query(db, 'select "index", state, attempts, failures from trials order by "index"')
    assert rows == [(i, "completed", 1, 0) for i in range(TRIALS)], rows
    out = tmp_path / "runs" / "cw"
    for i in range(TRIALS):
        adir = out / str(i) / "attempt-1"
        starts = (adir / "runner.log").read_text().count(": starting [")
        assert starts == 1, f"{adir}: the runner started {starts} times"
        assert json.loads((adir / "status.json").read_text())["exit_code"] == 0
    assert metrics_exactly_once(db, out) == TRIALS * STEPS
    log = query(db, "select trial_id, from_state, to_state from transitions order by id")
    for trial_id in {t for t, _, _ in log}:
        chain = [(a, b) for t, a, b in log if t == trial_id]
        assert all(x[1] == y[0] for x, y in itertools.pairwise(chain)), chain
        assert [b for _, b in chain].count("completed") == 1 and chain[-1][1] == "completed"


@pytest.mark.parametrize(
    "where",
    [
        "clusterd.daemon.scheduler:Scheduler._send:before",
        "clusterd.drivers.local:LocalDriver.submit:after",
        "clusterd.drivers.local:LocalDriver._track:before",
        "clusterd.daemon.scheduler:ingest_attempt:after_lines",
        "clusterd.daemon.scheduler:Scheduler._end:after",
    ],
    ids=["written-not-sent", "sent-not-recorded", "spawned-not-recorded", "ingested", "ended"],
)
def test_killed_in_a_window_runs_everything_once(
    stopped_daemon: Daemon, tmp_path: Path, where: str
) -> None:
    crash_once(stopped_daemon, tmp_path, where)
    stopped_daemon.start()
    audit(stopped_daemon, tmp_path)


def test_killed_between_starting_and_spawn_runs_the_attempt(
    stopped_daemon: Daemon, tmp_path: Path
) -> None:
    """Once lost 60 s later as 'lost' (a failure); now run at once, exactly once."""
    from clusterd.drivers.local import LocalDriver

    spawn = "_fork" if hasattr(LocalDriver, "_fork") else "_popen"  # fork server, or Popen
    crash_once(stopped_daemon, tmp_path, f"clusterd.drivers.local:LocalDriver.{spawn}:before")
    adir = tmp_path / "runs" / "cw" / "0" / "attempt-1"
    assert json.loads((adir / "job.json").read_text())["state"] == "starting"
    assert not (adir / "driver.log").exists()
    stopped_daemon.start()
    wait_for(lambda: (adir / "runner.log").exists(), 5, "the attempt to run after the restart")
    audit(stopped_daemon, tmp_path)


def test_a_claimed_spawn_is_never_forked(tmp_path: Path) -> None:
    """The race the claim closes: a dead daemon's request still in the fork server's pipe
    while the next daemon re-queues the job. Whoever claims the spawn id first wins."""
    import sys

    from clusterd.drivers.local.forkserver import ForkServerClient, claim_spawn

    ran = tmp_path / "ran"
    argv = [sys.executable, "-c", f"open({str(ran)!r}, 'a').write('x')"]
    log = str(tmp_path / "driver.log")
    server = ForkServerClient()
    try:
        assert claim_spawn(str(tmp_path), "ab12")  # the restarted driver won
        with pytest.raises(OSError, match="claimed already"):
            server.spawn(argv, dict(os.environ), str(tmp_path), log, "ab12")
        server.spawn(argv, dict(os.environ), str(tmp_path), log, "cd34")  # a fresh spawn
        wait_for(ran.exists, 10, "the fresh spawn to run")
        with pytest.raises(OSError, match="claimed already"):  # the same id again
            server.spawn(argv, dict(os.environ), str(tmp_path), log, "cd34")
        assert not claim_spawn(str(tmp_path), "cd34")
    finally:
        server.close()
    wait_for(lambda: ran.read_text() == "x", 5, "the file")
    assert ran.read_text() == "x"
