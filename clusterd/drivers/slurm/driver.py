"""``SlurmDriver``: attempts as Slurm job-array tasks, polled in bulk.

Slurm is the distributed engine; this driver only talks to it, politely. What every
batch scheduler shares (arrays, packing, the batch script, job.json records, commands
with a timeout) is ``BatchDriver``'s (``clusterd/drivers/batch/``); this module adds:

* **submit**: one ``sbatch --parsable --array=0-N[%throttle]`` per array, capped by
  ``MaxArraySize`` (read once from ``scontrol show config``; it caps the task *index*,
  so arrays are numbered from 0), with ``--signal=B:<sig>@<lead>`` for the resume
  policy: the single-attempt task ``exec``s the runner, so the signal reaches it.
* **poll**: one ``squeue --me --states=all`` for every job (it still lists jobs that
  ended less than ``MinJobAge`` ago, with their final state), then one ``sacct`` for
  the jobs that left the queue or were cancelled (accounting alone says who:
  "CANCELLED by 1000") -- or none at all, the usual case.
* **find**: by array name (the batch name) in ``squeue``, then in ``sacct``.
* **limits**: where slurmctld enforces them, the association's ``MaxSubmitJobs`` and the
  QOS's ``MaxSubmitJobsPerUser`` (``sacctmgr``, cached ``LIMITS_TTL`` s) are the submit
  budget (``limits.py``); ``submit`` sends what fits and leaves the rest for later.
* **requeue**: a job Slurm requeued would run its attempt dir again; the driver marks
  the attempts ``requeued`` and ``scancel``s the job; the daemon submits new attempts.
* **bad hosts**: ``JobRequest.exclude_hosts`` joins ``[drivers.slurm] exclude`` in
  ``--exclude``, mapped to Slurm node names first (an unknown name would make ``sbatch``
  refuse the whole array).

The scheduler's state is the truth only for jobs that never started or were killed:
the exit status of an attempt is the runner's ``status.json``.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterd.drivers.base import ClusterInfo, JobRef, JobRequest, JobStatus
from clusterd.drivers.batch.arrays import Task
from clusterd.drivers.batch.cache import TtlCache
from clusterd.drivers.batch.commands import CommandRunner, first_line
from clusterd.drivers.batch.driver import BatchDriver
from clusterd.drivers.batch.script import check_env_name
from clusterd.drivers.batch.slots import slot_status, split_slot
from clusterd.drivers.jobfile import read_job_file
from clusterd.drivers.slurm import cluster
from clusterd.drivers.slurm.argv import (
    SLURM_OPTIONS,
    SLURM_SCRIPT,
    ArraySettings,
    build_sbatch_argv,
)
from clusterd.drivers.slurm.limits import SubmitBudget, SubmitLimits
from clusterd.drivers.slurm.parse import (
    ASSOC_FIELDS,
    NODES_FORMAT,
    QOS_FIELDS,
    QUEUE_FORMAT,
    QUEUED_STATES,
    SACCT_FIELDS,
    SINFO_FIELDS,
    SQUEUE_FORMAT,
    USAGE_FORMAT,
    SlurmJob,
    arrays_by_name,
    config_int,
    ended,
    job_status,
    parse_node_names,
    parse_sacct,
    parse_sacctmgr_assoc,
    parse_sacctmgr_qos,
    parse_sbatch_parsable,
    parse_scontrol_config,
    parse_sinfo,
    parse_squeue,
    parse_usage,
)
from clusterd.errors import DriverError, SpecError
from clusterd.node import names
from clusterd.spec.model import Resources, SweepSpec

__all__ = ["LIMITS_TTL", "SQUEUE_ARGV", "SlurmDriver"]

SQUEUE_ARGV = ("squeue", "--me", "--noheader", "--array", "--states=all")
SACCT_ARGV = ("sacct", "-n", "-P", "-X", f"--format={','.join(SACCT_FIELDS)}")
#: seconds the limits and the node names are cached: admins change them rarely, and
#: ``sacctmgr`` asks slurmdbd, which a busy site would rather not hear from every poll
LIMITS_TTL = 300.0
#: pending reasons of a requeued job: it waits ``BeginTime`` (120 s) or is held
REQUEUE_REASONS = frozenset(
    {"BeginTime", "job requeued in held state", "JobHeldUser", "JobHeldAdmin"}
)


class SlurmDriver(BatchDriver[ArraySettings]):
    """Attempts as tasks of Slurm job arrays; see the module docstring for the protocol."""

    name = "slurm"
    poll_interval = 30.0
    enforces_time_limit = True
    status_grace = 60.0
    option_specs = SLURM_OPTIONS
    dialect = SLURM_SCRIPT
    controller = "slurmctld"
    #: seconds sacctmgr's limits and sinfo's node names are trusted (tests shorten it)
    limits_ttl = LIMITS_TTL

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, run: CommandRunner | None = None
    ) -> None:
        super().__init__(options, run=run)
        self._config: TtlCache[None, dict[str, str]] = TtlCache()  # changes with a restart
        self._limits: TtlCache[None, SubmitLimits] = TtlCache(lambda: self.limits_ttl)
        self._node_map: TtlCache[None, dict[str, str]] = TtlCache(lambda: self.limits_ttl)
        self._eligible: TtlCache[str, set[str]] = TtlCache(lambda: self.limits_ttl)
        self._unknown_hosts: set[str] = set()  # warned about once

    # -- the contract -------------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Reject unknown ``[drivers.slurm]`` keys and what a batch script cannot export."""
        super().validate(spec)
        for key in spec.env.vars:
            if not check_env_name(key):
                raise SpecError(spec.source, f"env.vars.{key}", "a valid variable name")

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """One squeue for everything; one sacct for jobs that left it or were cancelled."""
        if not jobs:
            return {}
        queue = self._squeue_all()
        ids = self.resolve(jobs, arrays_by_name(queue))
        statuses: dict[str, JobStatus] = {}
        gone: dict[str, str] = {}  # token -> job id
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
            if row is None or ended(row):
                if (Path(ref.attempt_dir) / names.REQUEUED).exists():
                    statuses[ref.token] = _requeued_status(job_id)
                else:
                    gone[ref.token] = job_id
                continue
            status = replace(job_status(row), job_id=job_id)
            statuses[ref.token] = (
                status if slot is None else slot_status(ref, status, self.dialect.started_file)
            )
        if gone:
            refs = {ref.token: ref for ref in jobs}
            statuses.update(self._final_states(gone, queue, refs))
        if requeued:
            statuses.update(self._end_requeued(jobs, requeued))
        return statuses

    def describe_cluster(self) -> ClusterInfo:
        """Partitions, nodes and GPUs from one ``sinfo``; the user's queue from one ``squeue``;
        the user's job limits from the cache (``sacctmgr`` when it is stale)."""
        fields = ",".join(f"{field}:0|" for field in SINFO_FIELDS)
        rows = parse_sinfo(self._call(["sinfo", "--noheader", "--Node", f"--Format={fields}"]))
        queue_text = self._call(["squeue", "--me", "--noheader", f"--format={QUEUE_FORMAT}"])
        partitions = cluster.partitions(rows)
        return ClusterInfo(
            driver=self.name,
            partitions=partitions,
            nodes=cluster.nodes(rows),
            gpus=[
                {"partition": p["name"], "gpus": p["gpus"], "gpus_free": p["gpus_free"]}
                for p in partitions
                if p["gpus"]
            ],
            queue=[cluster.queue_entry(line) for line in queue_text.splitlines() if line.strip()],
            notes=self.submit_limits().describe(),
        )

    def eligible_hosts(self, resources: Resources, options: Mapping[str, Any]) -> set[str] | None:
        """Node names of the job's partition (the default one where it names none): one
        ``sinfo -h -N -o "%N %P"``, cached ``limits_ttl`` s, so that the daemon never
        excludes the partition's last node (``--exclude`` of every node: sbatch refuses
        "Requested node configuration is not available" forever)."""
        partition = resources.partition or ""
        return set(self._eligible.get(partition, lambda: self._partition_nodes(partition)))

    # -- BatchDriver's hooks ------------------------------------------------------------

    def array_key(self, job: JobRequest) -> ArraySettings:
        exclude = self._exclude_nodes(job.exclude_hosts)
        return ArraySettings.of(job, exclude, self.job_options(job))

    def submit_script(
        self, settings: ArraySettings, batch: str, tasks: list[Task], state_dir: Path, script: Path
    ) -> str:
        settings = replace(settings, pack=len(tasks[0]))
        argv = build_sbatch_argv(settings, batch, len(tasks), str(state_dir), str(script))
        return parse_sbatch_parsable(self.submit_command(argv, tasks))

    def task_job_id(self, array_id: str, index: int) -> str:
        return f"{array_id}_{index}"

    def queue_arrays(self) -> dict[str, str]:
        return arrays_by_name(self._squeue_all())

    def history_arrays(self, names: Sequence[str], since: float) -> dict[str, str]:
        """Arrays by name from accounting, for arrays that already left the queue."""
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(0.0, since - 3600)))
        argv = [*SACCT_ARGV, f"--starttime={start}", f"--name={','.join(names)}"]
        done = self.commands.checked(argv, check=False)
        if done.returncode != 0:
            self.log.info("slurm: sacct cannot help find jobs: %s", first_line(done.stderr))
            return {}
        return arrays_by_name(parse_sacct(done.stdout))

    def cancel_ids(self, job_ids: Sequence[str]) -> None:
        done = self.commands.checked(["scancel", *job_ids], check=False)
        errors = [
            line
            for line in done.stderr.splitlines()
            if line.strip() and not re.search(r"already completing|completed|Invalid job id", line)
        ]
        if done.returncode != 0 and errors:
            raise DriverError(f"scancel failed: {errors[0]}")

    def scheduler_max_tasks(self) -> int:
        """MaxArraySize caps the task index, so indices 0..MaxArraySize-1."""
        return config_int(self._cluster_config(), "MaxArraySize")

    def submit_budget(self) -> SubmitBudget | None:
        """The room left under the submit limits: one ``squeue`` of the user's live jobs,
        and only where a submit limit exists."""
        limits = self.submit_limits()
        if not limits.limits_submission:
            return None
        argv = ["squeue", "--me", "--noheader", "--array", f"--format={USAGE_FORMAT}"]
        return SubmitBudget(limits, parse_usage(self._call(argv)))

    def submit_refused(self, why: str) -> None:
        if "limit" in why.lower():
            self._limits.drop()  # they changed, or another submitter used them up

    # -- limits ---------------------------------------------------------------------------

    def submit_limits(self) -> SubmitLimits:
        """The user's job limits as slurmctld enforces them; cached for ``limits_ttl`` s.

        None are read where ``AccountingStorageEnforce`` lacks ``limits`` (Slurm
        ignores them then) or sacctmgr cannot answer (no slurmdbd): an over-limit
        sbatch then fails, and the daemon backs off and offers the jobs again.
        """
        return self._limits.get(None, self._enforced_limits)

    def _enforced_limits(self) -> SubmitLimits:
        config = self._cluster_config()
        enforce = config.get("AccountingStorageEnforce", "").lower().split(",")
        if "limits" in enforce or "safe" in enforce:
            try:
                return self._read_limits(config.get("ClusterName"))
            except DriverError as exc:
                self.log.warning("slurm: cannot read job limits, assuming none: %s", exc)
        return SubmitLimits()

    def _read_limits(self, cluster_name: str | None) -> SubmitLimits:
        user = pwd.getpwuid(os.getuid()).pw_name
        argv = ["sacctmgr", "--noheader", "--parsable2", "show", "user", user, "withassoc"]
        if cluster_name:
            argv += ["where", f"cluster={cluster_name}"]
        default, assocs = parse_sacctmgr_assoc(
            self._call([*argv, f"format={','.join(ASSOC_FIELDS)}"])
        )
        qos_argv = ["sacctmgr", "--noheader", "--parsable2", "show", "qos"]
        qos = parse_sacctmgr_qos(self._call([*qos_argv, f"format={','.join(QOS_FIELDS)}"]))
        return SubmitLimits(default, tuple(assocs), tuple(qos.values()))

    def _cluster_config(self) -> dict[str, str]:
        """``scontrol show config``, read once: what it says changes with a restart only."""
        return self._config.get(
            None, lambda: parse_scontrol_config(self._call(["scontrol", "show", "config"]))
        )

    # -- bad hosts ------------------------------------------------------------------------

    def _exclude_nodes(self, hosts: Sequence[str]) -> list[str]:
        """Slurm node names of ``hosts``; names Slurm does not know are dropped (once
        warned about), as ``--exclude`` with one would make sbatch refuse the array."""
        if not hosts:
            return []
        argv = ["sinfo", "--noheader", "--Node", f"--format={NODES_FORMAT}"]
        names_of = self._node_map.get(None, lambda: parse_node_names(self._call(argv)))
        nodes = []
        for host in hosts:
            node = names_of.get(host) or names_of.get(host.split(".", 1)[0])
            if node is not None:
                nodes.append(node)
            elif host not in self._unknown_hosts:
                self._unknown_hosts.add(host)
                self.log.warning("slurm: cannot exclude host %r: Slurm knows no such node", host)
        return nodes

    def _partition_nodes(self, partition: str) -> set[str]:
        """The nodes of ``partition`` ("": the default one)."""
        argv = ["sinfo", "-h", "-N", "-o", "%N %P"]
        if partition:
            argv += ["-p", partition]
        nodes = set()
        for line in self._call(argv).splitlines():
            fields = line.split()
            if len(fields) == 2 and (partition or fields[1].endswith("*")):
                nodes.add(fields[0])
        return nodes

    # -- polling --------------------------------------------------------------------------

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
                (Path(dirs[token]) / names.REQUEUED).write_text("requeued\n")
            except OSError as exc:
                raise DriverError(f"cannot mark {dirs[token]} as requeued: {exc}") from exc
        slurm_ids = sorted({split_slot(job_id)[0] for job_id in requeued.values()})
        self.log.info(
            "slurm: %s requeued by Slurm; cancelled for new attempts", ", ".join(slurm_ids)
        )
        self.cancel_ids(slurm_ids)
        return {token: _requeued_status(job_id) for token, job_id in requeued.items()}

    def _final_states(
        self, gone: Mapping[str, str], queue: Mapping[str, SlurmJob], refs: Mapping[str, JobRef]
    ) -> dict[str, JobStatus]:
        """Final states: squeue's where it still lists the job (``--states=all`` does for
        ``MinJobAge``), sacct's for jobs that left the queue and for cancelled ones (only
        accounting says who cancelled: "CANCELLED by 1000"). What a job exited with is
        the runner's status.json, so squeue's word is enough for the rest."""
        slurm_ids = {token: split_slot(job_id)[0] for token, job_id in gone.items()}
        statuses: dict[str, JobStatus] = {}
        ask: dict[str, str] = {}
        for token, job_id in gone.items():
            row = _lookup(queue, slurm_ids[token])
            if row is not None and ended(row) and row.base_state != "CANCELLED":
                statuses[token] = replace(job_status(row), job_id=job_id)
            else:
                ask[token] = job_id
        if not ask:
            return statuses
        ours = {slurm_ids[token]: _batch_of(refs.get(token), token) for token in ask}
        accounting, note = self._sacct(sorted(ours), ours)
        for token, job_id in ask.items():
            slurm_id = slurm_ids[token]
            booked = _lookup(accounting, slurm_id)
            if booked is not None and ours[slurm_id] and booked.name != ours[slurm_id]:
                booked = None  # an earlier job of the same id; ours is not booked yet
            row = _best_row(booked, _lookup(queue, slurm_id))
            if row is not None:
                statuses[token] = replace(job_status(row), job_id=job_id)
            elif note is None:
                statuses[token] = JobStatus("gone", job_id, "Slurm has no record of this job")
            elif note.startswith("disabled"):
                statuses[token] = JobStatus("gone", job_id, f"left the queue; {note}")
            else:
                statuses[token] = JobStatus("unknown", job_id, note)
        return statuses

    def _sacct(
        self, job_ids: Sequence[str], names: Mapping[str, str] | None = None
    ) -> tuple[dict[str, SlurmJob], str | None]:
        """``(jobs, None)``, or ``({}, why)`` when accounting cannot answer."""
        try:
            done = self.commands.checked([*SACCT_ARGV, f"--jobs={','.join(job_ids)}"], check=False)
        except DriverError as exc:
            return {}, str(exc)
        if done.returncode != 0:
            first = first_line(done.stderr or done.stdout)
            if "disabled" in first.lower():
                return {}, "disabled: Slurm accounting is off, so its final state is unknown"
            return {}, f"sacct failed: {first or f'exit {done.returncode}'}"
        return parse_sacct(done.stdout, names), None

    def _squeue_all(self) -> dict[str, SlurmJob]:
        return parse_squeue(self._call([*SQUEUE_ARGV, f"--format={SQUEUE_FORMAT}"]))

    def _call(self, argv: Sequence[str]) -> str:
        """Run a Slurm command; its stdout, or DriverError naming the command."""
        return self.commands.output(argv)


def _requeued(ref: JobRef, row: SlurmJob) -> bool:
    """True if Slurm requeued the job after this attempt started in it: queued again (held
    or waiting for its ``BeginTime``) while the attempt dir says it ran."""
    state = row.base_state
    if state not in QUEUED_STATES or not (
        state.startswith("REQUEUE") or row.reason in REQUEUE_REASONS
    ):
        return False
    return (Path(ref.attempt_dir) / SLURM_SCRIPT.started_file).exists()


def _requeued_status(job_id: str) -> JobStatus:
    return JobStatus(
        "gone",
        job_id,
        "REQUEUED (by Slurm: this attempt ends, a new one is submitted)",
        scheduler_state="REQUEUED",
    )


def _lookup(jobs: Mapping[str, SlurmJob], job_id: str) -> SlurmJob | None:
    """The line of ``job_id``, or the ended line of its whole array.

    An array whose tasks never split off is one record: squeue shows a cancelled
    one as ``16`` (task "N/A"), and sacct listed a one-task array that hit
    NODE_FAIL as ``51``. Its final state is then every unlisted task's.
    """
    job = jobs.get(job_id)
    array_id, sep, _ = job_id.partition("_")
    whole = jobs.get(array_id) if job is None and sep else None
    if whole is not None and ended(whole):
        return replace(whole, job_id=job_id)
    return job


def _batch_of(ref: JobRef | None, token: str) -> str:
    """The batch (job) name job.json recorded for the attempt; "" where unknown."""
    data = read_job_file(ref.attempt_dir, token) if ref is not None else None
    batch = (data or {}).get("batch")
    return batch if isinstance(batch, str) else ""


def _best_row(accounting: SlurmJob | None, queue: SlurmJob | None) -> SlurmJob | None:
    """Accounting knows who cancelled and the exit code, but may lag behind slurmctld."""
    if accounting is not None and (ended(accounting) or queue is None or not ended(queue)):
        return accounting
    return queue
