"""How the scheduler backs off what fails, so that one failure never stalls the rest.

Three things back off on their own, each with its own record:

* a driver whose calls fail (``DriverHealth`` in driverset.py): its polls and submits
  wait ``backoff_delay``, every other driver goes on;
* a sweep whose launches fail (``SweepTrouble``, ``note_launch_failure``): its files
  cannot be written or its driver refuses them; it alone waits ``backoff_delay``;
* a trial that keeps failing (``CrashLoop``): its next attempt waits ``crash_delay``.

This module holds the delays, the one-line reason a failure is reported with
(``describe``) and the sweep and trial records; the scheduler decides when to consult
them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clusterd.daemon.store import Store
from clusterd.errors import ClusterdError

__all__ = [
    "CRASH_BACKOFF_BASE",
    "CRASH_BACKOFF_MAX",
    "CrashLoop",
    "SweepTrouble",
    "backoff_delay",
    "crash_delay",
    "describe",
    "note_launch_failure",
]

log = logging.getLogger("clusterd.scheduler")

#: crash-loop backoff: a trial's next attempt after n genuine failures in a row waits
#: CRASH_BACKOFF_BASE * 2**(n-1) s (1, 2, 4, ... s), at most CRASH_BACKOFF_MAX
CRASH_BACKOFF_BASE = 1.0
CRASH_BACKOFF_MAX = 300.0


def crash_delay(streak: int) -> float:
    """Seconds a trial waits before its next attempt after ``streak`` failures in a row."""
    if streak <= 0:
        return 0.0
    return min(CRASH_BACKOFF_MAX, CRASH_BACKOFF_BASE * 2 ** min(streak - 1, 30))


def backoff_delay(failures: int, rnd: Callable[[], float] = random.random) -> float:
    """Seconds to wait after ``failures`` consecutive failed driver calls: 2 s doubling up to
    5 min, each drawn from the upper half of its interval ("equal jitter")."""
    ceiling = min(300.0, 2.0 * 2 ** min(failures - 1, 16))
    return ceiling * (0.5 + 0.5 * rnd())


def describe(exc: BaseException) -> str:
    """One line for a failure: the user-facing message, or the OS error with its path."""
    if isinstance(exc, ClusterdError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"cannot write the sweep's files ({exc.strerror}{where})"
    return repr(exc)


@dataclass
class SweepTrouble:
    """Why a sweep's launches fail (its files cannot be written, its driver refuses them),
    kept in memory: the sweep alone backs off while every other sweep and poll go on."""

    reason: str
    since: float
    failures: int = 1
    next_try_at: float = 0.0

    def view(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "since": self.since,
            "failures": self.failures,
            "next_try_at": self.next_try_at,
        }


def note_launch_failure(
    troubles: dict[str, SweepTrouble], sweep_name: str, exc: BaseException, prefix: str = ""
) -> None:
    """Mark a sweep whose launch failed; it alone backs off (2 s doubling to 5 min)."""
    reason = prefix + describe(exc)
    now = time.time()
    trouble = troubles.get(sweep_name)
    if trouble is None:
        trouble = troubles[sweep_name] = SweepTrouble(reason=reason, since=now)
    else:
        trouble.failures += 1
        trouble.reason = reason
    delay = backoff_delay(trouble.failures)
    trouble.next_try_at = now + delay
    log.warning(
        "sweep %s: cannot launch trials (%d failed in a row): %s; next try in %.0f s",
        sweep_name,
        trouble.failures,
        reason,
        delay,
    )


class CrashLoop:
    """The trials held back by the crash-loop backoff, and which pending trials may go."""

    def __init__(self) -> None:
        #: trials held back: trial id -> when they may go
        self.retry_at: dict[int, float] = {}

    def waits(self) -> list[float]:
        """When each held trial may go."""
        return list(self.retry_at.values())

    def ready_trials(
        self, store: Store, conn: Any, sweep: Any, free: int
    ) -> tuple[list[Any], dict[int, str]]:
        """Up to ``free`` pending trials that may go now, and the new pending reasons of those
        the crash-loop backoff holds back (``crash_delay``: a trial that keeps failing waits
        1, 2, 4, ... s, at most 5 min, between attempts; a resume or success resets it)."""
        now = time.time()
        held = sum(1 for until in self.retry_at.values() if until > now)
        rows = store.pending_trials(conn, sweep.id, free + held)
        fresh = [t for t in rows if t.failures and self.retry_at.get(t.id, 0.0) <= now]
        waits: dict[int, str] = {}
        if fresh:
            streaks = store.failure_streaks(conn, [t.id for t in fresh])
            for trial in fresh:
                streak, ended = streaks.get(trial.id, (0, None))
                self.retry_at.pop(trial.id, None)
                until = (ended or now) + crash_delay(streak)
                if until > now:
                    self.retry_at[trial.id] = until
                    base = (trial.reason or "failed").split("; next attempt in")[0]
                    waits[trial.id] = (
                        f"{base}; next attempt in {until - now:.0f} s "
                        f"(crash-loop backoff after {streak} failure(s) in a row)"
                    )
        for trial_id in [k for k, until in self.retry_at.items() if until <= now]:
            del self.retry_at[trial_id]
        ready = [t for t in rows if t.id not in self.retry_at]
        return ready[:free], waits
