"""Adaptive search inside the daemon: proposals become pending trials as slots free up.

For a sweep whose ``[search] method`` is adaptive (not grid or random), ``submit``
creates no trials. Each scheduling pass, when the sweep has no pending trial, a free
slot under ``max_concurrent`` and fewer than ``samples`` trials, the sweep's searcher
is told about the trials that ended since it last looked and asked for the next ones;
they are inserted as pending, and the normal submission path runs them.

A searcher is rebuilt from the database on first use (after a restart), and whenever
the sweep row changed (``submit --extend``, or a ``relaunch``, whose trials will end with
new results that replace the old ones): ended trials are told in index order, the others
are reported as running. The database is the only record of the search.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection

from clusterd.daemon.store import FINAL_STATES, Store
from clusterd.search.base import Result, Searcher
from clusterd.spec.model import SweepSpec

__all__ = ["Proposer"]

log = logging.getLogger("clusterd.search")


class _State:
    def __init__(self, updated_at: float, searcher: Searcher, told: set[int]) -> None:
        self.updated_at = updated_at
        self.searcher = searcher
        self.told = told


class Proposer:
    """Per-sweep searchers, fed from the trials table."""

    def __init__(self, store: Store, methods: dict[str, type[Searcher]]) -> None:
        self.store = store
        self.methods = methods
        self._states: dict[int, _State] = {}

    def is_adaptive(self, spec: SweepSpec) -> bool:
        return spec.search.method not in ("grid", "random")

    def still_proposing(self, conn: Connection, sweep: Any, spec: SweepSpec) -> bool:
        """Whether an adaptive sweep has trials left to propose (so it is not done yet)."""
        if not self.is_adaptive(spec):
            return False
        return self.store.trial_count(conn, sweep.id) < (spec.search.samples or 0)

    def top_up(self, conn: Connection, sweep: Any, spec: SweepSpec, free: int) -> int:
        """Insert up to ``free`` proposed trials (in ``conn``'s transaction); how many."""
        if free <= 0 or not self.is_adaptive(spec):
            return 0
        total = self.store.trial_count(conn, sweep.id)
        room = min(free, (spec.search.samples or 0) - total)
        if room <= 0 or self.store.pending_trials(conn, sweep.id, 1):
            return 0
        state = self._state(conn, sweep, spec)
        if state is None:
            return 0
        self._tell_ended(conn, sweep, state)
        proposals: list[dict[str, Any]] = []
        for index in range(total, total + room):
            params = state.searcher.ask(index)
            if params is None:
                break  # the method waits for results (e.g. cem's next generation)
            proposals.append(params)
        if proposals:
            self.store.add_proposed_trials(conn, sweep, total, proposals)
        return len(proposals)

    def forget_all(self) -> None:
        """Drop every searcher: a transaction holding proposals rolled back, so their state
        may be ahead of the database (each is rebuilt from the DB on next use)."""
        self._states.clear()

    def _state(self, conn: Connection, sweep: Any, spec: SweepSpec) -> _State | None:
        state = self._states.get(sweep.id)
        if state is not None and state.updated_at == sweep.updated_at:
            return state
        cls = self.methods.get(spec.search.method)
        if cls is None:
            log.error("sweep %s: no search method named %r", sweep.name, spec.search.method)
            return None
        searcher = cls(spec)
        told: set[int] = set()
        for trial in self.store.trials(conn, sweep.id):
            if trial.state in FINAL_STATES:
                searcher.tell(_result(trial))
                told.add(trial.index)
            else:
                searcher.running(trial.index, trial.params)
        state = self._states[sweep.id] = _State(sweep.updated_at, searcher, told)
        return state

    def _tell_ended(self, conn: Connection, sweep: Any, state: _State) -> None:
        ended = [
            t
            for t in self.store.trials(conn, sweep.id)
            if t.state in FINAL_STATES and t.index not in state.told
        ]
        for trial in ended:
            state.searcher.tell(_result(trial))
            state.told.add(trial.index)


def _result(trial: Any) -> Result:
    return Result(
        index=trial.index,
        params=trial.params,
        value=trial.best_value,
        state=trial.state,
        step=trial.best_step,
    )
