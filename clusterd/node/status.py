"""``status.json``: the runner's account of one attempt, the truth for its exit code.

Written once by the runner at the end (atomically, fsync'd: the daemon trusts it after
a crash), read by the daemon when the job is gone. ``exit_code`` is None and ``signal``
names the signal (``"KILL"``) when the command was killed by one.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from clusterd.node import names
from clusterd.node.atomic import replace_json
from clusterd.node.files import create_new

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "StatusNotReadable",
    "read_status",
    "signal_name",
    "status_path",
    "status_record",
    "write_new_status",
    "write_status",
]

#: errors that say nothing about status.json itself: the reader is short of a resource
_PASSING = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR})


class StatusNotReadable(Exception):
    """status.json could not be read for a passing reason of the reader's (out of file
    descriptors or memory): ask again later, never take it as the attempt's result."""


def status_path(attempt_dir: str) -> str:
    return os.path.join(attempt_dir, names.STATUS)


def status_record(
    code: int | None,
    started: float,
    ended: float,
    pid: int | None,
    timed_out: bool,
    error: str | None,
) -> dict[str, Any]:
    """status.json's fields; ``code`` below 0 is ``-signum`` (``Popen.returncode``)."""
    sig = None
    if code is not None and code < 0:
        sig, code = signal_name(-code), None
    return {
        "exit_code": code,
        "signal": sig,
        "started_at": started,
        "ended_at": ended,
        "host": os.uname().nodename,
        "pid": pid,
        "timed_out": timed_out,
        "error": error,
    }


def signal_name(signum: int) -> str:
    """``"TERM"`` for SIGTERM; the number as text for one Python does not know."""
    try:
        return signal.Signals(signum).name[3:]
    except ValueError:
        return str(signum)


def write_status(dir_fd: int, status: dict[str, Any]) -> None:
    """status.json in the attempt dir ``dir_fd``, atomically and durably (0644)."""
    replace_json(dir_fd, names.STATUS, status, fsync=True)


def write_new_status(dir_fd: int, status: dict[str, Any]) -> None:
    """status.json only where there is none: an earlier run's result is never replaced."""
    import json

    try:
        os.close(create_new(dir_fd, names.STATUS, 0o644, json.dumps(status).encode()))
    except FileExistsError:
        pass  # the earlier run's result stays
    except OSError as exc:
        sys.stderr.write(f"clusterd runner: status.json not written: {exc.strerror or exc}\n")


def read_status(attempt_dir: str) -> dict[str, Any] | None:
    """The runner's status.json, None if absent; an unreadable one is reported as an error.

    The runner writes it atomically (rename), so a partial file means corruption,
    not a race; the attempt then fails with a reason instead of crashing the loop.
    """
    import json

    try:
        with open(status_path(attempt_dir), "rb") as fh:
            raw = fh.read(1 << 20)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _PASSING:
            raise StatusNotReadable(str(exc)) from exc
        return {"exit_code": None, "error": f"status.json unreadable: {exc.strerror}"}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"exit_code": None, "error": "status.json is not valid JSON"}
    if not isinstance(data, dict):
        return {"exit_code": None, "error": "status.json is not a JSON object"}
    return data
