"""Whether a process NVML reports on a GPU belongs to this attempt (stdlib only).

NVML lists every compute process on a GPU, the neighbours' included; the sampler counts
only the attempt's own: a descendant of the runner (walking parent pids up from the
reported pid, a few reads of ``/proc`` each), or -- for those that left the tree with
``setsid`` and were re-parented -- whatever the runner's containment recognises (its
``carries``: the attempt token in the environment, see contain.py).

PIDs are compared as this process sees them: inside a container with its own PID
namespace NVML may report host PIDs, and then no process is recognised (own_procs 0).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Ownership", "parent_pid"]

#: deepest process tree walked up (a loop in /proc data cannot hang the sampler)
MAX_DEPTH = 256


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` from ``/proc/<pid>/stat``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in (...) may hold spaces
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


class Ownership:
    """``owns(pid)``: the process is the runner's descendant, or ``carries`` says it is
    the attempt's."""

    def __init__(self, root: int, carries: Callable[[int], bool] | None = None) -> None:
        self.root = root
        self.carries = carries

    def owns(self, pid: int) -> bool:
        if pid <= 1 or pid == self.root:
            return False
        current: int | None = pid
        for _ in range(MAX_DEPTH):
            current = parent_pid(current) if current is not None else None
            if current is None or current <= 1:
                break
            if current == self.root:
                return True
        if self.carries is not None:
            try:
                return bool(self.carries(pid))
            except OSError:
                return False
        return False
