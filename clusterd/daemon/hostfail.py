"""Which failed attempts count against their host (``[retry] exclude_host_after``).

A host is excluded for a sweep when its attempts keep failing *because of the host*,
not because of the script: three ``exit code 1`` of a buggy script on a one-node
cluster used to exclude the only node, after which nothing could ever run. So only
endings that look like the host's count:

- ``lost``: the job vanished, or ended without the runner's ``status.json`` (node
  failure, boot failure, a runner that could not start) -- except the scheduler's own
  policy (``PREEMPTED``, ``REQUEUED``), which says nothing about the host;
- ``failed`` by a signal from outside the trial: ``KILL``, ``TERM``, ``HUP``, ``INT``,
  ``BUS`` (cancels, early stops and time limits have their own outcomes, so these did
  not come from clusterd). Signals a program sends itself (``SEGV``, ``ABRT``, ``FPE``,
  ``ILL``) and every exit code are the script's.

:func:`is_host_failure` is the rule; :func:`host_failure_clause` is the same rule in SQL
for ``Store.host_failures`` (a test checks that they agree).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, func, not_, or_

__all__ = ["HOST_SIGNALS", "SCHEDULER_POLICY", "host_failure_clause", "is_host_failure"]

#: signals (runner's spelling, without "SIG") that come from outside a trial
HOST_SIGNALS = ("KILL", "TERM", "HUP", "INT", "BUS")
#: scheduler reasons that end a job for policy, not for a broken host (an HTCondor
#: hold kills the job with TERM: its reason is in the attempt's)
SCHEDULER_POLICY = ("PREEMPTED", "REQUEUED", "HELD")


def _signal_name(signal: str | None) -> str | None:
    if not signal:
        return None
    upper = signal.upper()
    return upper[3:] if upper.startswith("SIG") else upper


def is_host_failure(
    outcome: str | None, exit_code: int | None, signal: str | None, reason: str | None
) -> bool:
    """Whether an ended attempt counts against the host it ran on."""
    if outcome == "lost":
        upper = (reason or "").upper()
        return not any(policy in upper for policy in SCHEDULER_POLICY)
    if outcome == "failed":
        upper = (reason or "").upper()
        return (
            exit_code is None
            and _signal_name(signal) in HOST_SIGNALS
            and not any(policy in upper for policy in SCHEDULER_POLICY)
        )
    return False


def host_failure_clause(attempts: Table) -> ColumnElement[bool]:
    """:func:`is_host_failure` as a WHERE clause on the attempts table."""
    a = attempts.c
    reason = func.upper(func.coalesce(a.reason, ""))
    names = [*HOST_SIGNALS, *(f"SIG{name}" for name in HOST_SIGNALS)]
    return or_(
        and_(
            a.outcome == "lost",
            *(not_(reason.contains(policy, autoescape=True)) for policy in SCHEDULER_POLICY),
        ),
        and_(
            a.outcome == "failed",
            a.exit_code.is_(None),
            func.upper(a.signal).in_(names),
            *(not_(reason.contains(policy, autoescape=True)) for policy in SCHEDULER_POLICY),
        ),
    )
