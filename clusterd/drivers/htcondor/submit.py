"""The submit description: one ``condor_submit`` per batch, the attempts as item data.

HTCondor recommends one cluster with a ``queue ... from`` list over N submissions, so a
batch of N attempts (tasks of ``pack`` attempts each) is one submit description::

    executable = <state dir>/<batch>.sh          # batch/script.py's script, as for Slurm
    batch_name = <batch>                         # what ``find`` looks the jobs up by
    log = <state dir>/events.log                 # ONE user log per state dir (sweep)
    environment = "CLUSTERD_HTC_TASK=$(ClusterdTask) CLUSTERD_HTC_CLUSTER=$(ClusterId)"
    +ClusterdToken = "$(ClusterdToken)"          # MY.ClusterdToken in every job ad
    request_cpus/gpus/memory/disk, allowed_execute_duration, requirements, ...
    queue ClusterdToken, ClusterdTask from (
    <token> 0
    ...
    )

Every value clusterd writes is checked or quoted here so that it stays one value: a
line break, a line-continuing backslash or a ``$(`` macro in a user's value can neither
add a command nor change another (``$`` becomes ``$(DOLLAR)``, HTCondor's literal
dollar). ``extra`` lines are submit language written by the user, so they keep their
macros, but each must be one ``key = value`` line with a plain key that does not
replace what tracking relies on (``log``, ``executable``, ``queue``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.drivers.batch.arrays import Task
from clusterd.drivers.batch.driver import batch_options
from clusterd.drivers.batch.script import ScriptDialect
from clusterd.drivers.batch.settings import resource_fields
from clusterd.drivers.options import Option, non_empty_string, positive_int, string_list
from clusterd.errors import DriverError

__all__ = [
    "EVENT_LOG",
    "EXECUTE_MARGIN",
    "HTCONDOR_OPTIONS",
    "HTCONDOR_SCRIPT",
    "TOKEN_ATTR",
    "SubmitSettings",
    "classad_string",
    "extra_problem",
    "render_submit",
    "submit_literal",
]

#: the job attribute carrying the attempt token (``MY.ClusterdToken``)
TOKEN_ATTR = "ClusterdToken"
#: the item-data variable carrying the task index (= the job's ProcId)
TASK_VAR = "ClusterdTask"
#: the user event log of every batch in one state dir: one read per poll covers them all
EVENT_LOG = "events.log"
#: seconds ``allowed_execute_duration`` leaves after ``resources.time``: the runner ends
#: the attempt itself at the limit (resume signal ``lead`` s before, TERM, KILL after its
#: grace); HTCondor's hold (code 47) is only the backstop for a runner that cannot
EXECUTE_MARGIN = 120

#: HTCondor's names inside a task: the submit description puts the task index and the
#: cluster id into the environment; no restart variable, because a job that started once
#: never matches again (``NumJobStarts`` in its requirements, see ``render_submit``)
HTCONDOR_SCRIPT = ScriptDialect(
    scheduler="HTCondor",
    task_var="CLUSTERD_HTC_TASK",
    job_var="CLUSTERD_HTC_CLUSTER",
    restart_var=None,
    started_file="htcondor_job_id",
    output_file="htcondor.out",
)

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")
#: a host name part that can go into a ClassAd regexp as it is (others are not excluded)
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_ACCOUNTING = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
_DISK = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B?)?", re.IGNORECASE)
_IMAGE = re.compile(r"[^\s\"'$\\]+")
#: an ``extra`` line: a plain key (``+Attr`` / ``MY.Attr`` for job attributes) ``=`` value
_EXTRA = re.compile(r"\s*(\+?[A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)")
#: keys clusterd's tracking relies on; an ``extra`` line may not set them
RESERVED_KEYS = frozenset(
    {
        "executable",
        "arguments",
        "args",
        "log",
        "log_xml",
        "dagman_log",
        "batch_name",
        "environment",
        "env",
        "universe",
        "queue",
        "initialdir",
        "initial_dir",
        "iwd",
        "+clusterdtoken",
        "my.clusterdtoken",
        "max_materialize",
        "max_idle",
        "hold",
        "transfer_executable",
    }
)


def _disk(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1
    return isinstance(value, str) and _DISK.fullmatch(value.strip()) is not None


def _universe(value: Any) -> bool:
    return value in ("vanilla", "container")


def _accounting(value: Any) -> bool:
    return isinstance(value, str) and _ACCOUNTING.fullmatch(value) is not None


def _one_line(value: Any) -> bool:
    return non_empty_string(value) and _line_problem(value) is None


def _image(value: Any) -> bool:
    return isinstance(value, str) and _IMAGE.fullmatch(value) is not None


def _extra_lines(value: Any) -> bool:
    return string_list(value) and all(extra_problem(line) is None for line in value)


def _command(value: Any) -> bool:
    return (
        string_list(value)
        and bool(value)
        and all(arg and _line_problem(arg) is None for arg in value)
    )


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


#: every ``[drivers.htcondor]`` option (``clusterctl drivers --options htcondor``)
HTCONDOR_OPTIONS: tuple[Option, ...] = (
    *batch_options("HTCondor"),
    Option(
        "accounting_group",
        "an accounting group name (letters, digits, _ . @ -)",
        _accounting,
        "the accounting group jobs are charged to (accounting_group)",
    ),
    Option(
        "requirements",
        "a ClassAd expression on one line",
        _one_line,
        "what a machine must offer, ANDed with clusterd's own clauses (requirements)",
    ),
    Option(
        "rank",
        "a ClassAd expression on one line",
        _one_line,
        "which matching machines are preferred (rank)",
    ),
    Option(
        "universe",
        '"vanilla" or "container"',
        _universe,
        "the job universe; container runs the batch script in container_image",
        "vanilla",
    ),
    Option(
        "container_image",
        "an image name or path without spaces or quotes (container_image)",
        _image,
        "the image of the container universe (docker://..., a .sif path, ...)",
    ),
    Option(
        "request_disk",
        'a size: KiB as an integer, or a string such as "10G" (request_disk)',
        _disk,
        "scratch disk per job (request_disk)",
    ),
    Option(
        "max_materialize",
        "a positive integer: jobs of one submission in the queue at once",
        positive_int,
        "late materialization: at most this many jobs of a batch exist at once",
    ),
    Option(
        "getenv",
        "true or false (getenv)",
        _boolean,
        "copy the daemon's environment into jobs, as sbatch does by default",
        True,
    ),
    Option(
        "submit_command",
        'a non-empty list of strings, e.g. ["condor_submit_bid", "25"]',
        _command,
        "the submit command and its first arguments (-terse and the file follow)",
        ["condor_submit"],
    ),
    Option(
        "extra",
        'a list of "key = value" submit lines (not log, executable, queue, ...)',
        _extra_lines,
        "more submit-description lines, after clusterd's own (they override them)",
        [],
    ),
)


@dataclass(frozen=True)
class SubmitSettings:
    """Everything a submit description says besides its attempts; equal settings share one."""

    sweep: str
    cpus: int | None = None
    gpus: int = 0
    memory_mb: int | None = None
    time_seconds: int | None = None
    disk: str | None = None
    universe: str = "vanilla"
    container_image: str | None = None
    accounting_group: str | None = None
    requirements: str | None = None
    rank: str | None = None
    exclude: tuple[str, ...] = ()
    max_materialize: int | None = None
    getenv: bool = True
    extra: tuple[str, ...] = ()
    submit_command: tuple[str, ...] = ("condor_submit",)
    #: attempts per job; cpus, gpus and memory above are per attempt
    pack: int = 1

    @classmethod
    def of(cls, job: JobRequest, options: Mapping[str, Any]) -> SubmitSettings:
        """Settings for ``job`` from its resources and ``options`` (its merged table)."""
        disk = options.get("request_disk")
        short = {host.split(".", 1)[0] for host in job.exclude_hosts}
        hosts = sorted(host for host in short if _HOST.fullmatch(host))
        return cls(
            **resource_fields(job),
            disk=str(disk).strip() if disk is not None else None,
            universe=str(options.get("universe") or "vanilla"),
            container_image=options.get("container_image"),
            accounting_group=options.get("accounting_group"),
            requirements=options.get("requirements"),
            rank=options.get("rank"),
            exclude=tuple(hosts),
            max_materialize=options.get("max_materialize"),
            getenv=bool(options.get("getenv", True)),
            extra=tuple(options.get("extra") or ()),
            submit_command=tuple(options.get("submit_command") or ("condor_submit",)),
        )


def _line_problem(value: str) -> str | None:
    if any(ch in value for ch in "\n\r\0"):
        return "it holds a line break"
    if value.rstrip().endswith("\\"):
        return "it ends in a backslash (a continued line)"
    return None


def extra_problem(line: str) -> str | None:
    """What is wrong with one ``extra`` submit line, or None."""
    if not isinstance(line, str):
        return "not a string"
    problem = _line_problem(line)
    if problem is not None:
        return problem
    match = _EXTRA.fullmatch(line)
    if match is None:
        return "not a 'key = value' line with a plain key"
    if match.group(1).lower() in RESERVED_KEYS:
        return f"{match.group(1)} is set by clusterd (its jobs are tracked through it)"
    return None


def submit_literal(value: str, what: str) -> str:
    """``value`` as a submit-description value taken literally: one line, ``$`` written as
    ``$(DOLLAR)`` so that no macro expands. A DriverError names ``what`` otherwise."""
    problem = _line_problem(value)
    if problem is not None:
        raise DriverError(f"HTCondor {what} {value!r} cannot be written: {problem}")
    return value.strip().replace("$", "$(DOLLAR)")


def classad_string(value: str) -> str:
    """``value`` as a ClassAd string literal (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_token(token: str) -> str:
    """An attempt token as item data: one word of safe characters."""
    if not _TOKEN.fullmatch(token):
        raise DriverError(f"attempt token {token!r} cannot be HTCondor item data")
    return token


def _disk_value(disk: str) -> str:
    """``request_disk``: KiB as a number, or a number with HTCondor's K/M/G/T unit."""
    text = disk.strip().upper()
    if not _DISK.fullmatch(text):
        raise DriverError(f"request_disk {disk!r}: expected KiB or a size such as 10G")
    return text.replace("IB", "").replace("B", "").replace(" ", "")


def _requirements(settings: SubmitSettings) -> str:
    """The user's requirements, the hosts to avoid, and ``NumJobStarts == 0``: a job that
    started once never matches again, so HTCondor cannot rerun an evicted attempt in the
    same attempt dir (the driver removes it and the daemon submits a new attempt)."""
    clauses = []
    if settings.requirements:
        clauses.append(f"({submit_literal(settings.requirements, 'requirements')})")
    if settings.exclude:
        hosts = "|".join(settings.exclude)
        clauses.append(f'!regexp("^({hosts})([.]|$)", TARGET.Machine)')
    clauses.append("(MY.NumJobStarts =?= undefined || MY.NumJobStarts == 0)")
    return " && ".join(clauses)


def render_submit(
    settings: SubmitSettings,
    batch: str,
    tasks: Sequence[Task],
    script: str,
    state_dir: str,
) -> str:
    """The submit description of one batch: task ``i`` (ProcId ``i``) runs ``tasks[i]``."""
    if not tasks:
        raise DriverError("nothing to submit")
    n = settings.pack
    where = submit_literal(state_dir.rstrip("/") or "/", "state directory")
    lines = [
        f"# clusterd batch {batch}: {len(tasks)} job(s) of sweep {settings.sweep}.",
        "# Generated by clusterd's HTCondor driver; job.json in each attempt dir maps back.",
        f"universe = {settings.universe}",
    ]
    if settings.universe == "container":
        if not settings.container_image:
            raise DriverError('universe = "container" needs container_image')
        lines.append(f"container_image = {submit_literal(settings.container_image, 'image')}")
    lines += [
        f"executable = {submit_literal(script, 'batch script path')}",
        f"batch_name = {submit_literal(batch, 'batch name')}",
        f"log = {where}/{EVENT_LOG}",
        f"output = {where}/{submit_literal(batch, 'batch name')}.$({TASK_VAR}).out",
        f"error = {where}/{submit_literal(batch, 'batch name')}.$({TASK_VAR}).err",
        f"getenv = {'true' if settings.getenv else 'false'}",
        f'environment = "{HTCONDOR_SCRIPT.task_var}=$({TASK_VAR}) '
        f'{HTCONDOR_SCRIPT.job_var}=$(ClusterId)"',
        f'+{TOKEN_ATTR} = "$({TOKEN_ATTR})"',
    ]
    cpus = settings.cpus * n if settings.cpus else (n if n > 1 else None)
    if cpus:
        lines.append(f"request_cpus = {cpus}")
    if settings.gpus:
        lines.append(f"request_gpus = {settings.gpus * n}")
    if settings.memory_mb:
        lines.append(f"request_memory = {settings.memory_mb * n}")
    if settings.disk:
        lines.append(f"request_disk = {_disk_value(settings.disk)}")
    if settings.time_seconds:
        lines.append(f"allowed_execute_duration = {settings.time_seconds + EXECUTE_MARGIN}")
    if settings.accounting_group:
        lines.append(f"accounting_group = {submit_literal(settings.accounting_group, 'group')}")
    lines.append(f"requirements = {_requirements(settings)}")
    if settings.rank:
        lines.append(f"rank = {submit_literal(settings.rank, 'rank')}")
    if settings.max_materialize:
        lines.append(f"max_materialize = {int(settings.max_materialize)}")
    for line in settings.extra:
        problem = extra_problem(line)
        if problem is not None:
            raise DriverError(f"[drivers.htcondor] extra line {line!r}: {problem}")
        lines.append(line.strip())
    lines.append(f"queue {TOKEN_ATTR}, {TASK_VAR} from (")
    for index, task in enumerate(tasks):
        # a packed job carries its first attempt's token; job.json names every slot
        lines.append(f"{check_token(task[0].token)} {index}")
    lines += [")", ""]
    return "\n".join(lines)
