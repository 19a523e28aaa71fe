"""Which processes belong to an attempt, so that all of them end with it (stdlib only).

A trial may start processes that leave its process group (``setsid``, daemonizing
helpers): signalling the group misses them, and they would keep running -- and keep
their GPU -- after the slot is given to the next trial. Two ways to find them:

* **cgroup**: where the runner's cgroup v2 is writable (delegated to the user, or root),
  the command starts in a child cgroup ``clusterd-<token>`` of it; every process it
  ever starts stays there, whatever it does with sessions or its environment.
* **scan**: otherwise, processes of our uid whose ``/proc/<pid>/environ`` holds
  ``CLUSTERD_ATTEMPT_TOKEN=<token>`` (the runner sets it for the command; children
  inherit it). A process that clears its environment escapes this one.

``CLUSTERD_CONTAINMENT=scan`` forces the scan (tests, or a cgroup setup that misbehaves).
Signals go through pidfds where possible, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["TOKEN_ENV", "Containment", "choose"]

#: the variable that marks every process of an attempt (set by the runner for its command)
TOKEN_ENV = "CLUSTERD_ATTEMPT_TOKEN"


class Containment:
    """The scan: members are our uid's processes carrying the attempt's token."""

    kind = "scan"

    def __init__(self, token: str) -> None:
        self.needle = f"{TOKEN_ENV}={token}".encode()

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """Around the command's spawn (nothing to do for the scan)."""
        yield

    def started(self, pid: int) -> Containment:
        """Called once the command runs; the containment to use from now on."""
        return self

    def members(self) -> set[int]:
        """Live processes of the attempt (never the runner itself)."""
        me, uid, found = os.getpid(), os.geteuid(), set[int]()
        try:
            names = os.listdir("/proc")
        except OSError:
            return found
        for name in names:
            if name.isdigit() and int(name) != me and self.carries(int(name), uid):
                found.add(int(name))
        return found

    def carries(self, pid: int, uid: int | None = None) -> bool:
        try:
            if os.stat(f"/proc/{pid}").st_uid != (os.geteuid() if uid is None else uid):
                return False
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            return False
        return self.needle in environ.split(b"\0") and _alive(pid)

    def signal(self, pids: set[int], signum: int) -> None:
        for pid in pids:
            _send(pid, signum, lambda p=pid: self.carries(p))  # type: ignore[misc]

    def kill_all(self) -> None:
        self.signal(self.members(), signal.SIGKILL)

    def close(self) -> None:
        """Release what the containment holds (the cgroup directory)."""


class CgroupContainment(Containment):
    """A child cgroup v2 of the runner's own: members are whatever is in it."""

    kind = "cgroup"

    def __init__(self, token: str, path: str) -> None:
        super().__init__(token)
        self.path = path

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """The runner steps into the cgroup for the spawn, so the command is born in it,
        and steps back out (it must not be a member: ``kill_all`` kills the members).

        Not a ``preexec_fn``: that forces a full fork instead of vfork, and the child's
        move into the cgroup cost ~15 ms before its exec (measured with ``true``).
        """
        parent = os.path.dirname(self.path)
        entered = _move_self(self.path)
        try:
            yield
        finally:
            if entered and not _move_self(parent):
                raise OSError(f"cannot leave the attempt's cgroup {self.path}")

    def started(self, pid: int) -> Containment:
        """Keep the cgroup only if the command really entered it, else fall back to the scan."""
        try:
            with open(f"/proc/{pid}/cgroup", "rb") as fh:
                inside = any(
                    line.startswith(b"0::") and line.rstrip().endswith(self._name())
                    for line in fh.read().splitlines()
                )
        except OSError:
            inside = False
        if inside:
            return self
        self.close()
        return Containment(self.needle.split(b"=", 1)[1].decode())

    def _name(self) -> bytes:
        return os.path.basename(self.path).encode()

    def members(self) -> set[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs"), "rb") as fh:
                pids = {int(x) for x in fh.read().split()}
        except (OSError, ValueError):
            return set()
        return {pid for pid in pids if _alive(pid)}

    def signal(self, pids: set[int], signum: int) -> None:
        for pid in pids:
            _send(pid, signum, lambda p=pid: p in self.members())  # type: ignore[misc]

    def kill_all(self) -> None:
        try:
            fd = os.open(os.path.join(self.path, "cgroup.kill"), os.O_WRONLY)
        except OSError:  # before Linux 5.14: one by one
            super().kill_all()
            return
        try:
            os.write(fd, b"1")
        except OSError:
            super().kill_all()
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def choose(token: str, log: Callable[[str], None]) -> Containment:
    """A child cgroup where ours is cgroup v2 and writable, else the /proc scan; logged."""
    if os.environ.get("CLUSTERD_CONTAINMENT") != "scan":
        parent = _own_cgroup_dir()
        if parent is not None:
            path = os.path.join(parent, f"clusterd-{token}-{os.getpid()}")
            try:
                os.mkdir(path, 0o755)
            except OSError as exc:
                log(f"cannot create a cgroup under {parent} ({exc.strerror}); using the scan")
            else:
                log(f"containment: cgroup {path}")
                return CgroupContainment(token, path)
    log(f"containment: processes carrying {TOKEN_ENV} (scan of /proc)")
    return Containment(token)


def _own_cgroup_dir() -> str | None:
    """The directory of this process's cgroup v2, if we may write its cgroup.procs."""
    try:
        with open("/proc/self/cgroup") as fh:
            rel = next((line[3:].strip() for line in fh if line.startswith("0::")), None)
        if rel is None:
            return None
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    for fields in mounts:
        sep = fields.index("-") if "-" in fields else -1
        if sep < 0 or fields[sep + 1] != "cgroup2":
            continue
        root, point = fields[3], fields[4]
        if not (rel == root or rel.startswith(root.rstrip("/") + "/")):
            continue
        path = os.path.join(point, rel[len(root.rstrip("/")) :].lstrip("/"))
        if os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
            return path
    return None


def _move_self(cgroup: str) -> bool:
    """Move this process into ``cgroup``; False if it cannot (nothing changed then)."""
    try:
        fd = os.open(os.path.join(cgroup, "cgroup.procs"), os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"0")
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _alive(pid: int) -> bool:
    """Running (zombies, already dead, do not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def _send(pid: int, signum: int, still_ours: Callable[[], bool]) -> None:
    """Signal ``pid`` through a pidfd opened before re-checking that it is ours."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        if still_ours():
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
        return
    try:
        if still_ours():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signum)
    finally:
        os.close(fd)
