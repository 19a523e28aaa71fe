"""``submit --follow`` into a pipe or a file: whole lines, one per change, no ``\\r``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Daemon

PY = sys.executable


def test_follow_into_a_pipe_prints_one_whole_line_per_change(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'name = "piped"\ncommand = ["{PY}", "-c", "import time; time.sleep(0.3)"]\n'
        "max_concurrent = 2\n[params]\nx = [1, 2, 3, 4]\n"
    )
    out = daemon.ctl("submit", str(path), "--follow", timeout=120)  # stdout is a pipe
    assert "\r" not in out.stdout
    lines = out.stdout.splitlines()
    assert lines[0].startswith("sweep piped: 4 trial(s) submitted")
    progress = lines[1:]
    assert progress, out.stdout
    assert all(line.split()[0].endswith("/4") for line in progress), progress
    assert len(progress) == len(set(progress))  # printed when something changed only
    assert progress[-1].startswith("4/4 finished") and "completed 4" in progress[-1]
    assert progress[-1].endswith("(sweep done)"), progress
    # into a file, likewise: a log of whole lines
    log = tmp_path / "follow.log"
    again = path.read_text().replace('"piped"', '"filed"').replace("[1, 2, 3, 4]", "[1, 2]")
    path.write_text(again)
    with log.open("w") as fh:  # stdout redirected to a file, as `> follow.log` does
        code = subprocess.run(
            [PY, "-m", "clusterd.cli", "submit", str(path), "--follow"],
            env=daemon.env,
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert code.returncode == 0, code.stderr
    text = log.read_text()
    assert "\r" not in text and text.endswith("\n")
    assert text.splitlines()[-1].startswith("2/2 finished")
