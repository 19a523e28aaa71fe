"""All SQL of the daemon: reads for the handlers, writes for the scheduler.

Every state change of a trial goes through ``transition``, which updates the
row and appends to the transition log in the caller's transaction. Changes are
collected while a transaction runs and published (to subscribers) only after it
commits, so a client never sees a change that was rolled back.

Bulk paths (creating 10,000 trials, ingesting metrics) use Core ``executemany``;
the ORM models serve as the table definitions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)

from clusterd.daemon import db
from clusterd.daemon.hostfail import host_failure_clause
from clusterd.daemon.models import (
    Attempt,
    Checkpoint,
    GpuSample,
    Meta,
    Metric,
    MetricSummary,
    Sweep,
    Transition,
    Trial,
    TrialError,
)
from clusterd.errors import Conflict, NotFound

__all__ = ["BEST_STATES", "FINAL_STATES", "LIVE_STATES", "TRIAL_STATES", "Store", "hosts_over"]

TRIAL_STATES = ("pending", "queued", "running", "completed", "failed", "cancelled", "stopped")
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "stopped"})
LIVE_STATES = frozenset({"queued", "running"})
#: The trials whose values count for a sweep's "best" (``sweeps``'s best column and
#: ``best`` without ``--all``): those that ran to the end. A stopped trial was cut short
#: by a rule (or by hand), a cancelled or failed one never finished: their values are
#: shown with the trial but do not make a sweep's best.
BEST_STATES = frozenset({"completed"})

S = cast(Table, Sweep.__table__)
T = cast(Table, Trial.__table__)
A = cast(Table, Attempt.__table__)
M = cast(Table, Metric.__table__)
MS = cast(Table, MetricSummary.__table__)
C = cast(Table, Checkpoint.__table__)
G = cast(Table, GpuSample.__table__)
X = cast(Table, Transition.__table__)
E = cast(Table, TrialError.__table__)
MT = cast(Table, Meta.__table__)

#: a sweep row without ``repro`` (git diff, pip freeze: kilobytes of JSON per sweep), for
#: the lists read on every request and every scheduling pass; launches read it alone
SWEEP_LIST_COLUMNS = tuple(c for c in S.c if c.name != "repro")

#: Statements of the per-trial path (every launch, start and end of an attempt), built
#: once. Building one per call costs more than running it: ~90 µs against ~22 µs for a
#: prebuilt UPDATE or SELECT by id on SQLite (SQLAlchemy's construction and cache key),
#: and a trivial trial runs about twenty. An UPDATE without ``values()`` sets the columns
#: named in its execute parameters, so the ``_columns`` check below guards their names.
_UPDATE_ATTEMPT = update(A).where(A.c.id == bindparam("b_id"))
_UPDATE_TRIAL = update(T).where(T.c.id == bindparam("b_id"))
_INSERT_TRANSITION = insert(X)
_TRIAL_BY_ID = select(T).where(T.c.id == bindparam("b_id"))
_LIVE_COUNT = (
    select(func.count())
    .select_from(T)
    .where(T.c.sweep_id == bindparam("b_sweep"), T.c.state.in_(sorted(LIVE_STATES)))
)
_PENDING_TRIALS = (
    select(T)
    .where(T.c.sweep_id == bindparam("b_sweep"), T.c.state == "pending")
    .order_by(T.c.index)
    .limit(bindparam("b_limit"))
)
_UNFINISHED_PROBE = (
    select(T.c.id)
    .where(T.c.sweep_id == bindparam("b_sweep"), T.c.state.in_(("pending", "queued", "running")))
    .limit(1)
)
_LIVE_ATTEMPTS = (
    select(A, T.c.sweep_id, T.c.index, T.c.state.label("trial_state"), T.c.stop_decision)
    .join(T, A.c.trial_id == T.c.id)
    .where(A.c.state != "ended")
    .order_by(A.c.id)
)
_ATTEMPT_HAS_CHECKPOINT = (
    select(C.c.id)
    .where(C.c.trial_id == bindparam("b_trial"), C.c.attempt == bindparam("b_attempt"))
    .limit(1)
)
_ACTIVE_SWEEPS = select(*SWEEP_LIST_COLUMNS).where(S.c.state == "active").order_by(S.c.id)
_HOST_FAILURES = (
    select(T.c.sweep_id, A.c.host, func.count())
    .join(T, A.c.trial_id == T.c.id)
    .where(
        A.c.outcome.in_(("failed", "lost")),  # (ix_attempts_outcome) then the host rule
        host_failure_clause(A),
        A.c.host.is_not(None),
    )
    .group_by(T.c.sweep_id, A.c.host)
)
# "+ 0": SQLite would otherwise walk every trial of the sweep and its attempts; this way
# it reads the few failed attempts off ix_attempts_outcome (5 ms -> 0.1 ms at 10,000
# trials). PostgreSQL plans it by its statistics either way.
_SWEEP_HOST_FAILURES = _HOST_FAILURES.where(T.c.sweep_id + 0 == bindparam("b_sweep"))
_ATTEMPT_COLUMNS = frozenset(A.c.keys())
_TRIAL_COLUMNS = frozenset(T.c.keys())


def _columns(table: frozenset[str], values: dict[str, Any], what: str) -> dict[str, Any]:
    """``values`` if every key names a column (a prebuilt UPDATE would drop a misspelt one
    silently); a programming error otherwise."""
    unknown = values.keys() - table
    if unknown:
        raise ValueError(f"no such {what} column: {', '.join(sorted(unknown))}")
    return values


Change = dict[str, Any]


class Store:
    """The daemon's view of the database.

    Used from several threads (the scheduler's, the request handlers' workers): each
    thread's transaction collects its own changes, and listeners are called in the
    thread that committed (the daemon hops them onto its event loop).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._listeners: list[Callable[[list[Change]], None]] = []
        self._local = threading.local()

    @property
    def _changes(self) -> list[Change]:
        """The changes of the current thread's transaction (published after commit)."""
        changes = getattr(self._local, "changes", None)
        if changes is None:
            changes = self._local.changes = []
        return changes

    # -- plumbing -------------------------------------------------------------

    def on_change(self, listener: Callable[[list[Change]], None]) -> None:
        self._listeners.append(listener)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction; its changes are published after it commits."""
        self._local.changes = []
        try:
            with db.transaction(self.engine) as conn:
                yield conn
            changes = self._changes
        finally:
            self._local.changes = []
        if changes:
            for listener in self._listeners:
                listener(changes)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction; storage failures (a corrupt or unreachable database)
        become the StorageError that ``tx`` gives, not an 'internal error'."""
        with db.transaction(self.engine, write=False) as conn:
            yield conn

    def transition(
        self,
        conn: Connection,
        trial: Any,
        to_state: str,
        reason: str | None = None,
        attempt: int | None = None,
        **fields: Any,
    ) -> None:
        """Move a trial to ``to_state`` and log it, in the caller's transaction."""
        if trial.state == to_state and not fields:
            return
        now = time.time()
        changes = _columns(_TRIAL_COLUMNS, fields, "trial")
        conn.execute(
            _UPDATE_TRIAL,
            {"b_id": trial.id, **changes, "state": to_state, "reason": reason, "updated_at": now},
        )
        conn.execute(
            _INSERT_TRANSITION,
            {
                "sweep_id": trial.sweep_id,
                "trial_id": trial.id,
                "attempt": attempt,
                "from_state": trial.state,
                "to_state": to_state,
                "reason": reason,
                "t": now,
            },
        )
        self._changes.append(
            {
                "type": "trial",
                "sweep_id": trial.sweep_id,
                "index": trial.index,
                "from": trial.state,
                "state": to_state,
                "reason": reason,
                "t": now,
            }
        )

    # -- sweeps ---------------------------------------------------------------

    def sweep_by_name(self, conn: Connection, name: str) -> Any:
        return conn.execute(select(S).where(S.c.name == name)).first()

    def require_sweep(self, conn: Connection, name: str, *, trashed: bool = False) -> Any:
        """The sweep named ``name``; one in the trash (``rm --trash``) only if ``trashed``:
        everywhere else it is hidden, and the error says how to bring it back."""
        row = self.sweep_by_name(conn, name)
        if row is not None and row.trashed_at is not None and not trashed:
            raise NotFound(
                f"sweep {name!r} is in the trash; `clusterctl restore {name}` brings it "
                f"back, `clusterctl rm {name}` deletes it for good"
            )
        if row is None:
            q = select(S.c.name).where(S.c.trashed_at.is_(None)).order_by(S.c.name).limit(20)
            known = conn.execute(q).scalars().all()
            hint = f" (sweeps: {', '.join(known)})" if known else " (no sweeps yet)"
            raise NotFound(f"no sweep named {name!r}{hint}")
        return row

    def sweep_by_id(self, conn: Connection, sweep_id: int) -> Any:
        return conn.execute(select(S).where(S.c.id == sweep_id)).first()

    def create_sweep(
        self,
        spec: dict[str, Any],
        trials: Sequence[tuple[dict[str, Any], str]],
        repro: dict[str, Any] | None,
        uid: str | None = None,
    ) -> int:
        """Persist a sweep and all its trials (pending) in one transaction; ``uid`` is the
        random identity its output directory's marker names (``daemon.outputs``)."""
        now = time.time()
        metric = spec.get("metric") or {}
        with self.tx() as conn:
            if self.sweep_by_name(conn, spec["name"]) is not None:
                raise Conflict(
                    f"a sweep named {spec['name']!r} exists; use `clusterctl submit --extend` "
                    "to add new trials to it, or `clusterctl rm` it first"
                )
            sweep_id = conn.execute(  # type: ignore[index]
                insert(S).values(
                    name=spec["name"],
                    driver=spec["driver"],
                    state="active",
                    spec=spec,
                    source=spec["source"],
                    output_dir=spec["output_dir"],
                    metric_name=metric.get("name"),
                    metric_mode=metric.get("mode"),
                    repro=repro,
                    uid=uid,
                    group=spec.get("group"),
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            self._insert_trials(conn, sweep_id, 0, trials, now)
            self._changes.append({"type": "sweep", "name": spec["name"], "state": "active"})
        return int(sweep_id)

    def extend_sweep(
        self, name: str, spec: dict[str, Any], trials: Sequence[tuple[dict[str, Any], str]]
    ) -> tuple[int, int]:
        """Add the trials whose params are new; return (added, already present)."""
        now = time.time()
        with self.tx() as conn:
            sweep = self.require_sweep(conn, name)
            known = set(
                conn.execute(select(T.c.params_key).where(T.c.sweep_id == sweep.id)).scalars()
            )
            new = [(p, k) for p, k in trials if k not in known]
            start = conn.execute(
                select(func.coalesce(func.max(T.c.index), -1)).where(T.c.sweep_id == sweep.id)
            ).scalar_one()
            self._insert_trials(conn, sweep.id, int(start) + 1, new, now)
            conn.execute(
                update(S)
                .where(S.c.id == sweep.id)
                .values(spec=spec, state="active", updated_at=now)
            )
            self._changes.append({"type": "sweep", "name": name, "state": "active"})
        return len(new), len(trials) - len(new)

    def _insert_trials(
        self,
        conn: Connection,
        sweep_id: int,
        first_index: int,
        trials: Sequence[tuple[dict[str, Any], str]],
        now: float,
    ) -> None:
        if not trials:
            return
        rows = [
            {
                "sweep_id": sweep_id,
                "index": first_index + i,
                "params": params,
                "params_key": key,
                "state": "pending",
                "attempts": 0,
                "failures": 0,
                "resumes": 0,
                "created_at": now,
                "updated_at": now,
            }
            for i, (params, key) in enumerate(trials)
        ]
        conn.execute(insert(T), rows)
        conn.execute(
            insert(X).from_select(
                ["sweep_id", "trial_id", "from_state", "to_state", "reason", "t"],
                select(
                    T.c.sweep_id,
                    T.c.id,
                    null(),
                    T.c.state,
                    literal("submitted"),
                    T.c.created_at,
                ).where(and_(T.c.sweep_id == sweep_id, T.c.index >= first_index)),
            )
        )

    def sweep_by_uid(self, conn: Connection, uid: str) -> Any:
        """The sweep an output directory's marker names, None if it was removed."""
        return conn.execute(select(*SWEEP_LIST_COLUMNS).where(S.c.uid == uid)).first()

    def database_id(self) -> str:
        """This database's random identity (migration 0003 writes it; a schema made by
        ``create_all`` gets one on first use). Cached: it never changes."""
        cached: str | None = getattr(self, "_database_id", None)
        if cached is not None:
            return cached
        with self.read() as conn:
            value = conn.execute(select(MT.c.value).where(MT.c.key == "database_id")).scalar()
        if value is None:
            import secrets

            with self.tx() as conn:
                value = conn.execute(select(MT.c.value).where(MT.c.key == "database_id")).scalar()
                if value is None:
                    value = secrets.token_hex(16)
                    conn.execute(insert(MT).values(key="database_id", value=value))
        self._database_id = str(value)
        return self._database_id

    def last_attempt_code(
        self, conn: Connection, sweep_id: int
    ) -> dict[int, tuple[str | None, bool | None]]:
        """Per trial index, the commit and dirty flag its last attempt ran (``export``)."""
        q = (
            select(T.c.index, A.c.code_commit, A.c.code_dirty)
            .join(A, and_(A.c.trial_id == T.c.id, A.c.number == T.c.attempts))
            .where(T.c.sweep_id == sweep_id)
        )
        return {index: (commit, dirty) for index, commit, dirty in conn.execute(q)}

    def sweep_counts(self, conn: Connection) -> dict[int, dict[str, int]]:
        counts: dict[int, dict[str, int]] = {}
        rows = conn.execute(
            select(T.c.sweep_id, T.c.state, func.count()).group_by(T.c.sweep_id, T.c.state)
        )
        for sweep_id, state, n in rows:
            counts.setdefault(sweep_id, {})[state] = n
        return counts

    def list_sweeps(self, conn: Connection) -> list[Any]:
        """Every sweep, without ``repro`` (see ``SWEEP_LIST_COLUMNS``)."""
        return list(conn.execute(select(*SWEEP_LIST_COLUMNS).order_by(S.c.created_at)))

    def scheduling_sweeps(self, conn: Connection, live_ids: set[int]) -> list[Any]:
        """What a scheduling pass needs: the active sweeps and those with live attempts
        (a cancelled sweep's attempts are still ending); finished ones are never read."""
        where = S.c.state == "active"
        if live_ids:
            where = or_(where, S.c.id.in_(live_ids))
        return list(conn.execute(select(*SWEEP_LIST_COLUMNS).where(where).order_by(S.c.id)))

    def sweep_repro(self, conn: Connection, sweep_id: int) -> dict[str, Any]:
        repro = conn.execute(select(S.c.repro).where(S.c.id == sweep_id)).scalar()
        return repro or {}

    def best_values(self, conn: Connection) -> dict[int, float]:
        """The best metric value per sweep over all trials (by each sweep's mode)."""
        best: dict[int, float] = {}
        q = select(T.c.sweep_id, func.min(T.c.best_value), func.max(T.c.best_value)).group_by(
            T.c.sweep_id
        )
        modes = dict(conn.execute(select(S.c.id, S.c.metric_mode)).all())
        for sweep_id, lo, hi in conn.execute(q):
            value = hi if modes.get(sweep_id) == "max" else lo
            if value is not None:
                best[sweep_id] = value
        return best

    def best_counted_values(self, conn: Connection) -> dict[int, float]:
        """The best value of its ``[metric]`` per sweep over the trials that count for
        "best" (``BEST_STATES``: what ``clusterctl best`` ranks without ``--all``)."""
        best: dict[int, float] = {}
        q = (
            select(T.c.sweep_id, func.min(T.c.best_value), func.max(T.c.best_value))
            .where(T.c.state.in_(sorted(BEST_STATES)))
            .group_by(T.c.sweep_id)
        )
        modes = dict(conn.execute(select(S.c.id, S.c.metric_mode)).all())
        for sweep_id, lo, hi in conn.execute(q):
            value = hi if modes.get(sweep_id) == "max" else lo
            if value is not None:
                best[sweep_id] = value
        return best

    def relaunch_marks(
        self, conn: Connection, sweep_ids: Sequence[int]
    ) -> dict[int, tuple[float, int]]:
        """Per sweep relaunched at some point: (when it was last relaunched, how many trials
        have finished since) -- the ETA counts only the relaunched trials' pace."""
        if not sweep_ids:
            return {}
        q = (
            select(X.c.sweep_id, func.max(X.c.t))
            .where(X.c.sweep_id.in_(list(sweep_ids)), X.c.reason == "relaunched")
            .group_by(X.c.sweep_id)
        )
        marks = {sid: float(t) for sid, t in conn.execute(q) if t is not None}
        out: dict[int, tuple[float, int]] = {}
        for sid, since in marks.items():
            done = conn.execute(
                select(func.count())
                .select_from(T)
                .where(
                    T.c.sweep_id == sid,
                    T.c.state.in_(sorted(FINAL_STATES)),
                    T.c.updated_at >= since,
                )
            ).scalar_one()
            out[sid] = (since, int(done))
        return out

    def set_sweep_state(self, conn: Connection, sweep: Any, state: str) -> None:
        conn.execute(
            update(S).where(S.c.id == sweep.id).values(state=state, updated_at=time.time())
        )
        self._changes.append({"type": "sweep", "name": sweep.name, "state": state})

    def delete_sweep(self, name: str, *, trashed: bool = False) -> Any:
        with self.tx() as conn:
            sweep = self.require_sweep(conn, name, trashed=trashed)
            live = conn.execute(
                select(func.count())
                .select_from(T)
                .where(T.c.sweep_id == sweep.id, T.c.state.in_(LIVE_STATES))
            ).scalar_one()
            if live:
                raise Conflict(
                    f"sweep {name!r} has {live} queued or running trial(s); "
                    f"run `clusterctl cancel {name}` first"
                )
            trial_ids = select(T.c.id).where(T.c.sweep_id == sweep.id).scalar_subquery()
            for table in (MS, M, C, G, E, A):
                conn.execute(delete(table).where(table.c.trial_id.in_(trial_ids)))
            conn.execute(delete(X).where(X.c.sweep_id == sweep.id))
            conn.execute(delete(T).where(T.c.sweep_id == sweep.id))
            conn.execute(delete(S).where(S.c.id == sweep.id))
            self._changes.append({"type": "sweep", "name": name, "state": "removed"})
        return sweep

    # -- trials ---------------------------------------------------------------

    def trials(self, conn: Connection, sweep_id: int, state: str | None = None) -> list[Any]:
        q = select(T).where(T.c.sweep_id == sweep_id)
        if state:
            q = q.where(T.c.state == state)
        return list(conn.execute(q.order_by(T.c.index)))

    def trial_columns(
        self, conn: Connection, sweep_id: int, columns: Sequence[str], state: str | None = None
    ) -> list[Any]:
        """Only ``columns`` of a sweep's trials, in index order: lists of thousands of
        trials skip the columns (and JSON decoding) they do not show."""
        q = select(*(T.c[c] for c in columns)).where(T.c.sweep_id == sweep_id)
        if state:
            q = q.where(T.c.state == state)
        return list(conn.execute(q.order_by(T.c.index)))

    def trial(self, conn: Connection, sweep: Any, index: int) -> Any:
        row = conn.execute(select(T).where(T.c.sweep_id == sweep.id, T.c.index == index)).first()
        if row is None:
            raise NotFound(f"sweep {sweep.name!r} has no trial {index}")
        return row

    def attempts(self, conn: Connection, trial_id: int) -> list[Any]:
        return list(conn.execute(select(A).where(A.c.trial_id == trial_id).order_by(A.c.number)))

    def transitions(self, conn: Connection, trial_id: int) -> list[Any]:
        return list(conn.execute(select(X).where(X.c.trial_id == trial_id).order_by(X.c.id)))

    def checkpoints(self, conn: Connection, trial_id: int) -> list[Any]:
        return list(conn.execute(select(C).where(C.c.trial_id == trial_id).order_by(C.c.id)))

    def trial_errors(self, conn: Connection, trial_id: int, limit: int = 20) -> list[Any]:
        q = select(E).where(E.c.trial_id == trial_id).order_by(E.c.id.desc()).limit(limit)
        return list(reversed(list(conn.execute(q))))

    def last_metrics(self, conn: Connection, trial_id: int) -> dict[str, dict[str, float]]:
        """The last value of every metric name the trial reported: {name: {step, value}}."""
        last = (
            select(M.c.name, func.max(M.c.id).label("id"))
            .where(M.c.trial_id == trial_id)
            .group_by(M.c.name)
            .subquery()
        )
        rows = conn.execute(select(M.c.name, M.c.step, M.c.value).join(last, M.c.id == last.c.id))
        return {name: {"step": step, "value": value} for name, step, value in rows}

    def metric_summaries(
        self,
        conn: Connection,
        sweep_id: int,
        state: str | None = None,
        index: int | None = None,
        indices: Sequence[int] | None = None,
        name: str | None = None,
    ) -> dict[int, dict[str, tuple[float, int, float, float]]]:
        """Every metric each trial reported: {index: {name: (last value, its step, lowest,
        highest)}}, in ONE query for the whole sweep (``trials``, ``export``, ``best``,
        ``show``: never one query per trial). "last" is the latest value stored (of any
        attempt); the caller picks lowest or highest by the metric's own direction.
        ``state``, ``index``, ``indices`` and ``name`` narrow it. Reads the summaries
        ``add_metrics`` keeps: one row per trial and metric, however many values."""
        q = (
            select(T.c.index, MS.c.name, MS.c.last_value, MS.c.last_step, MS.c.lowest, MS.c.highest)
            .join(T, T.c.id == MS.c.trial_id)
            .where(T.c.sweep_id == sweep_id)
        )
        if state:
            q = q.where(T.c.state == state)
        if index is not None:
            q = q.where(T.c.index == index)
        if indices is not None:
            q = q.where(T.c.index.in_(list(indices)))
        if name is not None:
            q = q.where(MS.c.name == name)
        out: dict[int, dict[str, tuple[float, int, float, float]]] = {}
        for idx, metric, value, step, lo, hi in conn.execute(q):
            out.setdefault(idx, {})[metric] = (value, step, lo, hi)
        return out

    def metric_values_of(
        self, conn: Connection, trial_ids: Sequence[int], name: str
    ) -> list[tuple[int, int, float]]:
        """(trial id, step, value) of every ``name`` value the trials reported, in report
        order (``best --by``: the step where each ranked trial had its best)."""
        if not trial_ids:
            return []
        q = (
            select(M.c.trial_id, M.c.step, M.c.value)
            .where(M.c.trial_id.in_(list(trial_ids)), M.c.name == name)
            .order_by(M.c.id)
        )
        return [(int(t), int(s), float(v)) for t, s, v in conn.execute(q)]

    def metric_names(self, conn: Connection, sweep_id: int) -> list[str]:
        """The names of every metric the sweep's trials reported, sorted."""
        q = (
            select(MS.c.name)
            .join(T, T.c.id == MS.c.trial_id)
            .where(T.c.sweep_id == sweep_id)
            .distinct()
            .order_by(MS.c.name)
        )
        return list(conn.execute(q).scalars())

    def best_metric_trial(
        self, conn: Connection, sweep_id: int, name: str, mode: str, states: Sequence[str] = ()
    ) -> Any:
        """(trial id, index, value) of the trial holding the best value of ``name`` in the
        sweep, in ``mode``'s direction (``states``: only trials in those), or None."""
        order = M.c.value.desc() if mode == "max" else M.c.value.asc()
        q = (
            select(T.c.id, T.c.index, M.c.value)
            .join(T, T.c.id == M.c.trial_id)
            .where(T.c.sweep_id == sweep_id, M.c.name == name)
            .order_by(order, T.c.index)
            .limit(1)
        )
        if states:
            q = q.where(T.c.state.in_(list(states)))
        return conn.execute(q).first()

    def metric_history(self, conn: Connection, trial_id: int, name: str) -> list[tuple[int, float]]:
        q = select(M.c.step, M.c.value).where(M.c.trial_id == trial_id, M.c.name == name)
        return [(s, v) for s, v in conn.execute(q.order_by(M.c.id))]

    def set_trials_state(
        self, conn: Connection, trials: Sequence[Any], state: str, reason: str
    ) -> None:
        """Move many trials at once: one UPDATE and one INSERT, whatever their number."""
        if not trials:
            return
        now = time.time()
        ids = [t.id for t in trials]
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            conn.execute(
                update(T).where(T.c.id.in_(part)).values(state=state, reason=reason, updated_at=now)
            )
        conn.execute(
            insert(X),
            [
                {
                    "sweep_id": t.sweep_id,
                    "trial_id": t.id,
                    "attempt": None,
                    "from_state": t.state,
                    "to_state": state,
                    "reason": reason,
                    "t": now,
                }
                for t in trials
            ],
        )
        self._changes.extend(
            {
                "type": "trial",
                "sweep_id": t.sweep_id,
                "index": t.index,
                "from": t.state,
                "state": state,
                "reason": reason,
                "t": now,
            }
            for t in trials
        )

    # -- scheduling -----------------------------------------------------------

    def active_sweeps(self, conn: Connection) -> list[Any]:
        """Active sweeps without ``repro``: every pass reads them to see which are done."""
        return list(conn.execute(_ACTIVE_SWEEPS))

    def live_count(self, conn: Connection, sweep_id: int) -> int:
        return int(conn.execute(_LIVE_COUNT, {"b_sweep": sweep_id}).scalar_one())

    def pending_trials(self, conn: Connection, sweep_id: int, limit: int) -> list[Any]:
        return list(conn.execute(_PENDING_TRIALS, {"b_sweep": sweep_id, "b_limit": limit}))

    def has_unfinished(self, conn: Connection, sweep_id: int) -> bool:
        """Whether any trial can still run (an indexed probe, not a count: every pass asks)."""
        return conn.execute(_UNFINISHED_PROBE, {"b_sweep": sweep_id}).first() is not None

    def live_attempts(self, conn: Connection, sweep_id: int | None = None) -> list[Any]:
        """Attempts not yet ended, joined with their trial's index, sweep, state and stop
        decision (a cleared decision reads back as None: it is stored as JSON null)."""
        q = _LIVE_ATTEMPTS if sweep_id is None else _LIVE_ATTEMPTS.where(T.c.sweep_id == sweep_id)
        return list(conn.execute(q))

    def trial_by_id(self, conn: Connection, trial_id: int) -> Any:
        return conn.execute(_TRIAL_BY_ID, {"b_id": trial_id}).one()

    def add_attempts(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Write-ahead: attempts exist (state submitting) before the driver is called."""
        if rows:
            conn.execute(insert(A), list(rows))

    def attempt_ids(self, conn: Connection, tokens: Sequence[str]) -> dict[str, int]:
        """Attempt ids by token (a driver answers by token)."""
        q = select(A.c.token, A.c.id).where(A.c.token.in_(list(tokens)))
        return {token: attempt_id for token, attempt_id in conn.execute(q)}

    def has_checkpoint(self, conn: Connection, trial_id: int, attempt: int) -> bool:
        """Whether the attempt reported a checkpoint (an ended attempt may resume from it)."""
        params = {"b_trial": trial_id, "b_attempt": attempt}
        return conn.execute(_ATTEMPT_HAS_CHECKPOINT, params).first() is not None

    def update_attempt(self, conn: Connection, attempt_id: int, **values: Any) -> None:
        conn.execute(
            _UPDATE_ATTEMPT, {**_columns(_ATTEMPT_COLUMNS, values, "attempt"), "b_id": attempt_id}
        )

    # -- ingestion ------------------------------------------------------------

    def add_metrics(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Store metric values (in ``rows``' order: it is their arrival order) and fold them
        into ``metric_summaries`` in the same transaction: one upsert for the batch, one
        row per (trial, name) it touches."""
        if not rows:
            return
        conn.execute(insert(M), list(rows))
        conn.execute(_summary_upsert(conn.dialect.name), _summaries_of(rows))

    def add_checkpoints(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(insert(C), list(rows))

    def add_gpu_samples(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(insert(G), list(rows))

    def add_trial_errors(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(insert(E), list(rows))

    def update_trial_progress(self, conn: Connection, trial_id: int, **values: Any) -> None:
        conn.execute(_UPDATE_TRIAL, {**_columns(_TRIAL_COLUMNS, values, "trial"), "b_id": trial_id})

    def lineage(self, conn: Connection, trial_id: int, number: int) -> list[tuple[int, int | None]]:
        """The attempts whose metrics count for attempt ``number``'s result, as (attempt,
        last step that counts; None: every step), newest first (docs/runtime.md).

        An attempt resumes from the newest checkpoint recorded before it (what
        ``checkpoints/LATEST.json`` holds): the last one, in file order, of the latest
        earlier attempt that recorded any. Its values up to that checkpoint's step count,
        and so on back; an attempt with no checkpoint before it started from scratch and
        ends the lineage, so the attempts before it count for nothing."""
        last = (
            select(func.max(C.c.id).label("id"))
            .where(C.c.trial_id == trial_id, C.c.attempt < number)
            .group_by(C.c.attempt)
            .subquery()
        )
        rows = conn.execute(
            select(C.c.attempt, C.c.step).join(last, C.c.id == last.c.id).order_by(C.c.attempt)
        ).all()
        segments: list[tuple[int, int | None]] = [(number, None)]
        limit: int | None = None
        for attempt, step in reversed(rows):  # each attempt's base: the latest one before it
            if attempt >= segments[-1][0]:
                continue
            limit = step if limit is None else min(limit, step)
            segments.append((attempt, limit))
        return segments

    def lineage_best(
        self, conn: Connection, trial_id: int, number: int, name: str, mode: str | None
    ) -> tuple[float, int] | None:
        """(value, step) of the best ``name`` over attempt ``number``'s lineage: the first
        in report order among equals, as the scheduler's running best keeps it."""
        parts = [
            and_(M.c.attempt == a, M.c.step <= k) if k is not None else M.c.attempt == a
            for a, k in self.lineage(conn, trial_id, number)
        ]
        order = M.c.value.desc() if mode == "max" else M.c.value.asc()
        q = (
            select(M.c.value, M.c.step)
            .where(M.c.trial_id == trial_id, M.c.name == name, or_(*parts))
            .order_by(order, M.c.attempt, M.c.id)
            .limit(1)
        )
        row = conn.execute(q).first()
        return (row[0], row[1]) if row is not None else None

    def attempt_last_step(self, conn: Connection, trial_id: int, number: int) -> int | None:
        """The highest step an attempt reported (any metric), None before its first."""
        q = select(func.max(M.c.step)).where(M.c.trial_id == trial_id, M.c.attempt == number)
        return conn.execute(q).scalar()

    def has_trial_error(self, conn: Connection, trial_id: int, attempt: int, prefix: str) -> bool:
        """Whether the attempt already has an error starting with ``prefix`` (said once)."""
        q = (
            select(E.c.id)
            .where(
                E.c.trial_id == trial_id,
                E.c.attempt == attempt,
                E.c.message.startswith(prefix, autoescape=True),
            )
            .limit(1)
        )
        return conn.execute(q).first() is not None

    def publish(self, change: Change) -> None:
        """Queue a change that is not a state transition (progress) for this transaction."""
        self._changes.append(change)

    # -- early stopping and adaptive search -----------------------------------

    def set_stop_decision(self, conn: Connection, trial: Any, decision: dict[str, Any]) -> None:
        """Record why a trial is being stopped; the trial and the TUI learn of it now, the
        attempt ends after the grace period (``Scheduler._enforce_stops``)."""
        conn.execute(
            update(T)
            .where(T.c.id == trial.id)
            .values(stop_decision=decision, updated_at=time.time())
        )
        self._changes.append(
            {
                "type": "stop",
                "sweep_id": trial.sweep_id,
                "index": trial.index,
                "decision": decision,
            }
        )

    def metric_stream(
        self, conn: Connection, sweep_id: int, name: str
    ) -> Iterator[tuple[int, int, float]]:
        """(trial index, step, value) of one metric in the order the daemon stored them:
        what a stop rule saw, replayed to rebuild it after a restart."""
        q = (
            select(T.c.index, M.c.step, M.c.value)
            .join(T, M.c.trial_id == T.c.id)
            .where(T.c.sweep_id == sweep_id, M.c.name == name)
            .order_by(M.c.id)
        )
        for index, step, value in conn.execute(q):
            yield int(index), int(step), float(value)

    def trial_count(self, conn: Connection, sweep_id: int) -> int:
        q = select(func.count()).select_from(T).where(T.c.sweep_id == sweep_id)
        return int(conn.execute(q).scalar_one())

    def add_proposed_trials(
        self, conn: Connection, sweep: Any, first_index: int, params: Sequence[dict[str, Any]]
    ) -> None:
        """Trials an adaptive search method proposed, appended as pending."""
        from clusterd.spec.expand import params_key

        self._insert_trials(
            conn, sweep.id, first_index, [(p, params_key(p)) for p in params], time.time()
        )
        self._changes.append({"type": "sweep", "name": sweep.name, "state": sweep.state})

    # -- reports --------------------------------------------------------------

    def counts(self, conn: Connection) -> dict[str, int]:
        sweeps = conn.execute(select(func.count()).select_from(S)).scalar_one()
        by_state: dict[str, int] = dict(
            conn.execute(select(T.c.state, func.count()).group_by(T.c.state)).all()
        )
        return {"sweeps": int(sweeps), "trials": int(sum(by_state.values())), **by_state}

    def runtimes(self, conn: Connection, sweep_id: int) -> dict[int, float]:
        """Seconds each trial has run, over all its attempts (ended or still running)."""
        now = time.time()
        q = (
            select(T.c.index, A.c.started_at, A.c.ended_at)
            .join(T, A.c.trial_id == T.c.id)
            .where(T.c.sweep_id == sweep_id, A.c.started_at.is_not(None))
        )
        out: dict[int, float] = {}
        for index, started, ended in conn.execute(q):
            out[index] = out.get(index, 0.0) + max(0.0, (ended or now) - started)
        return out

    def relaunch(self, name: str, states: Sequence[str]) -> int:
        """Send final trials in ``states`` back to pending, with fresh failure counts."""
        with self.tx() as conn:
            sweep = self.require_sweep(conn, name)
            trials = [t for t in self.trials(conn, sweep.id) if t.state in states]
            for trial in trials:
                self.transition(
                    conn, trial, "pending", "relaunched", failures=0, resumes=0, stop_decision=None
                )
            if trials:
                self.set_sweep_state(conn, sweep, "active")
        return len(trials)

    def failure_streaks(
        self, conn: Connection, trial_ids: Sequence[int]
    ) -> dict[int, tuple[int, float | None]]:
        """Per trial: how many of its last attempts in a row were genuine failures (not
        resumes), and when the last one ended -- the crash-loop backoff's inputs."""
        out: dict[int, tuple[int, float | None]] = {}
        for chunk in range(0, len(trial_ids), 500):
            part = list(trial_ids[chunk : chunk + 500])
            q = (
                select(A.c.trial_id, A.c.outcome, A.c.reason, A.c.ended_at)
                .where(A.c.trial_id.in_(part), A.c.state == "ended")
                .order_by(A.c.trial_id, A.c.number.desc())
            )
            closed: set[int] = set()
            for trial_id, outcome, reason, ended_at in conn.execute(q):
                streak, last = out.get(trial_id, (0, ended_at))
                if trial_id in closed:
                    continue
                failed = outcome in ("failed", "lost", "timeout") and "resuming" not in (
                    reason or ""
                )
                if failed:
                    out[trial_id] = (streak + 1, last)
                else:
                    out.setdefault(trial_id, (0, last))
                    closed.add(trial_id)
        return out

    def failing_hosts(self, conn: Connection, sweep_id: int, threshold: int) -> dict[str, int]:
        """Hosts with at least ``threshold`` attempts of this sweep that failed because of
        the host (``hostfail``: signals from outside, lost jobs; never exit codes)."""
        if threshold <= 0:
            return {}
        return hosts_over(self.host_failures(conn, sweep_id).get(sweep_id, {}), threshold)

    def host_failures(
        self, conn: Connection, sweep_id: int | None = None
    ) -> dict[int, dict[str, int]]:
        """Failed or lost attempts per sweep and host (one sweep's, or every sweep's in one
        query: ``sweeps`` used to ask once per sweep, each a scan of every failed attempt)."""
        if sweep_id is None:
            rows = conn.execute(_HOST_FAILURES)
        else:
            rows = conn.execute(_SWEEP_HOST_FAILURES, {"b_sweep": sweep_id})
        out: dict[int, dict[str, int]] = {}
        for sid, host, n in rows:
            out.setdefault(sid, {})[host] = int(n)
        return out

    def update_repro(self, name: str, extra: dict[str, Any]) -> None:
        """Merge late reproducibility facts (pip freeze) into a sweep, if it still exists."""
        with self.tx() as conn:
            sweep = self.sweep_by_name(conn, name)
            if sweep is not None:
                merged = {**(sweep.repro or {}), **extra}
                conn.execute(update(S).where(S.c.id == sweep.id).values(repro=merged))


def _summaries_of(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (trial, name) of a batch of metric rows: the last row in batch
    order (the latest stored), the lowest and highest value, how many."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        value = row["value"]
        key = (row["trial_id"], row["name"])
        s = out.get(key)
        if s is None:
            out[key] = {
                "trial_id": key[0],
                "name": key[1],
                "last_value": value,
                "last_step": row["step"],
                "last_attempt": row["attempt"],
                "lowest": value,
                "highest": value,
                "count": 1,
            }
            continue
        s["last_value"] = value
        s["last_step"] = row["step"]
        s["last_attempt"] = row["attempt"]
        if value < s["lowest"]:
            s["lowest"] = value
        elif value > s["highest"]:
            s["highest"] = value
        s["count"] += 1
    return list(out.values())


_SUMMARY_UPSERTS: dict[str, Any] = {}


def _summary_upsert(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (trial_id, name) DO UPDATE`` merging a batch's summaries
    into the stored ones (SQLite >= 3.24 and PostgreSQL spell it alike), built once per
    dialect. The batch's last value replaces the stored one: it arrived later."""
    stmt = _SUMMARY_UPSERTS.get(dialect)
    if stmt is not None:
        return stmt
    base: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        base = pg_insert(MS)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        base = sqlite_insert(MS)
    new = base.excluded
    stmt = base.on_conflict_do_update(
        index_elements=[MS.c.trial_id, MS.c.name],
        set_={
            "last_value": new.last_value,
            "last_step": new.last_step,
            "last_attempt": new.last_attempt,
            "lowest": case((new.lowest < MS.c.lowest, new.lowest), else_=MS.c.lowest),
            "highest": case((new.highest > MS.c.highest, new.highest), else_=MS.c.highest),
            "count": MS.c.count + new.count,
        },
    )
    _SUMMARY_UPSERTS[dialect] = stmt
    return stmt


def hosts_over(failures: dict[str, int], threshold: int) -> dict[str, int]:
    """The hosts of ``failures`` (host -> failed attempts) to exclude at ``threshold``
    (``exclude_host_after``; 0 turns exclusion off)."""
    if threshold <= 0:
        return {}
    return {host: n for host, n in failures.items() if n >= threshold}
