"""Early stopping inside the daemon: one rule per sweep, fed as metrics are ingested.

A decision is recorded in the trial's ``stop_decision`` in the same transaction as the
metric rows that led to it; once that commits, a ``STOP`` marker is written in the live
attempt's directory (``trial.should_stop()`` turns true), and after the sweep's grace
period the scheduler terminates the attempt through its driver. Either way the attempt
ends with the trial ``stopped`` (``outcome.decide``), its metrics kept.

Rules hold their state in memory. After a restart it is rebuilt by replaying the
sweep's stored metric values in the order they were stored, which is the order the rule
first saw them, so the rebuilt rule is the rule that was lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from sqlalchemy import Connection

from clusterd.daemon.store import FINAL_STATES, Store
from clusterd.node import names
from clusterd.node.atomic import replace_at
from clusterd.spec.model import SweepSpec
from clusterd.stopping.base import StopRule

__all__ = ["DEFAULT_GRACE", "STOP_MARKER", "Stopper", "write_marker"]

log = logging.getLogger("clusterd.stopper")

#: seconds between a stop decision and terminating the attempt, unless the sweep says
DEFAULT_GRACE = 30.0
#: the marker file ``clusterd.trial.should_stop`` looks for in the attempt directory
STOP_MARKER = names.STOP


def write_marker(attempt_dir: str, decision: dict[str, Any]) -> None:
    """The ``STOP`` marker, holding the decision (for a curious user); best effort."""
    path = os.path.join(attempt_dir, STOP_MARKER)
    if os.path.exists(path):
        return
    try:
        # no fsync: after a crash the attempt is terminated or stopped again anyway
        replace_at(path, json.dumps(decision).encode(), fsync=False)
    except OSError as exc:  # the attempt is terminated after the grace period anyway
        log.warning("could not write %s: %s", path, exc)


class Stopper:
    """Per-sweep stop rules, built from the registry's classes and rebuilt on demand."""

    def __init__(self, store: Store, rules: dict[str, type[StopRule]]) -> None:
        self.store = store
        self.rules = rules
        self._by_sweep: dict[int, tuple[float, StopRule | None]] = {}

    @staticmethod
    def applies(sweep: Any) -> bool:
        """Whether the sweep has a rule and a metric to judge: read off the stored spec
        without parsing it, since ingestion asks for every sweep on every pass."""
        rule = (sweep.spec.get("early_stopping") or {}).get("rule", "none")
        return rule != "none" and bool(sweep.metric_name)

    @staticmethod
    def grace(spec: SweepSpec) -> float:
        return float(spec.early_stopping.options.get("grace_period", DEFAULT_GRACE))

    def rule(self, conn: Connection, sweep: Any, spec: SweepSpec) -> StopRule | None:
        """The sweep's rule (None without one), replayed from the database on first use
        and again whenever the sweep's spec changes (``submit --extend``)."""
        cached = self._by_sweep.get(sweep.id)
        if cached is not None and cached[0] == sweep.updated_at:
            return cached[1]
        rule = self._build(conn, sweep, spec)
        self._by_sweep[sweep.id] = (sweep.updated_at, rule)
        return rule

    def _build(self, conn: Connection, sweep: Any, spec: SweepSpec) -> StopRule | None:
        if not self.applies(sweep):
            return None
        name = spec.early_stopping.rule
        cls = self.rules.get(name)
        if cls is None:
            log.error(
                "sweep %s: no stop rule named %r is installed; not stopping", sweep.name, name
            )
            return None
        rule = cls(spec.early_stopping, sweep.metric_mode or "min")
        stopped = {
            t.index for t in self.store.trials(conn, sweep.id) if t.stop_decision is not None
        }
        started = time.perf_counter()
        count = 0
        for index, step, value in self.store.metric_stream(conn, sweep.id, sweep.metric_name):
            count += 1
            if rule.observe(index, step, value) is not None and index in stopped:
                rule.forget(index)  # where it was stopped the first time
        for index in stopped:
            rule.forget(index)  # stopped by hand, or by an earlier configuration
        if count:
            log.info(
                "sweep %s: %s rule rebuilt from %d values in %.0f ms",
                sweep.name,
                name,
                count,
                (time.perf_counter() - started) * 1000,
            )
        return rule

    def observe(
        self,
        conn: Connection,
        sweep: Any,
        spec: SweepSpec,
        trial_id: int,
        index: int,
        values: list[tuple[int, float]],
    ) -> dict[str, Any] | None:
        """Feed one attempt's newly ingested (step, value) pairs; a decision is recorded
        in ``conn``'s transaction and returned (the caller writes the marker after commit)."""
        rule = self.rule(conn, sweep, spec)
        if rule is None:
            return None
        for step, value in values:
            decision = rule.observe(index, step, value)
            if decision is None:
                continue
            rule.forget(index)
            trial = self.store.trial_by_id(conn, trial_id)
            if trial.stop_decision is not None or trial.state in FINAL_STATES:
                return None
            record = {**decision.as_dict(), "at": time.time(), "grace": self.grace(spec)}
            self.store.set_stop_decision(conn, trial, record)
            log.info("sweep %s: stopping trial %d: %s", sweep.name, index, decision.reason)
            return record
        return None

    def stop_by_hand(self, conn: Connection, sweep: Any, spec: SweepSpec, trial: Any) -> dict:
        """The user's stop: the same path as a rule's, recorded as rule "manual"."""
        record = {
            "rule": "manual",
            "step": trial.last_step,
            "value": trial.best_value,
            "threshold": None,
            "reason": "stopped by hand",
            "at": time.time(),
            "grace": self.grace(spec),
        }
        self.store.set_stop_decision(conn, trial, record)
        rule = self.rule(conn, sweep, spec)
        if rule is not None:
            rule.forget(trial.index)
        if trial.state == "pending":  # between attempts: nothing to terminate
            self.store.transition(conn, trial, "stopped", "stopped by hand")
        return record
