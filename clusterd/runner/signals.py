"""Signals and deadlines: how the runner waits without polling its command.

Handlers only record the signal; ``signal.set_wakeup_fd`` writes a byte to a pipe for
every signal (SIGCHLD included), and the main loop ``select()``s on that pipe with the
next deadline (resume signal, time limit, SIGKILL) as its timeout. So the runner reacts
at once to an exit, a forwarded signal or a deadline, and sleeps otherwise.
"""

from __future__ import annotations

import os
import select
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FORWARDED_SIGNALS", "Deadlines", "Wakeup"]

#: signals received by the runner and passed on to the command's process group
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class Wakeup:
    """The forwarded signals received so far (``pending``) and the pipe that wakes us."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self._read_fd = -1

    def install(self) -> None:
        """Handlers only record; the wakeup pipe makes the main loop act on them at once."""
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._read_fd = wake_r
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def _on_sigchld(self, signum: int, frame: Any) -> None:
        """Nothing to do here: the byte in the wakeup pipe is what wakes the loop."""

    def sleep(self, deadline: float | None) -> None:
        """Block until a signal (SIGCHLD included) arrives or the deadline passes."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self._read_fd], [], [], timeout)
        if ready:
            try:
                while os.read(self._read_fd, 512):
                    pass
            except BlockingIOError:
                pass


class Deadlines:
    """When to send the resume signal, to enforce the time limit, to SIGKILL (monotonic
    seconds; None: not armed). Each fires once: the supervisor clears it as it acts."""

    __slots__ = ("kill_at", "limit_at", "resume_at")

    def __init__(self) -> None:
        self.resume_at: float | None = None
        self.limit_at: float | None = None
        self.kill_at: float | None = None

    def arm_time_limit(self, t0: float, limit: float | None, lead: float, enforce: bool) -> None:
        """The resume signal at the lead (whatever the scheduler does), then the limit."""
        if limit is None:
            return
        # a lead as long as the limit leaves the command no time to set up its handler
        self.resume_at = t0 + (limit - lead if lead < limit else limit / 2)
        if enforce:
            self.limit_at = t0 + limit

    def arm_kill(self, now: float, grace: float) -> None:
        """SIGKILL ``grace`` seconds after the first TERM (a later TERM does not delay it)."""
        if self.kill_at is None:
            self.kill_at = now + grace

    def next(self) -> float | None:
        deadlines = [d for d in (self.resume_at, self.limit_at, self.kill_at) if d is not None]
        return min(deadlines) if deadlines else None
