"""The user's Slurm job limits and how many more jobs fit under them.

Where slurmctld enforces them (``AccountingStorageEnforce`` has ``limits``), the
association's ``MaxSubmitJobs`` and the QOS's ``MaxSubmitJobsPerUser`` cap how many jobs
-- array tasks count one each, as Slurm counts them -- the user may have queued; a
submission over them fails as a whole. ``SubmitBudget`` is Slurm's ``batch.arrays.Budget``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterd.drivers.slurm.argv import ArraySettings

__all__ = ["Association", "QosLimit", "SubmitBudget", "SubmitLimits"]


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
