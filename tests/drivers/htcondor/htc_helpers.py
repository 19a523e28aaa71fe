"""Shared by the HTCondor driver tests: jobs, a fake command runner, event-log records.

The records are the recorded fixture's (``fixtures/htcondor/event-log.txt``, real
HTCondor text; SOURCES.md) with their job id swapped, so that a test writes the very
text HTCondor writes for the jobs the driver submitted.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.spec.model import Resources

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "htcondor"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def records() -> list[str]:
    """Every record of the recorded event log, each ending with its ``...`` line."""
    text = fixture("event-log.txt")
    return [part + "...\n" for part in text.split("...\n") if part.strip()]


def record(code: int, first_words: str = "", nth: int = 0) -> str:
    """The ``nth`` recorded record of event ``code`` whose header has ``first_words``."""
    found = [
        r for r in records() if r.startswith(f"{code:03d} (") and first_words in r.split("\n")[0]
    ]
    return found[nth]


def for_job(text: str, cluster: int, proc: int) -> str:
    """A record with its job id replaced by ``cluster.proc``."""
    return re.sub(r"^(\d{3}) \(\d+\.\d+\.\d+\)", rf"\1 ({cluster:03d}.{proc:03d}.000)", text)


def submit_rec(c: int, p: int) -> str:
    return for_job(record(0, "Job submitted", 1), c, p)


def execute_rec(c: int, p: int) -> str:
    return for_job(record(1, "", 1), c, p)  # with its SlotName: slot1_1@test02


def terminated_rec(c: int, p: int, value: int = 0) -> str:
    text = for_job(record(5, "Job terminated", 1), c, p)  # return value 1, recorded
    text = text.replace("(return value 1)", f"(return value {value})")
    return text.replace("with exit-code 1.", f"with exit-code {value}.")


def signal_rec(c: int, p: int) -> str:
    return for_job(record(5, "Job terminated", 5), c, p)  # (signal 11), recorded


def evicted_rec(c: int, p: int) -> str:
    return for_job(record(4, "Job was evicted."), c, p)  # no code: a vacate


def shadow_rec(c: int, p: int) -> str:
    return for_job(record(7), c, p)


def held_rec(c: int, p: int, reason: str = "", code: int | None = None) -> str:
    text = for_job(record(12, "", 0), c, p)  # code 47 (allowed_execute_duration)
    if reason:
        text = text.replace("The job exceeded allowed execute duration of 1:00:00", reason)
    if code is not None:
        text = text.replace("Code 47 Subcode 0", f"Code {code} Subcode 0")
    return text


def released_rec(c: int, p: int) -> str:
    return for_job(record(13), c, p)


def aborted_rec(c: int, p: int) -> str:
    return for_job(record(9, "", 2), c, p)  # via condor_rm (by user testuser)


def make_job(tmp_path: Path, index: int, **changes: Any) -> JobRequest:
    adir = tmp_path / "runs" / str(index) / "attempt-1"
    adir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "token": f"cd-sw-{index}-1-abc{index:03d}",
        "sweep": "sw",
        "trial_index": index,
        "attempt": 1,
        "attempt_dir": str(adir),
        "argv": ("/usr/bin/python3", "-I", "-S", "/opt/clusterd/runner.py", str(adir / "l.json")),
        "resources": Resources(cpus=1),
    }
    fields.update(changes)
    return JobRequest(**fields)


Answer = str | tuple[int, str, str] | Callable[[list[str]], Any]


class Replay:
    """A ``CommandRunner`` answering each condor command with recorded output; counts calls."""

    def __init__(self, **answers: Answer) -> None:
        self.answers: dict[str, Answer] = dict(answers)
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        answer = self.answers.get(argv[0], "")
        if callable(answer):
            answer = answer(argv)
        if isinstance(answer, BaseException):
            raise answer
        rc, out, err = answer if isinstance(answer, tuple) else (0, answer, "")
        return subprocess.CompletedProcess(argv, rc, out, err)

    def count(self, command: str) -> int:
        return sum(1 for call in self.calls if call[0] == command)
