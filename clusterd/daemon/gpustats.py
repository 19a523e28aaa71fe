"""GPU figures per trial, attempt and GPU, read from raw samples and per-minute rollups together.

A GPU's history lives in two tables (docs/gpu.md, "Storage and retention"): the recent
raw samples (``gpu_samples``) and, for older ones, per-minute aggregates
(``gpu_minutes``, written by ``gpu_retention``). Every figure is defined on minute rows,
so that it comes out the same whichever of the two holds a minute:

- a sample stands for the time until the GPU's next sample (``dt``), at most
  ``MAX_GAP`` seconds (a longer gap: the sampler was stopped, the job suspended); the
  attempt's last sample stands for none;
- per minute (``floor(t / 60)``): samples, mean and peak utilisation (of the samples that
  have one), peak memory, mean power, energy ``sum(power * dt)`` in joules, peak own
  memory, seconds ``sum(dt)``;
- per GPU: utilisation mean weighted by samples, peaks, energy and seconds summed; *idle
  seconds* are the seconds of the minutes whose every sample is under the idle threshold;
  *busy GPU-seconds* (``util x time``) are ``util_mean / 100 * seconds``.

The raw samples are turned into minute rows by one SQL query (a window function for
``dt``), the same numbers the rollup stores, and added to the stored minutes in one
grouped query: one query for any number of trials, never one per trial.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    Integer,
    Select,
    Table,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from clusterd.daemon.models import GpuMinute, GpuSample, Trial

__all__ = [
    "IDLE_THRESHOLD",
    "MAX_GAP",
    "ORDERS",
    "GpuFigures",
    "attempt_gpu_figures",
    "idle_threshold",
    "minute_of",
    "ranking",
    "trial_gpu_figures",
    "trial_totals",
    "trial_util_means",
]

G = typing_cast(Table, GpuSample.__table__)
GM = typing_cast(Table, GpuMinute.__table__)
TR = typing_cast(Table, Trial.__table__)

#: longest time one sample stands for (s): a longer gap to the next sample counts this much
MAX_GAP = 300.0
#: utilisation (%) under which a GPU counts as idle, unless the sweep's ``[gpu]`` says
IDLE_THRESHOLD = 5.0


def minute_of(t: float) -> int:
    """The minute a sample at ``t`` belongs to (the SQL below computes the same)."""
    return math.floor(t / 60)


def idle_threshold(spec: dict[str, Any] | None, default: float | None = None) -> float:
    """The sweep's idle threshold (``[gpu] idle_threshold``, %), else ``default`` (the
    user config file's ``[gpu] idle_threshold``, as the idle watch uses it), else
    ``IDLE_THRESHOLD``."""
    value = ((spec or {}).get("gpu") or {}).get("idle_threshold")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return IDLE_THRESHOLD if default is None else float(default)


@dataclass
class GpuFigures:
    """One GPU of one attempt (or, summed, of a trial)."""

    samples: int = 0
    util_sum: float = 0.0  # sum of util over the samples that have one (minute means x n)
    util_n: int = 0
    util_peak: float | None = None
    mem_peak: float | None = None
    mem_total: float | None = None
    power_sum: float = 0.0
    power_n: int = 0
    energy_j: float | None = None
    own_mem_peak: float | None = None
    seconds: float = 0.0
    idle_seconds: float = 0.0
    busy_seconds: float = 0.0  # util x time: GPU-seconds of full use

    @property
    def util_mean(self) -> float | None:
        return self.util_sum / self.util_n if self.util_n else None

    @property
    def power_mean(self) -> float | None:
        return self.power_sum / self.power_n if self.power_n else None

    def add(self, other: GpuFigures) -> None:
        """Fold another GPU's (or attempt's) figures into these."""
        self.samples += other.samples
        self.util_sum += other.util_sum
        self.util_n += other.util_n
        self.util_peak = _max(self.util_peak, other.util_peak)
        self.mem_peak = _max(self.mem_peak, other.mem_peak)
        self.mem_total = _max(self.mem_total, other.mem_total)
        self.power_sum += other.power_sum
        self.power_n += other.power_n
        if other.energy_j is not None:
            self.energy_j = (self.energy_j or 0.0) + other.energy_j
        self.own_mem_peak = _max(self.own_mem_peak, other.own_mem_peak)
        self.seconds += other.seconds
        self.idle_seconds += other.idle_seconds
        self.busy_seconds += other.busy_seconds

    def view(self) -> dict[str, Any]:
        """The JSON shape ``show`` and ``gpus`` give."""
        return {
            "samples": self.samples,
            "util_mean": _round(self.util_mean, 2),
            "util_peak": self.util_peak,
            "mem_peak_mib": _int(self.mem_peak),
            "mem_total_mib": _int(self.mem_total),
            "own_mem_peak_mib": _int(self.own_mem_peak),
            "power_mean_w": _round(self.power_mean, 2),
            "energy_wh": _round(None if self.energy_j is None else self.energy_j / 3600, 4),
            "seconds": round(self.seconds, 1),
            "idle_seconds": round(self.idle_seconds, 1),
            "busy_gpu_hours": round(self.busy_seconds / 3600, 4),
        }


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- SQL ----------------------------------------------------------------------


def _minute_sql(t: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """``floor(t / 60)`` as an integer: SQLite's CAST truncates (t >= 0, so it floors);
    PostgreSQL's rounds, so it floors first."""
    if dialect == "sqlite":
        return cast(t / 60.0, Integer)
    return cast(func.floor(t / 60.0), BigInteger)


def raw_minutes(conn: Connection, where: ColumnElement[bool]) -> Select[Any]:
    """Minute rows (``gpu_minutes``' columns but ``id``) computed from the raw samples
    ``where`` selects; ``dt`` is taken within what it selects, so select whole series."""
    dialect = conn.dialect.name
    nxt = func.lead(G.c.t).over(
        partition_by=(G.c.trial_id, G.c.attempt, G.c.gpu), order_by=(G.c.t, G.c.id)
    )
    s = select(
        G.c.trial_id,
        G.c.attempt,
        G.c.gpu,
        G.c.t,
        G.c.util,
        G.c.mem_used,
        G.c.mem_total,
        G.c.power_w,
        G.c.own_mem,
        (nxt - G.c.t).label("gap"),
    )
    inner = s.where(where).subquery("raw")
    dt = case(
        (inner.c.gap.is_(None), literal(0.0)),
        (inner.c.gap > MAX_GAP, literal(MAX_GAP)),
        else_=inner.c.gap,
    )
    minute = _minute_sql(inner.c.t, dialect).label("minute")
    return select(
        inner.c.trial_id,
        inner.c.attempt,
        inner.c.gpu,
        minute,
        func.count().label("samples"),
        cast(func.count(inner.c.util), Float).label("util_n"),  # samples with a utilisation
        func.avg(inner.c.util).label("util_mean"),
        func.max(inner.c.util).label("util_max"),
        func.max(inner.c.mem_used).label("mem_max"),
        func.max(inner.c.mem_total).label("mem_total"),
        cast(func.count(inner.c.power_w), Float).label("power_n"),
        func.avg(inner.c.power_w).label("power_mean"),
        func.sum(inner.c.power_w * dt).label("energy_j"),
        func.max(inner.c.own_mem).label("own_mem_max"),
        func.sum(dt).label("seconds"),
    ).group_by(inner.c.trial_id, inner.c.attempt, inner.c.gpu, minute)


def _stored_minutes(where: ColumnElement[bool]) -> Select[Any]:
    """The stored minute rows in ``raw_minutes``' shape (counts: every sample of a minute
    whose mean exists counts for it: exact unless a minute mixes readings and nulls)."""
    n = cast(GM.c.samples, Float)
    return select(
        GM.c.trial_id,
        GM.c.attempt,
        GM.c.gpu,
        GM.c.minute,
        GM.c.samples,
        case((GM.c.util_mean.is_(None), literal(0.0)), else_=n).label("util_n"),
        GM.c.util_mean,
        GM.c.util_max,
        GM.c.mem_max,
        GM.c.mem_total,
        case((GM.c.power_mean.is_(None), literal(0.0)), else_=n).label("power_n"),
        GM.c.power_mean,
        GM.c.energy_j,
        cast(GM.c.own_mem_max, Float).label("own_mem_max"),
        GM.c.seconds,
    ).where(where)


#: which trials: their ids, or a SELECT of them (a whole sweep: ``select(T.c.id).where(...)``)
Trials = Sequence[int] | Select[Any]


def _in(column: Any, trials: Trials) -> ColumnElement[bool]:
    if isinstance(trials, Select):
        return typing_cast(ColumnElement[bool], column.in_(trials.scalar_subquery()))
    return typing_cast(ColumnElement[bool], column.in_(sorted(set(trials))))


def _figure_rows(
    conn: Connection, trials: Trials, threshold: float
) -> Iterable[tuple[int, int, int, GpuFigures]]:
    """(trial id, attempt, gpu, figures) for every GPU the trials have samples of."""
    if not isinstance(trials, Select) and not trials:
        return []
    # two grouped queries, merged here: a UNION ALL of both sorts every minute row again,
    # while the stored minutes alone are read in their unique index's order
    acc: dict[tuple[int, int, int], GpuFigures] = {}
    parts = (
        raw_minutes(conn, _in(G.c.trial_id, trials)).subquery("r"),
        _stored_minutes(_in(GM.c.trial_id, trials)).subquery("s"),
    )
    for part in parts:
        for row in conn.execute(_per_gpu(part, threshold)):
            (trial_id, attempt, gpu, n, usum, un, upk, mpk, mt, psum, pn, e, own, sec, idle) = row
            f = GpuFigures(
                samples=int(n or 0),
                util_sum=float(usum or 0.0),
                util_n=round(un or 0),
                util_peak=upk,
                mem_peak=mpk,
                mem_total=mt,
                power_sum=float(psum or 0.0),
                power_n=round(pn or 0),
                energy_j=e,
                own_mem_peak=own,
                seconds=float(sec or 0.0),
                idle_seconds=float(idle or 0.0),
            )
            key = (int(trial_id), int(attempt), int(gpu))
            if key in acc:
                acc[key].add(f)
            else:
                acc[key] = f
    out = []
    for (trial_id, attempt, gpu), f in acc.items():
        util = f.util_mean
        f.busy_seconds = 0.0 if util is None else util / 100.0 * f.seconds
        out.append((trial_id, attempt, gpu, f))
    return out


def _per_gpu(part: Any, threshold: float) -> Select[Any]:
    """Minute rows (``raw_minutes``' shape) summed per trial, attempt and GPU."""
    m = part.c
    zero = literal(0.0)
    return select(
        m.trial_id,
        m.attempt,
        m.gpu,
        func.sum(m.samples),
        func.sum(case((m.util_mean.is_(None), zero), else_=m.util_mean * m.util_n)),
        func.sum(m.util_n),
        func.max(m.util_max),
        func.max(m.mem_max),
        func.max(m.mem_total),
        func.sum(case((m.power_mean.is_(None), zero), else_=m.power_mean * m.power_n)),
        func.sum(m.power_n),
        func.sum(m.energy_j),
        func.max(m.own_mem_max),
        func.sum(m.seconds),
        func.sum(case((m.util_max < threshold, m.seconds), else_=zero)),
    ).group_by(m.trial_id, m.attempt, m.gpu)


def attempt_gpu_figures(
    conn: Connection, trial_ids: Trials, threshold: float = IDLE_THRESHOLD
) -> dict[int, dict[tuple[int, int], GpuFigures]]:
    """``{trial id: {(attempt, gpu): figures}}``: what ``show`` prints per GPU."""
    out: dict[int, dict[tuple[int, int], GpuFigures]] = {}
    for trial_id, attempt, gpu, f in _figure_rows(conn, trial_ids, threshold):
        out.setdefault(trial_id, {})[(attempt, gpu)] = f
    return out


def trial_totals(
    conn: Connection, trial_ids: Trials, threshold: float = IDLE_THRESHOLD
) -> dict[int, tuple[GpuFigures, int]]:
    """``{trial id: (figures over every attempt and GPU, GPUs seen)}``."""
    out: dict[int, tuple[GpuFigures, int]] = {}
    for trial_id, per in attempt_gpu_figures(conn, trial_ids, threshold).items():
        total = GpuFigures()
        for f in per.values():
            total.add(f)
        out[trial_id] = (total, len({g for _, g in per}))
    return out


def trial_gpu_figures(
    conn: Connection, trial_ids: Trials, threshold: float = IDLE_THRESHOLD
) -> dict[int, dict[str, Any]]:
    """``{trial id: {"gpu_util_mean", "gpu_mem_peak_mib", "gpu_energy_wh", "gpu_seconds",
    "gpu_idle_seconds"}}`` for the trials that have samples (seconds are GPU-seconds: a
    trial on 4 GPUs for an hour has 14,400)."""
    out: dict[int, dict[str, Any]] = {}
    for trial_id, (f, _) in trial_totals(conn, trial_ids, threshold).items():
        out[trial_id] = {
            "gpu_util_mean": f.util_mean,
            "gpu_mem_peak_mib": _int(f.mem_peak),
            "gpu_energy_wh": None if f.energy_j is None else f.energy_j / 3600,
            "gpu_seconds": f.seconds,
            "gpu_idle_seconds": f.idle_seconds,
        }
    return out


def trial_util_means(conn: Connection, trials: Trials) -> dict[int, float]:
    """``{trial id: mean utilisation}``, without ``dt``: two grouped aggregates, cheap
    enough for every ``trials`` reply. The same number ``trial_gpu_figures`` gives as
    ``gpu_util_mean``."""
    raw = (
        select(
            G.c.trial_id,
            func.sum(G.c.util).label("s"),
            cast(func.count(G.c.util), Float).label("n"),
        )
        .where(_in(G.c.trial_id, trials))
        .group_by(G.c.trial_id)
    )
    n = cast(GM.c.samples, Float)
    rolled = (
        select(
            GM.c.trial_id,
            func.sum(GM.c.util_mean * n).label("s"),
            func.sum(case((GM.c.util_mean.is_(None), literal(0.0)), else_=n)).label("n"),
        )
        .where(_in(GM.c.trial_id, trials))
        .group_by(GM.c.trial_id)
    )
    sums: dict[int, list[float]] = {}
    for q in (raw, rolled):
        for trial_id, s, count in conn.execute(q):
            acc = sums.setdefault(int(trial_id), [0.0, 0.0])
            acc[0] += float(s or 0.0)
            acc[1] += float(count or 0.0)
    return {k: s / n for k, (s, n) in sums.items() if n}


#: ``gpus``' orders: the key each sorts the trials by (the first comes first)
ORDERS = ("waste", "util")


def ranking(
    conn: Connection, sweep_id: int, threshold: float = IDLE_THRESHOLD, order: str = "waste"
) -> list[dict[str, Any]]:
    """Every trial of the sweep that has GPU samples, ranked (``gpus``).

    ``waste`` (the default: "which trial is wasting its GPU?" first): by wasted
    GPU-hours, ``GPU-hours x (1 - mean utilisation)``, highest first, then idle time;
    ``util``: by mean utilisation, highest first (the best users first)."""
    trials = {
        int(i): (int(index), state)
        for i, index, state in conn.execute(
            select(TR.c.id, TR.c.index, TR.c.state).where(TR.c.sweep_id == sweep_id)
        )
    }
    ids = select(TR.c.id).where(TR.c.sweep_id == sweep_id)
    per_trial: dict[int, dict[int, GpuFigures]] = {}
    for trial_id, _attempt, gpu, f in _figure_rows(conn, ids, threshold):
        per_trial.setdefault(trial_id, {}).setdefault(gpu, GpuFigures()).add(f)
    rows = []
    for trial_id, per_gpu in per_trial.items():
        total = GpuFigures()
        for f in per_gpu.values():
            total.add(f)
        index, state = trials[trial_id]
        view = total.view()
        hours = total.seconds / 3600
        rows.append(
            {
                "trial": None,  # filled by the handler (it knows the sweep's name)
                "index": index,
                "state": state,
                "gpus": len(per_gpu),
                **view,
                "util_avg": view["util_mean"],  # the name older clients read
                "mem_max": view["mem_peak_mib"],
                "mem_total": view["mem_total_mib"],
                "gpu_hours": round(hours, 4),
                "idle_gpu_hours": round(total.idle_seconds / 3600, 4),
                "wasted_gpu_hours": round(hours - total.busy_seconds / 3600, 4),
                "per_gpu": [{"gpu": g, **per_gpu[g].view()} for g in sorted(per_gpu)],
            }
        )
    if order == "util":
        rows.sort(key=lambda r: (-(r["util_mean"] or 0.0), r["index"]))
    else:
        rows.sort(key=lambda r: (-r["wasted_gpu_hours"], -r["idle_seconds"], r["index"]))
    return rows
