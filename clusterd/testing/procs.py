"""Processes that belong to an attempt: any process whose environment or command line
carries the attempt's token (the runner exports ``CLUSTERD_JOB_TOKEN`` to everything it
starts, and drivers put the token in their job names)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from clusterd.testing.waiting import alive

__all__ = ["processes_with"]


def processes_with(tokens: Iterable[str]) -> dict[int, str]:
    """``{pid: token}`` for every live process (but this one) carrying one of ``tokens``.

    Processes whose files this user may not read are not looked at: run the kit as the
    user the jobs run as.
    """
    wanted = [t.encode() for t in tokens if t]
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        blob = _read(f"/proc/{entry}/environ") + b"\0" + _read(f"/proc/{entry}/cmdline")
        for token in wanted:
            if token in blob and alive(int(entry)):
                found[int(entry)] = token.decode()
                break
    return found


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:  # gone meanwhile, or not ours to read
        return b""
