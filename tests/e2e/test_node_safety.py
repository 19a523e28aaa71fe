"""End to end with the real daemon and the local driver: time limits, launch files that
others cannot read or redirect, and trial processes that escape their group."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_for
from tests.e2e.test_security import as_nobody, needs_root
from tests.test_runner import gone

PY = sys.executable


def sweep_file(where: Path, body: str, name: str = "s") -> Path:
    path = where / "sweep.toml"
    path.write_text(f'name = "{name}"\n' + textwrap.dedent(body))
    return path


@pytest.fixture
def shared() -> Iterator[Path]:
    """A sticky, world-writable directory like /tmp or a shared /scratch."""
    path = Path(tempfile.mkdtemp(prefix="cd-scratch-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_local_driver_enforces_the_time_limit(daemon: Daemon, tmp_path: Path) -> None:
    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "-c", "import time; time.sleep(8)"]
        [params]
        x = 1
        [resources]
        time = "00:00:02"
        [resume]
        signal_lead = 1
        [retry]
        max_failures = 0
        """,
    )
    began = time.monotonic()
    daemon.ctl("submit", str(path))
    (trial,) = daemon.wait_sweep_done("s", timeout=60)
    assert time.monotonic() - began < 8
    assert trial["state"] == "failed"
    (attempt,) = daemon.ctl_json("show", "s/0")["attempt_list"]
    assert attempt["outcome"] == "timeout" and "time limit" in attempt["reason"], attempt
    assert (Path(attempt["dir"]) / "CHECKPOINT_REQUESTED").exists()  # the lead came first


@needs_root
def test_env_vars_land_in_files_only_the_owner_reads(daemon: Daemon, shared: Path) -> None:
    path = sweep_file(
        shared,
        f"""
        command = ["{PY}", "-c", "pass"]
        output_dir = "{shared}/runs"
        [params]
        x = 1
        [env]
        vars = {{ API_KEY = "s3cret" }}
        """,
    )
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("s", timeout=60)
    adir = shared / "runs" / "0" / "attempt-1"
    for name in ("launch.json", "job.json"):
        assert stat.S_IMODE((adir / name).stat().st_mode) == 0o600, name
    assert "s3cret" in (adir / "launch.json").read_text()

    def snoop() -> None:
        for name in ("launch.json", "job.json"):
            try:
                (adir / name).read_text()
                print(name, "READ")
            except PermissionError:
                print(name, "denied")

    code, out, err = as_nobody(snoop)
    assert (code, out.split()) == (0, ["launch.json", "denied", "job.json", "denied"]), err


@needs_root
def test_a_planted_temp_symlink_never_redirects_the_launch(daemon: Daemon, shared: Path) -> None:
    """Another user pre-creates trial 1's attempt dir with ``.launch.json.tmp`` linked to
    one of our files while trial 0 runs: the victim stays as it was, trial 1 fails with a
    reason that names the refused dir, and no command runs from it."""
    victim = Path(tempfile.mkdtemp(prefix="cd-victim-", dir="/tmp")) / "precious.txt"
    victim.write_text("keep me\n")
    go = shared / "go"
    (shared / "wait.py").write_text(
        f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
    )
    path = sweep_file(
        shared,
        f"""
        command = ["{PY}", "{shared}/wait.py"]
        output_dir = "{shared}/runs"
        max_concurrent = 1
        [params]
        x = [1, 2]
        """,
    )
    daemon.ctl("submit", str(path))
    wait_for(lambda: (shared / "runs" / "0" / "attempt-1" / "runner.json").exists(), 60, "trial 0")

    def plant() -> None:
        adir = shared / "runs" / "1" / "attempt-1"
        adir.mkdir(parents=True)
        (adir / ".launch.json.tmp").symlink_to(victim)
        (adir / "launch.json").symlink_to(victim)

    os.chmod(shared / "runs", 0o1777)  # loosened after the submit (a shared project dir)
    code, _out, err = as_nobody(plant)
    assert code == 0, err
    go.touch()
    trials = daemon.wait_sweep_done("s", timeout=60)
    assert victim.read_text() == "keep me\n"
    assert [t["state"] for t in trials] == ["completed", "failed"]
    reason = daemon.ctl_json("show", "s/1")["attempt_list"][0]["reason"]
    assert "refused" in reason and "runs/1" in reason, reason
    assert not (shared / "runs" / "1" / "attempt-1" / "runner.json").exists()
    shutil.rmtree(victim.parent)


ESCAPE = """
import os, subprocess, time
p = subprocess.Popen(["setsid", "sleep", "300"])  # a new session: out of the group
with open(os.path.join(os.environ["CLUSTERD_ATTEMPT_DIR"], "escapee"), "w") as fh:
    fh.write(str(p.pid))
"""


def test_setsid_grandchildren_end_with_completed_and_cancelled_trials(
    daemon: Daemon, tmp_path: Path
) -> None:
    (tmp_path / "done.py").write_text(ESCAPE)
    (tmp_path / "hang.py").write_text(ESCAPE + "time.sleep(300)\n")
    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "{{script}}"]
        max_concurrent = 2
        [params]
        script = ["done.py", "hang.py"]
        """,
    )
    daemon.ctl("submit", str(path))
    escapees = [tmp_path / "runs" / "s" / str(i) / "attempt-1" / "escapee" for i in (0, 1)]
    wait_for(lambda: all(p.exists() and p.read_text() for p in escapees), 60, "both trials")
    done_pid, hang_pid = (int(p.read_text()) for p in escapees)
    wait_for(lambda: daemon.trials("s")[0]["state"] == "completed", 60, "trial 0 to complete")
    wait_for(lambda: gone(done_pid), 15, "the completed trial's setsid sleep to end")
    assert not gone(hang_pid)
    daemon.ctl("cancel", "s/1")
    trials = daemon.wait_sweep_done("s", timeout=60)
    assert [t["state"] for t in trials] == ["completed", "cancelled"]
    wait_for(lambda: gone(hang_pid), 15, "the cancelled trial's setsid sleep to end")
