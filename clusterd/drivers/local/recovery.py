"""How the local driver makes sense of a job it did not start, or could not track.

A restarted daemon's driver meets jobs the previous one left behind; a driver out of
descriptors meets jobs it forked but could not watch. For each it reads job.json and
/proc: a job still running is adopted (pidfds work for processes that are not our
children), a queued one goes back in the queue, and one caught "starting" is looked
for (the fork server's ``forked.pid``, the session leader carrying its token, the pid
the fork returned). Not found, the driver claims the spawn id recorded with "starting":
if the claim is ours the job never started and is queued again; if the spawner's, it
did start and ended without a trace. A look that cannot be made now (out of
descriptors) never concludes "gone": the job stays unsettled and is looked for again.

``Recovery`` is a mixin of ``LocalDriver``, kept apart so that the driver's ordinary
path reads alone; the abstract methods are what it needs of the driver.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from clusterd.drivers.base import JobRef, JobStatus
from clusterd.drivers.local.capacity import Capacity
from clusterd.drivers.local.forkserver import claim_spawn
from clusterd.drivers.local.jobs import (
    Queued,
    Running,
    Unsettled,
    Unsure,
    read_job,
    request_from_json,
)
from clusterd.drivers.local.procs import (
    find_session_leader,
    forked_leader,
    format_job_id,
    is_alive,
    leader_from_hint,
    parse_job_id,
    short_of_resources,
)
from clusterd.drivers.local.watcher import ExitWatcher

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


class Recovery(ABC):
    """Adopt, re-queue or report gone the jobs a ``LocalDriver`` finds unknown to it."""

    _queue: dict[str, Queued]
    _unsettled: dict[str, Unsettled]
    _cancel_later: set[str]

    @abstractmethod
    def _cap(self) -> Capacity: ...

    @abstractmethod
    def _knows(self, token: str) -> bool: ...

    @abstractmethod
    def _cancel_one(self, token: str) -> None: ...

    @abstractmethod
    def _ensure_watcher(self) -> ExitWatcher: ...

    @abstractmethod
    def _track(self, running: Running, pidfd: int) -> None: ...

    @abstractmethod
    def _kill_timeout(self, job_options: Mapping[str, Any]) -> float: ...

    @abstractmethod
    def _record(self, token: str, attempt_dir: str, state: str, **fields: Any) -> None: ...

    def _reconcile(self, ref: JobRef) -> JobStatus | None:
        """``_recover`` a job this driver does not track; while that cannot tell (out of
        descriptors...), the job stays unsettled and is reported queued, state unknown."""
        held = self._unsettled.pop(ref.token, None)
        if held is not None:
            self._cap().release(ref.token)  # _adopt holds it again if the job runs
        try:
            status = self._recover(ref, held)
        except (Unsure, OSError) as exc:
            entry = held or Unsettled(ref.attempt_dir, 0, (), None, 0, "")
            entry.why = str(exc) or type(exc).__name__
            self._unsettled[ref.token] = entry
            self._cap().hold(ref.token, entry.cpus, entry.gpu_ids)
            reason = f"may be running; state unknown for now ({entry.why}); looking again"
            return JobStatus("queued", ref.job_id, reason, scheduler_state="unknown")
        if held is not None:
            log.info("local driver: job %s settled after: %s", ref.token, held.why)
        if ref.token in self._cancel_later and self._knows(ref.token):
            self._cancel_later.discard(ref.token)
            self._cancel_one(ref.token)
        return status

    def _recover(self, ref: JobRef, hint: Unsettled | None = None) -> JobStatus | None:
        """Make sense of a job this driver instance never saw (a restarted daemon), or
        one it could not track when it started it (``hint``).

        Adopts it if it still runs, re-queues it if it never started; otherwise
        returns the "gone" status to report. Raises OSError if it cannot look.
        """
        data = read_job(ref.attempt_dir, ref.token)
        ids = parse_job_id(ref.job_id) or parse_job_id(data.get("job_id") if data else None)
        if ids is not None:
            adopted = self._adopt(ref, *ids, data)
            return None if adopted else JobStatus("gone", format_job_id(*ids))
        if data is None:
            return JobStatus("gone", ref.job_id, reason="the local driver has no job.json for it")
        return self._recover_from_state(ref, data, hint)

    def _recover_from_state(
        self, ref: JobRef, data: dict[str, Any], hint: Unsettled | None = None
    ) -> JobStatus | None:
        state = data.get("state")
        if state == "queued":
            # job.json already says "queued" with this request: nothing to write
            return self._requeue(ref, data, write=False)
        if state == "starting":
            found = (
                forked_leader(ref.attempt_dir)
                or find_session_leader(ref.token)
                or (leader_from_hint(hint.pid, hint.forked_near) if hint else None)
            )
            if found is not None and self._adopt(ref, *found, data):
                return None
            if self._never_spawned(ref, data):
                return self._requeue(ref, data, write=True)
            reason = "it was starting when the previous daemon stopped and is not running now"
            return JobStatus("gone", ref.job_id, reason=reason)
        if state == "cancelled":
            return JobStatus("gone", ref.job_id, reason="cancelled before it started")
        return JobStatus("gone", ref.job_id, reason=f"failed to start: {data.get('error')}")

    @staticmethod
    def _never_spawned(ref: JobRef, data: Mapping[str, Any]) -> bool:
        """Claim the spawn job.json recorded with "starting": True if we won, i.e. nothing
        forked it before and nothing will (job.json of an older clusterd has no spawn id)."""
        spawn = data.get("spawn")
        if not isinstance(spawn, str):
            return False
        try:
            return claim_spawn(ref.attempt_dir, spawn)
        except OSError as exc:
            if short_of_resources(exc):
                raise  # cannot claim now: not the same as "claimed by the spawner"
            log.warning("local driver: cannot claim spawn %s of %s: %s", spawn, ref.token, exc)
            return False
        except ValueError as exc:
            log.warning("local driver: cannot claim spawn %s of %s: %s", spawn, ref.token, exc)
            return False

    def _requeue(self, ref: JobRef, data: Mapping[str, Any], *, write: bool) -> JobStatus | None:
        """Queue again a job job.json says never ran: left "queued", or caught "starting"
        and never spawned (see _never_spawned; then job.json is set back to "queued")."""
        try:
            request = request_from_json(ref.token, ref.attempt_dir, data["request"])
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"its job.json cannot be read back ({exc!r}); it never started"
            return JobStatus("gone", ref.job_id, reason=reason)
        submitted_at = data.get("submitted_at") or (time.time() if write else 0)
        self._queue[ref.token] = Queued(request, float(submitted_at))
        if not write:
            return None
        self._record(ref.token, ref.attempt_dir, "queued")
        log.info(
            "local driver: job %s never started before the last daemon stopped; queued", ref.token
        )
        return None

    def _adopt(self, ref: JobRef, pid: int, starttime: int, data: Mapping[str, Any] | None) -> bool:
        """Take over a job a previous daemon started; False if it is not running any more."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:  # ProcessLookupError included
            if short_of_resources(exc):
                raise  # cannot look now: not the same as "not running"
            return False
        # Checked after opening: if the pid was recycled in between, starttime differs.
        try:
            alive = is_alive(pid, starttime)
            if alive:
                self._ensure_watcher()
        except BaseException:
            os.close(pidfd)
            raise
        if not alive:
            os.close(pidfd)
            return False
        data = data or {}
        request = data.get("request") or {}
        gpu_ids = tuple(str(gpu) for gpu in data.get("gpu_ids") or ())
        running = Running(
            token=ref.token,
            pid=pid,
            starttime=starttime,
            attempt_dir=ref.attempt_dir,
            cpus=int(request.get("cpus") or 1),
            gpu_ids=gpu_ids,
            kill_timeout=self._kill_timeout(request.get("options") or {}),
            started_at=float(data.get("started_at") or time.time()),
        )
        self._cap().hold(ref.token, running.cpus, gpu_ids)
        self._track(running, pidfd)
        log.info("local driver: adopted job %s (pid %d)", ref.token, pid)
        return True
