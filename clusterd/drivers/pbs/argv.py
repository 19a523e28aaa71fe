"""What ``qsub`` is given, per dialect: the options, the array's settings, the script's head.

No shell ever sees the command line; the script quotes every value it holds
(``batch/script.py``). Everything goes on the command line, so the scripts carry no
``#PBS`` directives -- only a few shell lines before the task's ``case`` (``script_head``):
a plain job (one task) has no array index, and PBS has no restart counter, so the
script keeps its own (a marker file per task in the state dir).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.drivers.batch.driver import batch_options
from clusterd.drivers.batch.script import ScriptDialect, render_script
from clusterd.drivers.batch.settings import clock, resource_fields
from clusterd.drivers.options import (
    Option,
    non_empty_string,
    positive_int,
    string_list,
)
from clusterd.drivers.pbs.parse import Flavor
from clusterd.spec.model import Resources

__all__ = [
    "FLAVORS",
    "PBS_OPTIONS",
    "PBS_PRO_SCRIPT",
    "RERUN_VAR",
    "TORQUE_SCRIPT",
    "WALLTIME_MARGIN",
    "ArraySettings",
    "build_qsub_argv",
    "dialect_of",
    "format_walltime",
    "render_batch_script",
    "script_head",
]

FLAVORS: tuple[Flavor, ...] = ("pbspro", "torque")

#: seconds ``walltime`` lies beyond ``resources.time``: the runner itself sends TERM at the
#: limit and KILL after its grace, so that the attempt ends as a timeout with its
#: status.json; PBS's own kill at the walltime only catches a runner that could not
WALLTIME_MARGIN = 60

#: set by the script's head: 1 when PBS runs a task's script a second time (a rerun after
#: a node failure, ``qrerun``); the script's requeue guard then runs nothing
RERUN_VAR = "CLUSTERD_PBS_RERUN"

#: PBS Pro / OpenPBS inside a task: ``PBS_ARRAY_INDEX`` (7), ``PBS_ARRAY_ID`` (``1234[].s``)
PBS_PRO_SCRIPT = ScriptDialect(
    scheduler="PBS",
    task_var="PBS_ARRAY_INDEX",
    job_var="PBS_ARRAY_ID",
    restart_var=RERUN_VAR,
    started_file="pbs_job_id",
    output_file="pbs.out",
)

#: Torque inside a task: ``PBS_ARRAYID`` (7) and ``PBS_JOBID`` (``1234[7].host``)
TORQUE_SCRIPT = ScriptDialect(
    scheduler="PBS (Torque)",
    task_var="PBS_ARRAYID",
    job_var="PBS_JOBID",
    restart_var=RERUN_VAR,
    started_file="pbs_job_id",
    output_file="pbs.out",
)


def _flavor(value: Any) -> bool:
    return value in FLAVORS


def _chunk(value: Any) -> bool:
    """``select`` extras: ``key=value`` items joined by ``:``, no spaces, no ``+``."""
    if not non_empty_string(value) or any(c.isspace() or c in "+," for c in value):
        return False
    return all(item.partition("=")[0] for item in value.split(":"))


#: every ``[drivers.pbs]`` option (``clusterctl drivers --options pbs``)
PBS_OPTIONS: tuple[Option, ...] = (
    *batch_options("PBS"),
    Option(
        "flavor",
        'either "pbspro" (PBS Pro, OpenPBS) or "torque"',
        _flavor,
        "which PBS the cluster runs; read from qstat --version when not set",
        sweep=False,
    ),
    Option(
        "queue",
        "a non-empty string (qsub -q)",
        non_empty_string,
        "the queue jobs go to (qsub -q); resources.partition sets it too",
    ),
    Option(
        "account",
        "a non-empty string (qsub -A)",
        non_empty_string,
        "the account jobs are charged to (qsub -A)",
    ),
    Option(
        "select",
        'key=value items joined by ":" without spaces, e.g. "model=a100"',
        _chunk,
        "more resources of the job's chunk: -l select=1:ncpus=..:<select> (PBS Pro), "
        "nodes=1:ppn=..:<select> (Torque)",
    ),
    Option(
        "extra",
        "a list of strings, each passed to qsub as one argument",
        string_list,
        "more qsub arguments, before the script (they override the rest)",
        [],
    ),
    Option(
        "throttle",
        "a positive integer: array tasks running at once (-J ...%N, -t ...%N)",
        positive_int,
        "array tasks of one submission running at once",
    ),
)


def dialect_of(flavor: Flavor) -> ScriptDialect:
    """The task variables of ``flavor``."""
    return TORQUE_SCRIPT if flavor == "torque" else PBS_PRO_SCRIPT


@dataclass(frozen=True)
class ArraySettings:
    """Everything qsub is told about an array; attempts sharing it share an array."""

    sweep: str
    flavor: Flavor = "pbspro"
    cpus: int | None = None
    gpus: int = 0
    memory_mb: int | None = None
    time_seconds: int | None = None
    queue: str | None = None
    account: str | None = None
    select: str | None = None
    extra: tuple[str, ...] = ()
    throttle: int | None = None
    #: attempts per array task; cpus, gpus and memory above are per attempt
    pack: int = 1

    @classmethod
    def of(
        cls, job: JobRequest, flavor: Flavor, options: Mapping[str, Any] | None = None
    ) -> ArraySettings:
        """Settings for ``job``: its resources and ``options`` (its ``[drivers.pbs]`` table
        over the driver's defaults). The resume policy needs nothing here: PBS has no
        ``--signal``, and the runner arms the resume signal itself before the limit."""
        res: Resources = job.resources
        opts = job.options if options is None else options
        return cls(
            **resource_fields(job),
            flavor=flavor,
            queue=opts.get("queue") or res.partition,
            account=opts.get("account"),
            select=opts.get("select"),
            extra=tuple(opts.get("extra") or ()),
            throttle=opts.get("throttle"),
        )


def format_walltime(seconds: int) -> str:
    """``-l walltime`` value: ``"HH:MM:SS"`` (hours may pass 24: ``"100:00:00"``)."""
    hours, minutes, secs = clock(seconds)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def build_qsub_argv(
    settings: ArraySettings, name: str, tasks: int, state_dir: str, script: str
) -> list[str]:
    """The qsub command line for one array of ``tasks`` tasks; no shell ever sees it.

    ``-r y``: PBS Pro refuses a non-rerunnable array ("cannot submit non-rerunable Array
    Job"), and a site's ``default_qsub_arguments`` may say ``-r n``. A rerun would run
    the same attempt dir again, so the script refuses to run an attempt twice and the
    driver ends a rerun attempt (``PbsDriver._end_requeued``).
    One task is a plain job (``-J 0-0`` is illegal: a range must have two indices).
    ``extra`` comes last before the script so it can override anything.
    """
    argv = ["qsub", "-r", "y"]
    if tasks > 1:
        flag = "-t" if settings.flavor == "torque" else "-J"
        throttle = f"%{settings.throttle}" if settings.throttle else ""
        argv += [flag, f"0-{tasks - 1}{throttle}"]
    argv += [
        "-N",
        name,
        "-o",
        f"{os.path.join(state_dir, name)}.out",
        "-e",
        f"{os.path.join(state_dir, name)}.err",
        "-v",
        f"CLUSTERD_BATCH={name}",
    ]
    argv += _resource_args(settings)
    argv += list(settings.extra)
    argv.append(script)
    return argv


def _resource_args(s: ArraySettings) -> list[str]:
    """Per-task resources: a packed task asks for ``pack`` times one attempt's share (an
    attempt without ``cpus`` counts as one CPU)."""
    n = s.pack
    cpus = s.cpus * n if s.cpus else n
    gpus = s.gpus * n
    mem = f"{s.memory_mb * n}mb" if s.memory_mb else None
    args: list[str] = []
    if s.flavor == "torque":
        nodes = f"nodes=1:ppn={cpus}" + (f":gpus={gpus}" if gpus else "")
        nodes += f":{s.select}" if s.select else ""
        args += ["-l", nodes]
        if mem:
            args += ["-l", f"mem={mem}"]
    else:
        chunk = f"select=1:ncpus={cpus}" + (f":ngpus={gpus}" if gpus else "")
        chunk += f":mem={mem}" if mem else ""
        chunk += f":{s.select}" if s.select else ""
        args += ["-l", chunk]
    if s.time_seconds:
        args += ["-l", f"walltime={format_walltime(s.time_seconds + WALLTIME_MARGIN)}"]
    if s.queue:
        args += ["-q", s.queue]
    if s.account:
        args += ["-A", s.account]
    return args


def script_head(flavor: Flavor, name: str, state_dir: str) -> list[str]:
    """Shell lines before the script's ``case``: the index of a plain job (one task,
    which PBS gives none), and ``RERUN_VAR``, 1 if this task's script ran before.

    PBS has no restart counter in the job's environment (no ``PBS_RUN_COUNT``: the mom
    sets ``PBS_JOBID``, ``PBS_ARRAY_INDEX``, ``PBS_ARRAY_ID``), so each task leaves a
    marker ``<state dir>/<name>.ran.<index>`` as it starts; a rerun finds it.
    """
    dialect = dialect_of(flavor)
    task, job = dialect.task_var, dialect.job_var
    marker = shlex.quote(os.path.join(state_dir, f"{name}.ran.")) + f'"${task}"'
    lines = [f': "${{{task}:=0}}"  # a plain job (one task) has no array index']
    if flavor == "pbspro":
        lines.append(f': "${{{job}:=${{PBS_JOBID:-}}}}"')
    lines += [
        f"{RERUN_VAR}=0  # PBS reruns a task after a node failure: it must not run twice",
        f"if [ -e {marker} ]; then {RERUN_VAR}=1; else : >{marker}; fi",
    ]
    return lines


def render_batch_script(
    flavor: Flavor, name: str, jobs: Sequence[JobRequest], state_dir: str, pack: int = 1
) -> str:
    """The batch script of array ``name`` in ``flavor``'s names (``batch.script``): task
    ``i`` runs ``jobs[i * pack : (i + 1) * pack]``."""
    return render_script(dialect_of(flavor), name, jobs, pack, script_head(flavor, name, state_dir))
