"""``SgeDriver``: attempts as Grid Engine array tasks, polled in bulk.

Grid Engine is the distributed engine; this driver only talks to it. What every batch
scheduler shares (arrays, packing, the batch script, job.json records, commands with a
timeout) is ``BatchDriver``'s (``clusterd/drivers/batch/``); this module adds:

* **submit**: one ``qsub -terse -t 1-N [-tc throttle]`` per array (tasks count from 1;
  ``max_aj_tasks`` from ``qconf -sconf``, read once, caps N), with ``s_rt`` for a USR1
  resume signal (SGE sends SIGUSR1 at ``s_rt``; the single-attempt task ``exec``s the
  runner, so the signal reaches it; other signals come from the runner's own timer);
* **poll**: one ``qstat -xml -u <user>`` for every job. A job that left the queue is
  done; ``qacct -j`` is asked (once) only for those whose runner left no status.json,
  to say why (``failed 100 : assumedly after job``: killed). A job in error state
  (``Eqw``: it could not start, and waits for an admin) has ended for clusterd: one
  ``qstat -j`` says why, one ``qdel`` removes it, and the attempt fails with the reason;
* **find**: by job name (the batch name) in ``qstat``, then in ``qacct``;
* **requeue**: SGE reruns a job (``qmod -rj``, a failed host) with ``RESTARTED=1``: the
  script's requeue guard marks the attempts ``requeued`` and runs nothing, and the
  daemon submits new attempts (an attempt runs once).

The scheduler's state is the truth only for jobs that never started or were killed:
the exit status of an attempt is the runner's ``status.json``.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterd.drivers.base import ClusterInfo, JobRef, JobRequest, JobStatus
from clusterd.drivers.batch.arrays import MAX_TASKS_PER_ARRAY, Task
from clusterd.drivers.batch.cache import TtlCache
from clusterd.drivers.batch.commands import CommandRunner, first_line
from clusterd.drivers.batch.driver import BatchDriver
from clusterd.drivers.batch.script import check_env_name
from clusterd.drivers.batch.slots import slot_status, split_slot
from clusterd.drivers.jobfile import read_job_file
from clusterd.drivers.sge.argv import SGE_OPTIONS, SGE_SCRIPT, SgeSettings, build_qsub_argv
from clusterd.drivers.sge.parse import (
    SgeAccounting,
    SgeJob,
    accounting_status,
    arrays_by_name,
    job_status,
    parse_error_reasons,
    parse_qacct,
    parse_qstat_xml,
    parse_qsub_terse,
)
from clusterd.errors import DriverError, SpecError
from clusterd.node import names
from clusterd.spec.model import SweepSpec

__all__ = ["SgeDriver"]

#: what qdel says of ids that are gone or going: no error for ``cancel``
_QDEL_FINE = re.compile(r"does not exist|has deleted|registered the job|for deletion|already")


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


class SgeDriver(BatchDriver[SgeSettings]):
    """Attempts as tasks of Grid Engine job arrays; see the module docstring."""

    name = "sge"
    poll_interval = 30.0
    #: False: SGE's ``h_rt`` is a SIGKILL without grace (and SoGE 8.1.9 was seen not to
    #: enforce it at all once ``s_rt`` had fired), so the runner ends the attempt at the
    #: limit (TERM, KILL after its grace); ``h_rt`` lies ``H_RT_MARGIN`` s beyond it
    enforces_time_limit = False
    status_grace = 60.0
    option_specs = SGE_OPTIONS
    dialect = SGE_SCRIPT
    controller = "sge_qmaster"

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, run: CommandRunner | None = None
    ) -> None:
        super().__init__(options, run=run)
        self._config: TtlCache[None, dict[str, str]] = TtlCache()  # changes with qconf only
        self.user = _user()
        #: why SGE could not start a job (``Eqw``), by job number: the attempt's reason
        #: after the driver deleted it too (qacct then says only "failed 26 : ...")
        self._error_reasons: dict[str, str] = {}

    # -- the contract -------------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Reject unknown ``[drivers.sge]`` keys and what a batch script cannot export."""
        super().validate(spec)
        for key in spec.env.vars:
            if not check_env_name(key):
                raise SpecError(spec.source, f"env.vars.{key}", "a valid variable name")

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """One ``qstat -xml`` for everything; ``qstat -j`` only for jobs in error state,
        ``qacct`` only for jobs that left the queue without their runner's status.json."""
        if not jobs:
            return {}
        queue = self._qstat()
        ids = self.resolve(jobs, arrays_by_name(queue))
        statuses: dict[str, JobStatus] = {}
        gone: dict[str, str] = {}  # token -> job id
        errors: dict[str, str] = {}  # token -> job id
        for ref in jobs:
            job_id = ids.get(ref.token)
            if job_id is None:
                statuses[ref.token] = JobStatus("gone", None, "no Grid Engine job was found for it")
                continue
            sge_id, slot = split_slot(job_id)
            row = queue.get(sge_id)
            if row is None:
                gone[ref.token] = job_id
                continue
            if "E" in row.state:
                errors[ref.token] = job_id
                continue
            status = replace(job_status(row), job_id=job_id)
            statuses[ref.token] = (
                status if slot is None else slot_status(ref, status, self.dialect.started_file)
            )
        if errors:
            statuses.update(self._end_errors(errors, queue))
        if gone:
            statuses.update(self._final_states(jobs, gone))
        return statuses

    def describe_cluster(self) -> ClusterInfo:
        """Cluster queues from one ``qstat -g c``; the user's jobs from one ``qstat``."""
        summary = self._call(["qstat", "-g", "c"])
        partitions = []
        for line in summary.splitlines()[2:]:
            fields = line.split()
            if len(fields) >= 6 and fields[2].isdigit() and fields[4].isdigit():
                partitions.append(
                    {
                        "name": fields[0],
                        "used": int(fields[2]),
                        "available": int(fields[4]),
                        "total": int(fields[5]) if fields[5].isdigit() else None,
                    }
                )
        queue = [
            {"job_id": job.job_id, "state": job.state, "name": job.name, "host": job.host}
            for job in self._qstat().values()
        ]
        return ClusterInfo(driver=self.name, partitions=partitions, queue=queue)

    # -- BatchDriver's hooks ------------------------------------------------------------

    def array_key(self, job: JobRequest) -> SgeSettings:
        return SgeSettings.of(job, self.job_options(job))

    def submit_script(
        self, settings: SgeSettings, batch: str, tasks: list[Task], state_dir: Path, script: Path
    ) -> str:
        settings = replace(settings, pack=len(tasks[0]))
        argv = build_qsub_argv(settings, batch, len(tasks), str(state_dir), str(script))
        return parse_qsub_terse(self.submit_command(argv, tasks))

    def task_job_id(self, array_id: str, index: int) -> str:
        return f"{array_id}.{index + SGE_SCRIPT.first_task}"

    def queue_arrays(self) -> dict[str, str]:
        return arrays_by_name(self._qstat())

    def history_arrays(self, names: Sequence[str], since: float) -> dict[str, str]:
        """Arrays by job name from accounting, for arrays that already left the queue."""
        records, note = self._qacct(_name_pattern(names))
        if note:
            self.log.info("sge: qacct cannot help find jobs: %s", note)
        wanted = set(names)
        return {r.name: r.number for r in records.values() if r.name in wanted}

    def cancel_ids(self, job_ids: Sequence[str]) -> None:
        done = self.commands.checked(["qdel", *job_ids], check=False)
        lines = (done.stdout + "\n" + done.stderr).splitlines()
        errors = [line for line in lines if line.strip() and not _QDEL_FINE.search(line)]
        if done.returncode != 0 and errors:
            raise DriverError(f"qdel failed: {errors[0].strip()}")

    def scheduler_max_tasks(self) -> int:
        """``max_aj_tasks`` of the global configuration (0: no limit)."""
        try:
            raw = self._global_config().get("max_aj_tasks", "")
        except DriverError as exc:
            self.log.warning("sge: cannot read max_aj_tasks, assuming 75000: %s", exc)
            return 75000
        if not raw.isdigit():
            return MAX_TASKS_PER_ARRAY
        return int(raw) or MAX_TASKS_PER_ARRAY

    # -- polling ------------------------------------------------------------------------

    def _qstat(self) -> dict[str, SgeJob]:
        return parse_qstat_xml(self._call(["qstat", "-xml", "-u", self.user]))

    def _end_errors(
        self, errors: Mapping[str, str], queue: Mapping[str, SgeJob]
    ) -> dict[str, JobStatus]:
        """Jobs in error state (``Eqw``) never start without an admin: one ``qstat -j``
        says why, one ``qdel`` removes them, and their attempts end with the reason."""
        numbers = sorted({split_slot(job_id)[0].split(".")[0] for job_id in errors.values()})
        done = self.commands.checked(["qstat", "-j", ",".join(numbers)], check=False)
        reasons = parse_error_reasons(done.stdout) if done.returncode == 0 else {}
        self.log.warning(
            "sge: job(s) %s in error state, deleted: %s",
            ", ".join(numbers),
            "; ".join(sorted(set(reasons.values()))) or "no reason given",
        )
        self.cancel_ids(numbers)
        statuses = {}
        for token, job_id in errors.items():
            sge_id = split_slot(job_id)[0]
            number = sge_id.split(".")[0]
            why = f"{queue[sge_id].state}: {reasons.get(number, 'see qstat -j ' + number)}"
            self._error_reasons[number] = why
            statuses[token] = JobStatus("gone", job_id, why, scheduler_state=why)
        return statuses

    def _final_states(
        self, jobs: Sequence[JobRef], gone: Mapping[str, str]
    ) -> dict[str, JobStatus]:
        """Jobs that left the queue: requeued (the script's guard ran), done (the runner's
        status.json says how), or -- no status.json -- what ``qacct`` says, in one call."""
        dirs = {ref.token: Path(ref.attempt_dir) for ref in jobs}
        statuses: dict[str, JobStatus] = {}
        ask: dict[str, str] = {}
        for token, job_id in gone.items():
            adir = dirs[token]
            if (adir / names.REQUEUED).exists():
                statuses[token] = JobStatus(
                    "gone",
                    job_id,
                    "REQUEUED (by Grid Engine: this attempt ends, a new one is submitted)",
                    scheduler_state="REQUEUED",
                )
            elif (adir / names.STATUS).exists():
                statuses[token] = JobStatus("gone", job_id)
            elif (why := self._error_reasons.get(split_slot(job_id)[0].split(".")[0])) is not None:
                statuses[token] = JobStatus("gone", job_id, why, scheduler_state=why)
            else:
                ask[token] = job_id
        if not ask:
            return statuses
        numbers = {split_slot(job_id)[0].split(".")[0] for job_id in ask.values()}
        if len(numbers) == 1:
            pattern = next(iter(numbers))
        else:
            batches = [self._batch_of(ref) for ref in jobs if ref.token in ask]
            pattern = _name_pattern([b for b in batches if b])
        records, note = self._qacct(pattern)
        for token, job_id in ask.items():
            record = _record_of(records, split_slot(job_id)[0])
            if record is not None:
                statuses[token] = replace(accounting_status(record), job_id=job_id)
            else:
                why = note or "Grid Engine's accounting has no record of it (yet)"
                statuses[token] = JobStatus("gone", job_id, f"left the queue; {why}")
        return statuses

    @staticmethod
    def _batch_of(ref: JobRef) -> str | None:
        batch = (read_job_file(ref.attempt_dir, ref.token) or {}).get("batch")
        return str(batch) if batch else None

    def _qacct(self, pattern: str) -> tuple[dict[str, SgeAccounting], str | None]:
        """``qacct -o <user> -j <pattern>``: ``(records, None)``, or ``({}, why)``."""
        try:
            done = self.commands.checked(["qacct", "-o", self.user, "-j", pattern], check=False)
        except DriverError as exc:
            return {}, str(exc)
        if done.returncode != 0:
            first = first_line(done.stderr or done.stdout)
            if "not found" in first:
                return {}, None
            return {}, f"qacct failed: {first or f'exit {done.returncode}'}"
        try:
            return parse_qacct(done.stdout), None
        except DriverError as exc:
            return {}, str(exc)

    def _global_config(self) -> dict[str, str]:
        """``qconf -sconf``, read once: what it says changes only when an admin edits it."""

        def read() -> dict[str, str]:
            config = {}
            for line in self._call(["qconf", "-sconf"]).splitlines():
                key, _, value = line.strip().partition(" ")
                if key and not key.startswith("#"):
                    config[key] = value.strip()
            return config

        return self._config.get(None, read)

    def _call(self, argv: Sequence[str]) -> str:
        """Run a Grid Engine command; its stdout, or DriverError naming the command."""
        return self.commands.output(argv)


def _record_of(records: Mapping[str, SgeAccounting], sge_id: str) -> SgeAccounting | None:
    """The record of ``sge_id`` ("5.3"), or of its job where it ran without tasks."""
    return records.get(sge_id) or records.get(sge_id.split(".")[0])


def _name_pattern(batch_names: Sequence[str]) -> str:
    """One ``qacct -j`` pattern for all these job names: the name itself, or their
    common prefix and ``*`` (qacct matches names with wildcards; the records are
    filtered by job id afterwards)."""
    unique = sorted(set(batch_names))
    if len(unique) == 1:
        return unique[0]
    first, last = unique[0], unique[-1]  # sorted: their common prefix is everyone's
    size = next(
        (i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first)
    )
    return (first[:size] or "cd.") + "*"
