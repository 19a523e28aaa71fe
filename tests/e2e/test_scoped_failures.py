"""Failures stay where they belong (issue #13): one sweep's full disk, one trial's crash
loop and a database deleted under the daemon, each against the real daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, process_gone, wait_for

PY = sys.executable


def sweep_file(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + textwrap.dedent(body))
    return path


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (root ignores permissions, but not a full filesystem)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Fill the filesystem to the last byte."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_under_one_sweep_stops_only_that_sweep(
    daemon: Daemon, tmp_path: Path, tiny_tmpfs: Path
) -> None:
    stuck = sweep_file(
        tmp_path,
        "stuck",
        f"""
        command = ["{PY}", "-c", "import time; time.sleep(1)"]
        max_concurrent = 1
        output_dir = "{tiny_tmpfs / "out"}"
        [params]
        x = [1, 2, 3, 4]
        """,
    )
    daemon.ctl("submit", str(stuck))
    filler = fill(tiny_tmpfs)  # trial 0 may have started; every later launch cannot be written
    healthy = sweep_file(
        tmp_path,
        "healthy",
        f"""
        command = ["{PY}", "-c", "pass"]
        max_concurrent = 2
        [params]
        x = [1, 2, 3, 4, 5]
        """,
    )
    daemon.ctl("submit", str(healthy))

    trials = daemon.wait_sweep_done("healthy", timeout=60)
    assert [t["state"] for t in trials] == ["completed"] * 5

    def stuck_reason() -> str | None:
        view = {s["name"]: s for s in daemon.ctl_json("sweeps")}["stuck"]
        return (view.get("stuck") or {}).get("reason")

    reason = wait_for(stuck_reason, 30, "the stuck sweep to be marked")
    assert "No space left on device" in reason, reason
    status = daemon.clusterd("status").stdout
    assert "sweep     stuck: cannot launch trials" in status, status
    assert "No space left on device" in status
    table = daemon.ctl("sweeps").stdout
    assert "note: stuck cannot launch trials: " in table and "No space left" in table, table
    assert "cannot launch trials" in daemon.log()

    filler.unlink()  # space again: the sweep's next try (growing backoff) launches
    wait_for(lambda: stuck_reason() is None, 90, "the stuck sweep to launch again")


def attempts(daemon: Daemon, trial: str) -> int:
    return int(daemon.ctl_json("show", trial)["attempts"])


def test_a_crash_loop_backs_off(daemon: Daemon, tmp_path: Path) -> None:
    path = sweep_file(
        tmp_path,
        "crash",
        f"""
        command = ["{PY}", "-c", "raise SystemExit(1)"]
        [params]
        x = [1]
        [retry]
        max_failures = 1000
        exclude_host_after = 0
        """,
    )
    daemon.ctl("submit", str(path))
    wait_for(lambda: attempts(daemon, "crash/0") >= 2, 30, "a second attempt")
    started = time.monotonic()
    first = attempts(daemon, "crash/0")
    time.sleep(10)  # the figure is attempts per 10 s: time itself is what is measured
    made = attempts(daemon, "crash/0") - first
    elapsed = time.monotonic() - started
    # 1, 2, 4, 8 s between attempts: at most 4 more in 10 s (the old daemon: hundreds)
    assert made <= 4, f"{made} attempts in {elapsed:.1f} s"
    assert made >= 1  # it does retry
    pending = wait_for(
        lambda: (t := daemon.ctl_json("show", "crash/0"))["state"] == "pending" and t,
        20,
        "the trial to wait between attempts",
    )
    assert "crash-loop backoff" in pending["reason"], pending["reason"]
    daemon.ctl("cancel", "crash")


def test_a_deleted_database_is_noticed_within_a_poll(short_home: Path, tmp_path: Path) -> None:
    d = Daemon(short_home)
    short_home.mkdir(parents=True)
    log = open(tmp_path / "foreground.out", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PY, "-m", "clusterd.daemon.main", "start", "--foreground"],
        env=d.env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: d.ctl("sweeps", check=False).returncode == 0, 30, "the daemon to answer")
        path = sweep_file(
            tmp_path,
            "long",
            f"""
            command = ["{PY}", "-c", "import time; time.sleep(30)"]
            [params]
            x = [1]
            """,
        )
        d.ctl("submit", str(path))
        deleted = time.monotonic()
        os.unlink(short_home / "clusterd.db")
        code = proc.wait(timeout=30)
        noticed = time.monotonic() - deleted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert code == 1
    assert noticed < 5, f"noticed after {noticed:.1f} s"
    assert "was deleted while clusterd was running" in d.log()
    status = d.clusterd("status", check=False)
    assert status.returncode == 2
    assert "clusterd halted at" in status.stderr and "was deleted" in status.stderr
    assert not (short_home / "clusterd.db").exists()  # not silently recreated empty
    wait_for(lambda: process_gone(proc.pid), 5, "the daemon to be gone")
