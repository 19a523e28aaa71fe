"""``HTCondorDriver``: a batch of attempts as one HTCondor cluster, tracked by its event log.

What every batch scheduler shares (grouping, packing, the batch script, job.json records,
commands with a timeout) is ``BatchDriver``'s (``clusterd/drivers/batch/``); this adds:

* **submit**: one ``condor_submit -terse <batch>.sub`` per batch (``submit.py``): the
  attempts are the item data of one ``queue ClusterdToken, ClusterdTask from (...)``, so
  N attempts are one cluster, job ``<cluster>.<i>`` running task ``i``.
* **poll**: one read of each sweep's event log (``events.log`` in its state dir), from
  the byte offset the last poll stopped at (``eventlog.py``): zero ``condor_q`` calls in
  steady state, whatever the number of jobs. ``condor_q -json`` and ``condor_history
  -json`` (one call each, for all the jobs concerned) only reconcile jobs the log cannot
  speak for: an unreadable log, or a job without any event ``RECONCILE_AFTER`` s after
  its submission (unless others of its cluster are still in the log: late
  materialization). A failed answer is a failed poll (``DriverError``) when the log said
  nothing either, else "unknown" for those jobs. After a daemon restart the log is read
  from its start.
* **evicted / shadow exception**: the job goes back to idle and would run the attempt
  dir again; its requirements (``NumJobStarts == 0``) keep it from matching, the driver
  ``condor_rm``s it and reports ``REQUEUED``, and the daemon submits a new attempt that
  resumes from the checkpoint (as for Slurm's preemption).
* **held** (``HELD_RULE`` in docs/htcondor.md): shown as the pending reason with its code;
  a hold the user made (codes 1, 15) is theirs to release; a transient hold (file
  transfer, ...) of a job whose runner never started is released up to
  ``MAX_RELEASES`` times; any other hold removes the job and ends the attempt with the
  hold reason (``TIMEOUT`` for code 47, ``allowed_execute_duration``).
* **cancel**: one ``condor_rm`` for many job ids.

The exit status of an attempt is the runner's ``status.json``; the log's return value or
signal only fills the reason, for an attempt whose runner never wrote one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterd.drivers.base import JobRef, JobRequest, JobStatus
from clusterd.drivers.batch.arrays import Task
from clusterd.drivers.batch.commands import CommandRunner, first_line
from clusterd.drivers.batch.driver import BatchDriver
from clusterd.drivers.batch.slots import slot_status, split_slot
from clusterd.drivers.htcondor.eventlog import JobTrack, LogReader
from clusterd.drivers.htcondor.parse import (
    AD_ATTRIBUTES,
    JobAd,
    constraint_for,
    parse_ads,
    parse_submit_terse,
)
from clusterd.drivers.htcondor.submit import (
    EVENT_LOG,
    HTCONDOR_OPTIONS,
    HTCONDOR_SCRIPT,
    SubmitSettings,
    render_submit,
)
from clusterd.drivers.jobfile import read_job_file
from clusterd.errors import DriverError, UnsupportedResource
from clusterd.spec.model import SweepSpec

__all__ = [
    "MAX_RELEASES",
    "RECONCILE_AFTER",
    "TRANSIENT_HOLD_CODES",
    "USER_HOLD_CODES",
    "HTCondorDriver",
    "hold_words",
]

#: holds the user made (condor_hold; submitted on hold): theirs to release, left alone
USER_HOLD_CODES = frozenset({1, 15})
#: holds that often pass by themselves (file transfer, the job's directory or log on a
#: busy shared filesystem, a container runtime check): released while the runner never ran
TRANSIENT_HOLD_CODES = frozenset({6, 7, 8, 9, 10, 11, 12, 13, 14, 18, 22, 45})
#: releases of one job for transient holds before it is removed instead
MAX_RELEASES = 3
#: the allowed_execute_duration hold: the attempt's time ran out
EXECUTE_DURATION_HOLD = 47
#: seconds a job may go without any event in the log before condor_q is asked about it
RECONCILE_AFTER = 120.0


def hold_words(reason: str | None, code: int | None, subcode: int | None) -> str:
    """``held: <reason> (code N, subcode M)``, as the pending reason shows it."""
    what = reason or "no reason given"
    codes = f" (code {code}, subcode {subcode or 0})" if code is not None else ""
    return f"held: {what}{codes}"


class HTCondorDriver(BatchDriver[SubmitSettings]):
    """Attempts as jobs of HTCondor clusters; see the module docstring for the protocol."""

    name = "htcondor"
    poll_interval = 30.0
    #: the runner ends an attempt at ``resources.time`` itself; HTCondor's
    #: ``allowed_execute_duration`` is a backstop ``submit.EXECUTE_MARGIN`` s later
    enforces_time_limit = False
    status_grace = 60.0
    option_specs = HTCONDOR_OPTIONS
    dialect = HTCONDOR_SCRIPT
    controller = "the condor_schedd"
    reconcile_after = RECONCILE_AFTER

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, run: CommandRunner | None = None
    ) -> None:
        super().__init__(options, run=run)
        self.reader = LogReader()
        self._releases: dict[str, int] = {}  # job id -> releases made (condor_q path)
        self._unreadable: set[str] = set()  # logs already warned about

    # -- the contract ---------------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Unknown ``[drivers.htcondor]`` keys, and what HTCondor has no word for."""
        super().validate(spec)
        if spec.resources.partition:
            raise UnsupportedResource(
                f"{spec.source}: resources.partition: HTCondor has no partitions; "
                "say what a machine must have in [drivers.htcondor] requirements"
            )
        table = spec.driver_options.get(self.name, {})
        if table.get("universe") == "container" and not table.get("container_image"):
            raise UnsupportedResource(
                f'{spec.source}: drivers.htcondor: universe = "container" needs container_image'
            )

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """One read of each sweep's event log; condor_q/condor_history only for jobs the
        log cannot speak for."""
        if not jobs:
            return {}
        ids = self.resolve(jobs, None)
        statuses: dict[str, JobStatus] = {}
        ask: list[JobRef] = []  # for condor_q
        by_log: dict[str, list[JobRef]] = {}
        for ref in jobs:
            by_log.setdefault(self._log_of(ref), []).append(ref)
        actions = _Actions()
        for path, refs in by_log.items():
            try:
                self.reader.read(path)
            except DriverError as exc:
                if path not in self._unreadable:
                    self._unreadable.add(path)
                    self.log.warning("htcondor: %s; asking condor_q instead", exc)
                ask += refs
                continue
            self._unreadable.discard(path)
            tracks = self.reader.tracks(path).jobs
            live: set[str] | None = None  # clusters with a job in the log not yet ended
            for ref in refs:
                job_id = ids.get(ref.token)
                track = tracks.get(split_slot(job_id)[0]) if job_id else None
                if job_id is None or track is None:
                    if job_id is not None and not self._overdue(ref):
                        statuses[ref.token] = JobStatus(
                            "queued", job_id, "submitted; no event in the log yet"
                        )
                        continue
                    if job_id is not None:
                        live = _live_clusters(tracks) if live is None else live
                        if job_id.partition(".")[0] in live:
                            # late materialization (max_materialize): the schedd makes
                            # the job when others of its cluster leave; condor_q knows
                            # nothing of it yet either
                            statuses[ref.token] = JobStatus(
                                "queued", job_id, "not materialized yet (max_materialize)"
                            )
                            continue
                    ask.append(ref)
                    continue
                statuses[ref.token] = self._from_track(ref, job_id, track, actions)
        if ask:
            # nothing known from the log and condor_q failed: a failed poll (DriverError),
            # as for any driver whose status command fails; else the rest are "unknown"
            statuses.update(self._reconcile(ask, ids, actions, raise_errors=not statuses))
        statuses.update(self._act(actions, statuses))
        return statuses

    # -- BatchDriver's hooks --------------------------------------------------------------

    def array_key(self, job: JobRequest) -> SubmitSettings:
        return SubmitSettings.of(job, self.job_options(job))

    def submit_script(
        self, settings: SubmitSettings, batch: str, tasks: list[Task], state_dir: Path, script: Path
    ) -> str:
        settings = replace(settings, pack=len(tasks[0]))
        text = render_submit(settings, batch, tasks, str(script), str(state_dir))
        description = state_dir / f"{batch}.sub"
        try:
            script.chmod(0o755)  # run in place where the filesystem is shared
            description.write_text(text)
        except OSError as exc:
            raise DriverError(f"cannot write the submit description {description}: {exc}") from exc
        cluster, count = parse_submit_terse(
            self.submit_command([*settings.submit_command, "-terse", str(description)], tasks)
        )
        if count != len(tasks):
            self.log.warning(
                "htcondor: cluster %s has %d job(s) for %d task(s)", cluster, count, len(tasks)
            )
        return cluster

    def task_job_id(self, array_id: str, index: int) -> str:
        return f"{array_id}.{index}"

    def queue_arrays(self) -> dict[str, str]:
        """``{batch name: cluster}`` of clusterd's jobs in the queue: one ``condor_q``."""
        ads = self._ads("condor_q", "ClusterdToken =!= undefined")
        return {ad.batch: str(ad.cluster) for ad in ads.values() if ad.batch}

    def history_arrays(self, names: Sequence[str], since: float) -> dict[str, str]:
        """The same from ``condor_history`` for batches that left the queue."""
        try:
            ads = self._ads("condor_history", constraint_for(names))
        except DriverError as exc:
            self.log.info("htcondor: condor_history cannot help find jobs: %s", exc)
            return {}
        return {ad.batch: str(ad.cluster) for ad in ads.values() if ad.batch}

    def cancel_ids(self, job_ids: Sequence[str]) -> None:
        """One ``condor_rm`` for all; ids HTCondor no longer knows are no error."""
        self._condor_rm(job_ids)

    # -- polling --------------------------------------------------------------------------

    def _log_of(self, ref: JobRef) -> str:
        """``<output_dir>/.htcondor/events.log`` (the attempt dir is
        ``<output_dir>/<index>/attempt-<n>``); string work, as it runs for every job."""
        output_dir = os.path.dirname(os.path.dirname(ref.attempt_dir.rstrip("/")))
        return os.path.join(output_dir, f".{self.name}", EVENT_LOG)

    def _overdue(self, ref: JobRef) -> bool:
        """True if the job was submitted ``reconcile_after`` s ago and the log says nothing."""
        record = read_job_file(ref.attempt_dir, ref.token) or {}
        recorded = record.get("recorded_at")
        if not isinstance(recorded, int | float):
            return True
        return time.time() - float(recorded) > self.reconcile_after

    def _from_track(
        self, ref: JobRef, job_id: str, track: JobTrack, actions: _Actions
    ) -> JobStatus:
        """The job's status from its track in the log."""
        cid = split_slot(job_id)[0]
        if track.state == "ended":
            status = JobStatus("gone", job_id, _ended_words(track), scheduler_state="COMPLETED")
        elif track.state == "removed":
            status = self._removed(ref, job_id, track)
        elif track.state == "held":
            status = self._held(
                ref, job_id, track.hold_reason, track.hold_code, track.hold_subcode,
                track.starts, track.releases, actions,
            )  # fmt: skip
        elif track.state in ("running", "suspended"):
            reason = "suspended" if track.state == "suspended" else None
            status = JobStatus("running", job_id, reason, host=track.host)
        elif track.starts > 0:  # idle again after it ran: never runs the attempt twice
            actions.remove[cid] = "requeued"
            status = self._interrupted(ref, job_id, track)
        else:
            reason = track.interrupted or ("released" if track.releases else "idle")
            status = JobStatus("queued", job_id, reason)
        return _slot(ref, status)

    def _removed(self, ref: JobRef, job_id: str, track: JobTrack) -> JobStatus:
        if track.cause == "held":
            return _hold_ended(job_id, track.hold_reason, track.hold_code, track.hold_subcode)
        if track.cause == "interrupted" and track.starts > 0:
            return self._interrupted(ref, job_id, track)
        return _cancelled(job_id, track.abort_reason)

    def _interrupted(self, ref: JobRef, job_id: str, track: JobTrack) -> JobStatus:
        """A job that ran and went back to idle. Evicted: a preemption, the attempt resumes
        in a new one. A shadow exception before the runner started is the job's failure
        (a missing executable would flap forever), counted against retry.max_failures."""
        why = track.interrupted or (
            hold_words(track.hold_reason, track.hold_code, track.hold_subcode)
            + "; released after it ran"
        )
        started = (Path(ref.attempt_dir) / self.dialect.started_file).exists()
        if why.startswith("shadow exception") and not started:
            return JobStatus(
                "gone", job_id, f"{why}; removed", scheduler_state=f"SHADOW_EXCEPTION ({why})"
            )
        return _requeued(job_id, why)

    def _held(
        self,
        ref: JobRef,
        job_id: str,
        reason: str | None,
        code: int | None,
        subcode: int | None,
        starts: int,
        releases: int,
        actions: _Actions,
    ) -> JobStatus:
        """The held rule (module docstring): leave, release or remove."""
        cid = split_slot(job_id)[0]
        words = hold_words(reason, code, subcode)
        if code in USER_HOLD_CODES:
            return JobStatus("queued", job_id, f"{words}; condor_release it to go on")
        started = starts > 0 or (Path(ref.attempt_dir) / self.dialect.started_file).exists()
        made = self._releases.get(cid, 0)
        if code in TRANSIENT_HOLD_CODES and not started and made > releases:
            # released by an earlier poll; HTCondor has not logged it yet: no second release
            return JobStatus("queued", job_id, f"{words}; released ({made} of {MAX_RELEASES})")
        if code in TRANSIENT_HOLD_CODES and not started and releases < MAX_RELEASES:
            actions.release[cid] = releases + 1
            return JobStatus(
                "queued", job_id, f"{words}; released ({releases + 1} of {MAX_RELEASES})"
            )
        actions.remove[cid] = "held"
        return _hold_ended(job_id, reason, code, subcode)

    def _reconcile(
        self,
        refs: Sequence[JobRef],
        ids: Mapping[str, str],
        actions: _Actions,
        raise_errors: bool = False,
    ) -> dict[str, JobStatus]:
        """Statuses from ``condor_q`` (then ``condor_history`` for jobs not in the queue):
        one call each for every job the log could not speak for. A failed answer raises
        with ``raise_errors`` (the poll knows nothing else), else makes them "unknown"."""
        statuses: dict[str, JobStatus] = {}
        try:
            if any(ref.token not in ids for ref in refs):
                ids = {**ids, **self.resolve(refs, self.queue_arrays())}
            wanted = {split_slot(ids[ref.token])[0] for ref in refs if ref.token in ids}
            queue = self._ads("condor_q", _ids_constraint(wanted)) if wanted else {}
            left = sorted(wanted - set(queue))
            history = self._ads("condor_history", _ids_constraint(left)) if left else {}
        except DriverError as exc:
            if raise_errors:
                raise
            return {ref.token: JobStatus("unknown", ids.get(ref.token), str(exc)) for ref in refs}
        for ref in refs:
            job_id = ids.get(ref.token)
            if job_id is None:
                statuses[ref.token] = JobStatus("gone", None, "no HTCondor job was found for it")
                continue
            cid = split_slot(job_id)[0]
            ad = queue.get(cid) or history.get(cid)
            if ad is None:
                statuses[ref.token] = JobStatus("gone", job_id, "HTCondor has no record of it")
                continue
            statuses[ref.token] = _slot(ref, self._from_ad(ref, job_id, ad, actions))
        return statuses

    def _from_ad(self, ref: JobRef, job_id: str, ad: JobAd, actions: _Actions) -> JobStatus:
        state = ad.status_name
        if ad.status in (2, 6, 7):
            reason = "suspended" if ad.status == 7 else None
            return JobStatus("running", job_id, reason, host=ad.host, scheduler_state=state)
        if ad.status == 4:
            words = (
                f"killed by signal {ad.exit_signal}"
                if ad.exit_signal is not None
                else f"exited with return value {ad.exit_code}"
            )
            return JobStatus("gone", job_id, words, scheduler_state="COMPLETED")
        if ad.status == 3:
            return _cancelled(job_id, ad.remove_reason)
        if ad.status == 5:
            # condor_q answers after the schedd acted: our own count is exact here
            releases = self._releases.get(ad.job_id, 0)
            return self._held(
                ref, job_id, ad.hold_reason, ad.hold_code, ad.hold_subcode,
                ad.starts, releases, actions,
            )  # fmt: skip
        if ad.starts > 0:
            actions.remove[ad.job_id] = "requeued"
            return _requeued(job_id, "idle again after it ran (evicted)")
        return JobStatus("queued", job_id, "idle", scheduler_state=state)

    def _act(self, actions: _Actions, statuses: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        """One ``condor_release`` and one ``condor_rm`` for what the held rule and the
        evictions decided; a removal that failed leaves its jobs queued (tried again)."""
        changed: dict[str, JobStatus] = {}
        if actions.release:
            release = sorted(actions.release)
            done = self.commands.checked(["condor_release", *release], check=False)
            if done.returncode == 0:
                self._releases.update(actions.release)
                self.log.info("htcondor: released held job(s) %s", ", ".join(release))
            else:
                self.log.warning("htcondor: condor_release failed: %s", first_line(done.stderr))
        if actions.remove:
            remove = sorted(actions.remove)
            try:
                self._condor_rm(remove)
                self.log.info("htcondor: removed job(s) %s (held or evicted)", ", ".join(remove))
            except DriverError as exc:
                for token, status in statuses.items():
                    if status.job_id and split_slot(status.job_id)[0] in actions.remove:
                        changed[token] = JobStatus(
                            "queued", status.job_id, f"{status.reason}; removal failed: {exc}"
                        )
        return changed

    def _condor_rm(self, job_ids: Sequence[str]) -> None:
        done = self.commands.checked(["condor_rm", *job_ids], check=False)
        errors = [
            line.strip()
            for line in done.stderr.splitlines()
            if line.strip()
            and "not found" not in line
            and "already marked for removal" not in line
            and not line.startswith("Couldn't find/remove all jobs")
        ]
        if done.returncode != 0 and errors:
            raise DriverError(f"condor_rm failed: {errors[0]}")

    def _ads(self, command: str, constraint: str) -> dict[str, JobAd]:
        argv = [
            command,
            "-json",
            "-constraint",
            constraint,
            "-attributes",
            ",".join(AD_ATTRIBUTES),
        ]
        return parse_ads(self.commands.output(argv), command)


class _Actions:
    """What a poll decided to do to jobs (done once, for all of them, at its end)."""

    def __init__(self) -> None:
        self.release: dict[str, int] = {}  # job id -> its release count after this one
        self.remove: dict[str, str] = {}  # job id -> why ("held", "requeued")


def _ids_constraint(job_ids: Sequence[str] | set[str]) -> str:
    """``(ClusterId == 23 && ProcId == 0) || ...``, grouped by cluster."""
    procs: dict[int, list[int]] = {}
    for job_id in sorted(job_ids):
        cluster, _, proc = job_id.partition(".")
        if cluster.isdigit() and proc.isdigit():
            procs.setdefault(int(cluster), []).append(int(proc))
    if not procs:
        return "false"
    parts = [
        f"(ClusterId == {cluster} && member(ProcId, {{{', '.join(map(str, sorted(p)))}}}))"
        for cluster, p in sorted(procs.items())
    ]
    return " || ".join(parts)


def _live_clusters(tracks: Mapping[str, JobTrack]) -> set[str]:
    """Clusters with a job in the log that has not ended or been removed."""
    return {
        job_id.partition(".")[0]
        for job_id, track in tracks.items()
        if track.state not in ("ended", "removed")
    }


def _ended_words(track: JobTrack) -> str:
    if track.signal is not None:
        return f"killed by signal {track.signal}"
    if track.return_value is not None:
        return f"exited with return value {track.return_value}"
    return "terminated"


def _hold_ended(
    job_id: str, reason: str | None, code: int | None, subcode: int | None
) -> JobStatus:
    """A job removed for its hold: TIMEOUT for allowed_execute_duration, HELD otherwise."""
    words = hold_words(reason, code, subcode) + "; removed"
    state = "TIMEOUT" if code == EXECUTE_DURATION_HOLD else "HELD"
    return JobStatus("gone", job_id, words, scheduler_state=f"{state} ({words})")


def _cancelled(job_id: str, reason: str | None) -> JobStatus:
    """Removed from outside clusterd's rules (condor_rm, a policy): the trial is cancelled
    unless the daemon itself asked (its own cancel)."""
    why = reason or "removed"
    return JobStatus("gone", job_id, f"removed: {why}", scheduler_state=f"CANCELLED ({why})")


def _requeued(job_id: str, why: str) -> JobStatus:
    return JobStatus(
        "gone",
        job_id,
        f"{why} (HTCondor would run the attempt again: a new attempt resumes it)",
        scheduler_state="REQUEUED",
    )


def _slot(ref: JobRef, status: JobStatus) -> JobStatus:
    """A packed attempt's own phase inside its job."""
    if status.job_id and split_slot(status.job_id)[1] is not None:
        return slot_status(ref, status, HTCONDOR_SCRIPT.started_file)
    return status
