"""The runner's files are its own (principle 7) and its trial's processes end with it.

Real runner processes on real attempt dirs: an attempt dir runs once, launch.json is
read only when it is ours, the resume signal never kills a trial that did not ask for
it, and processes that left the group (setsid) are found and ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.node.launch import LaunchError, load_launch
from tests.conftest import wait_for
from tests.e2e.test_security import NOBODY, as_nobody, needs_root
from tests.test_runner import PY, Attempt, gone, python

SPAWN_ESCAPEE = """
    import os, subprocess, sys
    p = subprocess.Popen(["sleep", "300"], start_new_session=True)  # leaves the group
    with open(os.path.join(os.environ["CLUSTERD_ATTEMPT_DIR"], "escapee"), "w") as fh:
        fh.write(str(p.pid))
    print("ready", flush=True)
"""


def test_a_second_run_in_the_same_attempt_dir_is_refused(tmp_path: Path) -> None:
    counter = tmp_path / "runs-of-the-command"
    code = f"""
        from clusterd import trial
        open({str(counter)!r}, "a").write("ran\\n")
        trial.report(0, loss=1.0)
    """
    attempt = Attempt(tmp_path, python(code))
    attempt.env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    assert attempt.run() == 0
    events, status = attempt.file("events.jsonl"), attempt.file("status.json")
    again = subprocess.run(  # the same launch.json once more: refused
        [PY, "-m", "clusterd.runner", str(attempt.launch_path)],
        env=attempt.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 4
    assert "an attempt runs once" in again.stderr and len(again.stderr.splitlines()) == 1
    assert counter.read_text() == "ran\n"  # the command ran once
    assert attempt.file("events.jsonl") == events  # nothing appended
    assert attempt.file("status.json") == status  # the first result stands


def test_a_second_runner_racing_a_live_one_leaves_its_result_alone(tmp_path: Path) -> None:
    """Two runners started for one attempt (a launch raced by a paused daemon): the one
    that did not claim the dir must not write status.json, which would end the attempt
    with its refusal while the first runner's command is still running."""
    counter = tmp_path / "ran"
    attempt = Attempt(tmp_path, ["sh", "-c", f"echo x >> {counter}"])
    (attempt.dir / "runner.log").write_text("")  # the first runner's claim, command running
    assert attempt.run() == 4
    assert not counter.exists()
    assert not (attempt.dir / "status.json").exists()


def test_an_events_file_left_by_someone_else_is_never_appended_to(tmp_path: Path) -> None:
    counter = tmp_path / "ran"
    attempt = Attempt(tmp_path, ["sh", "-c", f"echo x >> {counter}"])
    old = '{"type": "metric", "step": 0, "values": {"loss": 9}}\n'
    (attempt.dir / "events.jsonl").write_text(old)  # another sweep's leftover
    assert attempt.run() == 4
    assert not counter.exists()
    assert attempt.file("events.jsonl") == old
    status = attempt.status()
    assert status["exit_code"] is None and "an attempt runs once" in status["error"]
    assert "events.jsonl" in status["error"]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is under a 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="cd-shared-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_root
def test_a_forged_launch_json_renamed_in_by_another_user_never_runs(shared: Path) -> None:
    tmp_path = shared
    pwned = tmp_path / "pwned"
    attempt = Attempt(tmp_path, ["true"])
    for d in (tmp_path / "runs", attempt.trial_dir, attempt.dir):
        os.chmod(d, 0o777)  # a shared, group/world-writable project dir
    forged = dict(attempt.launch, command=["sh", "-c", f"touch {pwned}"])

    def forge() -> None:
        tmp = attempt.dir / "forged.tmp"
        tmp.write_text(json.dumps(forged))
        os.chmod(tmp, 0o644)
        os.rename(tmp, attempt.launch_path)

    code, _out, err = as_nobody(forge)
    assert code == 0, err
    assert attempt.launch_path.stat().st_uid == NOBODY
    assert attempt.run() == 2
    assert not pwned.exists()
    error = attempt.status()["error"]
    assert f"belongs to uid {NOBODY}" in error and "launch.json" in error, error


@settings(max_examples=40, deadline=None)
@given(mode=st.integers(min_value=0o400, max_value=0o777))
def test_launch_json_is_read_only_when_nobody_else_can_write_it(mode: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "launch.json"
        launch = Attempt.__new__(Attempt)  # only the launch dict
        Attempt.__init__(launch, Path(tmp), ["true"])
        launch.launch_path.chmod(mode)
        if mode & 0o022:
            with pytest.raises(LaunchError, match="writable by group or others"):
                load_launch(str(launch.launch_path))
        else:
            assert load_launch(str(launch.launch_path)).command == ["true"]
        assert not path.exists() or path.is_file()


def test_launch_json_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["true"])
    real = tmp_path / "elsewhere.json"
    attempt.launch_path.rename(real)
    attempt.launch_path.symlink_to(real)
    with pytest.raises(LaunchError, match="symlink"):
        load_launch(str(attempt.launch_path))


# -- the resume signal ----------------------------------------------------------------------


def test_resume_signal_before_the_trial_api_is_imported_is_not_fatal(tmp_path: Path) -> None:
    code = """
        import time
        time.sleep(2.5)  # "import torch": the signal comes before our handler exists
        from clusterd import trial
        assert trial.time_to_checkpoint()  # the marker says so
        trial.exit_for_resume()
    """
    resume = {"exit_code": 3, "signal": "USR1", "signal_lead": 5}
    attempt = Attempt(tmp_path, python(code), time_limit=6, resume=resume)
    assert attempt.run() == 3
    status = attempt.status()
    assert (status["exit_code"], status["signal"], status["timed_out"]) == (3, None, False)
    assert (attempt.dir / "CHECKPOINT_REQUESTED").exists()
    assert "no USR1 handler announced" in attempt.file("runner.log")


def test_resume_signal_from_outside_reaches_only_announced_handlers(tmp_path: Path) -> None:
    """Slurm's ``--signal=B:USR1`` reaches the runner: a wrapping shell (no handler) lives
    on, the python that imported clusterd.trial gets it and checkpoints."""
    child = tmp_path / "child.py"
    child.write_text(
        "import time\n"
        "from clusterd import trial\n"
        "print('ready', flush=True)\n"
        "for _ in range(600):\n"
        "    if trial.time_to_checkpoint():\n"
        "        trial.exit_for_resume()\n"
        "    time.sleep(0.05)\n"
    )
    attempt = Attempt(tmp_path, ["sh", "-c", f"{PY} {child}; exit $?"])
    attempt.start()
    wait_for(lambda: attempt.has("stdout", "ready\n"), 30, "the trial to start")
    wait_for(lambda: (attempt.dir / "RESUME_HANDLER").exists(), 30, "the announcement")
    attempt.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
    assert attempt.wait() == 3  # the shell passed on python's resume code: nobody was killed
    assert attempt.status()["signal"] is None


# -- processes that escape the group ---------------------------------------------------------


@pytest.mark.parametrize("containment", ["auto", "scan"])
def test_setsid_grandchildren_end_with_the_attempt(tmp_path: Path, containment: str) -> None:
    attempt = Attempt(tmp_path, python(SPAWN_ESCAPEE))
    if containment == "scan":
        attempt.env["CLUSTERD_CONTAINMENT"] = "scan"
    assert attempt.run() == 0
    pid = int(attempt.file("escapee"))
    wait_for(lambda: gone(pid), 15, "the setsid sleep to end")
    assert "containment:" in attempt.file("runner.log")
    if containment == "scan":
        assert "scan of /proc" in attempt.file("runner.log")
    assert attempt.status()["exit_code"] == 0


@pytest.mark.parametrize("containment", ["auto", "scan"])
def test_setsid_grandchildren_of_a_cancelled_trial_end(tmp_path: Path, containment: str) -> None:
    code = SPAWN_ESCAPEE + "\n    import time; time.sleep(300)\n"
    attempt = Attempt(tmp_path, python(code), kill_grace=2)
    if containment == "scan":
        attempt.env["CLUSTERD_CONTAINMENT"] = "scan"
    attempt.start()
    wait_for(lambda: attempt.has("stdout", "ready\n"), 30, "the trial to start")
    pid = int(attempt.file("escapee"))
    assert not gone(pid)
    attempt.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    attempt.wait()
    wait_for(lambda: gone(pid), 15, "the setsid sleep to end")
    assert attempt.status()["signal"] == "TERM"


def test_runner_files_are_created_not_inherited(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["sh", "-c", "echo hi"])
    assert attempt.run() == 0
    for name in ("stdout", "stderr", "events.jsonl", "runner.log", "status.json"):
        assert stat.S_IMODE((attempt.dir / name).stat().st_mode) & 0o022 == 0, name
