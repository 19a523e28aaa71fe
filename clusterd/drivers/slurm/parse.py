"""What Slurm's commands print, read: pure functions fed recorded output in the tests.

A line that does not fit the format asked for is a ``DriverError`` rather than skipped:
a job missing from squeue's answer would look finished, and the poll is better retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from clusterd.drivers.base import JobStatus
from clusterd.drivers.batch.commands import first_line
from clusterd.drivers.slurm.limits import Association, QosLimit
from clusterd.errors import DriverError

__all__ = [
    "ASSOC_FIELDS",
    "NODES_FORMAT",
    "QOS_FIELDS",
    "QUEUED_STATES",
    "QUEUE_FORMAT",
    "RUNNING_STATES",
    "SACCT_FIELDS",
    "SINFO_FIELDS",
    "SQUEUE_FORMAT",
    "USAGE_FORMAT",
    "SlurmJob",
    "arrays_by_name",
    "config_int",
    "ended",
    "expand_job_ids",
    "job_status",
    "parse_gres_gpus",
    "parse_node_names",
    "parse_sacct",
    "parse_sacctmgr_assoc",
    "parse_sacctmgr_qos",
    "parse_sbatch_parsable",
    "parse_scontrol_config",
    "parse_sinfo",
    "parse_squeue",
    "parse_usage",
    "split_fields",
    "unset",
]

MAX_EXPANSION = 1_000_000  # array ids one output may expand to (Slurm's cap is 4,000,001)

#: ``squeue -o`` fields, ``|``-separated; the job name goes last as it may hold ``|``
SQUEUE_FORMAT = "%i|%F|%K|%T|%r|%N|%j"
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Reason", "NodeList", "JobName")
#: ``clusterctl cluster``: one line per (node, partition); ``sinfo -O`` takes a suffix
SINFO_FIELDS = ("NodeList", "Partition", "StateLong", "CPUsState", "Memory", "Gres", "GresUsed")
QUEUE_FORMAT = "%i|%T|%r|%N|%P|%M|%l|%j"
#: ``sacctmgr show user withassoc``: the default account and every association's limits
ASSOC_FIELDS = (
    "User",
    "DefaultAccount",
    "Cluster",
    "Account",
    "Partition",
    "MaxSubmit",
    "MaxJobs",
    "QOS",
    "DefaultQOS",
)
QOS_FIELDS = ("Name", "MaxSubmitPU", "MaxJobsPU")
#: ``squeue`` of the user's live jobs, counted against the limits before a submission
USAGE_FORMAT = "%i|%T|%a|%q|%P"
#: ``sinfo -N``: node name and host name, to turn a host name into a node name
NODES_FORMAT = "%N|%n"

QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)

_JOB_ID = re.compile(r"(\d+)(?:_(\d+|\[[0-9,%\-]+\]))?(?:\+\d+)?")


@dataclass(frozen=True)
class SlurmJob:
    """One job (array task) as ``squeue`` or ``sacct`` reports it."""

    job_id: str  # "123_4" for an array task, "123" otherwise
    state: str  # as spelled, e.g. "PENDING", "CANCELLED by 1000"
    reason: str | None = None  # pending reason (squeue %r) or sacct Reason; None for "None"
    nodes: str | None = None
    name: str = ""
    exit_code: str | None = None  # sacct "3:0" (code:signal); None from squeue

    @property
    def base_state(self) -> str:
        """The state without decorations: "CANCELLED by 0" -> "CANCELLED"."""
        return self.state.split(" ", 1)[0].rstrip("+")

    @property
    def array_job_id(self) -> str:
        return self.job_id.split("_", 1)[0]

    @property
    def task_id(self) -> int | None:
        _, sep, task = self.job_id.partition("_")
        return int(task) if sep and task.isdigit() else None


# --------------------------------------------------------------------------- fields


def unset(value: str) -> str | None:
    """Slurm prints absent values as "None", "(null)", "None assigned" or nothing."""
    value = value.strip()
    return None if value in ("", "None", "(null)", "None assigned", "n/a") else value


def split_fields(line: str, count: int, what: str) -> list[str]:
    """Split a ``|``-separated line into ``count`` fields, the last one taking the rest."""
    fields = line.split("|", count - 1)
    if len(fields) != count:
        raise DriverError(
            f"cannot read {what} line {line[:200]!r}: {len(fields)} fields, expected {count}; "
            f"is this a Slurm version clusterd does not know?"
        )
    return fields


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _check_state(state: str, line: str, what: str) -> str:
    if not re.fullmatch(r"[A-Z_]+\+?( by \d+)?", state):
        raise DriverError(f"cannot read {what} line {line[:200]!r}: odd job state {state!r}")
    return state


# --------------------------------------------------------------------------- jobs


def expand_job_ids(raw: str, budget: int = MAX_EXPANSION) -> list[str]:
    """``"7_[1-3,9%2]"`` -> ``["7_1", "7_2", "7_3", "7_9"]``; plain ids come back alone.

    Slurm folds the pending tasks of an array into one such line (sacct always,
    squeue without ``--array``). A malformed id is a DriverError.
    """
    match = _JOB_ID.fullmatch(raw)
    if match is None:
        raise DriverError(f"unexpected Slurm job id {raw!r}; expected 123, 123_4 or 123_[4-9]")
    array_id, task = match.group(1), match.group(2)
    if task is None:
        return [array_id]
    if not task.startswith("["):
        return [f"{array_id}_{int(task)}"]
    ids: list[str] = []
    for part in task[1:-1].split("%", 1)[0].split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or not (high.isdigit() or not high):
            raise DriverError(f"unexpected array range {part!r} in Slurm job id {raw!r}")
        first, last = int(low), int(high or low)
        if last < first or len(ids) + last - first + 1 > budget:
            raise DriverError(f"array range {part!r} in Slurm job id {raw!r} is out of bounds")
        ids.extend(f"{array_id}_{i}" for i in range(first, last + 1))
    return ids


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` output into jobs by job id."""
    rows = []
    for line in _lines(text):
        raw_id, _array, _task, state, reason, nodes, name = split_fields(line, 7, "squeue")
        state = _check_state(state.strip(), line, "squeue")
        rows.append((raw_id.strip(), SlurmJob("", state, unset(reason), unset(nodes), name)))
    return _by_job_id(rows)


def parse_sacct(text: str, names: Mapping[str, str] | None = None) -> dict[str, SlurmJob]:
    """Parse ``sacct -n -P -X --format=SACCT_FIELDS`` output into jobs by job id.

    Job ids restart when slurmctld loses its state (and wrap at ``MaxJobId``), while
    accounting keeps every job: ``sacct -j 830_0`` can list an earlier 830_0 too
    (fixture ``sacct_reused_id.txt``). ``names`` (``{job id: the job name we gave
    it}``) picks our own row; without it, or with no row of that name, the last listed.
    """
    rows = []
    for line in _lines(text):
        fields = split_fields(line, len(SACCT_FIELDS), "sacct")
        raw_id, state, exit_code, reason, nodes, name = fields
        state = _check_state(state.strip(), line, "sacct")
        job = SlurmJob("", state, unset(reason), unset(nodes), name, unset(exit_code))
        rows.append((raw_id.strip(), job))
    return _by_job_id(rows, names or {})


def _by_job_id(
    rows: Sequence[tuple[str, SlurmJob]], names: Mapping[str, str] | None = None
) -> dict[str, SlurmJob]:
    """Jobs by id, folded ranges (``7_[2-5]``) expanded.

    A line of its own beats a folded range: sacct lists ``7_2`` alone *and* inside
    the array's ``7_[2-5%2]`` line, which carries no node and may be older. A row
    named as ``names`` expects is never replaced by a row of another name.
    """
    names = names or {}
    jobs: dict[str, SlurmJob] = {}
    folded: dict[str, SlurmJob] = {}
    for raw_id, job in rows:
        ids = expand_job_ids(raw_id, MAX_EXPANSION - len(jobs) - len(folded))
        target = folded if "[" in raw_id else jobs
        for job_id in ids:
            held, want = target.get(job_id), names.get(job_id)
            if held is not None and want and held.name == want and job.name != want:
                continue  # ours already, and this row is an earlier job of the same id
            target[job_id] = replace(job, job_id=job_id)
    return {**folded, **jobs}


def arrays_by_name(jobs: Mapping[str, SlurmJob]) -> dict[str, str]:
    """``{job name: array id}``: how ``batch.records`` finds an array by its batch name."""
    return {job.name: job.array_job_id for job in jobs.values()}


def parse_sbatch_parsable(text: str) -> str:
    """The job id from ``sbatch --parsable`` output: ``"123"`` or ``"123;cluster"``."""
    line = first_line(text)
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise DriverError(
            f"sbatch --parsable printed {text.strip()[:200]!r}; expected a job id such as '123'"
        )
    return job_id


# --------------------------------------------------------------------------- states


def job_status(job: SlurmJob) -> JobStatus:
    """What a Slurm state means to the daemon.

    PENDING and friends are ``queued`` with the pending reason; RUNNING and
    COMPLETING are ``running`` on a host; anything else has ended (``gone``) and
    the state itself is the reason ("TIMEOUT", "CANCELLED by 1000", ...).
    """
    state = job.base_state
    if state in QUEUED_STATES:
        return JobStatus("queued", job.job_id, job.reason, scheduler_state=state)
    if state in RUNNING_STATES:
        return JobStatus("running", job.job_id, host=job.nodes, scheduler_state=state)
    # the raw state: "CANCELLED by 1000" tells the daemon someone else cancelled it
    return JobStatus(
        "gone", job.job_id, _gone_reason(job), host=job.nodes, scheduler_state=job.state
    )


def _gone_reason(job: SlurmJob) -> str | None:
    if job.base_state == "COMPLETED":
        return None
    detail = []
    if job.exit_code not in (None, "0:0"):
        detail.append(f"exit code {job.exit_code}")
    if job.reason is not None and job.base_state not in ("CANCELLED",):
        detail.append(job.reason)
    return f"{job.state} ({', '.join(detail)})" if detail else job.state


def ended(job: SlurmJob) -> bool:
    """True if the job is neither queued nor running."""
    return job.base_state not in QUEUED_STATES and job.base_state not in RUNNING_STATES


# --------------------------------------------------------------------------- the cluster


def parse_scontrol_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as ``{key: value}`` (headers and section titles skipped)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key and " " not in key:
            config[key] = value.strip()
    return config


def config_int(config: Mapping[str, str], key: str) -> int:
    """A number from the config (``"300 sec"`` -> 300); DriverError if it has none."""
    raw = config.get(key, "")
    match = re.match(r"\d+", raw)
    if match is None:
        raise DriverError(f"scontrol show config has no usable {key} (got {raw!r})")
    return int(match.group())


def parse_gres_gpus(gres: str) -> int:
    """GPUs in a GRES string: ``"gpu:a100:4(S:0-1),shard:8"`` -> 4; ``"(null)"`` -> 0."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres):
        parts = item.split("(", 1)[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
        elif parts[0] == "gpu" and len(parts) == 1:
            total += 1
    return total


def parse_sinfo(text: str) -> list[dict[str, Any]]:
    """``sinfo -h -N -O SINFO_FIELDS`` (one line per node and partition) as dicts."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.rstrip("|").split("|")
        if len(fields) != len(SINFO_FIELDS):
            raise DriverError(f"cannot read sinfo line {line[:200]!r}: expected 7 fields")
        node, partition, state, cpus, memory, gres, gres_used = (f.strip() for f in fields)
        cpu_counts = [int(n) if n.isdigit() else 0 for n in cpus.split("/")] + [0, 0, 0, 0]
        rows.append(
            {
                "node": node,
                "partition": partition.rstrip("*"),
                "default": partition.endswith("*"),
                "state": state,
                "cpus_alloc": cpu_counts[0],
                "cpus_idle": cpu_counts[1],
                "cpus": cpu_counts[3],
                "memory_mb": int(memory) if memory.isdigit() else None,
                "gpus": parse_gres_gpus(gres),
                "gpus_used": parse_gres_gpus(gres_used),
            }
        )
    return rows


def parse_node_names(text: str) -> dict[str, str]:
    """``sinfo -h -N -o NODES_FORMAT`` as ``{name: node name}`` for every spelling of a node.

    A host name reaches the driver as the runner saw it (``os.uname()``: maybe
    ``node7.cluster.example``) while ``--exclude`` wants the Slurm node name (``node7``,
    or something else entirely when ``NodeHostname`` differs).
    """
    names: dict[str, str] = {}
    for line in _lines(text):
        node, host = (field.strip() for field in split_fields(line, 2, "sinfo"))
        for spelling in (host, host.split(".", 1)[0], node):
            if spelling and spelling not in ("(null)", "N/A"):
                names.setdefault(spelling, node)
    return names


# --------------------------------------------------------------------------- limits


def _limit(raw: str, line: str, what: str) -> int | None:
    """A sacctmgr limit: ``""`` is none; anything but a count is a DriverError."""
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise DriverError(f"cannot read {what} line {line[:200]!r}: expected a count, got {raw!r}")
    return int(raw)


def parse_sacctmgr_assoc(text: str) -> tuple[str | None, list[Association]]:
    """``sacctmgr -n -P show user U withassoc format=ASSOC_FIELDS``: (default account, rows).

    sacctmgr shows an association its parent account's limits where it sets none
    itself, so the user's rows are enough.
    """
    default: str | None = None
    rows = []
    for line in _lines(text):
        fields = split_fields(line, len(ASSOC_FIELDS), "sacctmgr")
        _user, default_account, _cluster, account, partition, submit, jobs, qos, def_qos = fields
        default = default or unset(default_account)
        if not account.strip():
            continue  # a user without associations on this cluster
        rows.append(
            Association(
                account=account.strip(),
                partition=unset(partition),
                max_submit=_limit(submit, line, "sacctmgr"),
                max_jobs=_limit(jobs, line, "sacctmgr"),
                qos=tuple(q for q in qos.strip().split(",") if q),
                default_qos=unset(def_qos),
            )
        )
    return default, rows


def parse_sacctmgr_qos(text: str) -> dict[str, QosLimit]:
    """``sacctmgr -n -P show qos format=QOS_FIELDS`` as ``{name: QosLimit}``."""
    limits = {}
    for line in _lines(text):
        name, submit, jobs = split_fields(line, len(QOS_FIELDS), "sacctmgr")
        name = name.strip()
        limits[name] = QosLimit(
            name, _limit(submit, line, "sacctmgr"), _limit(jobs, line, "sacctmgr")
        )
    return limits


def parse_usage(text: str) -> list[tuple[str, str, str]]:
    """``squeue --me -h --array -o USAGE_FORMAT``: ``(account, qos, partitions)`` per live job.

    Jobs that already ended (squeue shows them for ``MinJobAge``) no longer count.
    """
    jobs = []
    for line in _lines(text):
        _job_id, state, account, qos, partitions = split_fields(line, 5, "squeue")
        job = SlurmJob("", _check_state(state.strip(), line, "squeue"))
        if not ended(job):
            jobs.append((account.strip(), qos.strip(), partitions.strip()))
    return jobs
