"""The scheduling loop: submit, poll, ingest, finish -- one pass at a time.

A pass (``tick``) runs when a driver signals a change, when a request changes
state (submit, cancel, relaunch) or when the next poll or ingest is due. Each
pass:

1. polls every driver that has live jobs, in one call per driver;
2. ingests new lines of the live attempts' events files;
3. ends attempts whose job is gone (reading the runner's status.json) and moves
   their trials on (resume, retry, completed, failed, cancelled, stopped);
4. submits pending trials up to each sweep's ``max_concurrent``, writing the
   attempt rows *before* calling the driver (write-ahead, principle 1).

The scheduler runs on its own thread and event loop (``start_thread``), so a pass
stuck on a locked database never freezes the socket; driver calls run in worker
threads of that loop. Requests that change scheduling state (``cancel``,
``stop_trial``) run on the scheduler's loop too, between passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clusterd import layout, runner
from clusterd.daemon.attempt_times import ended_times, runner_started_at
from clusterd.daemon.db import WritesRefused, check_write_guard
from clusterd.daemon.ingest import AttemptCursor, IngestResult, ingest_attempt, open_cursor
from clusterd.daemon.launchfile import AttemptDirRefused, write_launch
from clusterd.daemon.outcome import Ending, decide
from clusterd.daemon.repro import attempt_code
from clusterd.daemon.searching import Proposer
from clusterd.daemon.stopper import Stopper, write_marker
from clusterd.daemon.store import FINAL_STATES, Store
from clusterd.drivers.base import Driver, JobRef, JobRequest, JobStatus
from clusterd.errors import ClusterdError, InvalidRequest, NotFound
from clusterd.spec.model import SweepSpec

__all__ = ["DriverSet", "Scheduler"]

log = logging.getLogger("clusterd.scheduler")
R = TypeVar("R")

#: the longest gap between reads of the events files while trials report nothing
MAX_INGEST_INTERVAL = 2.0
#: the runner's grace between SIGTERM and SIGKILL
KILL_GRACE = 10
#: how drivers start the runner: isolated (-I) and without site-packages (-S), since it
#: is stdlib only -- that saves ~20 ms of interpreter start-up per trial
RUNNER_ARGV = (sys.executable, "-I", "-S", str(Path(runner.__file__).resolve()))


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


class DriverSet:
    """Driver instances by name, created on first use from the registry's classes."""

    def __init__(
        self,
        classes: dict[str, type[Driver]],
        wakeup: Callable[[], None],
        may_launch: Callable[[], bool] = lambda: True,
    ) -> None:
        self.classes = classes
        self._instances: dict[str, Driver] = {}
        self._wakeup = wakeup
        self._may_launch = may_launch
        self._lock = threading.Lock()  # the scheduler and request handlers both ask

    def get(self, name: str) -> Driver:
        with self._lock:
            if name not in self._instances:
                if name not in self.classes:
                    known = ", ".join(sorted(self.classes)) or "none"
                    raise NotFound(f"no driver named {name!r} is installed (installed: {known})")
                driver = self.classes[name]()
                driver.set_wakeup(self._wakeup)
                driver.set_launch_guard(self._may_launch)
                self._instances[name] = driver
            return self._instances[name]

    def close(self) -> None:
        for driver in self._instances.values():
            try:
                driver.close()
            except Exception:
                log.exception("closing driver %s failed", driver.name)


@dataclass
class DriverHealth:
    last_poll_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    next_try_at: float = 0.0


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


@dataclass
class Stats:
    ticks: int = 0
    submitted: int = 0
    ended: int = 0
    lines: int = 0
    started_at: float = field(default_factory=time.time)


class Scheduler:
    """Owns the pass loop; handlers call ``wake`` after changing state."""

    def __init__(
        self,
        store: Store,
        drivers: DriverSet,
        ingest_interval: float = 0.25,
        stopper: Stopper | None = None,
        proposer: Proposer | None = None,
    ) -> None:
        """``ingest_interval`` is the shortest gap between reads of the events files; while
        nothing new arrives it doubles up to ``MAX_INGEST_INTERVAL`` (fewer stats on NFS).
        ``stopper`` and ``proposer`` hold the installed stop rules and search methods."""
        self.store = store
        self.drivers = drivers
        self.stopper = stopper or Stopper(store, {})
        self.proposer = proposer or Proposer(store, {})
        self._markers: list[tuple[str, dict[str, Any]]] = []
        self._terminated: set[int] = set()
        self.ingest_interval = ingest_interval
        self._ingest_delay = ingest_interval
        self.health: dict[str, DriverHealth] = {}
        self.stats = Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._poll_now = True
        self._stopping = False
        self._cursors: dict[int, AttemptCursor] = {}
        self._gone_since: dict[int, float] = {}
        self._specs: dict[int, tuple[Any, SweepSpec]] = {}
        self._last_ingest = 0.0
        self._has_live = False
        self._bad_hosts: dict[int, dict[str, int]] = {}
        #: sweeps whose launches fail, by name (``SweepTrouble``)
        self.troubles: dict[str, SweepTrouble] = {}
        #: trials held back by the crash-loop backoff: trial id -> when they may go
        self._retry_at: dict[int, float] = {}
        #: why this scheduler stopped for good (lease lost, database gone), if it did
        self.halted: str | None = None

    # -- loop -----------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a pass as soon as possible (safe from any thread)."""
        self._poll_now = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended (a halted scheduler)
                self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def start_thread(self) -> threading.Thread:
        """Run the pass loop on its own thread and event loop (the daemon's way)."""
        thread = threading.Thread(
            target=asyncio.run, args=(self.run(),), name="clusterd-scheduler", daemon=True
        )
        thread.start()
        return thread

    async def _on_loop(self, coro: Coroutine[Any, Any, R]) -> R:
        """Await ``coro`` on the scheduler's loop (from a request handler on another one),
        so it runs between passes, never interleaved with one on another thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await self.tick()
            except WritesRefused as exc:
                self.halted = exc.message
                log.error("scheduling stopped: %s", exc.message)
                self._stopping = True
                break
            except ClusterdError as exc:
                log.error("pass failed: %s", exc.message)
                self._cursors.clear()  # they may have advanced in a rolled-back transaction
            except Exception:
                log.exception("pass failed")
                self._cursors.clear()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_timeout())
            self._wake.clear()

    def _idle_timeout(self) -> float:
        due = [t.next_try_at for t in self.troubles.values()]
        due.extend(self._retry_at.values())
        soonest = max(0.05, min(due) - time.time()) if due else 30.0
        if not self._has_live:
            return min(30.0, soonest)
        intervals = [self._ingest_delay, soonest]
        for name in self.health:
            try:
                intervals.append(self.drivers.get(name).poll_interval)
            except NotFound:
                continue
        return max(0.05, min(intervals))

    async def tick(self) -> None:
        self.stats.ticks += 1
        poll_now, self._poll_now = self._poll_now, False
        with self.store.read() as conn:
            live = self.store.live_attempts(conn)
            live_ids = {a.sweep_id for a in live}
            sweeps = {s.id: s for s in self.store.scheduling_sweeps(conn, live_ids)}
        self._has_live = bool(live)
        by_driver: dict[str, list[Any]] = {}
        for attempt in live:
            by_driver.setdefault(sweeps[attempt.sweep_id].driver, []).append(attempt)
        for name, attempts in by_driver.items():
            try:
                await self._track_driver(name, attempts, sweeps, poll_now)
            except WritesRefused:
                raise
            except Exception as exc:  # one driver's trouble (or one sweep's files) stays its own
                self._driver_failed(name, exc)
        self._ingest_live(sweeps)
        await self._enforce_ends(live, sweeps)
        await self._submit_pending(sweeps)
        self._finish_sweeps()

    # -- polling and ending ---------------------------------------------------

    async def _track_driver(
        self, name: str, attempts: list[Any], sweeps: dict[int, Any], poll_now: bool
    ) -> None:
        driver = self._driver(name)
        if driver is None:
            return
        health = self.health.setdefault(name, DriverHealth())
        now = time.time()
        due = health.last_poll_at is None or now - health.last_poll_at >= driver.poll_interval
        if not (poll_now or due) or now < health.next_try_at:
            return
        submitting = [a for a in attempts if a.state == "submitting"]
        tracked = [a for a in attempts if a.state != "submitting" and a.job_id]
        if submitting:
            await self._recover_submitting(name, driver, submitting, sweeps)
        if not tracked:
            return
        refs = [self._ref(a, sweeps) for a in tracked]
        statuses = await self._call(name, driver.poll, refs)
        if statuses is None:
            return
        health.last_poll_at = time.time()
        with self._tx() as conn:
            for attempt in tracked:
                status = statuses.get(attempt.token)
                if status is not None:
                    self._apply(conn, attempt, status, sweeps[attempt.sweep_id], driver)

    def _apply(
        self, conn: Any, attempt: Any, status: JobStatus, sweep: Any, driver: Driver
    ) -> None:
        if status.phase == "queued":
            if status.reason != attempt.reason:
                self.store.update_attempt(conn, attempt.id, reason=status.reason)
        elif status.phase == "running":
            if attempt.state != "running":
                self._mark_running(conn, attempt, status, sweep)
        elif status.phase == "gone":
            self._end(conn, attempt, status, sweep, driver)

    def _mark_running(self, conn: Any, attempt: Any, status: JobStatus, sweep: Any) -> None:
        self.store.update_attempt(
            conn,
            attempt.id,
            state="running",
            host=status.host,
            reason=None,
            # the runner's clock: the first poll that saw "running" may be a poll late
            started_at=runner_started_at(self._attempt_dir(sweep, attempt)) or time.time(),
        )
        trial = self.store.trial_by_id(conn, attempt.trial_id)
        if trial.state == "queued":
            where = f" on {status.host}" if status.host else ""
            self.store.transition(conn, trial, "running", f"started{where}", attempt.number)

    def _end(self, conn: Any, attempt: Any, status: JobStatus, sweep: Any, driver: Driver) -> None:
        adir = self._attempt_dir(sweep, attempt)
        cursor = self._cursor(attempt, sweep)
        cursor.ended = True
        if self._ingest(conn, sweep, attempt, cursor, final=False).more:
            return  # a backlog: the next passes read it, a chunk each, and commit each
        try:
            result = layout.read_status(adir)
        except layout.StatusNotReadable as exc:
            log.warning("attempt %s: status.json not readable now (%s); next pass", attempt.id, exc)
            return  # out of fds or memory: the result is there, read it on a later pass
        if result is None:
            first = self._gone_since.setdefault(attempt.id, time.time())
            if time.time() - first < driver.status_grace and not attempt.cancel_requested:
                return  # the shared filesystem may not show status.json yet
        self._ingest(conn, sweep, attempt, cursor, final=True)
        self._gone_since.pop(attempt.id, None)
        self._cursors.pop(attempt.id, None)
        trial = self.store.trial_by_id(conn, attempt.trial_id)
        spec = self._spec(sweep)
        ending = Ending(
            status=result,
            cancel_requested=bool(attempt.cancel_requested),
            stop_requested=trial.stop_decision is not None,
            checkpointed=self.store.has_checkpoint(conn, attempt.trial_id, attempt.number),
            scheduler_reason=status.scheduler_state or status.reason,
        )
        verdict = decide(ending, spec.resume, spec.retry, trial.failures, trial.resumes)
        started_at, ended_at = ended_times(result, adir, attempt.started_at, time.time())
        self.store.update_attempt(
            conn,
            attempt.id,
            state="ended",
            outcome=verdict.outcome,
            reason=verdict.reason,
            exit_code=(result or {}).get("exit_code"),
            signal=(result or {}).get("signal"),
            host=attempt.host or (result or {}).get("host"),  # the scheduler's node name
            started_at=started_at,
            ended_at=ended_at,
        )
        self.store.transition(
            conn,
            trial,
            verdict.trial_state,
            verdict.reason,
            attempt.number,
            failures=trial.failures + int(verdict.failure),
            resumes=trial.resumes + int(verdict.resume),
        )
        self._terminated.discard(attempt.id)
        self.stats.ended += 1

    # -- ingestion ------------------------------------------------------------

    def _ingest_live(self, sweeps: dict[int, Any]) -> None:
        now = time.time()
        if now - self._last_ingest < self._ingest_delay:
            return
        self._last_ingest = now
        with self.store.read() as conn:
            live = [a for a in self.store.live_attempts(conn) if a.state in ("queued", "running")]
        if not live:
            return
        with self.store.read() as conn:  # replayed outside the write transaction
            for sweep_id in {a.sweep_id for a in live}:
                sweep = sweeps[sweep_id]
                if Stopper.applies(sweep):
                    self.stopper.rule(conn, sweep, self._spec(sweep))
        lines, backlog, drained = 0, False, False
        with self._tx() as conn:
            for attempt in live:
                cursor = self._cursor(attempt, sweeps[attempt.sweep_id])
                result = self._ingest(conn, sweeps[attempt.sweep_id], attempt, cursor)
                lines += result.lines
                backlog = backlog or result.more
                drained = drained or (cursor.ended and not result.more)
        self._write_markers()
        self.stats.lines += lines
        quiet = min(self._ingest_delay * 2, MAX_INGEST_INTERVAL)
        self._ingest_delay = self.ingest_interval if lines else quiet
        if backlog or drained:
            # a chunk per attempt per pass keeps the loop live; the next pass comes at
            # once until the backlog is read, then a poll ends the drained attempts
            self._ingest_delay = 0.0 if backlog else self._ingest_delay
            self._poll_now = self._poll_now or drained
            self._wake.set()

    def _ingest(
        self, conn: Any, sweep: Any, attempt: Any, cursor: AttemptCursor, final: bool = False
    ) -> IngestResult:
        """Ingest an attempt's new lines, feed its stop rule, and tell subscribers (the last
        read of an ended attempt too, so the TUI's row shows its final step)."""
        result = ingest_attempt(self.store, conn, cursor, final=final)
        self._judge(conn, sweep, attempt, result)
        if result.progress:
            self.store.publish(
                {
                    "type": "progress",
                    "sweep_id": attempt.sweep_id,
                    "index": attempt.index,
                    **result.progress,
                }
            )
        return result

    def _cursor(self, attempt: Any, sweep: Any) -> AttemptCursor:
        cursor = self._cursors.get(attempt.id)
        if cursor is None:
            with self.store.read() as conn:  # best and last step: of the attempt's lineage
                cursor = open_cursor(
                    self.store, conn, attempt, sweep, self._attempt_dir(sweep, attempt)
                )
            self._cursors[attempt.id] = cursor
        return cursor

    # -- submission -----------------------------------------------------------

    async def _submit_pending(self, sweeps: dict[int, Any]) -> None:
        """Launch each active sweep's pending trials. A sweep whose launch fails (its output
        dir is full or read-only, its driver refuses) is marked (``troubles``) and retried
        with growing backoff; the other sweeps, and polling, go on."""
        for sweep in sweeps.values():
            if sweep.state != "active":
                continue
            trouble = self.troubles.get(sweep.name)
            if trouble is not None and time.time() < trouble.next_try_at:
                continue
            try:
                await self._submit_sweep(sweep)
            except WritesRefused:
                raise
            except Exception as exc:
                self._sweep_failed(sweep.name, exc)

    async def _submit_sweep(self, sweep: Any) -> None:
        driver = self._driver(sweep.driver)
        health = self.health.setdefault(sweep.driver, DriverHealth())
        if driver is None or time.time() < health.next_try_at:
            return
        spec = self._spec(sweep)
        with self.store.read() as conn:
            free = spec.max_concurrent - self.store.live_count(conn, sweep.id)
        if free <= 0:
            return
        if self.proposer.is_adaptive(spec):
            with self._tx() as conn:
                self.proposer.top_up(conn, sweep, spec, free)
        hosts: dict[str, int] = {}
        with self.store.read() as conn:
            trials, waits = self._ready_trials(conn, sweep, free)
            if trials:
                hosts = self.store.failing_hosts(conn, sweep.id, spec.retry.exclude_host_after)
        if waits:
            with self._tx() as conn:
                for trial_id, reason in waits.items():
                    self.store.update_trial_progress(conn, trial_id, reason=reason)
        if trials:
            await self._exclude_hosts(sweep, spec, driver, hosts)
            await self._submit_trials(sweep, spec, driver, trials)

    def _ready_trials(self, conn: Any, sweep: Any, free: int) -> tuple[list[Any], dict[int, str]]:
        """Up to ``free`` pending trials that may go now, and the new pending reasons of those
        the crash-loop backoff holds back (``crash_delay``: a trial that keeps failing waits
        1, 2, 4, ... s, at most 5 min, between attempts; a resume or success resets it)."""
        now = time.time()
        held = sum(1 for until in self._retry_at.values() if until > now)
        rows = self.store.pending_trials(conn, sweep.id, free + held)
        fresh = [t for t in rows if t.failures and self._retry_at.get(t.id, 0.0) <= now]
        waits: dict[int, str] = {}
        if fresh:
            streaks = self.store.failure_streaks(conn, [t.id for t in fresh])
            for trial in fresh:
                streak, ended = streaks.get(trial.id, (0, None))
                self._retry_at.pop(trial.id, None)
                until = (ended or now) + crash_delay(streak)
                if until > now:
                    self._retry_at[trial.id] = until
                    base = (trial.reason or "failed").split("; next attempt in")[0]
                    waits[trial.id] = (
                        f"{base}; next attempt in {until - now:.0f} s "
                        f"(crash-loop backoff after {streak} failure(s) in a row)"
                    )
        for trial_id in [k for k, until in self._retry_at.items() if until <= now]:
            del self._retry_at[trial_id]
        ready = [t for t in rows if t.id not in self._retry_at]
        return ready[:free], waits

    async def _exclude_hosts(
        self, sweep: Any, spec: SweepSpec, driver: Driver, hosts: dict[str, int]
    ) -> None:
        """Note the hosts to exclude, never all the eligible ones (the driver lists those
        where it can tell): the last eligible host stays, or nothing could ever run."""
        if hosts:
            options = spec.driver_options.get(sweep.driver, {})
            try:
                eligible = await asyncio.to_thread(driver.eligible_hosts, spec.resources, options)
            except Exception as exc:
                log.warning("sweep %s: cannot list eligible hosts: %s", sweep.name, exc)
                eligible = None
            hosts = keep_one_eligible(sweep.name, hosts, eligible)
        self._note_bad_hosts(sweep, hosts)

    def _note_bad_hosts(self, sweep: Any, hosts: dict[str, int]) -> None:
        """Remember (and report once) the hosts this sweep's new attempts must avoid."""
        known = self._bad_hosts.setdefault(sweep.id, {})
        for host in [h for h in known if h not in hosts]:
            del known[host]
        for host, failures in hosts.items():
            if host not in known:
                log.warning(
                    "sweep %s: excluding host %s after %d failed attempts there",
                    sweep.name,
                    host,
                    failures,
                )
        known.update(hosts)

    def retry_waits(self) -> list[float]:
        """When each trial held by the crash-loop backoff may go (for ``status``)."""
        return list(self._retry_at.values())

    def bad_hosts(self, sweep_id: int) -> dict[str, int]:
        return dict(self._bad_hosts.get(sweep_id, {}))

    async def _submit_trials(
        self, sweep: Any, spec: SweepSpec, driver: Driver, trials: Sequence[Any]
    ) -> None:
        requests, rows, taken, refused = [], [], [], []
        repro = self._repro(sweep)
        code = await asyncio.to_thread(attempt_code, repro, sweep.output_dir, spec.source)
        for trial in trials:
            number = trial.attempts + 1
            token = f"cd-{sweep.name[:40]}-{trial.index}-{number}-{secrets.token_hex(3)}"
            adir = layout.attempt_dir(sweep.output_dir, trial.index, number)
            why = self._write_launch(sweep, spec, driver, repro, trial, number, adir, token)
            if why is not None:
                refused.append((trial, number, token, why))
                continue
            taken.append(trial)
            rows.append(
                {
                    "trial_id": trial.id,
                    "number": number,
                    "token": token,
                    "state": "submitting",
                    "events_offset": 0,
                    "cancel_requested": False,
                    **code,  # the code this attempt runs (per attempt, issue #12 item 7)
                }
            )
            requests.append(self._request(sweep, spec, trial.index, number, token, adir))
        with self._tx() as conn:
            self.store.add_attempts(conn, rows)
            for trial, row in zip(taken, rows, strict=True):
                self.store.transition(
                    conn, trial, "queued", "submitted", row["number"], attempts=row["number"]
                )
            self._refuse_new(conn, refused)
        await self._send(sweep.driver, driver, requests)

    async def _send(self, name: str, driver: Driver, requests: list[JobRequest]) -> None:
        """Submit (after checking, in the database, that this daemon still holds the lease);
        a failed submit backs off the requests' sweeps only, never the driver's polls."""
        sweeps = sorted({r.sweep for r in requests})
        if any(time.time() < self._trouble_until(s) for s in sweeps):
            return  # attempts stay 'submitting'; offered again when the sweep's backoff ends
        await asyncio.to_thread(check_write_guard, self.store.engine)
        try:
            accepted = await asyncio.to_thread(driver.submit, requests)
        except Exception as exc:
            for sweep_name in sweeps:
                self._sweep_failed(sweep_name, exc, f"driver {name}: submit failed: ")
            return  # attempts stay 'submitting'; found or resubmitted on a later pass
        for sweep_name in sweeps:
            if self.troubles.pop(sweep_name, None) is not None:
                log.info("sweep %s: launches work again", sweep_name)
        if not accepted:
            return
        now = time.time()
        with self._tx() as conn:
            ids = self.store.attempt_ids(conn, list(accepted))
            for token, job_id in accepted.items():
                if token in ids:
                    self.store.update_attempt(
                        conn, ids[token], state="queued", job_id=job_id, submitted_at=now
                    )
        self.stats.submitted += len(accepted)
        self._poll_now = True
        if self._loop is not None:
            self._wake.set()

    async def _recover_submitting(
        self, name: str, driver: Driver, attempts: list[Any], sweeps: dict[int, Any]
    ) -> None:
        """Attempts written but never confirmed: adopt the job if it exists, else resubmit."""
        refs = [self._ref(a, sweeps) for a in attempts]
        found = await self._call(name, driver.find, refs)
        if found is None:
            return
        now = time.time()
        resubmit: list[Any] = []
        with self._tx() as conn:
            for attempt in attempts:
                if attempt.token in found:
                    self.store.update_attempt(
                        conn,
                        attempt.id,
                        state="queued",
                        job_id=found[attempt.token],
                        submitted_at=now,
                    )
                elif attempt.cancel_requested:
                    gone = JobStatus(phase="gone", reason="cancelled before submission")
                    self._end(conn, attempt, gone, sweeps[attempt.sweep_id], driver)
                else:
                    resubmit.append(attempt)
        if resubmit:
            requests = []
            for a in resubmit:
                sweep = sweeps[a.sweep_id]
                spec = self._spec(sweep)
                adir = self._attempt_dir(sweep, a)
                with self.store.read() as conn:
                    trial = self.store.trial_by_id(conn, a.trial_id)
                why = self._write_launch(
                    sweep, spec, driver, self._repro(sweep), trial, a.number, adir, a.token, True
                )
                if why is not None:  # not ours, or it ran: end the attempt, never reuse the dir
                    with self._tx() as conn:
                        self._refuse_known(conn, a, why)
                    continue
                requests.append(self._request(sweep, spec, a.index, a.number, a.token, adir))
            if requests:
                await self._send(name, driver, requests)

    def _request(
        self, sweep: Any, spec: SweepSpec, index: int, number: int, token: str, adir: str
    ) -> JobRequest:
        return JobRequest(
            token=token,
            sweep=sweep.name,
            trial_index=index,
            attempt=number,
            attempt_dir=adir,
            argv=(*RUNNER_ARGV, os.path.join(adir, "launch.json")),
            resources=spec.resources,
            options=spec.driver_options.get(sweep.driver, {}),
            exclude_hosts=tuple(sorted(self._bad_hosts.get(sweep.id, {}))),
            resume_signal=spec.resume.signal,
            resume_lead=spec.resume.signal_lead,
        )

    def _repro(self, sweep: Any) -> dict[str, Any]:
        """The sweep's reproducibility record (read per launch batch: ``pip freeze`` is
        merged into it after the submit reply, and pass-wide sweep rows leave it out)."""
        with self.store.read() as conn:
            return self.store.sweep_repro(conn, sweep.id)

    def _write_launch(
        self,
        sweep: Any,
        spec: SweepSpec,
        driver: Driver,
        repro: dict[str, Any],
        trial: Any,
        number: int,
        adir: str,
        token: str,
        again: bool = False,
    ) -> str | None:
        """Create the attempt dir once and write launch.json 0600 in it (launchfile.py);
        the reason when the dir is refused (it exists and is not this unstarted attempt's).
        ``again``: the attempt is recorded already and its launch is written a second time."""
        launch = {
            "version": 1,
            "token": token,
            "sweep": sweep.name,
            "trial_index": trial.index,
            "trial_id": f"{sweep.name}/{trial.index}",
            "attempt": number,
            "trial_dir": layout.trial_dir(sweep.output_dir, trial.index),
            "attempt_dir": adir,
            "command": list(spec.command),
            "params": trial.params,
            "cwd": repro.get("code_dir") or repro.get("workdir") or os.path.dirname(spec.source),
            "env": dict(spec.env.vars),
            "setup": spec.env.setup,
            "resume": {
                "exit_code": spec.resume.exit_code,
                "signal": spec.resume.signal,
                "signal_lead": spec.resume.signal_lead,
            },
            "time_limit": spec.resources.time_seconds,
            "enforce_time_limit": not driver.enforces_time_limit,
            "kill_grace": KILL_GRACE,
            "gpu_interval": spec.gpu.interval,
        }
        try:
            write_launch(sweep.output_dir, trial.index, number, launch, again=again)
        except AttemptDirRefused as exc:
            log.warning("sweep %s: trial %d: %s", sweep.name, trial.index, exc)
            return str(exc)
        return None

    def _refuse_new(self, conn: Any, refused: list[tuple[Any, int, str, str]]) -> None:
        """Attempts whose dir was refused before they were recorded: recorded as ended,
        their trial failed with the reason (running them would mix two runs' files)."""
        now = time.time()
        for trial, number, token, why in refused:
            row = {"trial_id": trial.id, "number": number, "token": token, "state": "ended"}
            row.update(outcome="failed", reason=why, ended_at=now, events_offset=0)
            self.store.add_attempts(conn, [{**row, "cancel_requested": False}])
            self.store.transition(
                conn, trial, "failed", why, number, attempts=number, failures=trial.failures + 1
            )

    def _refuse_known(self, conn: Any, attempt: Any, why: str) -> None:
        """A recorded, unconfirmed attempt whose dir is refused: it ends, never resubmitted."""
        self.store.update_attempt(
            conn, attempt.id, state="ended", outcome="failed", reason=why, ended_at=time.time()
        )
        trial = self.store.trial_by_id(conn, attempt.trial_id)
        self.store.transition(
            conn, trial, "failed", why, attempt.number, failures=trial.failures + 1
        )

    # -- early stopping -------------------------------------------------------

    def _judge(self, conn: Any, sweep: Any, attempt: Any, result: IngestResult) -> None:
        """Feed newly ingested values of the sweep's metric to its stop rule."""
        if result.observations and Stopper.applies(sweep):
            decision = self.stopper.observe(
                conn,
                sweep,
                self._spec(sweep),
                attempt.trial_id,
                attempt.index,
                result.observations,
            )
            if decision is not None:
                self._markers.append((self._attempt_dir(sweep, attempt), decision))

    def _write_markers(self) -> None:
        """After the decisions committed: the trial's ``should_stop()`` turns true."""
        markers, self._markers = self._markers, []
        for adir, decision in markers:
            write_marker(adir, decision)

    async def _enforce_ends(self, live: list[Any], sweeps: dict[int, Any]) -> None:
        """Terminate, through their drivers, the live attempts that must end: cancelled
        ones and stopped ones whose grace period is over (a stopped trial gets its marker
        first). Once per attempt per daemon: this also covers an attempt cancelled while
        it was still being submitted (no job id to cancel yet) and a daemon that died
        between recording a cancel and sending it. ``live`` is the pass's snapshot: what
        changes during the pass is enforced from the next one."""
        now = time.time()
        due: dict[str, list[JobRef]] = {}
        for attempt in live:
            sweep = sweeps.get(attempt.sweep_id)
            if sweep is None or attempt.state == "submitting":
                continue
            decision = attempt.stop_decision
            if decision and not attempt.cancel_requested:
                write_marker(self._attempt_dir(sweep, attempt), decision)
                if now < float(decision.get("at") or 0.0) + float(decision.get("grace") or 0):
                    continue
            elif not attempt.cancel_requested:
                continue
            if attempt.id in self._terminated or not attempt.job_id:
                continue
            self._terminated.add(attempt.id)
            due.setdefault(sweep.driver, []).append(self._ref(attempt, sweeps))
        for name, refs in due.items():
            driver = self._driver(name)
            if driver is not None:
                log.info("terminating %d cancelled or stopped attempt(s) on %s", len(refs), name)
                await self._call(name, driver.cancel, refs)

    async def stop_trial(self, sweep_name: str, index: int) -> dict[str, Any]:
        """Stop one trial early by hand: recorded like a rule's decision, rule "manual"."""
        return await self._on_loop(self._stop_trial(sweep_name, index))

    async def _stop_trial(self, sweep_name: str, index: int) -> dict[str, Any]:
        with self._tx() as conn:
            sweep = self.store.require_sweep(conn, sweep_name)
            trial = self.store.trial(conn, sweep, index)
            if trial.state in FINAL_STATES:
                raise InvalidRequest(
                    f"trial {sweep_name}/{index} has already ended ({trial.state}); nothing to stop"
                )
            record = self.stopper.stop_by_hand(conn, sweep, self._spec(sweep), trial)
            live = [a for a in self.store.live_attempts(conn, sweep.id) if a.trial_id == trial.id]
        for attempt in live:
            if attempt.state != "submitting":
                write_marker(self._attempt_dir(sweep, attempt), record)
        self.wake()
        return {"trial": f"{sweep_name}/{index}", "stopping": True, "grace": record["grace"]}

    # -- requests from handlers -----------------------------------------------

    async def cancel(self, sweep_name: str, index: int | None = None) -> dict[str, int]:
        """Cancel pending trials at once; ask the driver to stop live ones."""
        return await self._on_loop(self._cancel(sweep_name, index))

    async def _cancel(self, sweep_name: str, index: int | None = None) -> dict[str, int]:
        with self._tx() as conn:
            sweep = self.store.require_sweep(conn, sweep_name)
            if index is None:
                trials = [
                    t for t in self.store.trials(conn, sweep.id) if t.state not in FINAL_STATES
                ]
                self.store.set_sweep_state(conn, sweep, "cancelled")
            else:
                trial = self.store.trial(conn, sweep, index)
                trials = [trial] if trial.state not in FINAL_STATES else []
            pending = [t for t in trials if t.state == "pending"]
            self.store.set_trials_state(conn, pending, "cancelled", "cancelled by the user")
            live_ids = {t.id for t in trials if t.state != "pending"}
            attempts = [
                a for a in self.store.live_attempts(conn, sweep.id) if a.trial_id in live_ids
            ]
            for attempt in attempts:
                self.store.update_attempt(conn, attempt.id, cancel_requested=True)
        sent = [a for a in attempts if a.job_id and a.state != "submitting"]
        self._terminated.update(a.id for a in sent)  # the rest: _enforce_ends, next pass
        refs = [self._ref(a, {sweep.id: sweep}) for a in sent]
        if refs:
            await self._call(sweep.driver, self.drivers.get(sweep.driver).cancel, refs)
        self.wake()
        return {"cancelled": len(pending), "cancelling": len(attempts)}

    # -- helpers --------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """A store transaction; if it fails, forget the cached ingestion cursors, which may
        have advanced past lines whose rows were rolled back (they are re-read from the DB)."""
        try:
            with self.store.tx() as conn:
                yield conn
        except BaseException:
            self._cursors.clear()
            self._markers.clear()
            self.proposer.forget_all()
            raise

    def _finish_sweeps(self) -> None:
        with self.store.read() as conn:
            active = self.store.active_sweeps(conn)
            done = [
                s
                for s in active
                if not self.store.has_unfinished(conn, s.id)
                and not self.proposer.still_proposing(conn, s, self._spec(s))
            ]
        if done:
            with self._tx() as conn:
                for sweep in done:
                    self.store.set_sweep_state(conn, sweep, "done")

    def _trouble_until(self, sweep_name: str) -> float:
        trouble = self.troubles.get(sweep_name)
        return 0.0 if trouble is None else trouble.next_try_at

    def _sweep_failed(self, sweep_name: str, exc: BaseException, prefix: str = "") -> None:
        """Mark a sweep whose launch failed; it alone backs off (2 s doubling to 5 min)."""
        reason = prefix + _describe(exc)
        now = time.time()
        trouble = self.troubles.get(sweep_name)
        if trouble is None:
            trouble = self.troubles[sweep_name] = SweepTrouble(reason=reason, since=now)
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

    def _driver_failed(self, name: str, exc: BaseException) -> None:
        """A poll (or the recovery of unconfirmed launches) failed outside the driver call:
        noted in the driver's health; the next pass tries again, other drivers go on."""
        health = self.health.setdefault(name, DriverHealth())
        message = _describe(exc)
        health.last_error, health.last_error_at = message, time.time()
        log.warning("driver %s: tracking jobs failed: %s", name, message)

    def _driver(self, name: str) -> Driver | None:
        try:
            return self.drivers.get(name)
        except NotFound as exc:
            health = self.health.setdefault(name, DriverHealth())
            if health.last_error != exc.message:
                log.error("%s", exc.message)
            health.last_error, health.last_error_at = exc.message, time.time()
            return None

    async def _call(self, name: str, fn: Callable[..., R], *args: Any) -> R | None:
        """Run a driver method in a thread; on failure back off (2 s doubling to 5 min), with
        jitter so that many users' daemons don't retry a recovering slurmctld in lockstep."""
        health = self.health.setdefault(name, DriverHealth())
        try:
            result = await asyncio.to_thread(fn, *args)
        except Exception as exc:
            health.failures += 1
            delay = backoff_delay(health.failures)
            health.next_try_at = time.time() + delay
            message = exc.message if isinstance(exc, ClusterdError) else repr(exc)
            health.last_error, health.last_error_at = message, time.time()
            log.warning(
                "driver %s: %s failed: %s (retry in %.0f s)", name, fn.__name__, message, delay
            )
            return None
        health.failures = 0
        health.next_try_at = 0.0
        return result

    def _spec(self, sweep: Any) -> SweepSpec:
        cached = self._specs.get(sweep.id)
        if cached is None or cached[0] != sweep.updated_at:
            cached = (sweep.updated_at, SweepSpec.from_dict(sweep.spec))
            self._specs[sweep.id] = cached
        return cached[1]

    def _attempt_dir(self, sweep: Any, attempt: Any) -> str:
        return layout.attempt_dir(sweep.output_dir, attempt.index, attempt.number)

    def _ref(self, attempt: Any, sweeps: dict[int, Any]) -> JobRef:
        return JobRef(
            token=attempt.token,
            job_id=attempt.job_id,
            attempt_dir=self._attempt_dir(sweeps[attempt.sweep_id], attempt),
        )


def _describe(exc: BaseException) -> str:
    """One line for a failure: the user-facing message, or the OS error with its path."""
    if isinstance(exc, ClusterdError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"cannot write the sweep's files ({exc.strerror}{where})"
    return repr(exc)


def keep_one_eligible(
    sweep_name: str, hosts: dict[str, int], eligible: set[str] | None
) -> dict[str, int]:
    """``hosts`` to exclude, minus the one with the fewest failures when they would cover
    every eligible host (host names match node names in full or by their first label)."""
    if not eligible or not hosts:
        return hosts

    def node(host: str) -> str | None:
        if host in eligible:
            return host
        short = host.split(".", 1)[0]
        return short if short in eligible else None

    covered = {node(h) for h in hosts} - {None}
    if covered != eligible:
        return hosts
    keep = min((h for h in hosts if node(h) is not None), key=lambda h: (hosts[h], h))
    log.warning(
        "sweep %s: not excluding host %s after %d failures: it is the last eligible one",
        sweep_name,
        keep,
        hosts[keep],
    )
    return {h: n for h, n in hosts.items() if h != keep}
