"""A real clusterd daemon in its own ``CLUSTERD_HOME``, and ``clusterctl`` run against it.

The conformance kit checks drivers through the daemon users run, not a mock of it: a
separate process started with ``clusterd start``, driven with ``clusterctl`` and
``--json`` output, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import clusterd
from clusterd.daemon.store import FINAL_STATES
from clusterd.testing.waiting import alive, wait_for

__all__ = ["Daemon", "short_home"]

#: the directory clusterd is imported from: the daemon runs the same code as the test
_SOURCE_ROOT = str(Path(clusterd.__file__).resolve().parent.parent)


def short_home() -> Path:
    """A fresh directory under /tmp for ``CLUSTERD_HOME``: the daemon's Unix socket path
    must fit in 108 bytes, which pytest's ``tmp_path`` does not promise."""
    return Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp")) / "home"


class Daemon:
    """One daemon process and the ``clusterctl`` commands that talk to it."""

    def __init__(self, home: Path, env: Mapping[str, str] | None = None) -> None:
        self.home = home
        path = os.environ.get("PYTHONPATH", "")
        self.env: dict[str, str] = {
            **os.environ,
            "CLUSTERD_HOME": str(home),
            "PYTHONPATH": _SOURCE_ROOT + (os.pathsep + path if path else ""),
            **(env or {}),
        }
        self.env.pop("CLUSTERD_DB_URL", None)

    def run(
        self, *argv: str, check: bool = True, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``python argv...`` in the daemon's environment; fail with its output if it fails."""
        proc = subprocess.run(
            [sys.executable, *argv],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
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

    @property
    def pid(self) -> int:
        return int((self.home / "clusterd.pid").read_text())

    def running(self) -> bool:
        """Whether the daemon process is up (its pid file names a live process)."""
        try:
            return alive(self.pid)
        except (OSError, ValueError):
            return False

    def sweeps(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.ctl_json("sweeps")}

    def trials(self, sweep: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.ctl_json("trials", sweep)
        return result

    def attempts(self, sweep: str, index: int) -> list[dict[str, Any]]:
        """Every attempt of one trial, oldest first (job id, token, dir, outcome, ...)."""
        result: list[dict[str, Any]] = self.ctl_json("show", f"{sweep}/{index}")["attempt_list"]
        return result

    def ended(self, sweep: str) -> list[dict[str, Any]] | None:
        """The trials once the sweep is no longer active and every trial has ended (a
        cancelled sweep is no longer active while its jobs are still ending)."""
        if self.sweeps()[sweep]["state"] == "active":
            return None
        trials = self.trials(sweep)
        return trials if all(t["state"] in FINAL_STATES for t in trials) else None

    def wait_sweep_done(self, sweep: str, timeout: float = 120) -> list[dict[str, Any]]:
        """The trials, once all have ended; fail with them and the log tail if not."""
        try:
            return wait_for(lambda: self.ended(sweep), timeout, f"{sweep} to end")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\ntrials: {self.trials(sweep)}\n{self.log_tail()}"
            ) from None

    def log(self) -> str:
        path = self.home / "clusterd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "daemon log (last lines):\n" + "\n".join(self.log().splitlines()[-lines:])

    def cancel_everything(self, timeout: float = 60) -> None:
        """Cancel every active sweep and wait for their trials to end, so that no job of
        this daemon outlives the check (a one-node test cluster needs its slots back)."""
        if not self.running():
            return
        active = [name for name, s in self.sweeps().items() if s["state"] == "active"]
        for name in active:
            self.ctl("cancel", name, check=False)
        for name in active:
            wait_for(partial(self.ended, name), timeout, f"{name} to end")

    def stop(self) -> None:
        if (self.home / "clusterd.pid").exists():
            self.clusterd("stop", check=False)

    def remove(self) -> None:
        """Stop the daemon and delete its home."""
        self.stop()
        shutil.rmtree(self.home.parent, ignore_errors=True)
