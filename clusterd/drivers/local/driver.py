"""``LocalDriver``: the Driver contract over this machine's processes, and its queue.

A job starts when its CPUs and GPUs fit in the free ones (``capacity``); otherwise it
waits in a FIFO queue, and one that does not fit blocks those behind it (no backfill).
Each start writes job.json first ("starting", with a spawn id), then forks through the
fork server (Popen if it is unavailable); the exit watcher reports exits. Jobs this
driver did not start, or could not track, are ``recovery``'s business.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clusterd.drivers.base import ClusterInfo, Driver, JobRef, JobRequest, JobStatus
from clusterd.drivers.jobfile import JOB_FILE, read_job_file, write_json_atomic
from clusterd.drivers.local.capacity import Capacity
from clusterd.drivers.local.describe import describe, queue_reason
from clusterd.drivers.local.forkserver import ForkServerClient, SpawnNotSent, claim_spawn
from clusterd.drivers.local.gpus import discover_gpus
from clusterd.drivers.local.jobs import (
    Queued,
    Running,
    Unsettled,
    Unsure,
    read_job,
    request_to_json,
)
from clusterd.drivers.local.procs import (
    TOKEN_ENV,
    boot_ticks,
    detach,
    is_alive,
    kill_session,
    pidfd_or_exited,
    queued_job_id,
    read_proc_stat,
    reap,
    short_of_resources,
)
from clusterd.drivers.local.recovery import Recovery
from clusterd.drivers.local.watcher import ExitWatcher
from clusterd.drivers.options import Option, check_options, gpu_id_list, positive_int, seconds
from clusterd.errors import DriverError, UnsupportedResource
from clusterd.node import names
from clusterd.spec.model import SweepSpec

__all__ = ["LocalDriver"]

log = logging.getLogger(__name__)

LOG_FILE = names.DRIVER_LOG
DEFAULT_KILL_TIMEOUT = 30.0


class LocalDriver(Driver, Recovery):
    """Runs each attempt as a process on this machine; see the package docstring."""

    name = "local"
    poll_interval = 1.0
    #: the runner wrote status.json on this very host before its process ended: no shared
    #: filesystem lag to wait for, only a runner that died without one (killed, disk full)
    status_grace = 5.0
    option_specs = (
        Option(
            "cpus",
            "a positive integer",
            positive_int,
            "CPUs to hand out (default: those this process may run on)",
            sweep=False,
        ),
        Option(
            "gpus",
            "a list of GPU ids",
            gpu_id_list,
            "GPU ids to hand out (default: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists)",
            sweep=False,
        ),
        Option(
            "kill_timeout",
            "seconds >= 0",
            seconds,
            "seconds from a cancel's SIGTERM to SIGKILL of the job's session",
            default=DEFAULT_KILL_TIMEOUT,
        ),
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.option_specs, self.options, "driver 'local' options", sweep=False)
        self._lock = threading.RLock()
        self._host = socket.gethostname()
        self._queue: dict[str, Queued] = {}  # FIFO: dicts keep insertion order
        self._running: dict[str, Running] = {}
        self._ended: dict[str, str] = {}  # token -> why, for jobs that ended without running
        self._unsettled: dict[str, Unsettled] = {}  # may have started; looked for each poll
        self._cancel_later: set[str] = set()  # cancelled while unsettled: sent once found
        self._capacity: Capacity | None = None  # built on first use (nvidia-smi is slow)
        self._watcher: ExitWatcher | None = None
        self._forkserver: ForkServerClient | None = None  # started on the first job

    # -- the Driver interface ------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Refuse sweeps this machine cannot run: unknown options, too many GPUs or CPUs."""
        super().validate(spec)
        with self._lock:
            problem = self._cap().misfit(spec.resources, "sweep")
        if problem:
            raise UnsupportedResource(f"{spec.source}: {problem}")

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """Queue every job, then start those that fit; returns ``{token: job_id}``.

        A job that can never fit this machine fails the whole call before anything
        is queued. A token the driver already knows is not started again.
        """
        with self._lock:
            for job in jobs:
                problem = self._cap().misfit(job.resources, f"job {job.token}")
                if problem:
                    raise UnsupportedResource(problem)
            result = {job.token: self._enqueue_once(job) for job in jobs}
            failed = self._start_queued(retryable=set(result))
            for token in failed:
                del result[token]
            if failed and not result:
                first = next(iter(failed.values()))
                raise DriverError(f"local driver: could not start any job: {first}")
            return {token: self._job_id(token) or job_id for token, job_id in result.items()}

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """Where each job is; jobs a previous daemon started are adopted or re-queued here."""
        with self._lock:
            gone = {ref.token: self._reconcile(ref) for ref in jobs if not self._knows(ref.token)}
            self._notice_missed_exits()
            self._start_queued()
            return {
                ref.token: self._known_status(ref.token)
                or gone.get(ref.token)
                or JobStatus("gone", ref.job_id)
                for ref in jobs
            }

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """Drop queued jobs; SIGTERM running ones' process groups, SIGKILL their sessions
        ``kill_timeout`` seconds later if the runner is still there."""
        with self._lock:
            for ref in jobs:
                if not self._knows(ref.token):
                    self._reconcile(ref)
                if ref.token in self._unsettled:
                    self._cancel_later.add(ref.token)  # sent once the job is found
                self._cancel_one(ref.token)
            if self._watcher is not None:
                self._watcher.poke()  # arm the kill deadlines

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """Job ids from the attempts' job.json (written before the job could start)."""
        found = {}
        for ref in jobs:  # out of descriptors, this raises: "not found" would resubmit
            data = read_job(ref.attempt_dir, ref.token)
            if data is not None and isinstance(data.get("job_id"), str):
                found[ref.token] = data["job_id"]
        return found

    def describe_cluster(self) -> ClusterInfo:
        with self._lock:
            cap, host = self._cap(), self._host
            return describe(self.name, host, cap, self._running, self._queue, self._unsettled)

    def close(self) -> None:
        """Stop the watcher thread. Running jobs keep running (a new driver adopts them);
        queued ones stay in their job.json and are re-queued by the next driver's poll."""
        with self._lock:
            watcher, self._watcher = self._watcher, None
            children = [r.popen for r in self._running.values() if r.popen is not None]
            self._running.clear()
            self._queue.clear()
            self._unsettled.clear()
            self._cancel_later.clear()
            self._capacity = None
        if watcher is not None:
            watcher.stop()
        detach(children)
        if self._forkserver is not None:
            self._forkserver.close()
            self._forkserver = None

    # -- capacity and queue --------------------------------------------------------------

    def _cap(self) -> Capacity:
        if self._capacity is None:
            cpus = self.options.get("cpus") or len(os.sched_getaffinity(0))
            gpus = discover_gpus(self.options.get("gpus"), os.environ)
            self._capacity = Capacity(int(cpus), gpus)
        return self._capacity

    def _enqueue_once(self, job: JobRequest) -> str:
        """Queue ``job`` unless its token is known here or in its job.json; returns its id."""
        current = self._job_id(job.token)
        if current is not None:
            return current
        if job.token in self._unsettled or read_job(job.attempt_dir, job.token) is not None:
            ref = JobRef(job.token, None, job.attempt_dir)
            gone = self._reconcile(ref)
            return self._job_id(job.token) or (gone and gone.job_id) or queued_job_id(job.token)
        self._enqueue(job, time.time())
        return queued_job_id(job.token)

    def _enqueue(self, job: JobRequest, submitted_at: float) -> None:
        self._queue[job.token] = Queued(job, submitted_at)
        try:
            self._write_state(job.token, job.attempt_dir, "queued", submitted_at=submitted_at)
        except OSError as exc:
            del self._queue[job.token]
            where = Path(job.attempt_dir) / JOB_FILE
            raise DriverError(f"local driver: cannot write {where}: {exc}") from exc

    def _start_queued(self, retryable: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
        """Start queued jobs, in order, while the head fits; returns ``{token: error}``
        for ``retryable`` tokens that failed to start (they are forgotten, to be offered
        again); other failures are recorded as failed jobs."""
        failures: dict[str, str] = {}
        if self._queue and not self._may_launch():
            return failures  # the daemon lost its lease: these jobs are not ours to start
        cap = self._cap()
        while self._queue:
            token, queued = next(iter(self._queue.items()))
            if not cap.can_ever_fit(queued.cpus, queued.gpus):
                self._fail(queued, cap.misfit(queued.request.resources, "job") or "too big")
                continue
            if not cap.fits(queued.cpus, queued.gpus):
                break
            del self._queue[token]
            try:
                self._spawn(queued)
            except OSError as exc:
                error = f"could not start {queued.request.argv[:1]}: {exc}"
                if short_of_resources(exc) and token not in retryable:
                    # certainly not started, and no fault of the job's: first in line again
                    self._queue = {token: queued, **self._queue}
                    log.warning("local driver: cannot start jobs now (%s); retrying", exc)
                    break
                if token in retryable:
                    failures[token] = error
                    (Path(queued.request.attempt_dir) / JOB_FILE).unlink(missing_ok=True)
                else:
                    self._fail(queued, error)
        return failures

    def _fail(self, queued: Queued, error: str) -> None:
        token = queued.request.token
        self._queue.pop(token, None)
        self._ended[token] = f"failed to start: {error}"
        self._record(token, queued.request.attempt_dir, "failed", error=error)
        log.warning("local driver: job %s failed to start: %s", token, error)

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, queued: Queued) -> None:
        """Start one job in its own session; its GPUs go into CUDA_VISIBLE_DEVICES."""
        job, cap = queued.request, self._cap()
        gpu_ids = cap.take(job.token, queued.cpus, queued.gpus)
        spawn = secrets.token_hex(6)  # claimed by whoever forks it (see recovery)
        forked_near = boot_ticks()
        try:
            self._write_state(
                job.token, job.attempt_dir, "starting", gpu_ids=list(gpu_ids), spawn=spawn
            )
            pid, popen = self._fork(job, gpu_ids, spawn)
        except Unsure as exc:
            self._unsure(
                job.token, Unsettled(job.attempt_dir, queued.cpus, gpu_ids, None, 0, ""), exc
            )
            return
        except OSError:  # certainly not started (see _fork)
            cap.release(job.token)
            raise
        try:
            self._started(queued, gpu_ids, pid, popen)
        except Exception as exc:  # after the fork, nothing means "not started"
            entry = Unsettled(job.attempt_dir, queued.cpus, gpu_ids, pid, forked_near, "")
            self._unsure(job.token, entry, exc)

    def _started(
        self,
        queued: Queued,
        gpu_ids: tuple[str, ...],
        pid: int,
        popen: subprocess.Popen[bytes] | None,
    ) -> None:
        """Track a job just forked; raises (EMFILE...) if its pidfd or stat cannot be had."""
        job = queued.request
        pidfd = pidfd_or_exited(pid)
        try:
            stat = read_proc_stat(pid)
            self._ensure_watcher()
        except BaseException:
            os.close(pidfd)
            raise
        running = Running(
            token=job.token,
            pid=pid,
            starttime=stat.starttime if stat else 0,
            attempt_dir=job.attempt_dir,
            cpus=queued.cpus,
            gpu_ids=gpu_ids,
            kill_timeout=self._kill_timeout(job.options),
            started_at=time.time(),
            popen=popen,
        )
        self._track(running, pidfd)

    def _unsure(self, token: str, entry: Unsettled, exc: BaseException) -> None:
        """The job may be running: keep job.json "starting" and its capacity, and look for
        it at each poll (``_reconcile``); never report it as not started."""
        entry.why = str(exc) or type(exc).__name__
        self._unsettled[token] = entry
        self._cap().hold(token, entry.cpus, entry.gpu_ids)
        where = f"pid {entry.pid}" if entry.pid else "no pid yet"
        log.warning(
            "local driver: job %s may have started (%s) but cannot be tracked now: %s; "
            "looking for it again at the next poll",
            token,
            where,
            entry.why,
        )

    def _fork(
        self, job: JobRequest, gpu_ids: tuple[str, ...], spawn: str
    ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Start a job through the fork server (~1 ms), or with Popen if it is unavailable.

        Either way the spawn id is claimed first, so it is started at most once.
        """
        env = self._job_env(job, gpu_ids)
        log_path = str(Path(job.attempt_dir) / LOG_FILE)
        if self._forkserver is None:
            self._forkserver = ForkServerClient()
        sent = True
        try:
            pid = self._forkserver.spawn(list(job.argv), env, job.attempt_dir, log_path, spawn)
            return pid, None
        except SpawnNotSent as exc:
            sent = False
            log.warning("local driver: no fork server (%s); starting with Popen", exc)
        except OSError as exc:
            log.warning("local driver: fork server failed (%s); starting with Popen", exc)
        # The spawn claim decides: ours means nothing forked it (nor ever will).
        try:
            claimed = claim_spawn(job.attempt_dir, spawn)
        except OSError as exc:
            if not sent:
                raise  # no server got the request: certainly not started
            raise Unsure(f"the fork server may have started it; cannot check ({exc})") from exc
        if not claimed:
            raise Unsure("the fork server may have started it; not starting it again")
        popen = self._popen(job, env)  # raises only if the job did not start
        return popen.pid, popen

    def _popen(self, job: JobRequest, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(Path(job.attempt_dir) / LOG_FILE, "ab") as log_file:
            return subprocess.Popen(
                list(job.argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                cwd=job.attempt_dir,
                close_fds=True,
                start_new_session=True,
            )

    def _job_env(self, job: JobRequest, gpu_ids: tuple[str, ...]) -> dict[str, str]:
        """The daemon's environment, the job's, its GPUs and its token (for recovery).
        CUDA_VISIBLE_DEVICES is always set: a job that asked for no GPU sees none, instead
        of everyone's GPU 0."""
        env = dict(os.environ) | dict(job.env) | {"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)}
        if self._cap().gpus.pci_order and "CUDA_DEVICE_ORDER" not in os.environ:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # so indices mean what nvidia-smi says
        env[TOKEN_ENV] = job.token
        return env

    def _track(self, running: Running, pidfd: int) -> None:
        """Account a started or adopted job and hand its pidfd to the watcher."""
        watcher = self._ensure_watcher()  # before anything: it may fail (EMFILE)
        self._running[running.token] = running
        # If this write fails the job runs anyway: "starting" + its token in /proc find it.
        self._record(
            running.token,
            running.attempt_dir,
            "running",
            job_id=running.job_id,
            pid=running.pid,
            starttime=running.starttime,
            gpu_ids=list(running.gpu_ids),
            started_at=running.started_at,
        )
        watcher.watch(running.token, pidfd)

    def _ensure_watcher(self) -> ExitWatcher:
        if self._watcher is None:
            self._watcher = ExitWatcher(self._on_exits, self._on_wake)
        return self._watcher

    def _notice_missed_exits(self) -> None:
        """Jobs whose exit the watcher did not report (it could not watch them: out of
        descriptors) are ended here, at the poll, from /proc; unknown counts as alive."""
        ended = []
        for token, running in self._running.items():
            try:
                if not is_alive(running.pid, running.starttime):
                    ended.append(token)
            except OSError:
                continue
        if ended:
            log.warning("local driver: exits noticed at the poll, not by the watcher: %s", ended)
            self._on_exits(ended)

    def _on_exits(self, tokens: list[str]) -> None:
        """Watcher thread: reap, free capacity, start what fits, then wake the daemon."""
        with self._lock:
            for token in tokens:
                running = self._running.pop(token, None)
                if running is not None:
                    reap(running.pid, running.popen)
                    self._cap().release(token)
            self._start_queued()
        self._wakeup()

    def _on_wake(self) -> float | None:
        """Watcher thread: SIGKILL cancelled jobs past their deadline; seconds to the next."""
        with self._lock:
            now = time.monotonic()
            for running in self._running.values():
                if running.kill_at is not None and running.kill_at <= now:
                    running.kill_at = None
                    kill_session(running.pid, running.starttime, running.token)
            deadlines = [r.kill_at for r in self._running.values() if r.kill_at is not None]
            return max(0.0, min(deadlines) - now) if deadlines else None

    def _cancel_one(self, token: str) -> None:
        queued = self._queue.pop(token, None)
        if queued is not None:
            self._ended[token] = "cancelled before it started"
            self._record(token, queued.request.attempt_dir, "cancelled")
            return
        running = self._running.get(token)
        if running is None:
            return
        try:
            os.killpg(running.pid, signal.SIGTERM)  # the runner forwards it and escalates
        except ProcessLookupError:
            return
        if running.kill_at is None:
            running.kill_at = time.monotonic() + running.kill_timeout

    def _kill_timeout(self, job_options: Mapping[str, Any]) -> float:
        value = job_options.get("kill_timeout", self.options.get("kill_timeout"))
        return float(value) if value is not None else DEFAULT_KILL_TIMEOUT

    # -- state ---------------------------------------------------------------------------

    def _knows(self, token: str) -> bool:
        return token in self._queue or token in self._running or token in self._ended

    def _job_id(self, token: str) -> str | None:
        if token in self._running:
            return self._running[token].job_id
        if token in self._queue:
            return queued_job_id(token)
        return None

    def _known_status(self, token: str) -> JobStatus | None:
        if token in self._running:
            job_id = self._running[token].job_id
            return JobStatus("running", job_id, host=self._host, scheduler_state="running")
        if token in self._queue:
            reason = queue_reason(self._queue, token)
            return JobStatus("queued", queued_job_id(token), reason, scheduler_state="queued")
        if token in self._ended:
            reason = self._ended[token]
            return JobStatus("gone", queued_job_id(token), reason=reason, scheduler_state="ended")
        return None

    def _write_state(self, token: str, attempt_dir: str, state: str, **fields: Any) -> None:
        """Record a transition in job.json, keeping what earlier transitions wrote."""
        path = Path(attempt_dir) / JOB_FILE
        data = read_job_file(attempt_dir, token) or {"version": 1, "driver": self.name}
        if "request" not in data and token in self._queue:
            data["request"] = request_to_json(self._queue[token].request)
        data.update(fields, token=token, state=state, host=self._host)
        data.setdefault("job_id", queued_job_id(token))
        write_json_atomic(path, data)

    def _record(self, token: str, attempt_dir: str, state: str, **fields: Any) -> None:
        """``_write_state`` where the transition has happened anyway: a failed write is
        logged (the daemon log says which attempt dir is unwritable), never raised."""
        try:
            self._write_state(token, attempt_dir, state, **fields)
        except OSError as exc:
            log.error("local driver: cannot record job %s as %s: %s", token, state, exc)
