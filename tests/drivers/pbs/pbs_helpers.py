"""Recorded PBS output and a fake command runner for the PBS driver tests.

No PBS server runs here, so the driver's commands are answered with output recorded
from real PBS Pro / OpenPBS and Torque servers (``tests/drivers/fixtures/pbs/``, sources
and versions in its ``SOURCES.md``); only the commands are faked, everything else (job
files, scripts, attempt dirs) is real.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.spec.model import Resources

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pbs"
GOLDEN = FIXTURES / "golden"

Answer = str | tuple[int, str, str] | Callable[[list[str]], Any]


def recorded(name: str) -> str:
    """A fixture's text (``pbspro/...`` or ``torque/...``), as recorded."""
    return (FIXTURES / name).read_text()


class Replay:
    """A ``CommandRunner`` answering each PBS command with canned output; records calls.

    Answers are keyed by the command (``qsub``) or by the command and its first argument
    joined by a space (``"qstat --version"``, ``"qstat -B"``), the longer key winning.
    """

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        key = " ".join(argv[:2])
        answer = self.answers.get(key, self.answers.get(argv[0], ""))
        if callable(answer):
            answer = answer(argv)
        if isinstance(answer, BaseException):
            raise answer
        rc, out, err = answer if isinstance(answer, tuple) else (0, answer, "")
        return subprocess.CompletedProcess(argv, rc, out, err)

    def of(self, command: str) -> list[list[str]]:
        """The calls of ``command`` (``qstat``), in order."""
        return [call for call in self.calls if call[0] == command]


def make_job(tmp_path: Path, index: int, **changes: Any) -> JobRequest:
    """Attempt 1 of trial ``index`` of sweep "sw", its attempt dir made."""
    adir = tmp_path / "runs" / str(index) / "attempt-1"
    adir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "token": f"cd-sw-{index}-1-abc{index:03d}",
        "sweep": "sw",
        "trial_index": index,
        "attempt": 1,
        "attempt_dir": str(adir),
        "argv": ("/usr/bin/python3", "-m", "clusterd.runner", str(adir / "launch.json")),
        "resources": Resources(cpus=1),
    }
    fields.update(changes)
    return JobRequest(**fields)
