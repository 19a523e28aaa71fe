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

This module keeps the loop and the order of its steps (transactions, write-ahead rows,
the lease check before a submit); the parts it consults live beside it: the drivers and
calls into them (driverset.py), the backoffs of failing sweeps and trials (backoff.py),
the hosts a sweep avoids (badhosts.py) and what an attempt is launched with
(launching.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clusterd.daemon import gpu_idle, gpu_retention
from clusterd.daemon.attempt_times import ended_times, runner_started_at
from clusterd.daemon.backoff import (
    CrashLoop,
    SweepTrouble,
    backoff_delay,
    crash_delay,
    note_launch_failure,
)
from clusterd.daemon.badhosts import BadHosts, keep_one_eligible
from clusterd.daemon.db import WritesRefused, check_write_guard
from clusterd.daemon.driverset import DriverCalls, DriverHealth, DriverSet
from clusterd.daemon.ingest import AttemptCursor, IngestResult, ingest_attempt, open_cursor
from clusterd.daemon.launching import (
    RUNNER_ARGV,
    job_request,
    refuse_known,
    refuse_new,
    write_attempt_launch,
)
from clusterd.daemon.outcome import Ending, decide
from clusterd.daemon.repro import attempt_code
from clusterd.daemon.searching import Proposer
from clusterd.daemon.stopper import Stopper, write_marker
from clusterd.daemon.store import FINAL_STATES, Store
from clusterd.drivers.base import Driver, JobRef, JobRequest, JobStatus
from clusterd.errors import ClusterdError, InvalidRequest, NotFound
from clusterd.node import layout
from clusterd.node.status import StatusNotReadable, read_status
from clusterd.spec.model import SweepSpec

# all but Scheduler live in driverset.py, backoff.py, badhosts.py and launching.py and
# are imported from here still; ``ingest_attempt`` stays a global of this module on
# purpose (tests/faults/test_crash_windows.py wraps it here, as it wraps _send and _end).
__all__ = [
    "RUNNER_ARGV",
    "DriverHealth",
    "DriverSet",
    "Scheduler",
    "SweepTrouble",
    "backoff_delay",
    "crash_delay",
    "keep_one_eligible",
]

log = logging.getLogger("clusterd.scheduler")
R = TypeVar("R")

#: the longest gap between reads of the events files while trials report nothing
MAX_INGEST_INTERVAL = 2.0


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
        #: attempts ended during the current pass: the pass's ``live`` snapshot still
        #: lists them, and they must not be cancelled a second time
        self._ended_in_pass: set[int] = set()
        self.ingest_interval = ingest_interval
        self._ingest_delay = ingest_interval
        self.driver_calls = DriverCalls(drivers)
        #: each driver's health, by name (``status``)
        self.health = self.driver_calls.health
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
        self._bad_hosts = BadHosts(drivers)
        #: sweeps whose launches fail, by name (``SweepTrouble``)
        self.troubles: dict[str, SweepTrouble] = {}
        #: trials held back by the crash-loop backoff
        self._crash_loop = CrashLoop()
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
        due.extend(self._crash_loop.waits())
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
        self._ended_in_pass.clear()
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
                self.driver_calls.failed(name, exc)
        self._ingest_live(sweeps)
        gpu_idle.watch(self, live, sweeps)  # [gpu] idle_warning (daemon/gpu_idle.py)
        gpu_retention.maybe_run(self.store)  # old GPU samples -> per-minute rows
        await self._enforce_ends(live, sweeps)
        await self._submit_pending(sweeps)
        self._finish_sweeps()

    # -- polling and ending ---------------------------------------------------

    async def _track_driver(
        self, name: str, attempts: list[Any], sweeps: dict[int, Any], poll_now: bool
    ) -> None:
        driver = self.driver_calls.get(name)
        if driver is None:
            return
        health = self.driver_calls.health_of(name)
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
        statuses = await self.driver_calls.call(name, driver.poll, refs)
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
            elif attempt.reason:  # it was held or vacated while it ran, and goes on
                self.store.update_attempt(conn, attempt.id, reason=None)
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
            result = read_status(adir)
        except StatusNotReadable as exc:
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
            stop_reason=_stop_reason(trial.stop_decision),
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
        self._ended_in_pass.add(attempt.id)
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
                note_launch_failure(self.troubles, sweep.name, exc)

    async def _submit_sweep(self, sweep: Any) -> None:
        driver = self.driver_calls.get(sweep.driver)
        health = self.driver_calls.health_of(sweep.driver)
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
            trials, waits = self._crash_loop.ready_trials(self.store, conn, sweep, free)
            if trials:
                hosts = self.store.failing_hosts(conn, sweep.id, spec.retry.exclude_host_after)
        if waits:
            with self._tx() as conn:
                for trial_id, reason in waits.items():
                    self.store.update_trial_progress(conn, trial_id, reason=reason)
        if trials:
            await self._bad_hosts.exclude(sweep, spec, driver, hosts)
            await self._submit_trials(sweep, spec, driver, trials)

    def retry_waits(self) -> list[float]:
        """When each trial held by the crash-loop backoff may go (for ``status``)."""
        return self._crash_loop.waits()

    def bad_hosts(self, sweep_id: int) -> dict[str, int]:
        return self._bad_hosts.of(sweep_id)

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
            why = write_attempt_launch(sweep, spec, driver, repro, trial, number, adir, token)
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
            refuse_new(self.store, conn, refused)
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
                note_launch_failure(
                    self.troubles, sweep_name, exc, f"driver {name}: submit failed: "
                )
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
        found = await self.driver_calls.call(name, driver.find, refs)
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
                if time.time() < self._trouble_until(sweep.name):
                    continue  # its files cannot be written now; tried again after its backoff
                spec = self._spec(sweep)
                adir = self._attempt_dir(sweep, a)
                with self.store.read() as conn:
                    trial = self.store.trial_by_id(conn, a.trial_id)
                try:
                    repro = self._repro(sweep)
                    why = write_attempt_launch(
                        sweep, spec, driver, repro, trial, a.number, adir, a.token, True
                    )
                except OSError as exc:  # one sweep's full or read-only disk stays its own
                    note_launch_failure(self.troubles, sweep.name, exc)
                    continue
                if why is not None:  # not ours, or it ran: end the attempt, never reuse the dir
                    with self._tx() as conn:
                        refuse_known(self.store, conn, a, why)
                    continue
                requests.append(self._request(sweep, spec, a.index, a.number, a.token, adir))
            if requests:
                await self._send(name, driver, requests)

    def _request(
        self, sweep: Any, spec: SweepSpec, index: int, number: int, token: str, adir: str
    ) -> JobRequest:
        options = self.drivers.options(sweep.driver, spec)
        exclude = tuple(sorted(self._bad_hosts.of(sweep.id)))
        return job_request(sweep, spec, index, number, token, adir, options, exclude)

    def _repro(self, sweep: Any) -> dict[str, Any]:
        """The sweep's reproducibility record (read per launch batch: ``pip freeze`` is
        merged into it after the submit reply, and pass-wide sweep rows leave it out)."""
        with self.store.read() as conn:
            return self.store.sweep_repro(conn, sweep.id)

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
            if attempt.id in self._terminated or attempt.id in self._ended_in_pass:
                continue
            if not attempt.job_id:
                continue
            self._terminated.add(attempt.id)
            due.setdefault(sweep.driver, []).append(self._ref(attempt, sweeps))
        for name, refs in due.items():
            driver = self.driver_calls.get(name)
            if driver is not None:
                log.info("terminating %d cancelled or stopped attempt(s) on %s", len(refs), name)
                await self.driver_calls.call(name, driver.cancel, refs)

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
            await self.driver_calls.call(sweep.driver, self.drivers.get(sweep.driver).cancel, refs)
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


def _stop_reason(decision: dict[str, Any] | None) -> str | None:
    """ "gpu-idle: GPU idle for 30m (util < 5 %)": which rule stopped the trial and why."""
    if not decision:
        return None
    rule, reason = decision.get("rule"), decision.get("reason")
    return ": ".join(str(x) for x in (rule, reason) if x) or None
