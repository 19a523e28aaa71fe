"""The local driver's exit watcher: one thread blocked on the pidfds of running jobs.

Exits are noticed, not polled for: on an exit the thread calls back (reap, free
capacity, start what now fits, wake the daemon), typically within a millisecond. A
self-pipe hands it new pidfds and wakes it for kill deadlines. Works for processes
that are not our children (jobs adopted after a daemon restart) as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
from collections.abc import Callable

__all__ = ["ExitWatcher"]

log = logging.getLogger(__name__)


class ExitWatcher:
    """A thread blocked on pidfds; reports exits and wakes for deadlines.

    Only this thread touches its selector; other threads hand it pidfds through
    ``watch`` (a list + one byte on the self-pipe). It owns the pidfds it is given
    and closes them once the process has exited or when it stops.
    """

    def __init__(
        self,
        on_exit: Callable[[list[str]], None],
        on_wake: Callable[[], float | None],
    ) -> None:
        self._on_exit = on_exit
        self._on_wake = on_wake  # runs due deadlines; returns seconds to the next one
        self._lock = threading.Lock()
        self._new: list[tuple[str, int]] = []
        self._stopping = False
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # made here, not in the thread: out of descriptors, epoll_create fails in the
            # caller (who keeps the job unsettled), never in a thread that would then die
            # silently and leave every watched job "running" for good
            self._selector = selectors.DefaultSelector()
        except BaseException:
            os.close(self._read_fd)
            os.close(self._write_fd)
            raise
        self._thread = threading.Thread(target=self._run, name="clusterd-local-exits", daemon=True)
        self._thread.start()

    def watch(self, token: str, pidfd: int) -> None:
        with self._lock:
            self._new.append((token, pidfd))
        self.poke()

    def poke(self) -> None:
        """Make the thread look at new pidfds and deadlines now."""
        with contextlib.suppress(BlockingIOError):  # pipe full: a wake-up is pending anyway
            os.write(self._write_fd, b"\0")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self.poke()
        self._thread.join()
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _run(self) -> None:
        with self._selector as selector:
            selector.register(self._read_fd, selectors.EVENT_READ, None)
            try:
                self._loop(selector)
            finally:
                self._close_watched(selector)

    def _loop(self, selector: selectors.BaseSelector) -> None:
        timeout: float | None = None
        while True:
            ready = selector.select(timeout)
            exited = [key.data for key, _ in ready if key.data is not None]
            for key, _ in ready:
                if key.data is not None:
                    selector.unregister(key.fd)
                    os.close(key.fd)
            if not self._take_new(selector):
                return
            timeout = self._deliver(exited)

    def _take_new(self, selector: selectors.BaseSelector) -> bool:
        """Drain the pipe and register new pidfds; False once asked to stop."""
        while True:
            try:
                if not os.read(self._read_fd, 4096):
                    break
            except BlockingIOError:
                break
        with self._lock:
            new, self._new = self._new, []
            stopping = self._stopping
        for token, pidfd in new:
            selector.register(pidfd, selectors.EVENT_READ, token)
        return not stopping

    def _deliver(self, exited: list[str]) -> float | None:
        """Run the callbacks; a failing one is logged, never fatal to the thread."""
        try:
            if exited:
                self._on_exit(exited)
            return self._on_wake()
        except Exception:
            log.exception("local driver: exit handling failed")
            return 1.0

    def _close_watched(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            new, self._new = self._new, []
        for key in list(selector.get_map().values()):
            if key.data is not None:
                os.close(key.fd)
        for _, pidfd in new:
            os.close(pidfd)
