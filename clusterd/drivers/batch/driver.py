"""``BatchDriver``: submit, cancel and find for any scheduler with job arrays.

A backend (Slurm, HTCondor, PBS, Grid Engine) subclasses it and supplies the parts
that are its own; everything else -- the options every batch driver takes, commands
with a timeout, grouping and packing attempts into arrays, the batch script, the
write-ahead job.json records, adoption of leftovers, packed slots -- is done here.

What a backend supplies (``clusterd/drivers/slurm/driver.py`` is the worked example):

``name``, ``dialect`` and ``controller`` (class attributes)
    The driver's name, its scheduler's variable names inside a task (``ScriptDialect``)
    and the daemon that answers its commands (named in time-out messages).
``option_specs``
    ``batch_options(scheduler)`` plus the backend's own options (``drivers/options.py``).
``array_key(job)``
    The settings an array is submitted with (a frozen dataclass, hashable): attempts
    with equal keys share an array. Read options through ``job_options(job)``.
``submit_script(settings, batch, tasks, state_dir, script)``
    Run the submit command for the rendered ``script`` (through ``submit_command``,
    which judges a refusal) and return the new array's id.
``task_job_id(array_id, index)``
    The job id of one task (Slurm: ``f"{array_id}_{index}"``); ``index`` counts from 0
    whatever ``dialect.first_task`` is (SGE's task 1 is index 0).
``queue_arrays()`` and optionally ``history_arrays(names, since)``
    ``{batch name: array id}`` from the live queue (one query), and from accounting for
    arrays that already left it (the default looks nowhere).
``cancel_ids(job_ids)``
    One cancel command for these job ids; ids already gone are no error.
``poll(refs)``
    The backend's own: one status query for every job (``split_slot``/``slot_status``
    for packed attempts, ``resolve`` for ids lost in a crash).

And may override: ``scheduler_max_tasks()`` (the cluster's cap on an array's tasks),
``submit_budget()`` (room under submit limits, ``arrays.Budget``), ``submit_refused(why)``
(after a definite refusal, e.g. to drop cached limits), ``script_directives(settings,
batch, tasks)`` (lines for the top of the script: directives, or shell lines run before
the task's ``case``, as PBS's plain-job index).

Given: ``self.commands`` (``SchedulerCommands``: ``output(argv)``, ``checked(argv,
check=...)``), ``self.log`` (the backend module's logger), ``job_options(job)``,
``resolve(refs, arrays)``, ``submit_command(argv, tasks)``, ``state_dir(job)``
(``<output_dir>/.<name>``: scripts and the scheduler's own output), and the options
``poll_interval`` (the smallest a sweep asks for wins), ``max_array_size`` and
``command_timeout`` (also ``CLUSTERD_<NAME>_TIMEOUT``).
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from clusterd.drivers.base import Driver, JobRef, JobRequest
from clusterd.drivers.batch import records
from clusterd.drivers.batch.arrays import (
    MAX_TASKS_PER_ARRAY,
    Budget,
    Task,
    fit_budget,
    plan_arrays,
)
from clusterd.drivers.batch.commands import (
    DEFAULT_COMMAND_TIMEOUT,
    CommandRunner,
    SchedulerCommands,
    env_timeout,
    run_command,
    timeout_env_var,
)
from clusterd.drivers.batch.script import ScriptDialect, render_script
from clusterd.drivers.batch.slots import cancel_slots, split_slot
from clusterd.drivers.options import (
    Option,
    check_options,
    positive_int,
    positive_number,
)
from clusterd.errors import DriverError

__all__ = ["AMBIGUOUS_REFUSAL", "BatchDriver", "batch_options"]

K = TypeVar("K", bound=Hashable)

#: submit failures after which the job may exist all the same (the controller got the
#: request but its answer was lost): job.json stays, so that ``find`` adopts the job if it does
AMBIGUOUS_REFUSAL = re.compile(
    r"time[d ]*out|unable to contact|connect|communication|zero bytes|socket", re.IGNORECASE
)


def batch_options(scheduler: str) -> tuple[Option, ...]:
    """The options every batch driver takes (``BatchDriver`` implements them)."""
    return (
        Option(
            "poll_interval",
            "a number of seconds > 0 (the smallest any sweep asks for wins)",
            positive_number,
            "seconds between status queries",
            30.0,
        ),
        Option(
            "max_array_size",
            "a positive integer: tasks per submission (at most the cluster's own maximum)",
            positive_int,
            "array tasks per submission, below the cluster's own cap",
        ),
        Option(
            "command_timeout",
            f"a number of seconds > 0 every {scheduler} command may take",
            positive_number,
            f"seconds every {scheduler} command may take (env {timeout_env_var(scheduler)} too)",
            DEFAULT_COMMAND_TIMEOUT,
            sweep=False,
        ),
    )


class BatchDriver(Driver, Generic[K]):
    """Attempts as tasks of job arrays; see the module docstring for the hooks."""

    dialect: ClassVar[ScriptDialect]
    #: the scheduler's controller daemon, named when a command hangs ("slurmctld")
    controller: ClassVar[str] = "the scheduler"

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, run: CommandRunner | None = None
    ) -> None:
        super().__init__({**env_timeout(self.name), **(options or {})})
        check_options(self.option_specs, self.options, f"{self.name} driver options", sweep=False)
        timeout = float(self.options.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
        self.commands = SchedulerCommands(
            run or run_command, timeout, self.dialect.scheduler, self.controller
        )
        self.log = logging.getLogger(type(self).__module__)
        if "poll_interval" in self.options:
            self._set_poll_interval(float(self.options["poll_interval"]))

    # -- hooks ------------------------------------------------------------------------------

    @abstractmethod
    def array_key(self, job: JobRequest) -> K:
        """The settings ``job``'s array is submitted with; equal keys share an array."""

    @abstractmethod
    def submit_script(
        self, settings: K, batch: str, tasks: list[Task], state_dir: Path, script: Path
    ) -> str:
        """Submit ``script`` as array ``batch`` of ``len(tasks)`` tasks; the array's id."""

    @abstractmethod
    def task_job_id(self, array_id: str, index: int) -> str:
        """The job id of task ``index`` of array ``array_id``."""

    @abstractmethod
    def queue_arrays(self) -> dict[str, str]:
        """``{batch name: array id}`` of the arrays in the live queue (one query)."""

    @abstractmethod
    def cancel_ids(self, job_ids: Sequence[str]) -> None:
        """Cancel these jobs in one command; jobs already gone are no error."""

    def history_arrays(self, names: Sequence[str], since: float) -> dict[str, str]:
        """``{batch name: array id}`` of arrays that left the queue; the default: none."""
        return {}

    def scheduler_max_tasks(self) -> int:
        """The cluster's cap on the tasks of one array."""
        return MAX_TASKS_PER_ARRAY

    def submit_budget(self) -> Budget[K] | None:
        """Room under the user's submit limits, or None where none apply."""
        return None

    def submit_refused(self, why: str) -> None:
        """Called after the scheduler definitely refused a submission."""

    def script_directives(self, settings: K, batch: str, tasks: list[Task]) -> Sequence[str]:
        """Lines for the top of the batch script, right after ``#!``: directives, or shell
        lines run before the task's ``case`` (none: all on the command line)."""
        return ()

    # -- the contract -----------------------------------------------------------------------

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """One submission per group of alike attempts and chunk of the maximum array size,
        as many tasks as the user's submit limits leave room for."""
        if not jobs:
            return {}
        for job in jobs:
            where = f"drivers.{self.name} of sweep {job.sweep}"
            check_options(self.option_specs, job.options, where, sweep=True)
            self._note_poll_interval(job.options)
        accepted = records.adopt_leftovers(jobs, self)
        todo = [job for job in jobs if job.token not in accepted]
        held: list[str] = []
        try:
            budget = self.submit_budget() if todo else None
            for settings, tasks in plan_arrays(todo, self.array_key, self._max_tasks):
                fits = fit_budget(budget, settings, tasks, held)
                if fits:
                    accepted.update(self._submit_array(settings, fits))
        except DriverError as exc:
            if not accepted:
                raise
            self.log.warning(
                "%s: %d of %d jobs submitted, then: %s", self.name, len(accepted), len(jobs), exc
            )
        if held:
            self.log.info("%s: %s; offered again later", self.name, "; ".join(held))
        return accepted

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """One cancel command for all jobs with nothing else left to run. A packed job with
        other slots still running is not cancelled: its cancelled slots get a ``CANCEL``
        file (``batch/slots.py``)."""
        ids = self.resolve(jobs, None)
        lost = [ref for ref in jobs if ref.token not in ids and records.has_batch(ref)]
        if lost:  # submitted, but the id was lost in a crash: look it up by name
            ids.update(self.resolve(lost, self.queue_arrays()))
        targets: set[str] = set()
        packed: dict[str, list[JobRef]] = {}
        for ref in jobs:
            if ref.token not in ids:
                continue
            job_id, slot = split_slot(ids[ref.token])
            if slot is None:
                targets.add(job_id)
            else:
                packed.setdefault(job_id, []).append(ref)
        for job_id, refs in packed.items():
            if cancel_slots(refs):
                targets.add(job_id)
        if targets:
            self.cancel_ids(sorted(targets))

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """Job ids from job.json, else by batch name in the queue, then in the history."""
        return records.find_jobs(jobs, self)

    # -- for backends -----------------------------------------------------------------------

    def job_options(self, job: JobRequest) -> dict[str, Any]:
        """The job's ``[drivers.<name>]`` table over the driver-wide defaults (the sweep
        wins) -- the per-user config file's table reaches the driver as its options."""
        shared = {spec.name for spec in self.option_specs if spec.sweep}
        defaults = {key: value for key, value in self.options.items() if key in shared}
        return {**defaults, **job.options}

    def resolve(self, refs: Sequence[JobRef], arrays: Mapping[str, str] | None) -> dict[str, str]:
        """``{token: job id}`` from the refs, their job.json, or their batch in ``arrays``."""
        return records.resolve(refs, arrays, self.task_job_id)

    def submit_command(self, argv: Sequence[str], tasks: list[Task]) -> str:
        """The submit command's output. When it says it refused (not a time-out, after which
        the job may exist), the job.json records go, so that nothing looks for the jobs."""
        done = self.commands.checked(argv, check=False)
        if done.returncode == 0:
            return done.stdout
        why = " ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        why = why or f"exit status {done.returncode}"
        if not AMBIGUOUS_REFUSAL.search(why):
            records.forget([job for task in tasks for job in task])
            self.submit_refused(why)
        raise DriverError(f"{argv[0]} failed: {why[:500]}")

    def state_dir(self, job: JobRequest) -> Path:
        """``<output_dir>/.<driver>``: batch scripts and the scheduler's own task output
        (the attempt dir is ``<output_dir>/<index>/attempt-<n>``)."""
        return Path(job.attempt_dir).parent.parent / f".{self.name}"

    # -- internals --------------------------------------------------------------------------

    def _submit_array(self, settings: K, tasks: list[Task]) -> dict[str, str]:
        """Write the script and job.json files, submit, record the job ids."""
        batch = records.batch_name(tasks[0][0].sweep)
        jobs = [job for task in tasks for job in task]
        state_dir = self.state_dir(jobs[0])
        script = state_dir / f"{batch}.sh"
        directives = self.script_directives(settings, batch, tasks)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            script.write_text(render_script(self.dialect, batch, jobs, len(tasks[0]), directives))
            records.record_tasks(tasks, self.name, batch, None, self.task_job_id)
        except OSError as exc:
            raise DriverError(f"cannot write the batch script or job.json: {exc}") from exc
        array_id = self.submit_script(settings, batch, tasks, state_dir, script)
        ids = records.record_tasks(tasks, self.name, batch, array_id, self.task_job_id)
        self.log.info(
            "%s: submitted %d task(s) as array %s (%s)", self.name, len(tasks), array_id, batch
        )
        return ids

    def _max_tasks(self, job: JobRequest) -> int:
        """Tasks per array: the cluster's cap, lowered by ``max_array_size`` options."""
        limit = min(self.scheduler_max_tasks(), MAX_TASKS_PER_ARRAY)
        for source in (self.options, job.options):
            if "max_array_size" in source:
                limit = min(limit, int(source["max_array_size"]))
        return max(1, limit)

    def _note_poll_interval(self, options: Mapping[str, Any]) -> None:
        if "poll_interval" in options and float(options["poll_interval"]) < self.poll_interval:
            self._set_poll_interval(float(options["poll_interval"]))

    def _set_poll_interval(self, seconds: float) -> None:
        # ``poll_interval`` is a ClassVar in base.py: shadow it on this instance only
        self.__dict__["poll_interval"] = seconds
