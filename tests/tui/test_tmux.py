"""``clusterctl tui`` in a real terminal (tmux), driven with send-keys as a user would."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Daemon, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One tmux server of our own (``-L``), so a user's tmux is never touched."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", name]

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def wait_for(self, text: str, timeout: float = 30) -> str:
        wait_for(lambda: text in self.screen(), timeout, f"{text!r} on the tmux screen")
        return self.screen()

    def wait_gone(self) -> None:
        """The pane's only process exits (the TUI quit): tmux ends the session."""
        deadline = time.monotonic() + 10
        while self.alive():
            assert time.monotonic() < deadline, "the TUI did not quit on q"
            time.sleep(0.1)

    def alive(self) -> bool:
        return (
            subprocess.run([*self.base, "has-session", "-t", "tui"], capture_output=True).returncode
            == 0
        )


@pytest.fixture
def tmux(short_home: Path) -> Iterator[Tmux]:
    t = Tmux(f"clusterd-test-{short_home.parent.name}")
    yield t
    subprocess.run([*t.base, "kill-server"], capture_output=True)


def test_clusterctl_tui_in_tmux(daemon: Daemon, tmux: Tmux, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        'name = "tmuxed"\ncommand = ["true"]\ndriver = "local"\n[params]\nx = [1, 2, 3]\n'
    )
    daemon.ctl("submit", str(sweep))
    daemon.wait_sweep_done("tmuxed")
    env = f"CLUSTERD_HOME={shlex.quote(str(daemon.home))} PYTHONPATH={shlex.quote(str(REPO))}"
    command = f"env {env} TERM=xterm-256color {shlex.quote(sys.executable)} -m clusterd.cli tui"
    tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", "tui", command)

    screen = tmux.wait_for("tmuxed")
    assert "● connected" in screen and "3/3 100%" in screen
    tmux("send-keys", "-t", "tui", "Enter")
    screen = tmux.wait_for("row 1 of 3")
    assert screen.count("completed") >= 3
    tmux("send-keys", "-t", "tui", "?")
    tmux.wait_for("Keys")
    tmux("send-keys", "-t", "tui", "Escape")
    tmux("send-keys", "-t", "tui", "Escape")
    tmux.wait_for("trials by state")
    tmux("send-keys", "-t", "tui", "q")
    tmux.wait_gone()

    # straight to one trial: clusterctl tui SWEEP/INDEX
    tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "tui", f"{command} tmuxed/1")
    screen = tmux.wait_for("exit code 0")  # the attempts table: the trial has loaded
    assert "tmuxed › 1" in screen  # noqa: RUF001 - the breadcrumb separator
    assert "tmuxed/1  completed" in screen and "Overview" in screen
    tmux("send-keys", "-t", "tui", "q")
    tmux.wait_gone()
