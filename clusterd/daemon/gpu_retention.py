"""The GPU samples' retention: raw samples older than a window become per-minute rows.

Policy (docs/gpu.md, "Storage and retention"): each attempt keeps its newest
``RAW_WINDOW`` seconds of samples raw (the TUI's GPU panel and the idle watch read
those); older samples are rolled up into ``gpu_minutes``, one row per trial, attempt,
GPU and minute, with the numbers ``gpustats`` defines. An attempt that ended more than
``ENDED_GRACE`` seconds ago is rolled up whole. Only whole minutes are rolled up, so a
minute is never split between the two tables (but a sample arriving late for a minute
already rolled up: it is merged into that row by the next pass).

The daemon runs a pass at most every ``PASS_EVERY`` seconds from the scheduling loop.
A pass works in small transactions of at most ``BATCH_ROWS`` raw rows (cut at a
minute), each of which writes the minute rows and deletes the raw rows it rolled up
together: a crash between the two is impossible, so nothing is counted twice or lost,
and a pass over a 1,000-trial backlog holds SQLite's write lock for a few milliseconds
at a time (benchmarks/bench_gpu_storage.py). Running it again changes nothing.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, delete, func, insert, select

from clusterd.daemon.db import WritesRefused
from clusterd.daemon.gpustats import MAX_GAP, minute_of
from clusterd.daemon.models import Attempt, GpuMinute, GpuSample
from clusterd.daemon.store import Store

__all__ = [
    "BATCH_ROWS",
    "ENDED_GRACE",
    "PASS_BUDGET",
    "PASS_EVERY",
    "RAW_WINDOW",
    "PassResult",
    "Retention",
    "maybe_run",
    "roll_up",
]

#: seconds of each attempt's newest samples kept raw: the TUI's GPU panel shows the last
#: 120 samples (20 minutes at the default interval), the idle watch reads new ones only
RAW_WINDOW = 3600.0
#: an attempt that ended this long ago is rolled up whole (its views read fewer rows)
ENDED_GRACE = 3600.0
#: most raw rows one transaction rolls up (then it commits and the next one starts)
BATCH_ROWS = 1000
#: shortest time between two passes of the daemon
PASS_EVERY = 300.0
#: longest a pass runs before it lets the scheduling loop go on (then goes on next tick)
PASS_BUDGET = 1.0

log = logging.getLogger(__name__)

A = cast(Table, Attempt.__table__)
G = cast(Table, GpuSample.__table__)
GM = cast(Table, GpuMinute.__table__)

_SAMPLE_COLUMNS = (
    G.c.gpu,
    G.c.t.label("ts"),  # not ``t``: Row.t is the tuple view
    G.c.util,
    G.c.mem_used,
    G.c.mem_total,
    G.c.power_w,
    G.c.own_mem,
)


@dataclass
class PassResult:
    """What one pass did, for the log and the benchmark."""

    rows: int = 0  # raw rows rolled up
    minutes: int = 0  # minute rows written (new or merged)
    transactions: int = 0
    longest_tx: float = 0.0  # seconds the longest transaction took
    seconds: float = 0.0
    series: int = 0  # attempts that had something to roll up
    unfinished: bool = False  # the budget ran out: the next pass goes on at once
    remaining: list[tuple[int, int, float]] = field(default_factory=list)  # where it goes on
    tx_times: list[float] = field(default_factory=list)


def _series_due(
    conn: Connection, now: float, window: float, grace: float
) -> list[tuple[int, int, float]]:
    """(trial id, attempt, roll up what is before this time) of the attempts that have
    raw samples to roll up."""
    q = (
        select(G.c.trial_id, G.c.attempt, func.min(G.c.t), func.max(G.c.t), A.c.ended_at)
        .select_from(G.outerjoin(A, and_(A.c.trial_id == G.c.trial_id, A.c.number == G.c.attempt)))
        .group_by(G.c.trial_id, G.c.attempt, A.c.ended_at)
    )
    due = []
    for trial_id, attempt, first, last, ended_at in conn.execute(q):
        if ended_at is not None and ended_at < now - grace:
            before = (minute_of(last) + 1) * 60.0  # everything
        else:
            before = minute_of(last - window) * 60.0
        if first < before:
            due.append((int(trial_id), int(attempt), before))
    return due


def _aggregate(rows: Sequence[Any], after: dict[int, float]) -> dict[tuple[int, int], dict]:
    """Minute rows of ``rows`` (one attempt's samples, ordered by t then id); ``after``:
    each GPU's next sample's time beyond them (absent: none)."""
    nexts: list[float | None] = [None] * len(rows)
    last_of: dict[int, int] = {}
    for i, r in enumerate(rows):
        if r.gpu in last_of:
            nexts[last_of[r.gpu]] = r.ts
        last_of[r.gpu] = i
    for gpu, i in last_of.items():
        nexts[i] = after.get(gpu)
    acc: dict[tuple[int, int], dict[str, Any]] = {}
    for r, nt in zip(rows, nexts, strict=True):
        dt = 0.0 if nt is None else min(nt - r.ts, MAX_GAP)
        a = acc.setdefault(
            (r.gpu, minute_of(r.ts)),
            {"n": 0, "us": 0.0, "un": 0, "umax": None, "mem": None, "mt": None,
             "ps": 0.0, "pn": 0, "e": None, "own": None, "sec": 0.0},
        )  # fmt: skip
        a["n"] += 1
        a["sec"] += dt
        if r.util is not None:
            a["us"] += r.util
            a["un"] += 1
            a["umax"] = r.util if a["umax"] is None else max(a["umax"], r.util)
        if r.power_w is not None:
            a["ps"] += r.power_w
            a["pn"] += 1
            a["e"] = (a["e"] or 0.0) + r.power_w * dt
        for key, value in (("mem", r.mem_used), ("mt", r.mem_total), ("own", r.own_mem)):
            if value is not None:
                a[key] = value if a[key] is None else max(a[key], value)
    return {
        key: {
            "samples": a["n"],
            "seconds": a["sec"],
            "util_mean": a["us"] / a["un"] if a["un"] else None,
            "util_max": a["umax"],
            "mem_max": a["mem"],
            "mem_total": a["mt"],
            "power_mean": a["ps"] / a["pn"] if a["pn"] else None,
            "energy_j": a["e"],
            "own_mem_max": None if a["own"] is None else int(a["own"]),
        }
        for key, a in acc.items()
    }


def _merge(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """A stored minute row and new samples of the same minute, as one row."""
    n_old, n_new = old.samples, new["samples"]

    def mean(a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return b if a is None else a
        return (a * n_old + b * n_new) / (n_old + n_new)

    def most(a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else max(a, b)

    def total(a: float | None, b: float | None) -> float | None:
        return b if a is None else a if b is None else a + b

    return {
        "samples": n_old + n_new,
        "seconds": old.seconds + new["seconds"],
        "util_mean": mean(old.util_mean, new["util_mean"]),
        "util_max": most(old.util_max, new["util_max"]),
        "mem_max": most(old.mem_max, new["mem_max"]),
        "mem_total": most(old.mem_total, new["mem_total"]),
        "power_mean": mean(old.power_mean, new["power_mean"]),
        "energy_j": total(old.energy_j, new["energy_j"]),
        "own_mem_max": most(old.own_mem_max, new["own_mem_max"]),
    }


def _roll_batch(
    conn: Connection, trial_id: int, attempt: int, before: float, batch: int
) -> tuple[int, int, bool]:
    """Roll up the oldest whole minutes (at most ``batch`` rows, unless one minute holds
    more) of one attempt's samples before ``before``. Returns (rows, minute rows, more)."""
    series = and_(G.c.trial_id == trial_id, G.c.attempt == attempt)
    q = select(*_SAMPLE_COLUMNS).where(series, G.c.t < before).order_by(G.c.t, G.c.id)
    rows = conn.execute(q.limit(batch + 1)).all()
    if not rows:
        return 0, 0, False
    end = before
    if len(rows) > batch:  # cut before the minute the batch ends in
        end = minute_of(rows[batch].ts) * 60.0
        rows = [r for r in rows if r.ts < end]
        if not rows:  # the first minute alone holds more than a batch: take it whole
            end = min(before, end + 60.0)
            rows = conn.execute(q.where(G.c.t < end)).all()
    after = dict(
        conn.execute(
            select(G.c.gpu, func.min(G.c.t)).where(series, G.c.t >= end).group_by(G.c.gpu)
        ).all()
    )
    minutes = _aggregate(rows, after)
    lo, hi = min(m for _, m in minutes), max(m for _, m in minutes)
    existing = {
        (r.gpu, r.minute): r
        for r in conn.execute(
            select(GM).where(
                GM.c.trial_id == trial_id,
                GM.c.attempt == attempt,
                GM.c.minute >= lo,
                GM.c.minute <= hi,
            )
        )
    }
    merged = []
    for (gpu, minute), values in minutes.items():
        old = existing.get((gpu, minute))
        if old is not None:
            values = _merge(old, values)
        merged.append({"trial_id": trial_id, "attempt": attempt, "gpu": gpu, "minute": minute,
                       **values})  # fmt: skip
    stale = [r.id for (key, r) in existing.items() if key in minutes]
    if stale:
        conn.execute(delete(GM).where(GM.c.id.in_(stale)))
    conn.execute(insert(GM), merged)
    conn.execute(delete(G).where(series, G.c.t < end))
    return len(rows), len(merged), end < before


def roll_up(
    store: Store,
    now: float | None = None,
    *,
    window: float = RAW_WINDOW,
    grace: float = ENDED_GRACE,
    batch: int = BATCH_ROWS,
    budget: float | None = None,
    series: Iterable[tuple[int, int, float]] | None = None,
) -> PassResult:
    """One retention pass: every attempt's samples older than its window, rolled up in
    transactions of at most ``batch`` rows. ``budget``: seconds after which the pass
    stops between two transactions (``unfinished`` says so; the next pass goes on).
    ``series`` (trial id, attempt, before) skips the search for what is due (tests roll
    up at a boundary of their choosing)."""
    started = time.perf_counter()
    result = PassResult()
    if series is None:
        with store.read() as conn:
            series = _series_due(conn, time.time() if now is None else now, window, grace)
    todo = list(series)
    for position, (trial_id, attempt, before) in enumerate(todo):
        result.series += 1
        more = True
        while more:
            if budget is not None and time.perf_counter() - started > budget:
                result.unfinished = True
                result.remaining = todo[position:]
                result.seconds = time.perf_counter() - started
                return result
            t0 = time.perf_counter()
            with store.tx() as conn:
                rows, minutes, more = _roll_batch(conn, trial_id, attempt, before, batch)
            took = time.perf_counter() - t0
            if rows:
                result.transactions += 1
                result.tx_times.append(took)
                result.longest_tx = max(result.longest_tx, took)
            result.rows += rows
            result.minutes += minutes
    result.seconds = time.perf_counter() - started
    return result


class Retention:
    """The daemon's pacing of passes: ``maybe_run`` from every scheduling pass runs one
    when ``every`` seconds have gone by since the last (the first, ``every`` after start),
    each for at most ``budget`` seconds, so that the loop (ingest, polls) never waits
    long; a pass cut short goes on at the next scheduling pass."""

    def __init__(
        self,
        store: Store,
        every: float = PASS_EVERY,
        window: float = RAW_WINDOW,
        budget: float = PASS_BUDGET,
    ) -> None:
        self.store = store
        self.every = every
        self.window = window
        self.budget = budget
        self._last = time.monotonic()
        self.last: PassResult | None = None

    def maybe_run(self) -> PassResult | None:
        unfinished = self.last is not None and self.last.unfinished
        if not unfinished and time.monotonic() - self._last < self.every:
            return None
        self._last = time.monotonic()
        # a pass cut short goes on where it stopped (finding what is due reads every
        # sample's index: not again on every scheduling pass of a big backlog)
        todo = self.last.remaining if unfinished and self.last is not None else None
        try:
            self.last = roll_up(self.store, window=self.window, budget=self.budget, series=todo)
        except WritesRefused:
            raise
        except Exception:  # never the pass's end: the samples stay raw, tried again later
            log.exception("GPU samples rollup failed")
            self.last = None
            return None
        if self.last.rows:
            log.info(
                "GPU samples rolled up: %d rows -> %d minute rows in %d transactions "
                "(longest %.0f ms)",
                self.last.rows,
                self.last.minutes,
                self.last.transactions,
                self.last.longest_tx * 1000,
            )
        return self.last


_PACERS: weakref.WeakKeyDictionary[Store, Retention] = weakref.WeakKeyDictionary()


def maybe_run(store: Store) -> PassResult | None:
    """The scheduler's hook (``Scheduler.tick``): a pass when one is due for ``store``."""
    pacer = _PACERS.get(store)
    if pacer is None:
        pacer = _PACERS[store] = Retention(store)
    return pacer.maybe_run()
