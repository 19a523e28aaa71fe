"""The command's process group: start it, wait for it while acting on signals and
deadlines, and leave no process of the attempt behind.

The command runs in its own process group (``process_group=0``), so one ``killpg``
reaches it and its children; those that leave the group (``setsid``) are found by
:mod:`clusterd.runner.contain`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from clusterd.node import names
from clusterd.node.files import create_new, read_own
from clusterd.node.status import signal_name
from clusterd.runner import contain
from clusterd.runner.command import child_env
from clusterd.runner.signals import Deadlines, Wakeup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from clusterd.node.launch import Launch
    from clusterd.runner.log import RunnerLog

__all__ = [
    "AFTER_KILL_WAIT",
    "Supervisor",
    "exit_status",
    "group_alive",
    "signal_group",
]

#: longest wait for the processes of a group after SIGKILL (they may be stuck in the kernel)
AFTER_KILL_WAIT = 5.0


class Supervisor:
    """Starts the command, waits for its exit while acting on signals and deadlines,
    then cleans up. Every file it writes in the attempt dir it creates itself (O_EXCL,
    relative to the directory fd ``dir_fd``, never through a symlink)."""

    def __init__(self, launch: Launch, log: RunnerLog, dir_fd: int) -> None:
        self.launch = launch
        self.log = log
        self.dir_fd = dir_fd
        self.token = launch.token or os.urandom(8).hex()
        self.containment: contain.Containment = contain.Containment(self.token)
        self.t0 = time.monotonic()
        self.started_at = time.time()
        self.wakeup = Wakeup()
        self.deadlines = Deadlines()
        self.proc: subprocess.Popen[bytes] | None = None
        self.term_sent = False
        self.killed = False
        self.timed_out = False

    @property
    def pending(self) -> list[int]:
        """Forwarded signals received and not yet acted on."""
        return self.wakeup.pending

    # the start

    def start(self, argv: list[str]) -> str | None:
        """Start the command in its own process group; an error message if it cannot start."""
        launch = self.launch
        self.containment = contain.choose(self.token, self.log)
        out_fd = create_new(self.dir_fd, names.STDOUT, 0o644)
        try:
            err_fd = create_new(self.dir_fd, names.STDERR, 0o644)
        except BaseException:
            os.close(out_fd)
            raise
        try:
            try:
                with self.containment.spawning():
                    self.proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=out_fd,
                        stderr=err_fd,
                        cwd=launch.cwd,
                        env=child_env(launch, token=self.token),
                        process_group=0,
                    )
            except (OSError, subprocess.SubprocessError) as exc:
                message = _start_error(argv, launch.cwd, exc)
                os.write(err_fd, f"clusterd runner: {message}\n".encode())
                self.containment.close()
                return message
        finally:
            os.close(out_fd)
            os.close(err_fd)
        contained = self.containment.started(self.proc.pid)
        if contained is not self.containment:
            self.log("the command did not enter its cgroup; using the scan of /proc instead")
            self.containment = contained
        return None

    def arm_time_limit(self) -> None:
        launch = self.launch
        self.deadlines.arm_time_limit(
            self.t0, launch.time_limit, launch.signal_lead, launch.enforce_time_limit
        )

    # supervision

    def supervise(self) -> int:
        """Wait for the command's exit while acting on signals and deadlines."""
        proc = self.proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                return code
            self.dispatch_signals()
            self.run_due(time.monotonic())
            code = proc.poll()
            if code is not None:
                return code
            self.wakeup.sleep(self.deadlines.next())

    def dispatch_signals(self) -> None:
        pending = self.wakeup.pending
        while pending:
            signum = pending.pop(0)
            if signum == self.launch.resume_signal:  # Slurm's --signal=B:..., or a user's
                self.request_checkpoint(f"received {signal_name(signum)}")
                continue
            self.log(f"received {signal_name(signum)}; forwarding it to the command's group")
            self.send(signum)
            if signum == signal.SIGTERM:
                self.term_sent = True
                self.arm_kill(time.monotonic())

    def run_due(self, now: float) -> None:
        due = self.deadlines
        if due.resume_at is not None and now >= due.resume_at:
            due.resume_at = None
            self.request_checkpoint("time limit near")
        if due.limit_at is not None and now >= due.limit_at:
            due.limit_at = None
            self.timed_out = True
            self.log("time limit reached; sending TERM")
            self.send(signal.SIGTERM)
            self.term_sent = True
            self.arm_kill(now)
        if due.kill_at is not None and now >= due.kill_at:
            due.kill_at = None
            self.killed = True
            self.log("kill grace is over; sending KILL")
            self.send(signal.SIGKILL)

    def request_checkpoint(self, why: str) -> None:
        """CHECKPOINT_REQUESTED always; the signal only to processes that announced a
        handler (docs/runtime.md): its default action is to terminate."""
        with contextlib.suppress(OSError):
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(names.CHECKPOINT_REQUESTED, flags, 0o644, dir_fd=self.dir_fd))
        marker, resume = names.CHECKPOINT_REQUESTED, self.launch.resume_signal
        if resume is None:
            self.log(f"{why}: created {marker}; the sweep sends no resume signal")
            return
        name = resume.name[3:]
        targets = self.resume_targets()
        if targets is None:
            self.log(f"{why}: created {marker}; no {name} handler announced")
        elif not targets:
            self.log(f"{why}: created {marker}; sending {name} to the group")
            self.send(resume)
        else:
            shown = ", ".join(map(str, sorted(targets)))
            self.log(f"{why}: created {marker}; sending {name} to {shown}")
            self.containment.signal(targets, resume)

    def resume_targets(self) -> set[int] | None:
        """None: no handler announced; empty: the whole group; else the announcing pids
        that are still processes of this attempt."""
        try:
            text = read_own(names.RESUME_HANDLER, 1 << 16, dir_fd=self.dir_fd)
        except OSError:
            return None
        pids = {int(x) for x in text.split() if x.isdigit()}
        if not pids:
            return set()
        scan = contain.Containment(self.token)
        mine = {pid for pid in pids if scan.carries(pid)}
        return mine or None

    def arm_kill(self, now: float) -> None:
        if not self.killed:
            self.deadlines.arm_kill(now, self.launch.kill_grace)

    def send(self, signum: int) -> None:
        if self.proc is not None:
            signal_group(self.proc.pid, signum)

    # the end

    def clean_up(self) -> None:
        """Leave no process of the attempt behind: its group, and those that left it
        (setsid) but carry its mark -- TERM, the kill grace, then KILL."""
        assert self.proc is not None
        pgid, holder = self.proc.pid, self.containment
        strays = holder.members()
        if not group_alive(pgid) and not strays:
            holder.close()
            return
        self.log(
            f"processes of the attempt outlived the command ({len(strays)} outside "
            "its group or in it); terminating them"
        )
        if not self.term_sent:
            signal_group(pgid, signal.SIGTERM)
        holder.signal(strays, signal.SIGTERM)

        def gone() -> bool:
            return not group_alive(pgid) and not holder.members()

        deadline = self.deadlines.kill_at or time.monotonic() + self.launch.kill_grace
        if self.killed or not _wait(gone, deadline):
            signal_group(pgid, signal.SIGKILL)
            holder.kill_all()
            if not _wait(gone, time.monotonic() + AFTER_KILL_WAIT):
                self.log("processes of the attempt survive SIGKILL (stuck in the kernel?)")
        holder.close()


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    if not signal_group(pgid, 0):
        return False
    try:
        pids = os.listdir("/proc")
    except OSError:
        return True  # no /proc: trust kill(0), zombies and all
    return any(_is_live_member(pid, pgid) for pid in pids if pid.isdigit())


def _is_live_member(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in (...) may hold spaces
    return len(fields) > 2 and fields[2] == b"%d" % pgid and fields[0] not in (b"Z", b"X")


def _wait(done: Callable[[], bool], deadline: float) -> bool:
    """Poll ``done`` with a short backoff until it holds or ``deadline`` (monotonic)."""
    pause = 0.01
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)
    return True


def _start_error(argv: list[str], cwd: str | None, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.filename is not None and exc.filename == cwd:
            return f"cannot start the command: working directory {cwd}: {exc.strerror}"
        if isinstance(exc, FileNotFoundError):
            return f"command not found: {argv[0]}"
        return f"cannot start {argv[0]!r}: {exc.strerror}"
    return f"cannot start {argv[0]!r}: {exc}"


def exit_status(code: int) -> int:
    """The runner's own exit status mirrors the command's, shell style for signals."""
    return 128 - code if code < 0 else code
