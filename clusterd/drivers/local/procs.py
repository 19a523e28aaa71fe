"""Processes as the local driver sees them: ``/proc``, sessions, job ids, killing.

A job id is ``"<pid>:<starttime>"`` (field 22 of ``/proc/<pid>/stat``), so a recycled
pid never passes for our job; every job is the leader of its own session, so the
session id names everything it started. Being out of descriptors or memory is never
taken for "no such process": those errors are raised, and the caller looks again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clusterd.drivers.local.forkserver import FORKED_FILE
from clusterd.errors import short_of_resources

__all__ = [
    "TOKEN_ENV",
    "ProcStat",
    "boot_ticks",
    "detach",
    "find_session_leader",
    "forked_leader",
    "format_job_id",
    "is_alive",
    "kill_session",
    "leader_from_hint",
    "parse_job_id",
    "parse_proc_stat",
    "pidfd_or_exited",
    "queued_job_id",
    "read_proc_stat",
    "reap",
    "short_of_resources",
]

log = logging.getLogger(__name__)

#: set in each job's environment: how a restarted driver finds a job it was starting
TOKEN_ENV = "CLUSTERD_JOB_TOKEN"


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the driver needs."""

    state: str  # "R", "S", "Z" (zombie: exited, not reaped yet), ...
    session: int
    starttime: int  # clock ticks after boot; with the pid, names a process uniquely

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def parse_proc_stat(text: str) -> ProcStat:
    """Parse a ``/proc/<pid>/stat`` line; the command name may hold spaces and parens."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 of stat(5): state; session is field 6; starttime field 22
    return ProcStat(state=fields[0], session=int(fields[3]), starttime=int(fields[19]))


def read_proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_proc_stat(f.read())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def is_alive(pid: int, starttime: int) -> bool:
    stat = read_proc_stat(pid)
    return stat is not None and stat.alive and stat.starttime == starttime


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _session_members(session: int) -> list[int]:
    """Every live process in ``session`` (the runner and whatever it started)."""
    return [
        pid
        for pid in _all_pids()
        if (stat := read_proc_stat(pid)) is not None and stat.session == session and stat.alive
    ]


def boot_ticks() -> int:
    """Now, in /proc/<pid>/stat starttime units (clock ticks since boot; needs no fd)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


# --------------------------------------------------------------------------- finding


def forked_leader(attempt_dir: str) -> tuple[int, int] | None:
    """``(pid, starttime)`` from the marker a fork-server child writes first thing (its
    /proc environ is the server's, so the token search below cannot find it)."""
    try:
        pid, starttime = (int(x) for x in (Path(attempt_dir) / FORKED_FILE).read_text().split())
    except OSError as exc:
        if short_of_resources(exc):
            raise  # cannot look now: not the same as "no marker"
        return None
    except ValueError:
        return None
    stat = read_proc_stat(pid)
    if stat is None or not stat.alive or stat.starttime != starttime or stat.session != pid:
        return None
    return pid, starttime


def leader_from_hint(pid: int | None, forked_near: int) -> tuple[int, int] | None:
    """``(pid, starttime)`` of the pid a fork returned before the driver could track it:
    a live session leader started within 2 s of that fork (else the pid was recycled)."""
    if not pid:
        return None
    stat = read_proc_stat(pid)
    if stat is None or not stat.alive or stat.session != pid:
        return None
    if abs(stat.starttime - forked_near) > 2 * os.sysconf("SC_CLK_TCK"):
        return None
    return pid, stat.starttime


def find_session_leader(token: str) -> tuple[int, int] | None:
    """``(pid, starttime)`` of the session leader started for ``token``, if one is alive.

    Used only for a job caught between "starting" and "running" by a daemon crash.
    """
    needle = f"{TOKEN_ENV}={token}".encode()
    for pid in _all_pids():
        stat = read_proc_stat(pid)
        if stat is None or stat.session != pid or not stat.alive:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError as exc:  # another user's process, or it just exited
            if short_of_resources(exc):
                raise  # cannot look now: not the same as "not there"
            continue
        if needle in environ:
            return pid, stat.starttime
    return None


# --------------------------------------------------------------------------- job ids


def format_job_id(pid: int, starttime: int) -> str:
    return f"{pid}:{starttime}"


def parse_job_id(job_id: str | None) -> tuple[int, int] | None:
    """``(pid, starttime)`` from a ``"pid:starttime"`` job id; None for any other shape."""
    pid, sep, start = (job_id or "").partition(":")
    if sep and _is_number(pid) and _is_number(start):
        return int(pid), int(start)
    return None


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` accepts "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def queued_job_id(token: str) -> str:
    return f"queued:{token}"


# --------------------------------------------------------------------------- lifetime


def pidfd_or_exited(pid: int) -> int:
    """A pidfd for ``pid``; if the job already ended (and was reaped by the fork server),
    an fd that is readable at once, so the watcher reports the exit all the same."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.write(write_fd, b"x")
        os.close(write_fd)
        return read_fd


def reap(pid: int, popen: subprocess.Popen[bytes] | None) -> None:
    """Collect the exit status of our own child; an adopted job may not be our child."""
    if popen is not None:
        popen.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def detach(children: list[subprocess.Popen[bytes]]) -> None:
    """Drop our children without reaping them: they must outlive this driver. Popen
    warns when dropped while its process runs; here that is the point (and subprocess
    still reaps them later through its ``_active`` list)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        children.clear()


def kill_session(pid: int, starttime: int, token: str) -> None:
    """SIGKILL the runner and everything in its session (the user's command runs in a
    process group of its own, so killing the runner's group alone would miss it)."""
    if not is_alive(pid, starttime):
        return  # exited meanwhile: its pid, hence its session id, may be reused
    log.warning("local driver: job %s ignored SIGTERM; killing its session", token)
    for member in [pid, *_session_members(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
