"""Whether a process still runs, counting a zombie as gone (stdlib only, cheap to import).

A killed or exited process stays a zombie until its parent reaps it; the daemon's parent
is init, which on some hosts (containers, microVMs) reaps only every second or two. A
zombie holds no lease, socket or file, so ``clusterd stop``, the lease and the test kit
all treat it as gone instead of waiting for the reaper.
"""

from __future__ import annotations

import os

__all__ = ["pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host and is not a zombie (signal 0
    probes, never kills)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False
