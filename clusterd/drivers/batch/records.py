"""Write-ahead ``job.json`` records: submitted at most once per attempt, found again by token.

Before the submit command runs, each attempt dir gets a record naming the array's
*batch name* (``cd.<sweep>.<8 hex>``, unique per submission; the driver submits the
array under it) and the attempt's task index (and slot, where packed): state
``submitting``. After the scheduler answered, the record gets the job id: state
``submitted``. A daemon that crashed in between finds the job again (``find_jobs``):
from the record's job id without asking anyone, else by batch name in the live queue,
else in the scheduler's history (accounting). An attempt offered again after a failed
or timed-out submission is first looked for the same way (``adopt_leftovers``), so it
never runs twice. A definite refusal removes the records (``forget``): nothing to find.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.batch.arrays import Task
from clusterd.drivers.batch.slots import with_slot
from clusterd.drivers.jobfile import JOB_FILE, read_job_file, write_json_atomic

__all__ = [
    "BATCH_PREFIX",
    "ArrayLookup",
    "adopt_leftovers",
    "batch_name",
    "find_jobs",
    "forget",
    "has_batch",
    "record_tasks",
    "resolve",
]

log = logging.getLogger(__name__)

BATCH_PREFIX = "cd."  # every batch name starts so: ``clusterctl cluster`` marks clusterd's jobs
RECORD_VERSION = 1

#: ``(array id, task index) -> the task's job id`` ("57", 3 -> "57_3" for Slurm)
TaskJobId = Callable[[str, int], str]


def batch_name(sweep: str) -> str:
    """A fresh name for one submission of ``sweep``'s attempts."""
    return f"{BATCH_PREFIX}{sweep}.{secrets.token_hex(4)}"


def record_tasks(
    tasks: Sequence[Task],
    driver: str,
    batch: str,
    array_id: str | None,
    task_job_id: TaskJobId,
) -> dict[str, str]:
    """Write every attempt's job.json; ``{token: job id}`` (with ``/slot`` where packed).

    ``array_id`` None: before the submission (an OSError propagates: submit nothing);
    else after it (an OSError is logged: the job runs, and ``find`` has the batch name).
    """
    ids = {}
    for index, task in enumerate(tasks):
        job_id = task_job_id(array_id, index) if array_id else None
        siblings = [[job.token, job.attempt_dir] for job in task] if len(task) > 1 else None
        for slot, job in enumerate(task):
            slot_of = slot if siblings else None
            ids[job.token] = with_slot(job_id or "", slot_of)
            data: dict[str, Any] = {
                "version": RECORD_VERSION,
                "driver": driver,
                "token": job.token,
                "state": "submitted" if job_id else "submitting",
                "batch": batch,
                "task": index,
                "job_id": job_id,
                "array_job_id": array_id,
                "recorded_at": time.time(),
            }
            if siblings is not None:
                data.update(slot=slot_of, siblings=siblings)
            try:
                write_json_atomic(Path(job.attempt_dir) / JOB_FILE, data)
            except OSError as exc:
                if job_id is None:
                    raise
                log.error("%s: cannot record job id of %s: %s", driver, job.token, exc)
    return ids


def forget(jobs: Sequence[JobRequest]) -> None:
    """Remove the records of a submission the scheduler refused: nothing is to be found."""
    for job in jobs:
        (Path(job.attempt_dir) / JOB_FILE).unlink(missing_ok=True)


def has_batch(ref: JobRef) -> bool:
    """True if job.json says a submission was (about to be) made for this attempt."""
    return bool((read_job_file(ref.attempt_dir, ref.token) or {}).get("batch"))


def resolve(
    refs: Sequence[JobRef], arrays: Mapping[str, str] | None, task_job_id: TaskJobId
) -> dict[str, str]:
    """``{token: job id}`` from the ref, its job.json, or its batch name in ``arrays``
    (``{batch name: array id}`` as the scheduler listed them)."""
    ids = {}
    for ref in refs:
        if ref.job_id:
            ids[ref.token] = ref.job_id
            continue
        data = read_job_file(ref.attempt_dir, ref.token) or {}
        slot = data.get("slot") if isinstance(data.get("slot"), int) else None
        batch, task = data.get("batch"), data.get("task")
        if data.get("job_id"):
            ids[ref.token] = with_slot(str(data["job_id"]), slot)
        elif arrays and batch in arrays and isinstance(task, int):
            ids[ref.token] = with_slot(task_job_id(arrays[str(batch)], task), slot)
    return ids


class ArrayLookup(Protocol):
    """Where a driver finds arrays by batch name (``BatchDriver`` implements it)."""

    def queue_arrays(self) -> dict[str, str]:
        """``{batch name: array id}`` of every array the scheduler still lists (one query)."""
        ...

    def history_arrays(self, names: Sequence[str], since: float) -> dict[str, str]:
        """The same for arrays that left the queue, submitted after ``since`` (epoch s)."""
        ...

    def task_job_id(self, array_id: str, index: int) -> str:
        """The job id of task ``index`` of array ``array_id``."""
        ...


def find_jobs(refs: Sequence[JobRef], lookup: ArrayLookup) -> dict[str, str]:
    """Job ids of ``refs`` from job.json, else by batch name in the queue, then in the
    history; attempts without a record were never submitted and are looked for nowhere."""
    found = resolve(refs, None, lookup.task_job_id)
    wanted = [ref for ref in refs if ref.token not in found and has_batch(ref)]
    if not wanted:
        return found
    records = {ref.token: read_job_file(ref.attempt_dir, ref.token) or {} for ref in wanted}
    found.update(resolve(wanted, lookup.queue_arrays(), lookup.task_job_id))
    wanted = [ref for ref in wanted if ref.token not in found]
    if wanted:
        names = sorted({str(records[ref.token]["batch"]) for ref in wanted})
        since = min(float(records[ref.token].get("recorded_at") or 0) for ref in wanted)
        found.update(resolve(wanted, lookup.history_arrays(names, since), lookup.task_job_id))
    return found


def adopt_leftovers(jobs: Sequence[JobRequest], lookup: ArrayLookup) -> dict[str, str]:
    """Jobs an earlier submission may have made although it failed or timed out."""
    refs = [JobRef(job.token, None, job.attempt_dir) for job in jobs]
    refs = [ref for ref in refs if has_batch(ref)]
    return find_jobs(refs, lookup) if refs else {}
