"""The TUI's data, kept apart from widgets: rows, live-event folding, sorting, formatting.

Nothing here imports Textual, so it is cheap to test and the hot path (10,000
rows, 1,000 events a second) stays plain Python: an event updates one
``TrialRow`` in place and bumps its ``version``, which is all the table needs to
know to re-render that row's line (and nothing else).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

__all__ = [
    "FINAL_STATES",
    "SORT_KEYS",
    "STATES",
    "SweepRow",
    "TrialRow",
    "TrialSet",
    "fmt_age",
    "fmt_duration",
    "fmt_value",
    "params_text",
]

STATES = ("pending", "queued", "running", "completed", "failed", "cancelled", "stopped")
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "stopped"})
_STATE_ORDER = {s: i for i, s in enumerate(("running", "queued", "pending", *STATES[3:]))}


def fmt_value(value: float | None) -> str:
    """A metric in at most 9 characters: ``0.3124``, ``1.235e-05``, ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``, ``3d04h``; ``-`` for unknown."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_age(t: float | None, now: float) -> str:
    return "-" if t is None else fmt_duration(now - t) + " ago"


def params_text(params: dict[str, Any]) -> str:
    """``lr=0.01 depth=4``: what the params column shows and ``/`` searches."""
    return " ".join(f"{k}={_param(v)}" for k, v in params.items())


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(eq=False)
class TrialRow:
    """One trial as the table shows it, updated in place by events."""

    index: int
    state: str
    attempts: int = 0
    last_step: int | None = None
    last_value: float | None = None
    best_value: float | None = None
    best_step: int | None = None
    reason: str | None = None
    #: a stop decision is recorded and the trial has not ended yet ("stopping")
    stopping: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    gpu_util: float | None = None
    #: seconds run by finished attempts (plus, for a running trial, up to ``running_since``)
    runtime_done: float | None = None
    running_since: float | None = None
    version: int = 0
    _params_str: str | None = None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> TrialRow:
        return cls(
            index=int(view["index"]),
            state=str(view["state"]),
            attempts=int(view.get("attempts") or 0),
            last_step=view.get("last_step"),
            last_value=view.get("last_value"),
            best_value=view.get("best_value"),
            best_step=view.get("best_step"),
            reason=view.get("reason"),
            stopping=_stopping(view),
            params=view.get("params") or {},
        )

    @property
    def shown_state(self) -> str:
        """The state column: ``stopping`` for a live trial with a stop decision."""
        return "stopping" if self.stopping and self.state not in FINAL_STATES else self.state

    @property
    def params_str(self) -> str:
        """Worked out on first use: most of 10,000 rows are never drawn nor searched."""
        if self._params_str is None:
            self._params_str = params_text(self.params)
        return self._params_str

    def runtime(self, now: float) -> float | None:
        if self.runtime_done is None and self.running_since is None:
            return None
        extra = now - self.running_since if self.running_since is not None else 0.0
        return (self.runtime_done or 0.0) + max(0.0, extra)

    def apply(self, event: dict[str, Any]) -> bool:
        """Fold one ``trial``, ``progress`` or ``stop`` event in; True if what is shown changed."""
        if event.get("type") == "progress":
            changed = False
            for key in ("last_step", "last_value", "best_value", "best_step"):
                if key in event and getattr(self, key) != event[key]:
                    setattr(self, key, event[key])
                    changed = True
        elif event.get("type") == "stop":  # a stop decision: the trial ends after a grace
            stopping = bool(event.get("decision")) and self.state not in FINAL_STATES
            changed, self.stopping = stopping != self.stopping, stopping
        else:
            changed = self._transition(event)
        if changed:
            self.version += 1
        return changed

    def _transition(self, event: dict[str, Any]) -> bool:
        state, t = event.get("state"), event.get("t")
        if not isinstance(state, str):
            return False
        if event.get("from") in FINAL_STATES:
            self.stopping = False  # relaunched: the daemon cleared its stop decision
        if state == "queued" and event.get("from") == "pending":
            self.attempts += 1  # the scheduler records a new attempt with every submission
        if isinstance(t, int | float):
            if self.running_since is not None and state != "running":
                self.runtime_done = (self.runtime_done or 0.0) + max(0.0, t - self.running_since)
                self.running_since = None
            elif state == "running" and self.running_since is None:
                self.running_since = float(t)
        self.state = state
        self.reason = event.get("reason")
        return True


def _stopping(view: dict[str, Any]) -> bool:
    return bool(view.get("stop_decision")) and view.get("state") not in FINAL_STATES


#: column key -> how rows sort by it (None values always last)
SORT_KEYS: dict[str, Callable[[TrialRow, float], Any]] = {
    "index": lambda r, now: r.index,
    "state": lambda r, now: _STATE_ORDER.get(r.state, 99),
    "attempts": lambda r, now: r.attempts,
    "step": lambda r, now: r.last_step,
    "last": lambda r, now: r.last_value,
    "best": lambda r, now: r.best_value,
    "gpu": lambda r, now: r.gpu_util,
    "runtime": lambda r, now: r.runtime(now),
}


class TrialSet:
    """All rows of one sweep plus the current view of them (state filter, search, sort).

    ``view`` is recomputed only when the filter or sort changes, or when events
    touched a field the view depends on; otherwise events just bump row versions.
    """

    def __init__(self, mode: str | None = None) -> None:
        self.rows: dict[int, TrialRow] = {}
        self.view: list[TrialRow] = []
        self.state_filter: str | None = None
        self.search = ""
        self.sort_key = "index"
        self.descending = False
        self.mode = mode

    def load(self, views: Iterable[dict[str, Any]]) -> None:
        """Replace every row from a ``trials`` reply, keeping the extra columns we had."""
        old = self.rows
        self.rows = {}
        for view in views:
            row = TrialRow.from_view(view)
            prev = old.get(row.index)
            if prev is not None:
                row.gpu_util, row.version = prev.gpu_util, prev.version + 1
                row.runtime_done, row.running_since = prev.runtime_done, prev.running_since
            self.rows[row.index] = row

    def set_extras(
        self, runtimes: dict[int, float], gpu_util: dict[int, float], fetched_at: float
    ) -> None:
        for index, row in self.rows.items():
            if index in runtimes:
                ran = runtimes[index] > 0 or row.state == "running"
                row.runtime_done = runtimes[index] if ran else None  # "-": never ran
                row.running_since = fetched_at if row.state == "running" else None
            if index in gpu_util:
                row.gpu_util = gpu_util[index]
            row.version += 1

    def apply(self, events: Iterable[dict[str, Any]]) -> tuple[set[int], bool, bool]:
        """Fold events in; return (changed indices, view needs recomputing, unknown trial seen)."""
        changed: set[int] = set()
        unknown = False
        for event in events:
            index = event.get("index")
            row = self.rows.get(index) if isinstance(index, int) else None
            if row is None:
                unknown = unknown or isinstance(index, int)
                continue
            if row.apply(event):
                changed.add(row.index)
        return changed, bool(changed) and self._view_depends_on_events(), unknown

    def _view_depends_on_events(self) -> bool:
        return self.state_filter is not None or self.sort_key not in ("index", "attempts")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row.state] = out.get(row.state, 0) + 1
        return out

    def refresh_view(self, now: float | None = None) -> list[TrialRow]:
        """Filter and sort the rows into ``view`` (None values last in either direction)."""
        now = time.time() if now is None else now
        rows: Iterable[TrialRow] = self.rows.values()
        if self.state_filter:
            rows = [r for r in rows if r.state == self.state_filter]
        if self.search:
            needles = self.search.lower().split()
            rows = [r for r in rows if all(n in r.params_str.lower() for n in needles)]
        if self.sort_key == "index":  # no None to place; rows come nearly sorted (linear)
            self.view = sorted(rows, key=attrgetter("index"), reverse=self.descending)
            return self.view
        key = SORT_KEYS[self.sort_key]
        keyed = [(key(r, now), r.index, r) for r in rows]
        present = [k for k in keyed if k[0] is not None]
        missing = [k for k in keyed if k[0] is None]
        present.sort(key=lambda k: (k[0], k[1]), reverse=self.descending)
        missing.sort(key=lambda k: k[1])
        self.view = [k[2] for k in present] + [k[2] for k in missing]
        return self.view


@dataclass
class SweepRow:
    """One entry of the ``sweeps`` reply, with progress and ETA worked out."""

    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.data.get("counts") or {})

    @property
    def total(self) -> int:
        """Trials planned: an adaptive search proposes its ``samples`` as results arrive."""
        return max(int(self.data.get("trials") or 0), int(self.data.get("planned") or 0))

    @property
    def finished(self) -> int:
        return int(self.data.get("finished") or 0)

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate trials have finished so far; None when unknown.

        After a relaunch the rate is that of the trials finished since the (last)
        relaunch, over the time since it: the trials that finished before it would
        otherwise make the relaunched ones look done already or hopelessly slow."""
        if self.data.get("state") != "active":
            return None
        left = self.total - self.finished
        start, done = self.data.get("created_at"), self.finished
        if self.data.get("relaunched_at") is not None:
            start = self.data["relaunched_at"]
            done = int(self.data.get("finished_since_relaunch") or 0)
        if start is None or done <= 0 or left <= 0:
            return None
        return (now - float(start)) / done * left
