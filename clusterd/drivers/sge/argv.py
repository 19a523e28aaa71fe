"""What ``qsub`` is given: the options, the array's settings as a command line, the script.

No shell ever sees the command line (each ``extra`` item is one argument); the script
quotes every value it holds (``batch/script.py``). Everything goes on the command line,
so the scripts carry no ``#$`` directives -- but a ``#$`` line a user's site adds to
``sge_request`` still applies: the command line wins over it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.drivers.batch.driver import batch_options
from clusterd.drivers.batch.script import ScriptDialect, render_script
from clusterd.drivers.batch.settings import clock, resource_fields
from clusterd.drivers.options import Option, non_empty_string, positive_int, string_list
from clusterd.spec.model import Resources

__all__ = [
    "H_RT_MARGIN",
    "SGE_OPTIONS",
    "SGE_SCRIPT",
    "SgeSettings",
    "build_qsub_argv",
    "format_sge_time",
    "render_batch_script",
]

#: seconds ``h_rt`` (SIGKILL, no grace) lies beyond ``resources.time``: the runner itself
#: sends TERM at the limit and KILL after its grace, so that the attempt ends as a
#: timeout with its status.json; ``h_rt`` only catches a runner that could not
H_RT_MARGIN = 60
#: what runs the batch script (``-b y -shell no``: no login shell, see build_qsub_argv)
BASH = "/bin/bash"

#: SGE's names inside a task. Tasks count from 1. ``RESTARTED`` is 1 in a job SGE runs
#: again (``qmod -rj``, a failed host with ``-r y``): the attempt ran, so it must not
#: run twice (the script's requeue guard)
SGE_SCRIPT = ScriptDialect(
    scheduler="Grid Engine",
    task_var="SGE_TASK_ID",
    job_var="JOB_ID",
    restart_var="RESTARTED",
    started_file="sge_job_id",
    output_file="sge.out",
    first_task=1,
)

#: every ``[drivers.sge]`` option (``clusterctl drivers --options sge``)
SGE_OPTIONS: tuple[Option, ...] = (
    *batch_options("SGE"),
    Option(
        "queue",
        "a non-empty string (qsub -q), e.g. all.q",
        non_empty_string,
        "the cluster queue (qsub -q); resources.partition sets it too",
    ),
    Option(
        "pe",
        "a non-empty string: the parallel environment for cpus > 1 (qsub -pe <pe> <cpus>)",
        non_empty_string,
        "parallel environment that gives a job several slots (qsub -pe)",
        "smp",
    ),
    Option(
        "project",
        "a non-empty string (qsub -P)",
        non_empty_string,
        "the project jobs are charged to (qsub -P)",
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
        "a positive integer: array tasks running at once (qsub -tc)",
        positive_int,
        "array tasks of one submission running at once (qsub -tc)",
    ),
)


def render_batch_script(name: str, jobs: Sequence[JobRequest], pack: int = 1) -> str:
    """The batch script of array ``name`` in SGE's names: task ``i + 1`` runs
    ``jobs[i * pack : (i + 1) * pack]``."""
    return render_script(SGE_SCRIPT, name, jobs, pack)


@dataclass(frozen=True)
class SgeSettings:
    """Everything qsub is told about an array; attempts sharing it share an array."""

    sweep: str
    cpus: int | None = None
    gpus: int = 0
    memory_mb: int | None = None
    time_seconds: int | None = None
    queue: str | None = None
    pe: str = "smp"
    #: seconds before the time limit SGE sends SIGUSR1 (``s_rt``); only when the sweep's
    #: resume signal is USR1 (SGE sends no other)
    usr1_lead: int | None = None
    project: str | None = None
    exclude: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    throttle: int | None = None
    #: attempts per array task; cpus, gpus and memory above are per attempt
    pack: int = 1

    @classmethod
    def of(cls, job: JobRequest, options: Mapping[str, Any] | None = None) -> SgeSettings:
        """Settings for ``job``: its resources, its resume policy, ``options`` (its
        ``[drivers.sge]`` table over the driver's) and its hosts to avoid."""
        res: Resources = job.resources
        opts = job.options if options is None else options
        return cls(
            **resource_fields(job),
            queue=opts.get("queue") or res.partition,
            pe=str(opts.get("pe") or "smp"),
            usr1_lead=_usr1_lead(res.time_seconds, job.resume_signal, job.resume_lead),
            project=opts.get("project"),
            exclude=tuple(sorted(set(job.exclude_hosts))),
            extra=tuple(opts.get("extra") or ()),
            throttle=opts.get("throttle"),
        )


def _usr1_lead(time_seconds: int | None, signal: str, lead: int) -> int | None:
    """The ``s_rt`` lead: only for a USR1 resume signal and a time limit; as the runner
    does, a lead that does not fit in the time limit becomes half of it."""
    if not time_seconds or signal.upper().removeprefix("SIG") != "USR1":
        return None
    if lead >= time_seconds:
        lead = time_seconds // 2
    return max(1, lead)


def format_sge_time(seconds: int) -> str:
    """A time limit as SGE writes it: ``"H:MM:SS"`` (hours may pass 24)."""
    hours, minutes, secs = clock(seconds)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def build_qsub_argv(
    settings: SgeSettings, name: str, tasks: int, state_dir: str, script: str
) -> list[str]:
    """The qsub command line for one array of ``tasks`` tasks; no shell ever sees it.

    * ``-t 1-N`` always (a one-task array still gets ``SGE_TASK_ID`` 1), ``-tc`` throttle;
    * ``-terse``: qsub prints the job id alone (``5.1-4:1``);
    * ``-b y -shell no /bin/bash <script>``: the task runs ``bash <script>`` directly,
      whatever the queue's ``shell``, ``shell_start_mode`` (``posix_compliant`` with
      ``/bin/csh`` ignores the ``#!``) and ``login_shells`` (bash is in it by default:
      each task would source /etc/profile and ~/.bash_profile first -- here that cost
      60 s per task, a pyenv rehash waiting on its lock). The script stays in the state
      dir, which the nodes see as they see the attempt dirs;
    * ``-V``: the job gets the environment the daemon was started in (PATH, virtualenv,
      loaded modules), as sbatch's default ``--export=ALL`` gives Slurm jobs; without
      it SGE gives ``PATH=/usr/local/bin:/bin:/usr/bin`` and ``python3`` is the system's;
    * ``-notify``: ``qdel`` sends SIGUSR2 first and SIGKILL only the queue's ``notify``
      time later, so that the runner (the job's process) hears of it and ends its trial
      (it forwards the signal to the trial's process group); a bare SIGKILL would leave
      the trial's own process group to SGE's ``ENABLE_ADDGRP_KILL``, which did not kill
      it here (gVisor). Suspension (``qmod -sj``) sends SIGUSR1 first likewise;
    * ``-r y``: an admin's ``qmod -rj`` (or a failed host) is not refused; the script's
      requeue guard then ends the attempt instead of running it twice;
    * ``-o <state dir>/<name>.out -j y``: the batch shell's own output, appended (the
      runner's is in the attempt dir); ``-wd`` the state dir;
    * ``extra`` last before the script, so it can override anything.
    """
    argv = [
        "qsub",
        "-terse",
        "-t",
        f"1-{tasks}",
    ]
    if settings.throttle:
        argv += ["-tc", str(settings.throttle)]
    argv += [
        "-N",
        name,
        "-b",
        "y",
        "-shell",
        "no",
        "-V",
        "-notify",
        "-r",
        "y",
        "-wd",
        state_dir,
        "-o",
        f"{os.path.join(state_dir, name)}.out",
        "-j",
        "y",
    ]
    argv += _resource_args(settings)
    argv += list(settings.extra)
    argv += [BASH, script]
    return argv


def _resource_args(s: SgeSettings) -> list[str]:
    """Per-task resources. SGE counts ``-l`` requests per slot (``-pe smp 4 -l h_vmem=1G``
    is 4G), so memory is divided by the slots, rounded up. GPUs are asked for the whole
    task (``-l gpu=N``): GPU sites define ``gpu`` as a per-job consumable (``JOB`` in
    ``qconf -sc``), as .ci/sge-setup.sh does, since a per-slot count cannot say "1 GPU
    for 4 cpus". A packed task asks
    for ``pack`` times one attempt's share (an attempt without ``cpus`` counts as one
    slot then, so that the attempts do not queue behind each other for one slot)."""
    n = s.pack
    slots = s.cpus * n if s.cpus else n
    args: list[str] = []
    if slots > 1:
        args += ["-pe", s.pe, str(slots)]
    limits: list[str] = []
    if s.memory_mb:
        limits.append(f"h_vmem={math.ceil(s.memory_mb * n / slots)}M")
    if s.gpus:
        limits.append(f"gpu={s.gpus * n}")
    if s.time_seconds:
        limits.append(f"h_rt={format_sge_time(s.time_seconds + H_RT_MARGIN)}")
        if s.usr1_lead is not None:
            limits.append(f"s_rt={format_sge_time(max(1, s.time_seconds - s.usr1_lead))}")
    if s.exclude:
        limits.append("hostname=" + "&".join(f"!{host}" for host in s.exclude))
    for limit in limits:
        args += ["-l", limit]
    if s.queue:
        args += ["-q", s.queue]
    if s.project:
        args += ["-P", s.project]
    return args
