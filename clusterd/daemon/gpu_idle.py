"""The idle-GPU watch: flag, or stop, a running attempt whose GPUs stay idle.

A sweep (or the user's config file) with ``[gpu] idle_warning = "30m"`` asks the daemon
to watch its running attempts' GPU samples (docs/gpu.md, "Idle GPUs"). The rule:

- a *sample point* is one ``gpu`` events line of the attempt (one sample per GPU of the
  attempt, the same ``t``). It is **idle** when every GPU in it reports a utilisation
  under ``idle_threshold`` (percent, default 5). A GPU without a utilisation (MIG,
  where NVML does not give one) makes the point *not* idle: no evidence is no verdict.
- an attempt is **idle** once its latest points form an unbroken run of idle points
  spanning at least ``idle_warning`` (the first point's ``t`` to the last one's). The run
  is broken by a busy point, or by a hole between two points longer than
  ``max_gap`` (five sampling intervals, at least a minute: NVML stopped answering, the
  node froze). So samples must *cover* the window, not just begin and end in it, and an
  attempt whose samples stop (NVML gone) keeps the verdict it had.
- idle -> a transition-log entry ("GPU idle for 30m (util < 5 %)"), the attempt's
  ``gpu_idle_flagged`` set (``trials``/``sweeps``/``status``/the TUI show it) and a
  ``gpu_idle`` event; with ``idle_action = "stop"`` also a stop decision (rule
  ``gpu-idle``), enforced like any early stop (``STOP`` marker, then the driver after
  the grace period; the trial ends ``stopped``). A busy point after that clears the flag
  with a "GPU busy again" entry.

Cheap by construction: at most one pass every ``WATCH_EVERY`` seconds (sooner only for
windows under a minute), one query per pass for the samples ingested since the last one
(``gpu_samples.id`` is the cursor), plus one per pass in which attempts are newly
watched. State that must outlive the daemon is in the attempts row (``gpu_idle_since``,
``gpu_idle_flagged``): after a restart the run goes on from ``gpu_idle_since``, reading
back at most one window (and a minute) of samples; a count not yet begun restarts there.
(After an outage longer than the window, a busy spell during it is not seen: the flag is
still right, as it needs the last window idle, but ``gpu_idle_since`` may be too early.)

The SQL lives here rather than in ``store.py``: it is this watch's alone.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Table, and_, func, insert, select

from clusterd.daemon.models import Attempt, GpuSample, Sweep, Transition, Trial
from clusterd.spec.model import GpuConfig

if TYPE_CHECKING:
    from clusterd.daemon.scheduler import Scheduler

__all__ = [
    "DEFAULT_THRESHOLD",
    "STOP_RULE",
    "IdlePolicy",
    "IdleState",
    "flagged_counts",
    "flagged_trials",
    "fold",
    "point_idle",
    "policy_of",
    "watch",
]

log = logging.getLogger("clusterd.gpu_idle")

#: percent utilisation under which a GPU counts as idle, unless the sweep or user says
DEFAULT_THRESHOLD = 5.0
#: the most often a pass reads samples (seconds); a window under a minute is watched
#: at a third of its length, so a short test window is seen in time
WATCH_EVERY = 15.0
MIN_WATCH_EVERY = 0.5
#: the rule name of the stop decision ``idle_action = "stop"`` records
STOP_RULE = "gpu-idle"
#: a restarted daemon re-reads this much more than one window of samples
BOOTSTRAP_SLACK = 60.0

G = cast(Table, GpuSample.__table__)
A = cast(Table, Attempt.__table__)
T = cast(Table, Trial.__table__)
S = cast(Table, Sweep.__table__)
X = cast(Table, Transition.__table__)


@dataclass(frozen=True)
class IdlePolicy:
    """What one sweep asks of the watch (``[gpu]`` over the user's defaults)."""

    after: float  # seconds of idle points before the flag
    threshold: float = DEFAULT_THRESHOLD  # percent
    action: str = "warn"  # warn | stop
    interval: float = 10.0  # the runner's sampling interval

    @property
    def max_gap(self) -> float:
        """The longest hole between two points that does not break an idle run."""
        return max(5 * self.interval, 60.0)


def policy_of(gpu: GpuConfig, default: GpuConfig | None = None) -> IdlePolicy | None:
    """The sweep's policy, None when it has no idle warning (not set anywhere, or "off")."""
    base = default or GpuConfig()
    after = gpu.idle_warning_seconds
    if after is None:
        after = base.idle_warning_seconds
    if not after:
        return None
    threshold = gpu.idle_threshold or base.idle_threshold or DEFAULT_THRESHOLD
    action = gpu.idle_action or base.idle_action or "warn"
    return IdlePolicy(after=after, threshold=threshold, action=action, interval=gpu.interval)


@dataclass(frozen=True)
class IdleState:
    """One attempt's run of idle points: ``since`` its first point's time (None: the
    latest point was busy, or none yet), ``last_t`` the latest point folded in (None
    after a restart), ``flagged`` whether the run is long enough."""

    since: float | None = None
    last_t: float | None = None
    flagged: bool = False


def point_idle(utils: Sequence[float | None], threshold: float) -> bool:
    """A sample point is idle when it has a GPU and every GPU is under ``threshold``."""
    return bool(utils) and all(u is not None and u < threshold for u in utils)


def fold(
    state: IdleState, points: Iterable[tuple[float, Sequence[float | None]]], policy: IdlePolicy
) -> IdleState:
    """Fold time-ordered points (``(t, utilisations)``) into ``state``; points at or before
    ``state.last_t`` are ones already seen and are skipped."""
    since, last_t = state.since, state.last_t
    for t, utils in points:
        if last_t is not None and t <= last_t:
            continue
        hole = last_t is not None and t - last_t > policy.max_gap
        if not point_idle(utils, policy.threshold):
            since = None
        elif since is None or hole:
            since = t
        last_t = t
    flagged = since is not None and last_t is not None and last_t - since >= policy.after
    return IdleState(since, last_t, flagged)


def _fmt(seconds: float) -> str:
    """``30m``, ``1h30m``, ``3s``, ``2.5s``: durations as a sweep file writes them."""
    if seconds < 60:
        return f"{seconds:g}s"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def idle_reason(policy: IdlePolicy) -> str:
    return f"GPU idle for {_fmt(policy.after)} (util < {policy.threshold:g} %)"


# -- the watch ------------------------------------------------------------------------


@dataclass
class _Watched:
    attempt: Any  # the live attempts row (Store.live_attempts)
    sweep: Any
    policy: IdlePolicy


class GpuIdleWatch:
    """Per-daemon state of the watch: each watched attempt's run, and the sample cursor."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self._states: dict[int, IdleState] = {}
        self._last_id: int | None = None
        self._next_at = 0.0

    def defaults(self) -> GpuConfig | None:
        config = getattr(self.scheduler.drivers, "config", None)
        return getattr(config, "gpu", None)

    def run(self, live: Sequence[Any], sweeps: dict[int, Any], now: float | None = None) -> None:
        """One pass, if one is due: read new samples, update flags, record what changed."""
        now = time.time() if now is None else now
        if now < self._next_at:
            return
        watched = self._watched(live, sweeps)
        for gone in self._states.keys() - watched.keys():
            del self._states[gone]
        if not watched:
            self._last_id = None  # the cursor goes stale: start over from the attempts rows
        shortest = min((w.policy.after for w in watched.values()), default=WATCH_EVERY * 3)
        self._next_at = now + max(MIN_WATCH_EVERY, min(WATCH_EVERY, shortest / 3))
        if not watched:
            return
        with self.store.read() as conn:
            points = self._points(conn, watched, now)
        changed = []
        for attempt_id, w in watched.items():
            start = self._states.get(attempt_id) or IdleState(
                since=w.attempt.gpu_idle_since, flagged=bool(w.attempt.gpu_idle_flagged)
            )
            state = fold(start, points.get(attempt_id, ()), w.policy)
            if (state.since, state.flagged) != (start.since, start.flagged):
                changed.append((w, start, state))
            self._states[attempt_id] = state
        if changed:
            self._record(changed, now)

    def _watched(self, live: Sequence[Any], sweeps: dict[int, Any]) -> dict[int, _Watched]:
        defaults = self.defaults()
        policies: dict[int, IdlePolicy | None] = {}
        out: dict[int, _Watched] = {}
        for attempt in live:
            if attempt.state != "running" or attempt.trial_state != "running":
                continue
            sweep = sweeps.get(attempt.sweep_id)
            if sweep is None:
                continue
            if sweep.id not in policies:
                policies[sweep.id] = self._policy(sweep, defaults)
            policy = policies[sweep.id]
            if policy is not None:
                out[attempt.id] = _Watched(attempt, sweep, policy)
        return out

    def _policy(self, sweep: Any, defaults: GpuConfig | None) -> IdlePolicy | None:
        gpu = (sweep.spec or {}).get("gpu") or {}
        if not gpu.get("idle_warning_seconds") and not (defaults and defaults.idle_warning_seconds):
            return None  # the common case, decided without building the spec
        try:
            return policy_of(self.scheduler._spec(sweep).gpu, defaults)
        except (TypeError, ValueError, KeyError):
            return None  # a record this release cannot rebuild: not watched

    def _points(
        self, conn: Connection, watched: dict[int, _Watched], now: float
    ) -> dict[int, list[tuple[float, list[float | None]]]]:
        """The new sample points of every watched attempt, oldest first: those ingested
        since the last pass (one query), and, for attempts watched for the first time,
        their recent ones (after a restart: from their idle run's start, at most a window
        back)."""
        by_key = {(w.attempt.trial_id, w.attempt.number): aid for aid, w in watched.items()}
        rows: list[Any] = []
        fresh = [aid for aid in watched if aid not in self._states]
        top = int(conn.execute(select(func.coalesce(func.max(G.c.id), 0))).scalar_one())
        bound = top if self._last_id is None else self._last_id  # fresh ones: up to here
        if self._last_id is not None and top > self._last_id:
            # a range of the primary key, nothing joined: SQLite would otherwise walk each
            # running attempt's whole history in the (trial, attempt, t) index
            new = select(G.c.trial_id, G.c.attempt, G.c.t, G.c.util).where(
                G.c.id > self._last_id, G.c.id <= top
            )
            rows.extend(conn.execute(new))
        self._last_id = top
        for chunk in _chunks(fresh, 500):
            froms = {aid: self._from(watched[aid], now) for aid in chunk}
            old = (
                select(G.c.trial_id, G.c.attempt, G.c.t, G.c.util)
                .join(A, and_(A.c.trial_id == G.c.trial_id, A.c.number == G.c.attempt))
                .where(
                    A.c.id.in_(chunk),
                    G.c.t >= min(froms.values()),
                    G.c.id <= bound,
                )
            )
            rows.extend(r for r in conn.execute(old) if r[2] >= froms[by_key[(r[0], r[1])]])
        points: dict[int, dict[float, list[float | None]]] = {}
        for trial_id, number, t, util in rows:
            aid = by_key.get((trial_id, number))
            if aid is not None:
                points.setdefault(aid, {}).setdefault(t, []).append(util)
        return {aid: sorted(p.items()) for aid, p in points.items()}

    @staticmethod
    def _from(w: _Watched, now: float) -> float:
        """Where a newly watched attempt's samples are read from: one window (and a
        minute) back, or from its stored run's start if that is later. Its run, if any,
        goes on from the stored ``gpu_idle_since`` (``fold`` keeps it while points are
        idle), so a restart reads at most a window of samples per attempt."""
        back = now - w.policy.after - BOOTSTRAP_SLACK
        since = w.attempt.gpu_idle_since
        return back if since is None else max(float(since), back)

    def _record(self, changed: list[tuple[_Watched, IdleState, IdleState]], now: float) -> None:
        """Write the new states; log, publish and (``stop``) decide what flipped."""
        with self.scheduler._tx() as conn:
            for w, old, new in changed:
                a = w.attempt
                self.store.update_attempt(
                    conn, a.id, gpu_idle_since=new.since, gpu_idle_flagged=new.flagged
                )
                if new.flagged == old.flagged:
                    continue
                if new.flagged:
                    reason = idle_reason(w.policy)
                    if w.policy.action == "stop":
                        reason += "; stopping the trial"
                else:
                    reason = "GPU busy again"
                trial = self.store.trial_by_id(conn, a.trial_id)
                _log_entry(conn, trial, a.number, reason, now)
                self.store.publish(
                    {
                        "type": "gpu_idle",
                        "sweep_id": a.sweep_id,
                        "index": a.index,
                        "idle": new.flagged,
                        "since": new.since,
                        "reason": reason,
                        "t": now,
                    }
                )
                log.info("trial %s/%d: %s", w.sweep.name, a.index, reason)
                if new.flagged and w.policy.action == "stop":
                    self._stop(conn, w, trial, now)

    def _stop(self, conn: Connection, w: _Watched, trial: Any, now: float) -> None:
        """``idle_action = "stop"``: the manual stop's path with rule ``gpu-idle``."""
        if trial.stop_decision is not None:
            return  # already being stopped (a rule, by hand)
        spec = self.scheduler._spec(w.sweep)
        record = {
            "rule": STOP_RULE,
            "step": trial.last_step,
            "value": trial.best_value,
            "threshold": w.policy.threshold,
            "reason": idle_reason(w.policy),
            "at": now,
            "grace": self.scheduler.stopper.grace(spec),
        }
        self.store.set_stop_decision(conn, trial, record)
        rule = self.scheduler.stopper.rule(conn, w.sweep, spec)
        if rule is not None:
            rule.forget(trial.index)
        self.scheduler.wake()  # the next pass writes the STOP marker (_enforce_ends)


def _log_entry(conn: Connection, trial: Any, attempt: int, reason: str, now: float) -> None:
    """A transition-log entry that changes no state (from = to = the trial's state)."""
    conn.execute(
        insert(X).values(
            sweep_id=trial.sweep_id,
            trial_id=trial.id,
            attempt=attempt,
            from_state=trial.state,
            to_state=trial.state,
            reason=reason,
            t=now,
        )
    )


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_WATCHES: weakref.WeakKeyDictionary[Any, GpuIdleWatch] = weakref.WeakKeyDictionary()


def watch(scheduler: Scheduler, live: Sequence[Any], sweeps: dict[int, Any]) -> None:
    """The scheduler's pass hook (``Scheduler.tick``): never fails the pass over a bug
    here, which would hold up ending and launching trials."""
    w = _WATCHES.get(scheduler)
    if w is None:
        w = _WATCHES[scheduler] = GpuIdleWatch(scheduler)
    try:
        w.run(live, sweeps)
    except Exception as exc:
        from clusterd.daemon.db import WritesRefused

        if isinstance(exc, WritesRefused):
            raise
        log.exception("idle-GPU watch failed; trying again next pass")
        w._states.clear()


# -- reads for the views ----------------------------------------------------------------


def flagged_trials(
    conn: Connection, sweep_id: int | None = None, index: int | None = None
) -> list[tuple[str, int, float]]:
    """(sweep name, trial index, idle since) of every live attempt flagged idle (of one
    sweep, of one trial)."""
    q = (
        select(S.c.name, T.c.index, A.c.gpu_idle_since)
        .join(T, A.c.trial_id == T.c.id)
        .join(S, T.c.sweep_id == S.c.id)
        .where(A.c.state != "ended", A.c.gpu_idle_flagged.is_(True))
        .order_by(S.c.name, T.c.index)
    )
    if sweep_id is not None:
        q = q.where(T.c.sweep_id == sweep_id)
    if index is not None:
        q = q.where(T.c.index == index)
    return [(r[0], int(r[1]), r[2]) for r in conn.execute(q)]


def flagged_counts(conn: Connection) -> dict[int, int]:
    """Live attempts flagged idle, by sweep id (``sweeps``)."""
    q = (
        select(T.c.sweep_id, func.count())
        .join(T, A.c.trial_id == T.c.id)
        .where(A.c.state != "ended", A.c.gpu_idle_flagged.is_(True))
        .group_by(T.c.sweep_id)
    )
    return {int(s): int(n) for s, n in conn.execute(q)}
