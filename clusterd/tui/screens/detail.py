"""One trial: overview (params, attempts, checkpoints, stop decision), plot, log, history.

Tabs keep every pane usable at 80x24. Pushed events for this trial re-read
``show`` (debounced) and, while the plot is visible, ``metrics`` (at most every
few seconds). The log tail reads the file the ``logs`` op names, following it
once a second while the attempt is live and the log tab is open.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, TabPane

from clusterd.errors import ClusterdError
from clusterd.tui.messages import DetailLoaded, PlotLoaded, RequestFailed
from clusterd.tui.model import FINAL_STATES, fmt_duration, fmt_value
from clusterd.tui.screens.actions import ActionsMixin
from clusterd.tui.styles import state_styles
from clusterd.tui.widgets.gpu_panel import GpuPanel
from clusterd.tui.widgets.header import StatusHeader
from clusterd.tui.widgets.log_tail import LogTail
from clusterd.tui.widgets.metric_plot import MetricPlot
from clusterd.tui.widgets.text_line import TextLine

__all__ = ["DetailScreen"]

SHOW_DEBOUNCE = 0.5
#: most marked trials one plot draws (the daemon's ``metrics`` op caps ``overlay`` alike)
MAX_OVERLAY = 8
PLOT_MIN_INTERVAL = 3.0


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%m-%d %H:%M:%S", time.localtime(t))


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(title, style="bold underline"), body, Text(""))


class DetailScreen(ActionsMixin):
    """Everything about one trial."""

    HELP_TITLE = "trial"
    HELP = (
        "One trial. Tabs: 1 overview, 2 plot (this trial vs the sweep's best trial and "
        "median, plus GPU sparklines; m and M switch the metric plotted, the trials "
        "marked with v in the trials list are drawn too), 3 log (o switches "
        "stdout/stderr, [ and ] the attempt), 4 history (every state transition). x stops "
        "the trial early by hand (it ends 'stopped', as if a rule stopped it); c cancels it."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('plot')", "Plot", show=False),
        Binding("3", "tab('log')", "Log", show=False),
        Binding("4", "tab('history')", "History", show=False),
        Binding("o", "toggle_stream", "stdout/err"),
        Binding("left_square_bracket", "attempt(-1)", "Prev attempt", show=False),
        Binding("right_square_bracket", "attempt(1)", "Next attempt", show=False),
        Binding("x", "stop_trial", "Stop early"),
        Binding("c", "cancel_trial", "Cancel"),
        Binding("y", "copy_path", "Copy dir"),
        Binding("m", "metric(1)", "Next metric", show=False),
        Binding("M", "metric(-1)", "Previous metric", show=False),
    ]
    DEFAULT_CSS = """
    DetailScreen #summary { height: 2; padding: 0 1; background: $boost; }
    DetailScreen TabbedContent { height: 1fr; }
    DetailScreen ContentSwitcher { height: 1fr; }
    DetailScreen TabPane { height: 1fr; }
    DetailScreen TabPane { padding: 0 1; }
    DetailScreen #plot-note { height: 1; color: $text-muted; }
    """

    def __init__(self, sweep: str, index: int, overlay: Sequence[int] = ()) -> None:
        super().__init__()
        self.sweep = sweep
        self.index = index
        #: other trials of the sweep whose curves the plot draws too (marked in the list)
        self.overlay = [i for i in overlay if i != index][:MAX_OVERLAY]
        #: the metric plotted: None until the first reply (the sweep's [metric])
        self.metric: str | None = None
        self.metric_names: list[str] = []
        self.name_ = f"{sweep}/{index}"
        self.topic = sweep
        self.show: dict[str, Any] = {}
        self._show_timer: Timer | None = None
        self._plot_at = 0.0
        self._plot_stale = True
        self._plot_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.sweep, str(self.index))
        yield TextLine(id="summary")
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static(id="overview-body")
            with TabPane("Plot", id="plot"):
                yield MetricPlot(id="metric-plot")
                yield Static(id="plot-note")
                yield GpuPanel()
            with TabPane("Log", id="log"):
                yield LogTail(self.name_)
            with TabPane("History", id="history"), VerticalScroll():
                yield Static(id="history-body")
        yield Footer()

    def on_mount(self) -> None:
        self._render_summary()
        self._focus_pane("overview")

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    # -- loading ---------------------------------------------------------------

    def load(self) -> None:
        self._show_timer = None
        self._fetch_show()
        if self.active_tab == "plot" or self._plot_stale:
            self._fetch_plot()
        if self.active_tab == "log":
            self.log_tail.show()

    @work(thread=True, exclusive=True, group="show")
    def _fetch_show(self) -> None:
        try:
            self.post_message(
                DetailLoaded(self.name_, self.capp.backend.call("show", trial=self.name_))
            )
        except ClusterdError as exc:
            self.post_message(RequestFailed("show", str(exc)))

    @work(thread=True, exclusive=True, group="plot")
    def _fetch_plot(self) -> None:
        backend = self.capp.backend
        try:
            extra: dict[str, Any] = {"overlay": self.overlay} if self.overlay else {}
            if self.metric:
                extra["name"] = self.metric
            metrics = backend.call("metrics", trial=self.name_, points=400, **extra)
            gpus = backend.call("gpu_samples", trial=self.name_, limit=120)
        except ClusterdError as exc:
            self.post_message(RequestFailed("metrics", str(exc)))
            return
        self.post_message(PlotLoaded(self.name_, metrics, gpus))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        was_live = self.show.get("state") not in FINAL_STATES
        self.show = message.show
        self.loaded = True
        self.refresh_bindings()
        self._render_summary()
        self._render_overview()
        self._render_history()
        if self.active_tab == "log" and was_live and self.show.get("state") in FINAL_STATES:
            self.log_tail.show(keep_offset=True)  # read the last lines the attempt wrote

    async def on_plot_loaded(self, message: PlotLoaded) -> None:
        self._plot_at = time.monotonic()
        self._plot_stale = False
        m = message.metrics
        self.metric = m.get("name") or self.metric
        self.metric_names = list(m.get("names") or [])
        self.query_one(MetricPlot).show(m)
        self.query_one("#plot-note", Static).update(_plot_note(m))
        await self.query_one(GpuPanel).show(message.gpus)

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        mine = [e for e in events if e.get("index") == self.index and "sweep_id" in e]
        if not mine or not self.loaded:
            return
        stopped = False
        for event in mine:
            if event.get("type") == "progress":
                for key in ("last_step", "last_value", "best_value", "best_step"):
                    if key in event:
                        self.show[key] = event[key]
            elif event.get("type") == "stop":  # a rule's decision, or ours (x)
                self.show["stop_decision"] = event.get("decision")
                stopped = True
            elif self._show_timer is None:
                self._show_timer = self.set_timer(SHOW_DEBOUNCE, self._reload_show)
        self._render_summary()
        if stopped:
            self._render_overview()
        self._plot_stale = True
        self._want_plot()

    def _want_plot(self) -> None:
        """Re-read the plot while it is shown, at most every PLOT_MIN_INTERVAL seconds,
        and once more after the last event (so the final points always show)."""
        if self.active_tab != "plot" or self._plot_timer is not None:
            return
        wait = self._plot_at + PLOT_MIN_INTERVAL - time.monotonic()
        if wait <= 0:
            self._fetch_plot()
        else:
            self._plot_timer = self.set_timer(wait, self._plot_due)

    def _plot_due(self) -> None:
        self._plot_timer = None
        if self._plot_stale:
            self._fetch_plot()

    def _reload_show(self) -> None:
        self._show_timer = None
        self._fetch_show()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id
        if tab:
            self._focus_pane(tab)
        if tab == "plot" and self._plot_stale and self.loaded:
            self._fetch_plot()
        if tab == "log":
            self.log_tail.show()
        else:
            self.log_tail.hide()

    def _focus_pane(self, tab: str) -> None:
        """Give the pane's scrollable the keys, so arrows, pgup/pgdn and end scroll it
        at once (1-4 switch tabs; the tab bar needs no focus)."""
        for widget in self.query_one(f"TabPane#{tab}").query("*"):
            if widget.focusable:
                widget.focus()
                return

    # -- rendering -------------------------------------------------------------

    def _render_summary(self) -> None:
        s = self.show
        state = s.get("state", "…")
        style = state_styles(self.app).get(state, "")
        metric = s.get("metric") or "metric"
        attempts = s.get("attempt_list") or []
        runtime = sum((a.get("runtime") or 0.0) for a in attempts) if attempts else None
        step = s.get("last_step")
        first = Text.assemble(
            (self.name_, "bold"),
            "  ",
            (state, style),
            f" · attempt {s.get('attempts', 0)}",
            f" · step {'-' if step is None else step}",
            f" · {metric} {fmt_value(s.get('last_value'))}",
            f" (best {fmt_value(s.get('best_value'))}",
        )
        if s.get("best_step") is not None:
            first.append(f" @{s['best_step']}")
        first.append(f") · ran {fmt_duration(runtime)}")
        reason = s.get("reason") or ""
        if s.get("waiting_for"):
            reason = f"waiting for: {s['waiting_for']}"
        second = Text(reason, style="dim")
        decision = s.get("stop_decision")
        if decision and state not in FINAL_STATES:
            why = decision.get("reason") or f"rule {decision.get('rule')}"
            stopping = state_styles(self.app).get("stopping", "")
            second = Text.assemble(("stopping", stopping), f": {why}")
        self.query_one("#summary", TextLine).show(Text("\n").join([first, second]))

    def _render_overview(self) -> None:
        s = self.show
        parts: list[RenderableType] = [
            _section("Parameters", _params_table(s.get("params") or {})),
            _section("Attempts", _attempts_table(s.get("attempt_list") or [])),
            _section("Checkpoints", _checkpoints_table(s.get("checkpoints") or [])),
            _section("Early stopping", _stop_pane(s.get("stop_decision"), s.get("state"))),
        ]
        if s.get("errors"):
            errors = Text("\n".join(f"attempt {e['attempt']}: {e['message']}" for e in s["errors"]))
            parts.append(_section("Errors", errors))
        parts.append(_section("Directory", Text(s.get("trial_dir", "-"))))
        code = s.get("code") or {}
        if code:
            parts.append(_section("Code", Text(" ".join(f"{k}={v}" for k, v in code.items()))))
        self.query_one("#overview-body", Static).update(Group(*parts))

    def _render_history(self) -> None:
        table = Table(box=None, padding=(0, 1), show_edge=False, expand=False)
        for col in ("time", "from", "", "to", "att", "reason"):
            table.add_column(col, no_wrap=col != "reason", style="dim" if col == "" else None)
        styles = state_styles(self.app)
        for x in self.show.get("transitions") or []:
            table.add_row(
                _when(x.get("t")),
                Text(x.get("from") or "-", style=styles.get(x.get("from") or "", "")),
                "→",
                Text(x.get("to") or "-", style=styles.get(x.get("to") or "", "")),
                str(x.get("attempt") or "-"),
                x.get("reason") or "",
            )
        self.query_one("#history-body", Static).update(table)

    # -- actions ---------------------------------------------------------------

    @property
    def log_tail(self) -> LogTail:
        return self.query_one(LogTail)

    def action_toggle_stream(self) -> None:
        self.action_tab("log")
        self.log_tail.toggle_stream()

    def action_attempt(self, delta: int) -> None:
        self.action_tab("log")
        self.log_tail.step_attempt(delta, len(self.show.get("attempt_list") or []))

    def action_metric(self, delta: int) -> None:
        """Plot the next (or previous) metric the trial reported."""
        names = self.metric_names
        if len(names) < 2:
            self.notify("this trial reported one metric" if names else "no metrics yet")
            return
        at = names.index(self.metric) if self.metric in names else -delta
        self.metric = names[(at + delta) % len(names)]
        self._plot_stale = True
        if self.active_tab != "plot":
            self.query_one(TabbedContent).active = "plot"  # its activation fetches
        else:
            self._fetch_plot()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_back(self) -> None:
        self.app.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out cancel and stop in the footer once the trial has ended."""
        if action in ("cancel_trial", "stop_trial") and self.show.get("state") in FINAL_STATES:
            return None
        return True

    def action_cancel_trial(self) -> None:
        self.ask_cancel_trial(self.name_, self.show.get("state", "unknown"))

    def action_stop_trial(self) -> None:
        state = self.show.get("state", "unknown")
        stopping = bool(self.show.get("stop_decision")) and state not in FINAL_STATES
        self.ask_stop_trial(self.name_, state, stopping)

    def action_copy_path(self) -> None:
        self.copy_trial_dir(self.name_)


def _plot_note(m: dict[str, Any]) -> str:
    """The line under the plot: what is drawn and which metrics ``m`` switches to."""
    best = (m.get("best") or {}).get("trial")
    note = f"median over {m.get('median_over', 0)} trial(s)"
    if best:
        note += f" · best trial {best}"
    overlay = [o["trial"].rpartition("/")[2] for o in m.get("overlay") or []]
    if overlay:
        note += f" · marked #{', #'.join(overlay)}"
    modes = m.get("modes") or {}
    others = [n for n in m.get("names") or [] if n != m.get("name")]
    if others:
        shown = ", ".join(f"{n} ({modes[n]})" if n in modes else n for n in others)
        note += f" · m: {shown}"
    return note


def _params_table(params: dict[str, Any]) -> RenderableType:
    if not params:
        return Text("none", style="dim")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in params.items():
        table.add_row(key, str(value))
    return table


def _attempts_table(attempts: list[dict[str, Any]]) -> RenderableType:
    if not attempts:
        return Text("not submitted yet", style="dim")
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for col in ("#", "outcome", "exit", "host", "job", "started", "runtime", "reason"):
        table.add_column(
            col, no_wrap=col != "reason", justify="right" if col in "#exit" else "left"
        )
    for a in attempts:
        exit_text = "-" if a.get("exit_code") is None else str(a["exit_code"])
        if a.get("signal"):
            exit_text += f" ({a['signal']})"
        table.add_row(
            str(a.get("number")),
            a.get("outcome") or a.get("state") or "-",
            exit_text,
            a.get("host") or "-",
            a.get("job_id") or "-",
            _when(a.get("started_at")),
            fmt_duration(a.get("runtime")),
            a.get("reason") or "",
        )
    return table


def _checkpoints_table(checkpoints: list[dict[str, Any]]) -> RenderableType:
    if not checkpoints:
        return Text("none", style="dim")
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for col in ("att", "step", "path"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for c in checkpoints[-5:]:
        table.add_row(str(c.get("attempt")), str(c.get("step")), c.get("path") or "")
    if len(checkpoints) > 5:
        return Group(Text(f"last 5 of {len(checkpoints)}", style="dim"), table)
    return table


#: a stop decision's keys, in the order the pane lists them, and their labels
_STOP_FIELDS = (
    ("rule", "rule"),
    ("step", "at step"),
    ("value", "value"),
    ("threshold", "threshold"),
    ("reason", "reason"),
    ("at", "decided"),
    ("grace", "grace period"),
)


def _stop_pane(decision: dict[str, Any] | None, state: str | None) -> RenderableType:
    """Why the trial was (or is being) stopped: the rule's inputs and verdict, as recorded."""
    if not decision:
        return Text(
            "no stop decision (the trial runs to its end unless a rule or x stops it)",
            style="dim",
        )
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, label in _STOP_FIELDS:
        if key in decision:
            table.add_row(label, _stop_value(key, decision[key]))
    for key, value in decision.items():  # a rule's own figures (median over n trials, rung)
        if key not in dict(_STOP_FIELDS):
            table.add_row(key, _stop_value(key, value))
    if state in FINAL_STATES:
        return table
    note = Text(
        "stopping: the trial sees trial.should_stop(); if it goes on, the daemon ends the "
        "attempt after the grace period",
        style="dim",
    )
    return Group(table, note)


def _stop_value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "at" and isinstance(value, int | float):
        return _when(value)
    if key == "grace" and isinstance(value, int | float):
        return fmt_duration(value)
    if isinstance(value, float):
        return fmt_value(value)
    return str(value)
