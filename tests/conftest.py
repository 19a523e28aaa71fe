"""Shared fixtures: a real daemon process in its own CLUSTERD_HOME, and clusterctl runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def process_gone(pid: int) -> bool:
    """The process exited, or is a zombie nobody reaped yet (a SIGKILLed daemon whose parent
    is the test: it can no longer do anything)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] == b"Z"
    except OSError:
        return True


class Daemon:
    """A clusterd daemon started as a real process, and clusterctl run as one."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "CLUSTERD_HOME": str(home),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        self.env.pop("CLUSTERD_DB_URL", None)

    def run(
        self, *argv: str, check: bool = True, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, *argv],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def clusterd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "clusterd.daemon.main", *args, check=check)

    def ctl(
        self, *args: str, check: bool = True, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "clusterd.cli", *args, check=check, cwd=cwd, timeout=timeout)

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json").stdout)

    def start(self) -> None:
        self.clusterd("start")

    def stop(self) -> None:
        if (self.home / "clusterd.pid").exists():
            self.clusterd("stop", check=False)

    @property
    def pid(self) -> int:
        return int((self.home / "clusterd.pid").read_text())

    def trials(self, sweep: str) -> list[dict[str, Any]]:
        return self.ctl_json("trials", sweep)

    def wait_sweep_done(self, sweep: str, timeout: float = 120) -> list[dict[str, Any]]:
        def done() -> Any:
            sweeps = {s["name"]: s for s in self.ctl_json("sweeps")}
            return sweeps[sweep]["state"] != "active" and sweeps[sweep]

        wait_for(done, timeout, f"sweep {sweep} to finish")
        return self.trials(sweep)

    def log(self) -> str:
        path = self.home / "clusterd.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A CLUSTERD_HOME with a short path (a Unix socket path must fit in 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))
    yield path / "home"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_home: Path) -> Iterator[Daemon]:
    d = Daemon(short_home)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def stopped_daemon(short_home: Path) -> Iterator[Daemon]:
    d = Daemon(short_home)
    yield d
    d.stop()
