"""What Grid Engine's commands print, read: ``qsub -terse``, ``qstat -xml``, ``qacct -j``,
``qstat -j`` (an error reason).

Recorded real output (Son of Grid Engine 8.1.9) is in ``tests/drivers/fixtures/sge/``.
A task's job id is ``<job number>.<task>`` (SGE's own spelling, which ``qdel`` takes);
a job submitted without ``-t`` is its number alone. Anything that is not what these
commands print raises ``DriverError`` -- never "the job is gone".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clusterd.drivers.base import JobStatus
from clusterd.errors import DriverError

__all__ = [
    "MAX_EXPANSION",
    "SgeAccounting",
    "SgeJob",
    "accounting_status",
    "arrays_by_name",
    "expand_tasks",
    "job_status",
    "parse_error_reasons",
    "parse_qacct",
    "parse_qstat_xml",
    "parse_qsub_terse",
]

MAX_EXPANSION = 1_000_000  # task ids one qstat output may expand to

_TERSE = re.compile(r"(\d+)(?:\.(\d+)-(\d+):(\d+))?")
_RANGE = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")
#: qstat's state letters (man qstat): d deleted, E error, h hold, r running, R restarted,
#: s/S/T suspended, t transferring, w waiting, q queued
_STATE = re.compile(r"[dEhrRsStTwqz]+")


def parse_qsub_terse(text: str) -> str:
    """The job number from ``qsub -terse``: ``"5.1-4:1"`` (an array) or ``"5"``."""
    line = text.strip()
    match = _TERSE.fullmatch(line)
    if match is None:
        raise DriverError(f"qsub -terse printed {line[:200]!r}, not a job id")
    return match.group(1)


def expand_tasks(spec: str, budget: int = MAX_EXPANSION) -> list[int]:
    """Task ids of qstat's ``<tasks>``: ``"3,4"``, ``"1-3:1"``, ``"1-9:2,12"`` -> ints."""
    tasks: list[int] = []
    for part in spec.split(","):
        match = _RANGE.fullmatch(part.strip())
        if match is None:
            raise DriverError(f"qstat: task list {spec[:200]!r} is not task ids")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        if last < first or step < 1:
            raise DriverError(f"qstat: task range {part!r} is empty")
        count = (last - first) // step + 1
        if count > budget - len(tasks):
            raise DriverError(f"qstat: task list {spec[:200]!r} names too many tasks")
        tasks.extend(range(first, last + 1, step))
    return tasks


@dataclass(frozen=True)
class SgeJob:
    """One job, or one task of an array, as ``qstat -xml`` lists it."""

    job_id: str  # "5.3" for task 3 of array 5, "5" for a job without tasks
    state: str  # as qstat spells it: "qw", "hqw", "r", "Rr", "dr", "Eqw", "s", ...
    name: str = ""
    queue: str | None = None  # "all.q@node1" while running

    @property
    def number(self) -> str:
        return self.job_id.split(".", 1)[0]

    @property
    def host(self) -> str | None:
        return self.queue.rpartition("@")[2] or None if self.queue else None


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


def parse_qstat_xml(text: str) -> dict[str, SgeJob]:
    """``qstat -xml -u <user>``: ``{job id: SgeJob}`` for every listed job and task
    (pending tasks come as ranges, running ones one per element)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DriverError(f"qstat -xml printed no valid XML ({exc}): {text[:200]!r}") from exc
    if root.tag != "job_info":
        raise DriverError(f"qstat -xml printed <{root.tag}>, not <job_info>")
    jobs: dict[str, SgeJob] = {}
    for element in root.iter("job_list"):
        number, state = _text(element, "JB_job_number"), _text(element, "state")
        if not number.isdigit():
            raise DriverError(f"qstat -xml: job number {number[:50]!r} is not a number")
        if _STATE.fullmatch(state) is None:
            raise DriverError(f"qstat -xml: job {number} has no known state ({state[:50]!r})")
        name, queue = _text(element, "JB_name"), _text(element, "queue_name") or None
        tasks = _text(element, "tasks")
        ids = [f"{number}.{task}" for task in expand_tasks(tasks)] if tasks else [number]
        for job_id in ids:
            jobs[job_id] = SgeJob(job_id, state, name, queue)
    return jobs


def arrays_by_name(jobs: Iterable[SgeJob] | Mapping[str, SgeJob]) -> dict[str, str]:
    """``{job name: job number}``: clusterd names every array by its batch name."""
    rows = jobs.values() if isinstance(jobs, Mapping) else jobs
    return {job.name: job.number for job in rows if job.name}


def job_status(job: SgeJob) -> JobStatus:
    """What a qstat state means to the daemon.

    ``E`` (Eqw: it failed to start and waits for an admin's ``qmod -cj``) has ended for
    clusterd (``gone``; the driver fills in the reason and deletes it). ``d``: deleted,
    ``running`` while its processes may still be alive (dr, dt), else ``gone``. ``r``,
    ``t`` and suspended (s, S, T) are ``running``; waiting (qw, hqw, Rq) is ``queued``,
    with ``held`` as the reason where ``h`` says so.
    """
    state = job.state
    if "E" in state:
        return JobStatus("gone", job.job_id, f"{state}: error state", scheduler_state=state)
    started = any(letter in state for letter in "rtsST")
    if "d" in state and not started:
        return JobStatus("gone", job.job_id, f"{state}: deleted", scheduler_state=state)
    if started:
        reason = "deleted, ending" if "d" in state else _suspended(state)
        return JobStatus("running", job.job_id, reason, host=job.host, scheduler_state=state)
    reason = "held" if "h" in state else ("rescheduled" if "R" in state else None)
    return JobStatus("queued", job.job_id, reason, scheduler_state=state)


def _suspended(state: str) -> str | None:
    if "s" in state:
        return "suspended"
    if "S" in state:
        return "suspended by its queue"
    if "T" in state:
        return "suspended by a threshold"
    return None


# --------------------------------------------------------------------------- accounting


@dataclass(frozen=True)
class SgeAccounting:
    """One finished job or task as ``qacct -j`` reports it."""

    job_id: str  # "5.3" or "5"
    name: str
    host: str | None
    failed: str  # "0", or "100 : assumedly after job"
    exit_status: str  # "0", "137                  (Killed)"

    @property
    def number(self) -> str:
        return self.job_id.split(".", 1)[0]


_QACCT_FIELDS = ("jobnumber", "taskid", "jobname", "hostname", "failed", "exit_status")


def parse_qacct(text: str) -> dict[str, SgeAccounting]:
    """``qacct -j <ids or name>``: ``{job id: SgeAccounting}``; a task run twice (rerun)
    keeps its last record."""
    records: dict[str, SgeAccounting] = {}
    for block in re.split(r"^=+\s*$", text, flags=re.MULTILINE):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.strip().partition(" ")
            if key in _QACCT_FIELDS:
                fields[key] = value.strip()
        if not fields:
            if block.strip():
                raise DriverError(f"qacct printed no job record: {block.strip()[:200]!r}")
            continue
        missing = [key for key in _QACCT_FIELDS if key not in fields]
        number, task = fields.get("jobnumber", ""), fields.get("taskid", "")
        if missing or not number.isdigit() or not (task.isdigit() or task == "undefined"):
            raise DriverError(f"qacct: a record without {missing or 'a job id'}: {block[:200]!r}")
        job_id = f"{number}.{task}" if task.isdigit() else number
        host = fields["hostname"] or None
        records[job_id] = SgeAccounting(
            job_id, fields["jobname"], host, fields["failed"], fields["exit_status"]
        )
    return records


def accounting_status(record: SgeAccounting) -> JobStatus:
    """A job that left the queue: ``gone``, with qacct's ``failed`` reason where it failed
    (``100 : assumedly after job``: killed, e.g. by qdel or ``h_rt``) and its exit status
    where not 0 (what the attempt exited with is the runner's status.json)."""
    failed = record.failed.split(None, 1)[0] if record.failed else "0"
    exit_status = " ".join(record.exit_status.split())
    detail = []
    if failed != "0":
        detail.append(f"failed {' '.join(record.failed.split())}")
    if exit_status not in ("", "0"):
        detail.append(f"exit status {exit_status}")
    reason = "; ".join(detail) or None
    # the daemon shows scheduler_state as the reason of an attempt without status.json
    state = reason or "done"
    return JobStatus("gone", record.job_id, reason, host=record.host, scheduler_state=state)


# --------------------------------------------------------------------------- qstat -j


def parse_error_reasons(text: str) -> dict[str, str]:
    """``qstat -j <ids>``: ``{job number: error reason}`` of jobs in error state (the
    ``error reason`` line: "can't open output file ...")."""
    reasons: dict[str, str] = {}
    number = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "job_number":
            number = value.strip()
        elif number and key.startswith("error reason") and sep:
            # "error reason    1:      12/07/2026 12:32:04 [0:23659]: error: can't open ..."
            detail = value.strip()
            detail = re.sub(r"^\S+ \S+ \[[^\]]*\]:\s*", "", detail)
            reasons.setdefault(number, detail.removeprefix("error: "))
    return reasons
