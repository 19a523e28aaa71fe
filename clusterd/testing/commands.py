"""Status-command wrappers: count every scheduler status call, or answer with garbage.

For each command a driver names in ``status_commands`` (``squeue``, ``sacct``, ...) the
kit puts an executable of that name first on the ``PATH`` of the daemon (and of the
in-process driver). It appends ``cmd <name>`` to the events file, then, depending on
the mode file: ``exec``s the real command (no mode), prints garbage, or prints the real
output cut in the middle of its last line (at least one byte of it gone: a one-byte
last line, such as the ``}`` closing a JSON answer, is dropped). Drivers must turn the
last two into a ``DriverError``, never a crash and never "the job is gone".
"""

from __future__ import annotations

import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["GARBAGE", "StatusCommands"]

#: what the "garbage" mode prints: no scheduler would say this
GARBAGE = "<html><body>502 Bad Gateway</body></html>\n\x00\x01\x7fnot|a|status|line\n"

WRAPPER = '''#!{python} -S
"""clusterd conformance kit: a wrapper around {real!r} (clusterd.testing.commands)."""
import os
import subprocess
import sys

REAL, NAME, EVENTS, MODE = {real!r}, {name!r}, {events!r}, {mode!r}
fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.write(fd, ("cmd " + NAME + "\\n").encode())
os.close(fd)
try:
    with open(MODE) as fh:
        mode = fh.read().strip()
except OSError:
    mode = ""
if mode == "garbage":
    sys.stdout.write({garbage!r})
    sys.exit(0)
if mode == "truncated":
    out = subprocess.run([REAL, *sys.argv[1:]], stdout=subprocess.PIPE, check=False).stdout
    lines = out.rstrip(b"\\n").split(b"\\n")
    last = lines[-1] if lines and lines[-1] else b"4242|RUNNING|node"
    half = last[: len(last) // 2]  # at least one byte gone, even of a one-byte line
    cut = b"\\n".join(lines[:-1] + ([half] if half else []))
    if not cut.strip():  # nothing left would read as "no jobs": cut a made-up line instead
        cut = b"4242|RUN"
    sys.stdout.buffer.write(cut)
    sys.exit(0)
os.execv(REAL, [REAL, *sys.argv[1:]])
'''


class StatusCommands:
    """The wrappers of one check: a ``bin`` directory to put first on ``PATH``, and the
    mode switch shared by all of them."""

    def __init__(self, root: Path, names: Sequence[str], events: Path) -> None:
        self.bin = root / "bin"
        self.mode_file = root / "mode"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in names:
            real = shutil.which(name)
            if real is None:
                raise AssertionError(
                    f"status command {name!r} is not on PATH: start the scheduler (the "
                    "'scheduler' fixture) or fix status_commands"
                )
            path = self.bin / name
            path.write_text(
                WRAPPER.format(
                    python=sys.executable,
                    real=real,
                    name=name,
                    events=str(events),
                    mode=str(self.mode_file),
                    garbage=GARBAGE,
                )
            )
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def path(self, rest: str) -> str:
        """A ``PATH`` with the wrappers first."""
        return f"{self.bin}:{rest}" if rest else str(self.bin)

    def answer(self, mode: str) -> None:
        """Switch every wrapper to ``mode``: "garbage", "truncated", or "" (the real output)."""
        self.mode_file.write_text(mode)
