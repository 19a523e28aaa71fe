"""What ``sbatch`` is given: the options, the array's settings as a command line, the script.

No shell ever sees the command line; the script quotes every value it holds
(``batch/script.py``). Everything goes on the command line, so Slurm's scripts carry no
``#SBATCH`` directives.
"""

from __future__ import annotations

import os
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
    string_or_list,
)
from clusterd.node import names
from clusterd.spec.model import Resources

__all__ = [
    "SLURM_OPTIONS",
    "SLURM_SCRIPT",
    "ArraySettings",
    "build_sbatch_argv",
    "format_slurm_time",
    "render_batch_script",
]

MAX_SIGNAL_LEAD = 65535  # sbatch --signal accepts at most this many seconds

#: Slurm's names inside a task; ``SLURM_RESTART_COUNT`` > 0: requeued, the attempt ran
SLURM_SCRIPT = ScriptDialect(
    scheduler="Slurm",
    task_var="SLURM_ARRAY_TASK_ID",
    job_var="SLURM_ARRAY_JOB_ID",
    restart_var="SLURM_RESTART_COUNT",
    started_file=names.SLURM_JOB_ID,
    output_file="slurm.out",
)


#: every ``[drivers.slurm]`` option (``clusterctl drivers --options slurm``)
SLURM_OPTIONS: tuple[Option, ...] = (
    *batch_options("Slurm"),
    Option(
        "account",
        "a non-empty string (sbatch --account)",
        non_empty_string,
        "the account jobs are charged to (sbatch --account)",
    ),
    Option(
        "qos",
        "a non-empty string (sbatch --qos)",
        non_empty_string,
        "the quality of service (sbatch --qos)",
    ),
    Option(
        "constraint",
        "a non-empty string (sbatch --constraint)",
        non_empty_string,
        "node features jobs need (sbatch --constraint)",
    ),
    Option(
        "exclude",
        "a node list string or a list of node names (sbatch --exclude)",
        string_or_list,
        "nodes never to run on, besides those the sweep's failures name",
    ),
    Option(
        "extra",
        "a list of strings, each passed to sbatch as one argument",
        string_list,
        "more sbatch arguments, last (they override the rest)",
        [],
    ),
    Option(
        "throttle",
        "a positive integer: array tasks running at once (--array=...%N)",
        positive_int,
        "array tasks of one submission running at once",
    ),
)


def render_batch_script(name: str, jobs: Sequence[JobRequest], pack: int = 1) -> str:
    """The batch script of array ``name`` (``batch.script.render_script`` in Slurm's names):
    task ``i`` runs ``jobs[i * pack : (i + 1) * pack]``."""
    return render_script(SLURM_SCRIPT, name, jobs, pack)


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
        exclude_nodes: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
    ) -> ArraySettings:
        """Settings for ``job``: its resources, its resume policy, ``options`` (its
        ``[drivers.slurm]`` table by default) and ``exclude_nodes``, node names to avoid
        besides the ``exclude`` option."""
        res: Resources = job.resources
        opts = job.options if options is None else options
        signal, lead = _signal_for(res.time_seconds, job.resume_signal, job.resume_lead)
        return cls(
            **resource_fields(job),
            partition=res.partition,
            signal=signal,
            signal_lead=lead,
            account=opts.get("account"),
            qos=opts.get("qos"),
            constraint=opts.get("constraint"),
            exclude=_merge_exclude(opts.get("exclude"), exclude_nodes),
            extra=tuple(opts.get("extra") or ()),
            throttle=opts.get("throttle"),
        )


def _merge_exclude(option: str | Sequence[str] | None, nodes: Sequence[str]) -> str | None:
    """``--exclude`` value: the sweep's own list (a string may be a hostlist expression
    such as ``node[1-4]``, kept as written), then the bad nodes it does not name."""
    parts = [option] if isinstance(option, str) else list(option or ())
    parts += sorted({node for node in nodes if node not in parts})
    return ",".join(parts) or None


def _signal_for(time_seconds: int | None, signal: str, lead: int) -> tuple[str | None, int | None]:
    """``(signal, lead)`` for ``--signal=B:...``: none without a time limit or a resume
    signal ("none"); as the runner does, a lead that does not fit in the time limit
    becomes half of it."""
    if not time_seconds or signal.lower() == "none":
        return None, None
    if lead >= time_seconds:
        lead = time_seconds // 2
    return signal.upper().removeprefix("SIG"), max(1, min(lead, MAX_SIGNAL_LEAD))


def format_slurm_time(seconds: int) -> str:
    """``--time`` value: ``"HH:MM:SS"``, or ``"D-HH:MM:SS"`` from a day on.

    Slurm counts time limits in minutes and rounds seconds up.
    """
    hours, minutes, secs = clock(seconds)
    days, hours = divmod(hours, 24)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def build_sbatch_argv(
    settings: ArraySettings, name: str, tasks: int, state_dir: str, script: str
) -> list[str]:
    """The sbatch command line for one array of ``tasks`` tasks; no shell ever sees it.

    ``--requeue``: an admin's ``scontrol requeue`` (or preemption, or a node failure,
    where the site requeues) must not be refused -- but Slurm rerunning the same
    attempt dir would run the attempt twice, so the driver ends a requeued attempt
    and cancels its job (``SlurmDriver._end_requeued``), the batch script refuses to
    run an attempt again (its requeue guard), and the daemon submits a new attempt.
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
