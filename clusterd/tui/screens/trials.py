"""The trials of one sweep: state-coloured, sortable, filterable by state, searchable.

Rows live in a ``TrialSet``; pushed events update them in place and the virtual
``TrialTable`` repaints only the lines on screen. Runtime and GPU columns come
from one ``export`` and one ``gpus`` request after the table has painted, then
runtime advances locally from the transition events.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Footer, Input

from clusterd.errors import ClusterdError, NotFound
from clusterd.tui.messages import (
    RequestFailed,
    TopicGone,
    TrialExtrasLoaded,
    TrialsLoaded,
)
from clusterd.tui.model import SORT_KEYS, TrialSet, fmt_value
from clusterd.tui.screens.actions import ActionsMixin
from clusterd.tui.screens.dialogs import FilterScreen
from clusterd.tui.styles import state_styles
from clusterd.tui.widgets.header import StatusHeader
from clusterd.tui.widgets.state_bar import state_bar, state_legend
from clusterd.tui.widgets.text_line import TextLine
from clusterd.tui.widgets.trial_table import TrialTable

__all__ = ["TrialsScreen"]

#: GPU utilisation is re-read at most this often while events arrive (seconds)
GPU_REFRESH = 30.0
#: a trial index we do not know (``submit --extend``) re-reads the list after this delay
RELOAD_DEBOUNCE = 1.0


class TrialsScreen(ActionsMixin):
    """One sweep's trials; enter opens a trial."""

    HELP_TITLE = "trials"
    HELP = (
        "One line per trial, updated live. f filters by state, / searches the "
        "parameters (all words must match, e.g. 'lr=0.01 adam'), s and S sort. "
        "x stops the highlighted trial early (it ends 'stopped', as if a rule stopped it); "
        "c cancels it. v marks trials (+): the plot of the trial you open draws the marked "
        "ones over it. u sorts by mean GPU utilisation, lowest first (again: highest "
        "first); a ! before it: the trial's GPUs have sat idle for its [gpu] idle_warning."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open", show=False),
        Binding("f", "filter", "Filter"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("u", "sort_gpu", "Sort by GPU use", show=False),
        Binding("x", "stop_trial", "Stop early"),
        Binding("c", "cancel_trial", "Cancel"),
        Binding("C", "cancel_sweep", "Cancel sweep", show=False),
        Binding("r", "relaunch", "Relaunch failed", show=False),
        Binding("y", "copy_path", "Copy dir", show=False),
        Binding("e", "export", "Export", show=False),
        Binding("v", "mark", "Mark for plot", show=False),
    ]
    DEFAULT_CSS = """
    TrialsScreen #summary { height: 1; padding: 0 1; background: $boost; }
    TrialsScreen #viewbar { height: 1; padding: 0 1; color: $text-muted; }
    TrialsScreen #search { dock: bottom; height: 1; border: none; padding: 0 1; display: none; }
    TrialsScreen #search.-active { display: block; }
    """

    def __init__(self, sweep: str) -> None:
        super().__init__()
        self.sweep = sweep
        self.topic = sweep
        self.trials = TrialSet()
        self.summary: dict[str, Any] = {}
        self._reload: Timer | None = None
        self._gpu_at = 0.0
        self.first_paint_at: float | None = None
        self._counts: dict[str, int] = {}
        self._best: tuple[float | None, int | None] = (None, None)

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.sweep)
        yield TextLine(id="summary")
        yield TextLine(id="viewbar")
        yield TrialTable(clock=self.capp.clock, id="table")
        yield Input(placeholder="search params: words must all match", id="search")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(TrialTable)
        table.empty_text = "loading…"
        table.on_cursor = lambda row: self._show_viewbar()
        table.focus()
        self.set_interval(1.0, table.tick)
        self.watch(self.app, "theme", lambda _: self._show_summary())

    @property
    def table(self) -> TrialTable:
        return self.query_one(TrialTable)

    # -- data ------------------------------------------------------------------

    def load(self) -> None:
        self._reload = None
        self._fetch()

    @work(thread=True, exclusive=True, group="load")
    def _fetch(self) -> None:
        backend = self.capp.backend
        try:
            trials = backend.call("trials", sweep=self.sweep)
            summary = next((s for s in backend.call("sweeps") if s["name"] == self.sweep), None)
        except ClusterdError as exc:
            if isinstance(exc, NotFound):
                self.post_message(TopicGone(self.sweep, str(exc)))
            else:
                self.post_message(RequestFailed("trials", str(exc)))
            return
        self.post_message(TrialsLoaded(self.sweep, trials, summary, self.capp.clock()))

    @work(thread=True, exclusive=True, group="extras")
    def _fetch_extras(self, runtimes: bool) -> None:
        backend = self.capp.backend
        try:
            at = self.capp.clock()
            gpus = backend.call("gpus", sweep=self.sweep)
            rt: dict[int, float] = {}
            if runtimes:
                rt = {
                    r["index"]: r["runtime_s"]
                    for r in backend.call("export", sweep=self.sweep)["rows"]
                }
        except ClusterdError:
            return  # the columns stay as they were; the next load tries again
        util: dict[int, list[float]] = {}
        for g in gpus:
            if g.get("util_avg") is not None:
                util.setdefault(int(g["trial"].rpartition("/")[2]), []).append(g["util_avg"])
        avg = {i: sum(v) / len(v) for i, v in util.items()}
        self.post_message(TrialExtrasLoaded(self.sweep, rt, avg, at))

    def on_trials_loaded(self, message: TrialsLoaded) -> None:
        keep = self.table.current.index if self.table.current else None
        self.trials.load(message.trials)
        self._gpu_from_rows(message.trials)
        self.summary = message.summary or {}
        self.trials.mode = self.summary.get("mode")
        self.table.empty_text = "no trials match" if self.trials.rows else "no trials"
        self._recount()
        self._refresh_view(keep)
        if not self.loaded and self.first_paint_at is None:
            self.call_after_refresh(self._painted)
        self.loaded = True
        self._gpu_at = time.monotonic()
        self._fetch_extras(runtimes=True)

    def _gpu_from_rows(self, views: list[dict[str, Any]]) -> None:
        """The GPU column and idle flags a ``trials`` reply carries (``gpu_util``: mean
        utilisation; ``gpu_idle_since``: flagged by the daemon's idle-GPU watch)."""
        for view in views:
            util = view.get("gpu_util")
            row = self.trials.rows.get(view["index"])
            if util is not None and row is not None:
                row.gpu_util = util
        self.table.set_gpu_idle({v["index"] for v in views if v.get("gpu_idle_since") is not None})

    def _gpu_idle_events(self, events: list[dict[str, Any]]) -> set[int]:
        """Fold the daemon's ``gpu_idle`` events (flag set or cleared) into the table."""
        idle, changed = set(self.table.gpu_idle), set()
        for event in events:
            if event.get("type") == "gpu_idle" and isinstance(event.get("index"), int):
                if event.get("idle"):
                    idle.add(event["index"])
                else:
                    idle.discard(event["index"])
                changed.add(event["index"])
        if changed:
            self.table.set_gpu_idle(idle)
        return changed

    def _painted(self) -> None:
        self.first_paint_at = time.perf_counter()

    def on_trial_extras_loaded(self, message: TrialExtrasLoaded) -> None:
        self.trials.set_extras(message.runtimes, message.gpu_util, message.fetched_at)
        if self.trials.sort_key in ("gpu", "runtime"):
            self._refresh_view()
        else:
            self.table.refresh()

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        if not self.loaded:
            return
        for event in events:
            if event.get("type") == "sweep" and event.get("name") == self.sweep:
                self.summary["state"] = event.get("state")
        changed, resort, unknown = self.trials.apply(events)
        if self._gpu_idle_events(events):
            self._show_viewbar()
        if unknown and self._reload is None:
            self._reload = self.set_timer(RELOAD_DEBOUNCE, self.load)
        # an attempt's last metrics come as a ``progress`` event ahead of its ``trial``
        # event (the daemon ingests them in the same transaction): no re-read at its end
        transitions = [e for e in events if e.get("type") == "trial"]
        if transitions:
            self._recount()
        else:
            self._improve(self.trials.rows[i] for i in changed)
        if resort:
            self._refresh_view()
        elif changed:
            self.table.rows_changed(changed)
            self._show_summary()
        if time.monotonic() - self._gpu_at > GPU_REFRESH:
            self._gpu_at = time.monotonic()
            self._fetch_extras(runtimes=False)

    # -- rendering -------------------------------------------------------------

    def _refresh_view(self, keep: int | None = None) -> None:
        table = self.table
        if keep is None and table.current is not None:
            keep = table.current.index
        view = self.trials.refresh_view(self.capp.clock())
        table.sort_key, table.descending = self.trials.sort_key, self.trials.descending
        table.set_rows(view, keep=keep)
        self._show_summary()

    def _recount(self) -> None:
        """Counts per state and the best trial, from every row (after a load or transitions)."""
        self._counts = self.trials.counts()
        self._best = (None, None)
        self._improve(self.trials.rows.values())

    def _improve(self, rows: Any) -> None:
        """Fold rows whose best value changed into the sweep's best (progress only improves)."""
        best, maximize = self._best[0], self.trials.mode == "max"
        for row in rows:
            v = row.best_value
            if v is not None and (best is None or (v > best if maximize else v < best)):
                best, self._best = v, (v, row.index)

    def _show_summary(self) -> None:
        if not self.is_mounted:
            return
        styles = state_styles(self.app)
        counts, narrow = self._counts, self.size.width < 120
        line = Text.assemble((self.summary.get("state", "…"), "bold"), " ")
        line.append_text(state_bar(counts, 12 if narrow else 24, styles))
        line.append(" ")
        line.append_text(state_legend(counts, styles, short=narrow))
        self.query_one("#summary", TextLine).show(line)
        self._show_viewbar()

    def _show_viewbar(self) -> None:
        """The view line; also the benchmark's repaint marker ("row N of M")."""
        t = self.trials
        parts = [f"state: {t.state_filter or 'all'}"]
        if t.search:
            parts.append(f"search: {t.search}")
        parts.append(f"sort: {t.sort_key} {'▼' if t.descending else '▲'}")
        cursor = self.table.cursor + 1 if t.view else 0
        parts.append(f"row {cursor} of {len(t.view)}")
        if self.table.marked:  # v: plotted together when a trial is opened
            parts.append(f"{len(self.table.marked)} marked")
        if self.table.gpu_idle:  # the daemon's [gpu] idle_warning fired for these
            parts.append(f"!{len(self.table.gpu_idle)} with idle GPUs")
        metric = self.summary.get("metric")
        if metric:
            value, index = self._best
            parts.append(f"best {metric} {fmt_value(value)}" + (f" (#{index})" if index else ""))
        self.query_one("#viewbar", TextLine).show(" · ".join(parts))

    # -- view controls ---------------------------------------------------------

    def action_filter(self) -> None:
        def chosen(state: str | None) -> None:
            if state is not None:
                self.trials.state_filter = state or None
                self._refresh_view()

        self.app.push_screen(FilterScreen(self.trials.counts(), self.trials.state_filter), chosen)

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("-active")
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.trials.search = event.value.strip()
        self._refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()
        if not event.value.strip():
            event.input.remove_class("-active")

    def action_sort(self) -> None:
        keys = list(SORT_KEYS)
        self._sort_by(keys[(keys.index(self.trials.sort_key) + 1) % len(keys)], toggle=False)

    def action_sort_gpu(self) -> None:
        """Sort by mean GPU utilisation, lowest (the idle ones) first; again: reverse."""
        self._sort_by("gpu", toggle=True)

    def action_reverse(self) -> None:
        self.trials.descending = not self.trials.descending
        self._refresh_view()

    def on_trial_table_header_clicked(self, message: TrialTable.HeaderClicked) -> None:
        self._sort_by(message.key, toggle=True)

    def _sort_by(self, key: str, toggle: bool) -> None:
        if toggle and key == self.trials.sort_key:
            self.trials.descending = not self.trials.descending
        else:
            self.trials.sort_key = key
            # best-first for the metric columns, in the metric's direction
            self.trials.descending = key in ("best", "last") and self.trials.mode == "max"
        self._refresh_view()

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus or search.has_class("-active"):
            search.value = ""
            search.remove_class("-active")
            self.table.focus()
            return
        self.app.pop_screen()

    # -- actions ---------------------------------------------------------------

    def on_trial_table_selected(self, message: TrialTable.Selected) -> None:
        self._open(message.index)

    def action_open(self) -> None:
        row = self.table.current
        if row is not None:
            self._open(row.index)

    def _open(self, index: int) -> None:
        from clusterd.tui.screens.detail import DetailScreen

        self.app.push_screen(DetailScreen(self.sweep, index, overlay=sorted(self.table.marked)))

    def action_mark(self) -> None:
        """Mark (or unmark) the highlighted trial: opened trials plot the marked ones too."""
        if self.table.toggle_mark() is not None:
            self._show_viewbar()

    def action_cancel_trial(self) -> None:
        row = self.table.current
        if row is not None:
            self.ask_cancel_trial(f"{self.sweep}/{row.index}", row.state)

    def action_stop_trial(self) -> None:
        row = self.table.current
        if row is not None:
            self.ask_stop_trial(f"{self.sweep}/{row.index}", row.state, row.stopping)

    def action_cancel_sweep(self) -> None:
        counts = self.trials.counts()
        self.ask_cancel_sweep(self.sweep, counts.get("queued", 0) + counts.get("running", 0))

    def action_relaunch(self) -> None:
        self.ask_relaunch_failed(self.sweep, self.trials.counts().get("failed", 0))

    def action_copy_path(self) -> None:
        row = self.table.current
        if row is not None:
            self.copy_trial_dir(f"{self.sweep}/{row.index}")

    def action_export(self) -> None:
        self.ask_export(self.sweep)
