"""``SlurmDriver``: attempts as Slurm job-array tasks, polled in bulk.

Slurm is the distributed engine; this driver only talks to it, politely:

* **submit**: the attempts of one call that share resources and options go out as
  one ``sbatch --parsable --array=0-N[%throttle]`` per chunk of at most
  ``MaxArraySize`` tasks (read once from ``scontrol show config``; it caps the
  task *index*, so chunks are numbered from 0). The batch script is rendered
  here (``render_batch_script``): a ``case`` on ``$SLURM_ARRAY_TASK_ID`` picks the
  task's attempt dir, environment and argv -- every value ``shlex``-quoted -- and
  ``exec``s the runner, so ``--signal=B:<sig>@<lead>`` reaches the runner itself.
* **poll**: one ``squeue --me --states=all`` for every job (it still lists jobs
  that ended less than ``MinJobAge`` ago, with their final state), then one
  ``sacct`` for the jobs that left the queue or were cancelled (accounting alone
  says who: "CANCELLED by 1000") -- or none at all, the usual case.
* **find**: before ``sbatch`` runs, ``<attempt_dir>/job.json`` records the array's
  job name (``cd.<sweep>.<8 hex>``, unique per ``sbatch``) and the task index;
  after it, the job id. A daemon that crashed in between finds the job again by
  name in ``squeue`` or ``sacct``; a job id in job.json needs no query at all.
* **limits**: where slurmctld enforces them (``AccountingStorageEnforce`` has
  ``limits``), the association's ``MaxSubmitJobs`` and the QOS's
  ``MaxSubmitJobsPerUser`` (``sacctmgr``, cached ``LIMITS_TTL`` s) cap how many
  jobs -- array tasks count one each, as Slurm counts them -- the user may have
  queued; ``submit`` sends what fits and leaves the rest out of its answer, which
  the daemon offers again later. A rejected ``sbatch`` would fail the whole array.
* **pack**: ``resources.pack = N`` puts N attempts in one array task: the batch
  shell starts N runners in the background (each in its attempt dir, with its
  share of ``CUDA_VISIBLE_DEVICES``), forwards signals to them and waits for all.
  Such an attempt's job id is ``<task id>/<slot>`` (``57_0/1``). Cancelling some
  slots of a running job writes ``CANCEL`` in their attempt dirs, which the batch
  shell turns into a SIGTERM for that runner only (``scancel`` has no way to reach
  one process of a job); the job is ``scancel``led once no slot is left to run.
* **bad hosts**: ``JobRequest.exclude_hosts`` (nodes where the sweep's trials keep
  failing) joins ``[drivers.slurm] exclude`` in ``--exclude``, mapped to Slurm node
  names first (an unknown name would make ``sbatch`` refuse the whole array).

Parsing is pure (``parse_*`` functions, fed recorded output in the tests); every
command runs through one ``CommandRunner`` with a timeout, and any failure is a
``DriverError`` (the daemon backs off and asks again). The scheduler's state is
the truth only for jobs that never started or were killed: the exit status of an
attempt is the runner's ``status.json``.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterd.drivers.base import ClusterInfo, Driver, JobRef, JobRequest, JobStatus
from clusterd.drivers.hookspecs import hookimpl
from clusterd.drivers.jobfile import JOB_FILE, read_job_file, write_json_atomic
from clusterd.errors import DriverError, SpecError
from clusterd.spec.model import Resources, SweepSpec

if TYPE_CHECKING:
    from clusterd.drivers.registry import DriverRegistry

__all__ = [
    "ASSOC_FIELDS",
    "DRIVER_OPTIONS",
    "QOS_FIELDS",
    "SACCT_FIELDS",
    "SQUEUE_FORMAT",
    "SWEEP_OPTIONS",
    "USAGE_FORMAT",
    "ArraySettings",
    "Association",
    "CommandRunner",
    "QosLimit",
    "SlurmDriver",
    "SlurmJob",
    "SubmitBudget",
    "SubmitLimits",
    "build_sbatch_argv",
    "clusterd_register_drivers",
    "expand_job_ids",
    "format_slurm_time",
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
    "read_resume",
    "render_batch_script",
    "run_command",
    "split_slot",
]

log = logging.getLogger(__name__)

CommandRunner = Callable[[Sequence[str], float, str | None], subprocess.CompletedProcess[str]]
"""``(argv, timeout, stdin) -> CompletedProcess``; tests wrap it to count calls."""

STATE_DIR = ".slurm"  # under the sweep's output dir: batch scripts and early task output
TOKEN_ENV = "CLUSTERD_JOB_TOKEN"
NAME_PREFIX = "cd."
DEFAULT_COMMAND_TIMEOUT = 30.0
TIMEOUT_ENV = "CLUSTERD_SLURM_TIMEOUT"  # seconds every Slurm command may take (daemon-wide)
MAX_SIGNAL_LEAD = 65535  # sbatch --signal accepts at most this many seconds
#: tasks per sbatch whatever MaxArraySize says: ~225 bytes of script per task keeps the
#: script well under slurmctld's default max_script_size (4 MB)
MAX_TASKS_PER_ARRAY = 10_000
MAX_EXPANSION = 1_000_000  # array ids one output may expand to (Slurm's cap is 4,000,001)

#: ``squeue -o`` fields, ``|``-separated; the job name goes last as it may hold ``|``
SQUEUE_FORMAT = "%i|%F|%K|%T|%r|%N|%j"
SQUEUE_ARGV = ("squeue", "--me", "--noheader", "--array", "--states=all")
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
#: seconds the limits and the node names are cached: admins change them rarely, and
#: ``sacctmgr`` asks slurmdbd, which a busy site would rather not hear from every poll
LIMITS_TTL = 300.0
CANCEL_FILE = "CANCEL"  # in an attempt dir: the packed batch shell SIGTERMs its runner
SLOT_STARTED_FILE = "slurm_job_id"  # written by the batch script as an attempt starts
#: in an attempt dir: Slurm requeued the attempt's job, which ends the attempt (written by
#: the driver before it scancels the requeued job, or by a restarted batch script)
REQUEUED_FILE = "requeued"
#: pending reasons of a requeued job: it waits ``BeginTime`` (120 s) or is held
REQUEUE_REASONS = frozenset(
    {"BeginTime", "job requeued in held state", "JobHeldUser", "JobHeldAdmin"}
)
STATUS_FILE = "status.json"
PACK_CHECK_SECONDS = 2  # how often a packed batch shell looks for CANCEL files
PACK_SEP = "/"  # job id of a packed attempt: "<array>_<task>/<slot>"

QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)

#: keys of a sweep's ``[drivers.slurm]`` table -> what each must be
SWEEP_OPTIONS: dict[str, str] = {
    "account": "a non-empty string (sbatch --account)",
    "qos": "a non-empty string (sbatch --qos)",
    "constraint": "a non-empty string (sbatch --constraint)",
    "exclude": "a node list string or a list of node names (sbatch --exclude)",
    "extra": "a list of strings, each passed to sbatch as one argument",
    "throttle": "a positive integer: array tasks running at once (--array=...%N)",
    "poll_interval": "a number of seconds > 0 (the smallest any sweep asks for wins)",
    "max_array_size": "a positive integer: tasks per sbatch (at most the cluster's MaxArraySize)",
}
#: keys of the driver's own options (daemon configuration, or tests)
DRIVER_OPTIONS: dict[str, str] = {
    "poll_interval": SWEEP_OPTIONS["poll_interval"],
    "max_array_size": SWEEP_OPTIONS["max_array_size"],
    "command_timeout": "a number of seconds > 0 every Slurm command may take",
}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIGNAL = re.compile(r"(SIG)?[A-Z0-9]+")
_JOB_ID = re.compile(r"(\d+)(?:_(\d+|\[[0-9,%\-]+\]))?(?:\+\d+)?")


# --------------------------------------------------------------------------- commands


def run_command(
    argv: Sequence[str], timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command without a shell; the default ``CommandRunner``.

    It runs in a process group of its own, killed whole on a time-out: login nodes
    often wrap ``squeue`` & co in scripts, and a child left holding the output pipe
    would make the wait for the output hang as long as the command itself.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _env_timeout() -> dict[str, float]:
    """``{"command_timeout": s}`` from ``CLUSTERD_SLURM_TIMEOUT``, the daemon's way to set it
    (it builds drivers without options); a bad value is a DriverError naming it."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return {}
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise DriverError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return {"command_timeout": seconds}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


# --------------------------------------------------------------------------- parsing


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


def _none(value: str) -> str | None:
    """Slurm prints absent values as "None", "(null)", "None assigned" or nothing."""
    value = value.strip()
    return None if value in ("", "None", "(null)", "None assigned", "n/a") else value


def _split(line: str, count: int, what: str) -> list[str]:
    """Split a ``|``-separated line into ``count`` fields, the last one taking the rest."""
    fields = line.split("|", count - 1)
    if len(fields) != count:
        raise DriverError(
            f"cannot read {what} line {line[:200]!r}: {len(fields)} fields, expected {count}; "
            f"is this a Slurm version clusterd does not know?"
        )
    return fields


def _check_state(state: str, line: str, what: str) -> str:
    if not re.fullmatch(r"[A-Z_]+\+?( by \d+)?", state):
        raise DriverError(f"cannot read {what} line {line[:200]!r}: odd job state {state!r}")
    return state


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` output into jobs by job id.

    A line that does not fit the format is a DriverError rather than skipped: a job
    missing from the answer would look finished, and the poll is better retried.
    """
    rows = []
    for line in _lines(text):
        raw_id, _array, _task, state, reason, nodes, name = _split(line, 7, "squeue")
        state = _check_state(state.strip(), line, "squeue")
        rows.append((raw_id.strip(), SlurmJob("", state, _none(reason), _none(nodes), name)))
    return _by_job_id(rows)


def parse_sacct(text: str) -> dict[str, SlurmJob]:
    """Parse ``sacct -n -P -X --format=SACCT_FIELDS`` output into jobs by job id."""
    rows = []
    for line in _lines(text):
        raw_id, state, exit_code, reason, nodes, name = _split(line, len(SACCT_FIELDS), "sacct")
        state = _check_state(state.strip(), line, "sacct")
        job = SlurmJob("", state, _none(reason), _none(nodes), name, _none(exit_code))
        rows.append((raw_id.strip(), job))
    return _by_job_id(rows)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _by_job_id(rows: Sequence[tuple[str, SlurmJob]]) -> dict[str, SlurmJob]:
    """Jobs by id, folded ranges (``7_[2-5]``) expanded.

    A line of its own beats a folded range: sacct lists ``7_2`` alone *and* inside
    the array's ``7_[2-5%2]`` line, which carries no node and may be older.
    """
    jobs: dict[str, SlurmJob] = {}
    folded: dict[str, SlurmJob] = {}
    for raw_id, job in rows:
        ids = expand_job_ids(raw_id, MAX_EXPANSION - len(jobs) - len(folded))
        target = folded if "[" in raw_id else jobs
        for job_id in ids:
            target[job_id] = replace(job, job_id=job_id)
    return {**folded, **jobs}


def parse_sbatch_parsable(text: str) -> str:
    """The job id from ``sbatch --parsable`` output: ``"123"`` or ``"123;cluster"``."""
    line = _first_line(text)
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise DriverError(
            f"sbatch --parsable printed {text.strip()[:200]!r}; expected a job id such as '123'"
        )
    return job_id


def parse_scontrol_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as ``{key: value}`` (headers and section titles skipped)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key and " " not in key:
            config[key] = value.strip()
    return config


def _config_int(config: Mapping[str, str], key: str) -> int:
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
        node, host = (field.strip() for field in _split(line, 2, "sinfo"))
        for spelling in (host, host.split(".", 1)[0], node):
            if spelling and spelling not in ("(null)", "N/A"):
                names.setdefault(spelling, node)
    return names


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Association:
    """One of the user's associations (cluster, account[, partition]) and its job limits."""

    account: str
    partition: str | None = None
    max_submit: int | None = None  # MaxSubmitJobs: queued + running; more are refused
    max_jobs: int | None = None  # MaxJobs: running; more wait with AssocMaxJobsLimit
    qos: tuple[str, ...] = ()
    default_qos: str | None = None


@dataclass(frozen=True)
class QosLimit:
    """A QOS's per-user job limits."""

    name: str
    max_submit_pu: int | None = None  # MaxSubmitJobsPerUser: more are refused
    max_jobs_pu: int | None = None  # MaxJobsPerUser: more wait with QOSMaxJobsPerUserLimit


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
        fields = _split(line, len(ASSOC_FIELDS), "sacctmgr")
        _user, default_account, _cluster, account, partition, submit, jobs, qos, def_qos = fields
        default = default or _none(default_account)
        if not account.strip():
            continue  # a user without associations on this cluster
        rows.append(
            Association(
                account=account.strip(),
                partition=_none(partition),
                max_submit=_limit(submit, line, "sacctmgr"),
                max_jobs=_limit(jobs, line, "sacctmgr"),
                qos=tuple(q for q in qos.strip().split(",") if q),
                default_qos=_none(def_qos),
            )
        )
    return default, rows


def parse_sacctmgr_qos(text: str) -> dict[str, QosLimit]:
    """``sacctmgr -n -P show qos format=QOS_FIELDS`` as ``{name: QosLimit}``."""
    limits = {}
    for line in _lines(text):
        name, submit, jobs = _split(line, len(QOS_FIELDS), "sacctmgr")
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
        _job_id, state, account, qos, partitions = _split(line, 5, "squeue")
        job = SlurmJob("", _check_state(state.strip(), line, "squeue"))
        if not _ended(job):
            jobs.append((account.strip(), qos.strip(), partitions.strip()))
    return jobs


@dataclass(frozen=True)
class SubmitLimits:
    """What sacctmgr says the user may have queued; empty where nothing is enforced."""

    default_account: str | None = None
    associations: tuple[Association, ...] = ()
    qos: tuple[QosLimit, ...] = ()

    def association(self, account: str | None, partition: str | None) -> Association | None:
        """The association a job of ``account`` in ``partition`` runs under, as Slurm picks it:
        the partition's own, else the account's partition-less one."""
        account = account or self.default_account
        rows = [row for row in self.associations if row.account == account]
        own = [row for row in rows if partition is not None and row.partition == partition]
        general = [row for row in rows if row.partition is None]
        return next(iter(own or general), None)

    def qos_of(self, assoc: Association | None, qos: str | None) -> QosLimit | None:
        """The QOS a job asks for, else its association's default (Slurm's choice)."""
        name = qos or (assoc.default_qos if assoc else None)
        if name is None and assoc is not None and len(assoc.qos) == 1:
            name = assoc.qos[0]
        name = name or "normal"
        return next((q for q in self.qos if q.name == name), None)

    @property
    def limits_submission(self) -> bool:
        """True if any submit limit exists (else counting the queue is pointless)."""
        return any(a.max_submit is not None for a in self.associations) or any(
            q.max_submit_pu is not None for q in self.qos
        )

    def describe(self) -> list[str]:
        """One line per limit, for ``clusterctl cluster``."""
        lines = []
        for a in self.associations:
            where = f"account {a.account}" + (f", partition {a.partition}" if a.partition else "")
            if a.max_submit is not None:
                lines.append(f"{where}: MaxSubmitJobs={a.max_submit} (clusterd stays below it)")
            if a.max_jobs is not None:
                lines.append(f"{where}: MaxJobs={a.max_jobs} (more wait: AssocMaxJobsLimit)")
        for q in self.qos:
            if q.max_submit_pu is not None:
                lines.append(
                    f"QOS {q.name}: MaxSubmitJobsPerUser={q.max_submit_pu} "
                    f"(clusterd stays below it)"
                )
            if q.max_jobs_pu is not None:
                lines.append(
                    f"QOS {q.name}: MaxJobsPerUser={q.max_jobs_pu} "
                    f"(more wait: QOSMaxJobsPerUserLimit)"
                )
        return lines


#: a scope a submit limit counts jobs in: ("assoc", account, partition) or ("qos", name, None)
Scope = tuple[str, str, str | None]


class SubmitBudget:
    """How many more jobs fit under each submit limit, spent as arrays go out.

    Counted as slurmctld counts: every live job of the user, an array task being
    one job. An association's count is its account's jobs (in its partition, for a
    partition's own association); a QOS's is the user's jobs in that QOS. Counting
    a partition-less association's jobs in every partition can only err low.
    """

    def __init__(self, limits: SubmitLimits, usage: Sequence[tuple[str, str, str]]) -> None:
        self.limits = limits
        self.usage = usage
        self._used: dict[Scope, int] = {}

    def room(self, settings: ArraySettings) -> tuple[int | None, str]:
        """``(jobs that still fit or None for no limit, the tightest limit in words)``."""
        best: tuple[int | None, str] = (None, "")
        for scope, limit, words in self._scopes(settings):
            left = max(0, limit - self._count(scope))
            if best[0] is None or left < best[0]:
                best = (left, f"{words} ({self._count(scope)} of {limit} in use)")
        return best

    def spend(self, settings: ArraySettings, jobs: int) -> None:
        for scope, _limit, _words in self._scopes(settings):
            self._used[scope] = self._count(scope) + jobs

    def _scopes(self, settings: ArraySettings) -> list[tuple[Scope, int, str]]:
        assoc = self.limits.association(settings.account, settings.partition)
        scopes: list[tuple[Scope, int, str]] = []
        if assoc is not None and assoc.max_submit is not None:
            scope: Scope = ("assoc", assoc.account, assoc.partition)
            scopes.append((scope, assoc.max_submit, f"MaxSubmitJobs of account {assoc.account}"))
        qos = self.limits.qos_of(assoc, settings.qos)
        if qos is not None and qos.max_submit_pu is not None:
            words = f"MaxSubmitJobsPerUser of QOS {qos.name}"
            scopes.append((("qos", qos.name, None), qos.max_submit_pu, words))
        return scopes

    def _count(self, scope: Scope) -> int:
        if scope not in self._used:
            kind, name, partition = scope
            self._used[scope] = sum(
                1
                for account, qos, partitions in self.usage
                if (kind == "qos" and qos == name)
                or (
                    kind == "assoc"
                    and account == name
                    and (partition is None or partition in partitions.split(","))
                )
            )
        return self._used[scope]


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


def _ended(job: SlurmJob) -> bool:
    return job.base_state not in QUEUED_STATES and job.base_state not in RUNNING_STATES


# --------------------------------------------------------------------------- options


def _check_option(key: str, value: Any) -> bool:
    """True if ``value`` is acceptable for option ``key``."""
    if key in ("account", "qos", "constraint"):
        return isinstance(value, str) and bool(value.strip())
    if key == "exclude":
        return (isinstance(value, str) and bool(value.strip())) or _is_str_list(value)
    if key == "extra":
        return _is_str_list(value)
    if key in ("throttle", "max_array_size"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if key in ("poll_interval", "command_timeout"):
        return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return False


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _option_problem(options: Mapping[str, Any], valid: Mapping[str, str]) -> str | None:
    """What is wrong with ``options`` (an unknown key, listing the valid ones, or a value
    of the wrong kind), or None."""
    for key, value in options.items():
        if key not in valid:
            return f"unknown option {key!r}; valid options: {', '.join(sorted(valid))}"
        if not _check_option(key, value):
            return f"option {key!r} must be {valid[key]}, got {value!r}"
    return None


def _check_options(options: Mapping[str, Any], valid: Mapping[str, str], where: str) -> None:
    """``_option_problem`` as a DriverError that says ``where``."""
    problem = _option_problem(options, valid)
    if problem is not None:
        raise DriverError(f"{where}: {problem}")


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class ArraySettings:
    """Everything sbatch is told about an array; attempts sharing it share an array."""

    sweep: str
    cpus: int | None = None
    gpus: int = 0
    memory_mb: int | None = None
    time_seconds: int | None = None
    partition: str | None = None
    signal: str | None = None  # resume signal, only with a time limit
    signal_lead: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    extra: tuple[str, ...] = ()
    throttle: int | None = None
    #: attempts per array task; cpus, gpus and memory above are per attempt
    pack: int = 1

    @classmethod
    def of(
        cls,
        job: JobRequest,
        resume: tuple[str, int] | None = None,
        exclude_nodes: Sequence[str] = (),
    ) -> ArraySettings:
        """Settings for ``job``; ``resume`` is ``(signal, lead)`` from its launch.json;
        ``exclude_nodes`` are node names to avoid besides ``[drivers.slurm] exclude``."""
        res: Resources = job.resources
        opts = job.options
        signal, lead = _signal_for(res.time_seconds, resume)
        return cls(
            sweep=job.sweep,
            cpus=res.cpus,
            gpus=res.gpus,
            memory_mb=res.memory_mb,
            time_seconds=res.time_seconds,
            partition=res.partition,
            signal=signal,
            signal_lead=lead,
            account=opts.get("account"),
            qos=opts.get("qos"),
            constraint=opts.get("constraint"),
            exclude=_merge_exclude(opts.get("exclude"), exclude_nodes),
            extra=tuple(opts.get("extra") or ()),
            throttle=opts.get("throttle"),
            pack=max(1, res.pack),
        )


def _merge_exclude(option: str | Sequence[str] | None, nodes: Sequence[str]) -> str | None:
    """``--exclude`` value: the sweep's own list (a string may be a hostlist expression
    such as ``node[1-4]``, kept as written), then the bad nodes it does not name."""
    parts = [option] if isinstance(option, str) else list(option or ())
    parts += sorted({node for node in nodes if node not in parts})
    return ",".join(parts) or None


def _signal_for(
    time_seconds: int | None, resume: tuple[str, int] | None
) -> tuple[str | None, int | None]:
    """``(signal, lead)`` for ``--signal=B:...``; as the runner does, a lead that does not
    fit in the time limit becomes half of it."""
    if not time_seconds or resume is None:
        return None, None
    signal, lead = resume
    if lead >= time_seconds:
        lead = time_seconds // 2
    return signal.upper().removeprefix("SIG"), max(1, min(lead, MAX_SIGNAL_LEAD))


def format_slurm_time(seconds: int) -> str:
    """``--time`` value: ``"HH:MM:SS"``, or ``"D-HH:MM:SS"`` from a day on.

    Slurm counts time limits in minutes and rounds seconds up.
    """
    seconds = max(1, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def build_sbatch_argv(
    settings: ArraySettings, name: str, tasks: int, state_dir: str, script: str
) -> list[str]:
    """The sbatch command line for one array of ``tasks`` tasks; no shell ever sees it.

    ``--requeue``: an admin's ``scontrol requeue`` (or preemption, or a node failure,
    where the site requeues) must not be refused -- but Slurm rerunning the same
    attempt dir would run the attempt twice, so the driver ends a requeued attempt
    and cancels its job (``SlurmDriver._end_requeued``), the batch script refuses to
    run an attempt again (``_REQUEUE_GUARD``), and the daemon submits a new attempt.
    ``extra`` comes last so it can override anything.
    """
    array = f"0-{tasks - 1}" + (f"%{settings.throttle}" if settings.throttle else "")
    argv = [
        "sbatch",
        "--parsable",
        f"--array={array}",
        f"--job-name={name}",
        f"--chdir={state_dir}",
        f"--output={os.path.join(state_dir, name)}.out",
        "--open-mode=append",
        "--requeue",
    ]
    argv += _resource_args(settings)
    argv += list(settings.extra)
    argv.append(script)
    return argv


def _resource_args(s: ArraySettings) -> list[str]:
    """Per-task resources: a packed task asks for ``pack`` times one attempt's share (an
    attempt without ``cpus`` counts as one CPU then, so that the attempts do not queue
    behind each other for one CPU)."""
    n = s.pack
    cpus = s.cpus * n if s.cpus else (n if n > 1 else None)
    pairs = [
        ("--cpus-per-task", cpus),
        ("--gres", f"gpu:{s.gpus * n}" if s.gpus else None),
        ("--mem", f"{s.memory_mb * n}M" if s.memory_mb else None),
        ("--time", format_slurm_time(s.time_seconds) if s.time_seconds else None),
        ("--signal", f"B:{s.signal}@{s.signal_lead}" if s.signal else None),
        ("--partition", s.partition),
        ("--account", s.account),
        ("--qos", s.qos),
        ("--constraint", s.constraint),
        ("--exclude", s.exclude),
    ]
    return [f"{flag}={value}" for flag, value in pairs if value is not None]


def render_batch_script(name: str, jobs: Sequence[JobRequest], pack: int = 1) -> str:
    """The batch script of one array: task ``i`` runs ``jobs[i * pack : (i + 1) * pack]``.

    Every value from a request (paths, argv, environment) is ``shlex.quote``d. With
    one attempt per task, the task ``exec``s its argv in its attempt dir, so the
    runner *is* the batch shell and receives ``--signal=B:...``. Output the runner
    itself prints goes to ``slurm.out`` in the attempt dir; ``slurm_job_id`` there
    records the job id. Packed tasks: see ``_PACKED_TAIL``.
    """
    if pack > 1:
        return _render_packed(name, jobs, pack)
    lines = [
        "#!/bin/bash",
        f"# clusterd array {name}: {len(jobs)} task(s) of sweep {jobs[0].sweep}.",
        "# Generated by clusterd's Slurm driver; job.json in each attempt dir maps back.",
        'case "${SLURM_ARRAY_TASK_ID:-}" in',
    ]
    for index, job in enumerate(jobs):
        lines += [f"{index})", f"    adir={shlex.quote(job.attempt_dir)}"]
        lines += [f"    {line}" for line in _job_lines(job)]
        lines.append("    ;;")
    lines += [
        *_UNKNOWN_TASK,
        'cd "$adir" || exit 97',
        *_REQUEUE_GUARD,
        'printf \'%s_%s\\n\' "$SLURM_ARRAY_JOB_ID" "$SLURM_ARRAY_TASK_ID" >slurm_job_id',
        'exec "${argv[@]}" >>slurm.out 2>&1',
        "",
    ]
    return "\n".join(lines)


#: a requeued job runs its script again: the attempt ran already, so it must not run twice
#: (the daemon ends it and submits a new attempt); normally the driver scancels a requeued
#: job first, this catches a requeue while no daemon was polling
_REQUEUE_GUARD = [
    'if [ "${SLURM_RESTART_COUNT:-0}" != 0 ]; then',
    f'    echo "$SLURM_RESTART_COUNT" >{REQUEUED_FILE}',
    "    exit 0",
    "fi",
]

_UNKNOWN_TASK = [
    "*)",
    '    echo "clusterd: array task ${SLURM_ARRAY_TASK_ID:-?} is not in this script" >&2',
    "    exit 97",
    "    ;;",
    "esac",
]


def _job_lines(job: JobRequest) -> list[str]:
    """``export`` lines for the job's environment and its ``argv=(...)`` array."""
    q = shlex.quote
    env = {**job.env, TOKEN_ENV: job.token}
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise DriverError(f"job {job.token}: environment variable name {key!r} is invalid")
    return [
        *(f"export {q(f'{key}={value}')}" for key, value in env.items()),
        f"argv=({' '.join(q(arg) for arg in job.argv)})",
    ]


def _render_packed(name: str, jobs: Sequence[JobRequest], pack: int) -> str:
    """Packed tasks: the attempt dirs in ``adirs``, each slot's environment and argv in a
    function ``slot_<n>`` (called in the slot's subshell), then ``_PACKED_TAIL``."""
    if len(jobs) % pack:
        raise DriverError(f"{len(jobs)} attempts do not fill tasks of {pack}")
    tasks = [jobs[start : start + pack] for start in range(0, len(jobs), pack)]
    lines = [
        "#!/bin/bash",
        f"# clusterd array {name}: {len(tasks)} task(s) of sweep {jobs[0].sweep}, "
        f"{pack} attempts packed in each.",
        "# Generated by clusterd's Slurm driver; job.json in each attempt dir maps back.",
        'case "${SLURM_ARRAY_TASK_ID:-}" in',
    ]
    for index, task in enumerate(tasks):
        lines += [
            f"{index})",
            f"    adirs=({' '.join(shlex.quote(job.attempt_dir) for job in task)})",
        ]
        for slot, job in enumerate(task):
            lines += [f"    slot_{slot}() {{", *(f"        {x}" for x in _job_lines(job)), "    }"]
        lines.append("    ;;")
    lines += _UNKNOWN_TASK
    lines += [
        'if [ "${SLURM_RESTART_COUNT:-0}" != 0 ]; then  # requeued: these attempts ran already',
        '    for adir in "${adirs[@]}"; do',
        f'        echo "$SLURM_RESTART_COUNT" >"$adir/{REQUEUED_FILE}"',
        "    done",
        "    exit 0",
        "fi",
    ]
    lines.append(f"gpus_per_slot={jobs[0].resources.gpus}")
    lines += _PACKED_TAIL.format(check=PACK_CHECK_SECONDS, cancel=CANCEL_FILE).splitlines()
    lines.append("")
    return "\n".join(lines)


#: The packed task's supervisor, in the batch shell. Why each part:
#: * every runner starts in the background in a subshell of its own (cd, env, its
#:   CUDA_VISIBLE_DEVICES share, then ``exec``), so ``$!`` is the runner's pid;
#: * traps forward the resume signal (``--signal=B:`` reaches only this shell) and
#:   TERM/INT to every runner; set before the launch, as a signal in between would
#:   kill the shell (subshells reset them to the default);
#: * ``sleep & wait -n``: returns when a runner exits, the sleep ends (time to look for
#:   CANCEL files) or a trapped signal arrives -- not a sleep later (bash < 4.3 has no
#:   ``wait -n`` and waits for the sleep);
#: * a ``CANCEL`` file in an attempt dir (written by ``SlurmDriver.cancel``) SIGTERMs
#:   that runner only; a slot cancelled before the task started is not started;
#: * the task's exit status is the first non-zero runner status (0 if none).
_PACKED_TAIL = r"""IFS=, read -r -a gpus <<<"${{CUDA_VISIBLE_DEVICES:-}}"
if [ "${{#gpus[@]}}" -lt $((gpus_per_slot * ${{#adirs[@]}})) ]; then
    gpus=($(seq 0 $((gpus_per_slot * ${{#adirs[@]}} - 1))))
fi
pids=()
cancelled=()
forward() {{
    local pid
    for pid in "${{pids[@]}}"; do kill -s "$1" "$pid" 2>/dev/null; done
}}
for sig in TERM INT USR1 USR2 HUP; do trap "forward $sig" "$sig"; done
launch() {{
    local slot=$1 adir=${{adirs[$1]}}
    [ -e "$adir/{cancel}" ] && return 0
    (
        cd "$adir" || exit 97
        printf '%s_%s/%s\n' "$SLURM_ARRAY_JOB_ID" "$SLURM_ARRAY_TASK_ID" "$slot" >slurm_job_id
        if [ "$gpus_per_slot" -gt 0 ]; then
            share=("${{gpus[@]:slot * gpus_per_slot:gpus_per_slot}}")
            CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${{share[*]}}")
            export CUDA_VISIBLE_DEVICES
        fi
        "slot_$slot"
        exec "${{argv[@]}}" >>slurm.out 2>&1
    ) &
    pids[slot]=$!
}}
for slot in "${{!adirs[@]}}"; do launch "$slot"; done
wait_any=1
[ "${{BASH_VERSINFO[0]}}${{BASH_VERSINFO[1]}}" -ge 43 ] || wait_any=
sleeper=
while :; do
    alive=0
    for slot in "${{!pids[@]}}"; do
        kill -0 "${{pids[slot]}}" 2>/dev/null || continue
        alive=1
        if [ -z "${{cancelled[slot]:-}}" ] && [ -e "${{adirs[slot]}}/{cancel}" ]; then
            cancelled[slot]=1
            kill -s TERM "${{pids[slot]}}" 2>/dev/null
        fi
    done
    [ "$alive" = 1 ] || break
    if [ -z "$sleeper" ] || ! kill -0 "$sleeper" 2>/dev/null; then
        sleep {check} &
        sleeper=$!
    fi
    if [ -n "$wait_any" ]; then wait -n; else wait "$sleeper"; fi
done
[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null
status=0
for slot in "${{!pids[@]}}"; do
    wait "${{pids[slot]}}"
    rc=$?
    [ "$status" -ne 0 ] || status=$rc
done
exit "$status"
"""


# --------------------------------------------------------------------------- job.json


def read_resume(attempt_dir: str) -> tuple[str, int] | None:
    """``(signal, signal_lead)`` from the attempt's launch.json (docs/runtime.md).

    JobRequest carries no resume policy; the daemon writes launch.json before
    ``submit``. None when it is missing or has no usable ``resume`` table.
    """
    try:
        launch = json.loads((Path(attempt_dir) / "launch.json").read_text())
        resume = launch["resume"]
        signal, lead = str(resume["signal"]), int(resume["signal_lead"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _SIGNAL.fullmatch(signal.upper()) or lead < 0:
        return None
    return signal, lead


# --------------------------------------------------------------------------- driver


class SlurmDriver(Driver):
    """Attempts as tasks of Slurm job arrays; see the module docstring for the protocol."""

    name = "slurm"
    poll_interval = 30.0
    enforces_time_limit = True
    status_grace = 60.0
    #: seconds sacctmgr's limits and sinfo's node names are trusted (tests shorten it)
    limits_ttl = LIMITS_TTL

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, run: CommandRunner | None = None
    ) -> None:
        super().__init__({**_env_timeout(), **(options or {})})
        _check_options(self.options, DRIVER_OPTIONS, "slurm driver options")
        self._run = run or run_command
        self._timeout = float(self.options.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
        self._config: dict[str, str] | None = None
        self._limits: tuple[float, SubmitLimits] | None = None  # (monotonic time, limits)
        self._node_map: tuple[float, dict[str, str]] | None = None
        self._unknown_hosts: set[str] = set()  # warned about once
        self._eligible: dict[str, tuple[float, set[str]]] = {}  # partition -> (time, nodes)
        if "poll_interval" in self.options:
            self._set_poll_interval(float(self.options["poll_interval"]))

    # -- the contract -------------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Reject unknown ``[drivers.slurm]`` keys and resources Slurm cannot take."""
        problem = _option_problem(spec.driver_options.get(self.name, {}), SWEEP_OPTIONS)
        if problem is not None:
            raise SpecError(spec.source, "drivers.slurm", problem)
        for key in spec.env.vars:
            if not _ENV_NAME.fullmatch(key):
                raise SpecError(spec.source, f"env.vars.{key}", "a valid variable name")

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """One sbatch per group of alike attempts and chunk of ``MaxArraySize`` tasks, as
        many tasks as the user's submit limits leave room for."""
        if not jobs:
            return {}
        for job in jobs:
            _check_options(job.options, SWEEP_OPTIONS, f"drivers.slurm of sweep {job.sweep}")
            self._note_poll_interval(job.options)
        accepted = self._adopt_leftovers(jobs)
        todo = [job for job in jobs if job.token not in accepted]
        held: list[str] = []
        try:
            budget = self._budget() if todo else None
            for settings, tasks in self._arrays(todo):
                fits = self._fit(budget, settings, tasks, held)
                if fits:
                    accepted.update(self._submit_array(settings, fits))
        except DriverError as exc:
            if not accepted:
                raise
            log.warning("slurm: %d of %d jobs submitted, then: %s", len(accepted), len(jobs), exc)
        if held:
            log.info("slurm: %s; offered again later", "; ".join(held))
        return accepted

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """One squeue for everything; one sacct for jobs that left it or were cancelled."""
        if not jobs:
            return {}
        queue = parse_squeue(self._call([*SQUEUE_ARGV, f"--format={SQUEUE_FORMAT}"]))
        ids = self._resolve(jobs, queue)
        statuses: dict[str, JobStatus] = {}
        ended: dict[str, str] = {}  # token -> job id
        requeued: dict[str, str] = {}  # token -> job id
        for ref in jobs:
            job_id = ids.get(ref.token)
            if job_id is None:
                statuses[ref.token] = JobStatus("gone", None, "no Slurm job was found for it")
                continue
            slurm_id, slot = split_slot(job_id)
            row = queue.get(slurm_id)
            if row is not None and _requeued(ref, row):
                requeued[ref.token] = job_id
                continue
            if row is None or _ended(row):
                if (Path(ref.attempt_dir) / REQUEUED_FILE).exists():
                    statuses[ref.token] = _requeued_status(job_id)
                else:
                    ended[ref.token] = job_id
                continue
            status = replace(job_status(row), job_id=job_id)
            statuses[ref.token] = status if slot is None else _slot_status(ref, status)
        if ended:
            statuses.update(self._final_states(ended, queue))
        if requeued:
            statuses.update(self._end_requeued(jobs, requeued))
        return statuses

    def _end_requeued(
        self, jobs: Sequence[JobRef], requeued: Mapping[str, str]
    ) -> dict[str, JobStatus]:
        """End attempts whose job Slurm requeued (``scontrol requeue``, preemption or a node
        failure with requeue on): the job would run the same attempt dir again after its
        ``BeginTime``, so the driver marks the attempts and ``scancel``s the job, and the
        daemon submits a new attempt (a resume, not a failure)."""
        dirs = {ref.token: ref.attempt_dir for ref in jobs}
        for token in requeued:
            try:
                (Path(dirs[token]) / REQUEUED_FILE).write_text("requeued\n")
            except OSError as exc:
                raise DriverError(f"cannot mark {dirs[token]} as requeued: {exc}") from exc
        slurm_ids = sorted({split_slot(job_id)[0] for job_id in requeued.values()})
        log.info("slurm: %s requeued by Slurm; cancelled for new attempts", ", ".join(slurm_ids))
        self._scancel(slurm_ids)
        return {token: _requeued_status(job_id) for token, job_id in requeued.items()}

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """One ``scancel`` for all jobs with nothing else left to run; jobs that already
        ended are no error. A packed job with other slots still running is not
        ``scancel``led: its cancelled slots get a ``CANCEL`` file (see ``_PACKED_TAIL``)."""
        ids = self._resolve(jobs, None)
        lost = [ref for ref in jobs if ref.token not in ids and _has_batch(ref)]
        if lost:  # submitted, but the id was lost in a crash: look it up by name
            ids.update(self._resolve(lost, self._squeue_all()))
        targets: set[str] = set()
        packed: dict[str, list[JobRef]] = {}
        for ref in jobs:
            if ref.token not in ids:
                continue
            slurm_id, slot = split_slot(ids[ref.token])
            if slot is None:
                targets.add(slurm_id)
            else:
                packed.setdefault(slurm_id, []).append(ref)
        for slurm_id, refs in packed.items():
            if _cancel_slots(refs):
                targets.add(slurm_id)
        if targets:
            self._scancel(sorted(targets))

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """Job ids from job.json, else by array name and task in squeue, then sacct."""
        found = self._resolve(jobs, None)
        wanted = [ref for ref in jobs if ref.token not in found]
        wanted = [ref for ref in wanted if _has_batch(ref)]
        records = {ref.token: read_job_file(ref.attempt_dir, ref.token) for ref in wanted}
        if not wanted:
            return found
        found.update(self._resolve(wanted, self._squeue_all()))
        wanted = [ref for ref in wanted if ref.token not in found]
        if wanted:
            found.update(self._find_in_sacct(wanted, records))
        return found

    def describe_cluster(self) -> ClusterInfo:
        """Partitions, nodes and GPUs from one ``sinfo``; the user's queue from one ``squeue``;
        the user's job limits from the cache (``sacctmgr`` when it is stale)."""
        fields = ",".join(f"{field}:0|" for field in SINFO_FIELDS)
        rows = parse_sinfo(self._call(["sinfo", "--noheader", "--Node", f"--Format={fields}"]))
        queue_text = self._call(["squeue", "--me", "--noheader", f"--format={QUEUE_FORMAT}"])
        partitions = _partitions(rows)
        return ClusterInfo(
            driver=self.name,
            partitions=partitions,
            nodes=_nodes(rows),
            gpus=[
                {"partition": p["name"], "gpus": p["gpus"], "gpus_free": p["gpus_free"]}
                for p in partitions
                if p["gpus"]
            ],
            queue=[_queue_entry(line) for line in queue_text.splitlines() if line.strip()],
            notes=self.submit_limits().describe(),
        )

    # -- limits ---------------------------------------------------------------------------

    def submit_limits(self) -> SubmitLimits:
        """The user's job limits as slurmctld enforces them; cached for ``limits_ttl`` s.

        None are read where ``AccountingStorageEnforce`` lacks ``limits`` (Slurm
        ignores them then) or sacctmgr cannot answer (no slurmdbd): an over-limit
        sbatch then fails, and the daemon backs off and offers the jobs again.
        """
        now = time.monotonic()
        if self._limits is not None and now - self._limits[0] < self.limits_ttl:
            return self._limits[1]
        limits = SubmitLimits()
        config = self._cluster_config()
        enforce = config.get("AccountingStorageEnforce", "").lower().split(",")
        if "limits" in enforce or "safe" in enforce:
            try:
                limits = self._read_limits(config.get("ClusterName"))
            except DriverError as exc:
                log.warning("slurm: cannot read job limits, assuming none: %s", exc)
        self._limits = (now, limits)
        return limits

    def _read_limits(self, cluster: str | None) -> SubmitLimits:
        user = pwd.getpwuid(os.getuid()).pw_name
        argv = ["sacctmgr", "--noheader", "--parsable2", "show", "user", user, "withassoc"]
        if cluster:
            argv += ["where", f"cluster={cluster}"]
        default, assocs = parse_sacctmgr_assoc(
            self._call([*argv, f"format={','.join(ASSOC_FIELDS)}"])
        )
        qos_argv = ["sacctmgr", "--noheader", "--parsable2", "show", "qos"]
        qos = parse_sacctmgr_qos(self._call([*qos_argv, f"format={','.join(QOS_FIELDS)}"]))
        return SubmitLimits(default, tuple(assocs), tuple(qos.values()))

    def _budget(self) -> SubmitBudget | None:
        """The room left under the submit limits: one ``squeue`` of the user's live jobs,
        and only where a submit limit exists."""
        limits = self.submit_limits()
        if not limits.limits_submission:
            return None
        argv = ["squeue", "--me", "--noheader", "--array", f"--format={USAGE_FORMAT}"]
        return SubmitBudget(limits, parse_usage(self._call(argv)))

    @staticmethod
    def _fit(
        budget: SubmitBudget | None,
        settings: ArraySettings,
        tasks: list[list[JobRequest]],
        held: list[str],
    ) -> list[list[JobRequest]]:
        """The leading tasks that fit the budget (spending it); notes what stays behind."""
        if budget is None:
            return tasks
        room, why = budget.room(settings)
        if room is None or room >= len(tasks):
            budget.spend(settings, len(tasks))
            return tasks
        budget.spend(settings, room)
        left = sum(len(task) for task in tasks[room:])
        held.append(f"{left} attempt(s) of sweep {settings.sweep} held back by {why}")
        return tasks[:room]

    # -- bad hosts ------------------------------------------------------------------------

    def _exclude_nodes(self, hosts: Sequence[str]) -> list[str]:
        """Slurm node names of ``hosts``; names Slurm does not know are dropped (once
        warned about), as ``--exclude`` with one would make sbatch refuse the array."""
        if not hosts:
            return []
        now = time.monotonic()
        if self._node_map is None or now - self._node_map[0] >= self.limits_ttl:
            argv = ["sinfo", "--noheader", "--Node", f"--format={NODES_FORMAT}"]
            self._node_map = (now, parse_node_names(self._call(argv)))
        names = self._node_map[1]
        nodes = []
        for host in hosts:
            node = names.get(host) or names.get(host.split(".", 1)[0])
            if node is not None:
                nodes.append(node)
            elif host not in self._unknown_hosts:
                self._unknown_hosts.add(host)
                log.warning("slurm: cannot exclude host %r: Slurm knows no such node", host)
        return nodes

    def eligible_hosts(self, resources: Resources, options: Mapping[str, Any]) -> set[str] | None:
        """Node names of the job's partition (the default one where it names none): one
        ``sinfo -h -N -o "%N %P"``, cached ``limits_ttl`` s, so that the daemon never
        excludes the partition's last node (``--exclude`` of every node: sbatch refuses
        "Requested node configuration is not available" forever)."""
        partition = resources.partition or ""
        now = time.monotonic()
        cached = self._eligible.get(partition)
        if cached is None or now - cached[0] >= self.limits_ttl:
            argv = ["sinfo", "-h", "-N", "-o", "%N %P"]
            if partition:
                argv += ["-p", partition]
            nodes = set()
            for line in self._call(argv).splitlines():
                fields = line.split()
                if len(fields) == 2 and (partition or fields[1].endswith("*")):
                    nodes.add(fields[0])
            cached = self._eligible[partition] = (now, nodes)
        return set(cached[1])

    # -- submission -----------------------------------------------------------------------

    def _arrays(
        self, jobs: Sequence[JobRequest]
    ) -> Iterable[tuple[ArraySettings, list[list[JobRequest]]]]:
        """Groups of alike jobs, packed ``resources.pack`` to a task, cut into chunks that
        fit ``MaxArraySize``. A group's last, partly filled task goes out as an array of
        its own, since every task of an array asks for the same resources."""
        groups: dict[ArraySettings, list[JobRequest]] = {}
        for job in jobs:
            resume = read_resume(job.attempt_dir) if job.resources.time_seconds else None
            if job.resources.time_seconds and resume is None:
                resume = ("USR1", 120)  # ResumePolicy's defaults
                log.warning("slurm: no resume policy in %s/launch.json", job.attempt_dir)
            exclude = self._exclude_nodes(getattr(job, "exclude_hosts", ()))
            groups.setdefault(ArraySettings.of(job, resume, exclude), []).append(job)
        for settings, group in groups.items():
            size = self._array_limit(group[0].options)
            tasks = [group[i : i + settings.pack] for i in range(0, len(group), settings.pack)]
            full = [task for task in tasks if len(task) == settings.pack]
            for same in (full, tasks[len(full) :]):
                for start in range(0, len(same), size):
                    yield replace(settings, pack=len(same[0])), same[start : start + size]

    def _array_limit(self, options: Mapping[str, Any]) -> int:
        """Tasks per array: MaxArraySize caps the index, so indices 0..MaxArraySize-1."""
        limit = min(_config_int(self._cluster_config(), "MaxArraySize"), MAX_TASKS_PER_ARRAY)
        for source in (self.options, options):
            if "max_array_size" in source:
                limit = min(limit, int(source["max_array_size"]))
        return max(1, limit)

    def _cluster_config(self) -> dict[str, str]:
        """``scontrol show config``, read once: what it says changes with a restart only."""
        if self._config is None:
            self._config = parse_scontrol_config(self._call(["scontrol", "show", "config"]))
        return self._config

    def _submit_array(
        self, settings: ArraySettings, tasks: list[list[JobRequest]]
    ) -> dict[str, str]:
        """Write the script and job.json files, run sbatch, record the job ids."""
        name = f"{NAME_PREFIX}{settings.sweep}.{secrets.token_hex(4)}"
        jobs = [job for task in tasks for job in task]
        state_dir = _state_dir(jobs[0])
        script = state_dir / f"{name}.sh"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            script.write_text(render_batch_script(name, jobs, settings.pack))
            self._record_all(tasks, name, None)
        except OSError as exc:
            raise DriverError(f"cannot write the batch script or job.json: {exc}") from exc
        argv = build_sbatch_argv(settings, name, len(tasks), str(state_dir), str(script))
        array_id = parse_sbatch_parsable(self._sbatch(argv, jobs))
        ids = self._record_all(tasks, name, array_id)
        log.info("slurm: submitted %d task(s) as array %s (%s)", len(tasks), array_id, name)
        return ids

    def _sbatch(self, argv: Sequence[str], jobs: Sequence[JobRequest]) -> str:
        """sbatch's output. When it says it refused the array (not a time-out, after which
        the job may exist), the job.json records go, so nothing looks for the jobs."""
        done = self._run_checked(argv, check=False)
        if done.returncode == 0:
            return done.stdout
        why = " ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        why = why or f"exit status {done.returncode}"
        if not _AMBIGUOUS_SBATCH.search(why):
            for job in jobs:
                (Path(job.attempt_dir) / JOB_FILE).unlink(missing_ok=True)
            if "limit" in why.lower():
                self._limits = None  # they changed, or another submitter used them up
        raise DriverError(f"sbatch failed: {why[:500]}")

    def _record_all(
        self, tasks: list[list[JobRequest]], name: str, array_id: str | None
    ) -> dict[str, str]:
        """Write every job.json; ``{token: job id}`` (with ``/slot`` where packed)."""
        ids = {}
        for index, task in enumerate(tasks):
            job_id = f"{array_id}_{index}" if array_id else None
            siblings = [[job.token, job.attempt_dir] for job in task] if len(task) > 1 else None
            for slot, job in enumerate(task):
                slot_of = slot if siblings else None
                ids[job.token] = _with_slot(job_id or "", slot_of)
                try:
                    self._record(job, name, index, job_id, slot_of, siblings)
                except OSError as exc:
                    if job_id is None:
                        raise
                    log.error("slurm: cannot record job id of %s: %s", job.token, exc)
        return ids

    def _record(
        self,
        job: JobRequest,
        name: str,
        index: int,
        job_id: str | None,
        slot: int | None,
        siblings: list[list[str]] | None,
    ) -> None:
        data: dict[str, Any] = {
            "version": 1,
            "driver": self.name,
            "token": job.token,
            "state": "submitted" if job_id else "submitting",
            "batch": name,
            "task": index,
            "job_id": job_id,
            "array_job_id": job_id.split("_")[0] if job_id else None,
            "recorded_at": time.time(),
        }
        if siblings is not None:
            data.update(slot=slot, siblings=siblings)
        write_json_atomic(Path(job.attempt_dir) / JOB_FILE, data)

    def _adopt_leftovers(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """Jobs an earlier sbatch may have submitted although it failed or timed out."""
        refs = [JobRef(job.token, None, job.attempt_dir) for job in jobs]
        refs = [ref for ref in refs if _has_batch(ref)]
        return self.find(refs) if refs else {}

    # -- polling --------------------------------------------------------------------------

    def _final_states(
        self, ended: Mapping[str, str], queue: Mapping[str, SlurmJob]
    ) -> dict[str, JobStatus]:
        """Final states: squeue's where it still lists the job (``--states=all`` does for
        ``MinJobAge``), sacct's for jobs that left the queue and for cancelled ones (only
        accounting says who cancelled: "CANCELLED by 1000"). What a job exited with is
        the runner's status.json, so squeue's word is enough for the rest."""
        slurm_ids = {token: split_slot(job_id)[0] for token, job_id in ended.items()}
        statuses: dict[str, JobStatus] = {}
        ask: dict[str, str] = {}
        for token, job_id in ended.items():
            row = _lookup(queue, slurm_ids[token])
            if row is not None and _ended(row) and row.base_state != "CANCELLED":
                statuses[token] = replace(job_status(row), job_id=job_id)
            else:
                ask[token] = job_id
        if not ask:
            return statuses
        accounting, note = self._sacct(sorted({slurm_ids[token] for token in ask}))
        for token, job_id in ask.items():
            slurm_id = slurm_ids[token]
            row = _best_row(_lookup(accounting, slurm_id), _lookup(queue, slurm_id))
            if row is not None:
                statuses[token] = replace(job_status(row), job_id=job_id)
            elif note is None:
                statuses[token] = JobStatus("gone", job_id, "Slurm has no record of this job")
            elif note.startswith("disabled"):
                statuses[token] = JobStatus("gone", job_id, f"left the queue; {note}")
            else:
                statuses[token] = JobStatus("unknown", job_id, note)
        return statuses

    def _sacct(self, job_ids: Sequence[str]) -> tuple[dict[str, SlurmJob], str | None]:
        """``(jobs, None)``, or ``({}, why)`` when accounting cannot answer."""
        argv = ["sacct", "-n", "-P", "-X", f"--format={','.join(SACCT_FIELDS)}"]
        try:
            done = self._run_checked([*argv, f"--jobs={','.join(job_ids)}"], check=False)
        except DriverError as exc:
            return {}, str(exc)
        if done.returncode != 0:
            first = _first_line(done.stderr or done.stdout)
            if "disabled" in first.lower():
                return {}, "disabled: Slurm accounting is off, so its final state is unknown"
            return {}, f"sacct failed: {first or f'exit {done.returncode}'}"
        return parse_sacct(done.stdout), None

    def _find_in_sacct(
        self, refs: Sequence[JobRef], records: Mapping[str, dict[str, Any] | None]
    ) -> dict[str, str]:
        """Array ids by name from accounting, for arrays that already left the queue."""
        names = sorted({str((records[ref.token] or {})["batch"]) for ref in refs})
        since = min(float((records[ref.token] or {}).get("recorded_at") or 0) for ref in refs)
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(0.0, since - 3600)))
        argv = ["sacct", "-n", "-P", "-X", f"--format={','.join(SACCT_FIELDS)}"]
        argv += [f"--starttime={start}", f"--name={','.join(names)}"]
        done = self._run_checked(argv, check=False)
        if done.returncode != 0:
            log.info("slurm: sacct cannot help find jobs: %s", _first_line(done.stderr))
            return {}
        return self._resolve(refs, parse_sacct(done.stdout))

    def _resolve(
        self, jobs: Sequence[JobRef], listed: Mapping[str, SlurmJob] | None
    ) -> dict[str, str]:
        """``{token: job id}`` from the ref, job.json, or array name + task in ``listed``."""
        arrays: dict[str, str] = {}
        if listed is not None:
            arrays = {job.name: job.array_job_id for job in listed.values()}
        ids = {}
        for ref in jobs:
            if ref.job_id:
                ids[ref.token] = ref.job_id
                continue
            data = read_job_file(ref.attempt_dir, ref.token) or {}
            slot = data.get("slot") if isinstance(data.get("slot"), int) else None
            if data.get("job_id"):
                ids[ref.token] = _with_slot(str(data["job_id"]), slot)
            elif data.get("batch") in arrays and isinstance(data.get("task"), int):
                ids[ref.token] = _with_slot(f"{arrays[data['batch']]}_{data['task']}", slot)
        return ids

    def _squeue_all(self) -> dict[str, SlurmJob]:
        return parse_squeue(self._call([*SQUEUE_ARGV, f"--format={SQUEUE_FORMAT}"]))

    # -- commands -------------------------------------------------------------------------

    def _scancel(self, job_ids: Sequence[str]) -> None:
        done = self._run_checked(["scancel", *job_ids], check=False)
        errors = [
            line
            for line in done.stderr.splitlines()
            if line.strip() and not re.search(r"already completing|completed|Invalid job id", line)
        ]
        if done.returncode != 0 and errors:
            raise DriverError(f"scancel failed: {errors[0]}")

    def _call(self, argv: Sequence[str]) -> str:
        """Run a Slurm command; its stdout, or DriverError naming the command."""
        return self._run_checked(argv, check=True).stdout

    def _run_checked(self, argv: Sequence[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        command = argv[0]
        try:
            done = self._run(argv, self._timeout, None)
        except FileNotFoundError:
            raise DriverError(
                f"{command} not found: run clusterd on a Slurm login node (or put the Slurm "
                f"commands on PATH)"
            ) from None
        except subprocess.TimeoutExpired:
            raise DriverError(
                f"{command} did not answer within {self._timeout:g} s; slurmctld may be busy "
                f"or down (clusterd retries later)"
            ) from None
        except OSError as exc:
            raise DriverError(f"{command} could not run: {exc}") from None
        if check and done.returncode != 0:
            why = _first_line(done.stderr or done.stdout) or f"exit status {done.returncode}"
            raise DriverError(f"{command} failed: {why}")
        return done

    # -- poll interval --------------------------------------------------------------------

    def _note_poll_interval(self, options: Mapping[str, Any]) -> None:
        if "poll_interval" in options and float(options["poll_interval"]) < self.poll_interval:
            self._set_poll_interval(float(options["poll_interval"]))

    def _set_poll_interval(self, seconds: float) -> None:
        # ``poll_interval`` is a ClassVar in base.py: shadow it on this instance only
        self.__dict__["poll_interval"] = seconds


# --------------------------------------------------------------------------- helpers

#: sbatch failures after which the job may exist all the same (slurmctld got the request
#: but its answer was lost): job.json stays, so that ``find`` adopts the job if it does
_AMBIGUOUS_SBATCH = re.compile(
    r"time[d ]*out|unable to contact|connect|communication|zero bytes|socket", re.IGNORECASE
)


def split_slot(job_id: str) -> tuple[str, int | None]:
    """``"57_0/1"`` -> ``("57_0", 1)``: a packed attempt's Slurm job and its slot in it."""
    slurm_id, sep, slot = job_id.partition(PACK_SEP)
    return (slurm_id, int(slot)) if sep and slot.isdigit() else (job_id, None)


def _with_slot(job_id: str, slot: int | None) -> str:
    return job_id if slot is None else f"{job_id}{PACK_SEP}{slot}"


def _requeued(ref: JobRef, row: SlurmJob) -> bool:
    """True if Slurm requeued the job after this attempt started in it: queued again (held
    or waiting for its ``BeginTime``) while the attempt dir says it ran."""
    state = row.base_state
    if state not in QUEUED_STATES or not (
        state.startswith("REQUEUE") or row.reason in REQUEUE_REASONS
    ):
        return False
    return (Path(ref.attempt_dir) / SLOT_STARTED_FILE).exists()


def _requeued_status(job_id: str) -> JobStatus:
    return JobStatus(
        "gone",
        job_id,
        "REQUEUED (by Slurm: this attempt ends, a new one is submitted)",
        scheduler_state="REQUEUED",
    )


def _slot_status(ref: JobRef, status: JobStatus) -> JobStatus:
    """A packed attempt's own phase inside its shared job.

    Its runner may be done (``status.json``) while the others run on, and a slot
    cancelled before the job started never runs: either way it is gone for the
    daemon, which reads status.json or, for the cancelled, needs none.
    """
    adir = Path(ref.attempt_dir)
    if status.phase == "running" and (adir / STATUS_FILE).exists():
        return JobStatus("gone", status.job_id, "its runner ended; its packed job runs on")
    if (adir / CANCEL_FILE).exists() and not (adir / SLOT_STARTED_FILE).exists():
        # the batch shell checks CANCEL before it starts a slot (and writes slurm_job_id)
        return JobStatus("gone", status.job_id, "cancelled before its slot started")
    return status


def _cancel_slots(refs: Sequence[JobRef]) -> bool:
    """Write ``CANCEL`` in each attempt dir; True if no slot of their job is left to run
    (every sibling cancelled or finished), so that the whole job may be ``scancel``led."""
    for ref in refs:
        try:
            (Path(ref.attempt_dir) / CANCEL_FILE).write_text(f"{time.time()}\n")
        except OSError as exc:
            raise DriverError(f"cannot write {CANCEL_FILE} in {ref.attempt_dir}: {exc}") from exc
    record = read_job_file(refs[0].attempt_dir, refs[0].token) or {}
    siblings = record.get("siblings")
    if not isinstance(siblings, list):
        return False  # the CANCEL files do it, slot by slot
    return all(
        (Path(str(adir)) / CANCEL_FILE).exists() or (Path(str(adir)) / STATUS_FILE).exists()
        for _token, adir in siblings
    )


def _state_dir(job: JobRequest) -> Path:
    """``<output_dir>/.slurm``: the attempt dir is ``<output_dir>/<index>/attempt-<n>``."""
    return Path(job.attempt_dir).parent.parent / STATE_DIR


def _has_batch(ref: JobRef) -> bool:
    """True if job.json says an sbatch was (about to be) run for this attempt."""
    return bool((read_job_file(ref.attempt_dir, ref.token) or {}).get("batch"))


def _lookup(jobs: Mapping[str, SlurmJob], job_id: str) -> SlurmJob | None:
    """The line of ``job_id``, or the ended line of its whole array.

    An array whose tasks never split off is one record: squeue shows a cancelled
    one as ``16`` (task "N/A"), and sacct listed a one-task array that hit
    NODE_FAIL as ``51``. Its final state is then every unlisted task's.
    """
    job = jobs.get(job_id)
    array_id, sep, _ = job_id.partition("_")
    whole = jobs.get(array_id) if job is None and sep else None
    if whole is not None and _ended(whole):
        return replace(whole, job_id=job_id)
    return job


def _best_row(accounting: SlurmJob | None, queue: SlurmJob | None) -> SlurmJob | None:
    """Accounting knows who cancelled and the exit code, but may lag behind slurmctld."""
    if accounting is not None and (_ended(accounting) or queue is None or not _ended(queue)):
        return accounting
    return queue


def _partitions(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    parts: dict[str, dict[str, Any]] = {}
    for row in rows:
        part = parts.setdefault(
            row["partition"],
            {
                "name": row["partition"],
                "default": row["default"],
                "nodes": 0,
                "nodes_idle": 0,
                "nodes_alloc": 0,
                "cpus": 0,
                "cpus_idle": 0,
                "gpus": 0,
                "gpus_free": 0,
            },
        )
        state = row["state"].rstrip("*~#!%$@^-")
        part["nodes"] += 1
        part["nodes_idle"] += state == "idle"
        part["nodes_alloc"] += state in ("allocated", "mixed", "completing")
        part["cpus"] += row["cpus"]
        part["cpus_idle"] += row["cpus_idle"]
        part["gpus"] += row["gpus"]
        part["gpus_free"] += max(0, row["gpus"] - row["gpus_used"])
    return list(parts.values())


def _nodes(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for row in rows:
        node = nodes.setdefault(row["node"], {**row, "partitions": []})
        node["partitions"].append(row["partition"])
    for node in nodes.values():
        del node["partition"], node["default"]
    return list(nodes.values())


def _queue_entry(line: str) -> dict[str, Any]:
    job_id, state, reason, nodes, partition, used, limit, name = _split(line, 8, "squeue")
    return {
        "job_id": job_id,
        "state": state,
        "reason": _none(reason),
        "nodes": _none(nodes),
        "partition": partition,
        "time": used,
        "time_limit": limit,
        "name": name,
        "clusterd": name.startswith(NAME_PREFIX),
    }


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``SlurmDriver`` (listed in pyproject's ``clusterd`` entry points)."""
    registry.add(SlurmDriver)
