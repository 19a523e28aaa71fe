"""Watching the driver inside a real daemon: a ``sitecustomize`` on the daemon's path.

The daemon is a separate process, so the kit cannot wrap its driver from the test. It
puts a ``sitecustomize`` module first on the daemon's ``PYTHONPATH`` instead (the
mechanism of tests/faults/test_crash_windows.py): when the daemon's registry receives
the driver under test, its ``submit``, ``poll`` and ``find`` are wrapped to append one
line per call to an events file, and, when armed, to SIGKILL the daemon right after the
first ``submit`` returns -- the job is in the scheduler, the database never learned its
id. The status-command wrappers (``clusterd.testing.commands``) append to the same file,
so the file says which scheduler commands each poll ran. (Being first on the path, this
``sitecustomize`` hides any other one from the daemon.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CRASH_ENV", "Events", "Poll", "install", "read_events"]

#: the daemon-side environment: driver name, events file, crash marker (armed when set)
DRIVER_ENV = "CLUSTERD_KIT_DRIVER"
EVENTS_ENV = "CLUSTERD_KIT_EVENTS"
CRASH_ENV = "CLUSTERD_KIT_CRASH_MARKER"

SITECUSTOMIZE = '''
"""clusterd conformance kit (clusterd.testing.instrument): log the driver's calls in
the daemon process, and SIGKILL it after its first submit when armed."""
import os
import sys


def _note(text):
    fd = os.open(os.environ["CLUSTERD_KIT_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (text + "\\n").encode())
    finally:
        os.close(fd)


def _wrap(cls):
    import signal

    submit, poll, find = cls.submit, cls.poll, cls.find
    marker = os.environ.get("CLUSTERD_KIT_CRASH_MARKER")

    def kit_submit(self, jobs):
        _note("submit " + " ".join(job.token for job in jobs))
        result = submit(self, jobs)
        _note("submitted " + " ".join(sorted(result)))
        if marker and not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write("killed after submit\\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def kit_poll(self, jobs):
        _note("poll %d" % len(jobs))
        outcome = "error"
        try:
            result = poll(self, jobs)
            outcome = "ok"
            return result
        finally:
            _note("poll-end " + outcome)

    def kit_find(self, jobs):
        _note("find %d" % len(jobs))
        try:
            return find(self, jobs)
        finally:
            _note("find-end")

    cls.submit, cls.poll, cls.find = kit_submit, kit_poll, kit_find


def _install():
    from clusterd.plugins import DriverRegistry

    target = os.environ["CLUSTERD_KIT_DRIVER"]
    add = DriverRegistry.add

    def kit_add(self, cls):
        result = add(self, cls)
        if getattr(cls, "name", None) == target and not getattr(cls, "_kit_wrapped", False):
            _wrap(cls)
            cls._kit_wrapped = True
        return result

    DriverRegistry.add = kit_add


if "--foreground" in sys.argv and os.environ.get("CLUSTERD_KIT_DRIVER"):
    _install()
'''


def install(directory: Path, driver: str, events: Path) -> dict[str, str]:
    """Write the ``sitecustomize`` into ``directory``; return the daemon environment that
    arms it (prepend ``directory`` to ``PYTHONPATH`` as well; add ``CRASH_ENV``, a marker
    file's path, for the SIGKILL after the first submit)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {DRIVER_ENV: driver, EVENTS_ENV: str(events)}


@dataclass
class Poll:
    """One ``poll`` call: how many jobs it covered, the scheduler commands it ran, and
    whether it returned (``ok``) or raised (``error``; None while it still runs)."""

    jobs: int
    commands: list[str] = field(default_factory=list)
    outcome: str | None = None


@dataclass
class Events:
    """The events file, read: every submit (its tokens), every poll, every command."""

    submits: list[list[str]] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every command, in or out of polls

    def submitted_twice(self) -> list[str]:
        """Tokens handed to ``submit`` more than once."""
        seen: set[str] = set()
        twice: list[str] = []
        for tokens in self.submits:
            twice += [t for t in tokens if t in seen]
            seen.update(tokens)
        return twice


def read_events(path: Path) -> Events:
    """Parse the events file (missing: nothing happened yet). A command line between a
    ``poll`` and its ``poll-end`` belongs to that poll (the daemon calls a driver from
    one thread at a time)."""
    events = Events()
    current: Poll | None = None
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "submit":
            events.submits.append(rest.split())
        elif kind == "poll":
            current = Poll(int(rest))
            events.polls.append(current)
        elif kind == "poll-end" and current is not None:
            current.outcome, current = rest, None
        elif kind == "cmd":
            events.commands.append(rest)
            if current is not None:
                current.commands.append(rest)
    return events
