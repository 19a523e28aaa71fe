"""Where a trial's files live under the sweep's output dir (stdlib only).

``<output_dir>/<index>/`` is the trial dir, kept across attempts;
``<output_dir>/<index>/attempt-<n>/`` holds one attempt's files (docs/runtime.md).
"""

from __future__ import annotations

import errno
import os

__all__ = [
    "StatusNotReadable",
    "attempt_dir",
    "events_path",
    "read_status",
    "status_path",
    "trial_dir",
]


def trial_dir(output_dir: str, index: int) -> str:
    return os.path.join(output_dir, str(index))


def attempt_dir(output_dir: str, index: int, attempt: int) -> str:
    return os.path.join(output_dir, str(index), f"attempt-{attempt}")


def events_path(attempt_dir_: str) -> str:
    return os.path.join(attempt_dir_, "events.jsonl")


def status_path(attempt_dir_: str) -> str:
    return os.path.join(attempt_dir_, "status.json")


#: errors that say nothing about status.json itself: the reader is short of a resource
_PASSING = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR})


class StatusNotReadable(Exception):
    """status.json could not be read for a passing reason of the reader's (out of file
    descriptors or memory): ask again later, never take it as the attempt's result."""


def read_status(attempt_dir_: str) -> dict | None:
    """The runner's status.json, None if absent; an unreadable one is reported as an error.

    The runner writes it atomically (rename), so a partial file means corruption,
    not a race; the attempt then fails with a reason instead of crashing the loop.
    """
    import json

    try:
        with open(status_path(attempt_dir_), "rb") as fh:
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
