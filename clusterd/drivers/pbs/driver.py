"""``PbsDriver``: attempts as PBS job-array subjobs (PBS Pro / OpenPBS, or Torque).

What every batch scheduler shares is ``BatchDriver``'s (``clusterd/drivers/batch/``);
this module adds PBS's two dialects, told apart once by ``qstat --version`` (or set by
``[drivers.pbs] flavor``):

* **submit**: one ``qsub -J 0-N`` (Torque ``-t 0-N``) per array, ``%throttle`` where
  asked; a single task is a plain job (``-J 0-0`` is illegal). PBS Pro's
  ``max_array_size`` (``qstat -B -f -F json``, read once; 10000 by default) caps an
  array. Resources: ``-l select=1:ncpus=..:ngpus=..:mem=..`` (Torque ``-l
  nodes=1:ppn=..:gpus=..`` and ``-l mem``), ``-l walltime`` a margin beyond the limit
  (the runner's own timer ends the attempt and sends the resume signal: PBS has no
  ``--signal``).
* **poll**: one ``qstat -f -F json -x -t`` (Torque ``qstat -x -t``) naming the driver's
  arrays and plain jobs (``-t`` lists their subjobs); ids the server forgot are no error.
* **find**: the same ``qstat`` without ids, arrays matched by job name or by
  ``CLUSTERD_BATCH`` (``qsub -v``) in the job's variables.
* **cancel**: one ``qdel`` with every id; ids already gone are no error.
* **held jobs**: ``queued``, their ``comment`` the reason; the driver never ``qrls``-es
  (docs/pbs.md "Held jobs").
* **reruns**: PBS reruns a job after a node failure (``-r y``, needed for arrays). The
  script refuses to run an attempt twice (``argv.script_head``); a job queued again
  after its attempt started is ended here (marked ``requeued``, ``qdel``-ed) and the
  daemon submits a new attempt, as for Slurm's requeue.

The scheduler's state is the truth only for jobs that never started or were killed:
the exit status of an attempt is the runner's ``status.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterd.drivers.base import JobRef, JobRequest, JobStatus
from clusterd.drivers.batch import records
from clusterd.drivers.batch.arrays import MAX_TASKS_PER_ARRAY, Task
from clusterd.drivers.batch.cache import TtlCache
from clusterd.drivers.batch.commands import CommandRunner, first_line
from clusterd.drivers.batch.driver import BatchDriver
from clusterd.drivers.batch.script import ScriptDialect, check_env_name
from clusterd.drivers.batch.slots import slot_status, split_slot
from clusterd.drivers.pbs.argv import (
    PBS_OPTIONS,
    PBS_PRO_SCRIPT,
    ArraySettings,
    build_qsub_argv,
    dialect_of,
    script_head,
)
from clusterd.drivers.pbs.parse import (
    FINISHED_STATES,
    QUEUED_STATES,
    Flavor,
    PbsJob,
    PbsOutputError,
    array_parent,
    job_key,
    job_status,
    parse_max_array_size,
    parse_qstat_json,
    parse_qstat_xml,
    parse_qsub,
    parse_version,
    unknown_job_lines,
)
from clusterd.errors import DriverError, SpecError
from clusterd.node import names
from clusterd.spec.model import SweepSpec

__all__ = ["DEFAULT_MAX_ARRAY_SIZE", "MAX_QSTAT_IDS", "PbsDriver"]

#: PBS Pro's default ``max_array_size`` (OpenPBS ``server_limits.h``)
DEFAULT_MAX_ARRAY_SIZE = 10000
#: more ids than this and the poll asks ``qstat`` about every job instead (one call still)
MAX_QSTAT_IDS = 2000


class PbsDriver(BatchDriver[ArraySettings]):
    """Attempts as subjobs of PBS job arrays; see the module docstring for the protocol."""

    name = "pbs"
    poll_interval = 30.0
    enforces_time_limit = False
    status_grace = 60.0
    option_specs = PBS_OPTIONS
    dialect = PBS_PRO_SCRIPT
    controller = "pbs_server"

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, run: CommandRunner | None = None
    ) -> None:
        super().__init__(options, run=run)
        self._flavor: Flavor | None = self.options.get("flavor")
        self._max_array: TtlCache[None, int] = TtlCache()  # changes with a server restart
        if self._flavor is not None:
            self._use_dialect(dialect_of(self._flavor))

    # -- the contract -------------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Reject unknown ``[drivers.pbs]`` keys and what a batch script cannot export."""
        super().validate(spec)
        for key in spec.env.vars:
            if not check_env_name(key):
                raise SpecError(spec.source, f"env.vars.{key}", "a valid variable name")

    def flavor(self) -> Flavor:
        """``"pbspro"`` or ``"torque"``: the ``flavor`` option, else ``qstat --version``
        (asked once)."""
        if self._flavor is None:
            done = self.commands.checked(["qstat", "--version"], check=False)
            flavor, version = parse_version(f"{done.stdout}\n{done.stderr}")
            self.log.info("pbs: qstat --version says %s %s", flavor, version)
            self._flavor = flavor
            self._use_dialect(dialect_of(flavor))
        return self._flavor

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """One ``qstat`` for every job; a job queued again after it started was rerun."""
        if not jobs:
            return {}
        ids, table = self._ids_and_table(jobs)
        statuses: dict[str, JobStatus] = {}
        requeued: dict[str, str] = {}
        for ref in jobs:
            job_id = ids.get(ref.token)
            key = _key(split_slot(job_id)[0]) if job_id else ""
            row = table.get(key) if key else None
            if job_id and row and _rerun(row, ref.attempt_dir, self.dialect):
                requeued[ref.token] = job_id
            else:
                statuses[ref.token] = self._status(ref, job_id, key, row)
        if requeued:
            statuses.update(self._end_requeued(jobs, requeued))
        return statuses

    # -- BatchDriver's hooks ------------------------------------------------------------

    def array_key(self, job: JobRequest) -> ArraySettings:
        return ArraySettings.of(job, self.flavor(), self.job_options(job))

    def script_directives(
        self, settings: ArraySettings, batch: str, tasks: list[Task]
    ) -> Sequence[str]:
        """Not ``#PBS`` lines (all is on the command line) but the script's head:
        the index of a plain job and the rerun marker (``argv.script_head``)."""
        return script_head(settings.flavor, batch, str(self.state_dir(tasks[0][0])))

    def submit_script(
        self, settings: ArraySettings, batch: str, tasks: list[Task], state_dir: Path, script: Path
    ) -> str:
        settings = replace(settings, pack=len(tasks[0]))
        argv = build_qsub_argv(settings, batch, len(tasks), str(state_dir), str(script))
        return parse_qsub(self.submit_command(argv, tasks))

    def task_job_id(self, array_id: str, index: int) -> str:
        """``1234[].server`` -> ``1234[7].server``; a plain job (one task) is its own id."""
        if "[]" in array_id:
            return array_id.replace("[]", f"[{index}]", 1)
        if index != 0:
            raise DriverError(f"PBS job {array_id} is no array: it has no task {index}")
        return array_id

    def queue_arrays(self) -> dict[str, str]:
        """``{batch name: array id}`` of clusterd's arrays and plain jobs that ``qstat``
        lists (with ``-x``: also finished ones the server keeps in its history)."""
        return _arrays_by_name(self._qstat(None).values())

    def cancel_ids(self, job_ids: Sequence[str]) -> None:
        done = self.commands.checked(["qdel", *job_ids], check=False)
        _, errors = unknown_job_lines(done.stderr)
        if done.returncode != 0 and errors:
            raise DriverError(f"qdel failed: {errors[0]}")

    def scheduler_max_tasks(self) -> int:
        """PBS Pro's ``max_array_size`` (read once); Torque: no cap known."""
        if self.flavor() == "torque":
            return MAX_TASKS_PER_ARRAY
        return self._max_array.get(None, self._read_max_array_size)

    # -- internals ------------------------------------------------------------------------

    def _use_dialect(self, dialect: ScriptDialect) -> None:
        # ``dialect`` is a ClassVar of BatchDriver: the flavour picks it per instance
        self.__dict__["dialect"] = dialect

    def _read_max_array_size(self) -> int:
        done = self.commands.checked(["qstat", "-B", "-f", "-F", "json"], check=False)
        size = None
        if done.returncode == 0:
            try:
                size = parse_max_array_size(done.stdout)
            except DriverError as exc:
                self.log.warning("pbs: %s", exc)
        else:
            self.log.info("pbs: qstat -B failed: %s", first_line(done.stderr or done.stdout))
        return size or DEFAULT_MAX_ARRAY_SIZE

    def _ids_and_table(self, jobs: Sequence[JobRef]) -> tuple[dict[str, str], dict[str, PbsJob]]:
        """The jobs' ids and one ``qstat`` of them: of their arrays and plain jobs, or of
        every job when an id was lost in a crash (then found by batch name)."""
        ids = self.resolve(jobs, None)
        lost = [ref for ref in jobs if ref.token not in ids and records.has_batch(ref)]
        if lost:
            every = self._qstat(None)
            ids.update(self.resolve(lost, _arrays_by_name(every.values())))
            return ids, every
        pbs_ids = {split_slot(job_id)[0] for job_id in ids.values()}
        parents = {array_parent(i) for i in pbs_ids}  # one per array, not per task
        return ids, self._qstat(sorted(i for i in parents if _key(i)))

    def _status(self, ref: JobRef, job_id: str | None, key: str, row: PbsJob | None) -> JobStatus:
        """What ``qstat``'s ``row`` (None: not listed) means for ``ref`` (``key``: its
        ``job_key``, "" if its id is none)."""
        if job_id is None:
            return JobStatus("gone", None, "no PBS job was found for it")
        pbs_id, slot = split_slot(job_id)
        if not key:
            return JobStatus("gone", job_id, f"not a PBS job id: {pbs_id!r}")
        ended = row is None or row.state in FINISHED_STATES
        if ended and os.path.exists(os.path.join(ref.attempt_dir, names.REQUEUED)):
            return _requeued_status(job_id)
        if row is None:
            return JobStatus("gone", job_id, "not in qstat any more (finished, no history kept)")
        status = replace(job_status(row), job_id=job_id)
        return status if slot is None else slot_status(ref, status, self.dialect.started_file)

    def _qstat(self, job_ids: Sequence[str] | None) -> dict[str, PbsJob]:
        """One ``qstat`` of ``job_ids`` (arrays expanded) or, given None, of every job.

        An id the server no longer knows is an error line on stderr and a non-zero exit,
        while stdout still carries the others: only other errors are a DriverError.
        """
        if job_ids is not None and not job_ids:
            return {}
        torque = self.flavor() == "torque"
        argv = ["qstat", "-x", "-t"] if torque else ["qstat", "-f", "-F", "json", "-x", "-t"]
        if job_ids is not None and len(job_ids) <= MAX_QSTAT_IDS:
            argv += list(job_ids)
        done = self.commands.checked(argv, check=False)
        if done.returncode != 0:
            known, errors = unknown_job_lines(done.stderr)
            if errors or not (known or done.stdout.strip()):
                why = errors[0] if errors else f"exit status {done.returncode}"
                raise DriverError(f"qstat failed: {why}")
        return parse_qstat_xml(done.stdout) if torque else parse_qstat_json(done.stdout)

    def _end_requeued(
        self, jobs: Sequence[JobRef], requeued: Mapping[str, str]
    ) -> dict[str, JobStatus]:
        """End attempts whose job PBS queued again after it started (a rerun after a node
        failure, ``qrerun``): it would run the same attempt dir again, so the driver
        marks the attempts ``requeued`` and ``qdel``s the job; the daemon submits a new
        attempt (a resume, not a failure)."""
        dirs = {ref.token: ref.attempt_dir for ref in jobs}
        for token in requeued:
            try:
                (Path(dirs[token]) / names.REQUEUED).write_text("rerun by PBS\n")
            except OSError as exc:
                raise DriverError(f"cannot mark {dirs[token]} as requeued: {exc}") from exc
        pbs_ids = sorted({split_slot(job_id)[0] for job_id in requeued.values()})
        self.log.info("pbs: %s rerun by PBS; deleted for new attempts", ", ".join(pbs_ids))
        self.cancel_ids(pbs_ids)
        return {token: _requeued_status(job_id) for token, job_id in requeued.items()}


def _key(job_id: str) -> str:
    """``job_key``, or "" for what is no PBS job id (a damaged job.json): such an id is
    never sent to qstat, which would refuse the whole poll over it."""
    try:
        return job_key(job_id)
    except PbsOutputError:
        return ""


def _rerun(row: PbsJob, adir: str, dialect: ScriptDialect) -> bool:
    """True if PBS queued the job again after this attempt started in it (``os.path``:
    10,000 ``Path`` objects per poll cost a tenth of a second)."""
    return row.state in QUEUED_STATES and os.path.exists(os.path.join(adir, dialect.started_file))


def _requeued_status(job_id: str) -> JobStatus:
    return JobStatus(
        "gone",
        job_id,
        "REQUEUED (rerun by PBS: this attempt ends, a new one is submitted)",
        scheduler_state="REQUEUED",
    )


def _arrays_by_name(jobs: Iterable[PbsJob]) -> dict[str, str]:
    """``{batch name: id}`` of array parents and plain jobs named by clusterd (``cd.``):
    by ``CLUSTERD_BATCH`` in their variables, else by job name. (Not by ``Job_Owner``:
    its user part may be a Kerberos principal; the batch name's random part suffices.)"""
    found: dict[str, str] = {}
    for job in jobs:
        if "[" in job.job_id and not job.is_array:
            continue  # a subjob: its array is listed too
        batch = job.batch or job.name
        if batch and batch.startswith(records.BATCH_PREFIX):
            found[batch] = job.job_id
    return found
