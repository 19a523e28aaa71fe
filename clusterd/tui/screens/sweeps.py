"""The first screen: every sweep with its progress bar, best value and ETA.

A sweep list is small, so this screen simply re-reads ``sweeps`` — but only
when the daemon says something changed, at most once a second, never on a
timer of its own.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static

from clusterd.errors import ClusterdError
from clusterd.tui.messages import RequestFailed, SweepsLoaded
from clusterd.tui.model import SweepRow, fmt_duration, fmt_value
from clusterd.tui.screens.actions import ActionsMixin
from clusterd.tui.styles import state_styles
from clusterd.tui.widgets.header import ConnectionState, StatusHeader
from clusterd.tui.widgets.state_bar import state_bar, state_legend

__all__ = ["SweepsScreen"]

#: re-read the list at most this often while events arrive (seconds)
RELOAD_DEBOUNCE = 1.0


class SweepsScreen(ActionsMixin):
    """All sweeps; enter opens one."""

    HELP_TITLE = "sweeps"
    HELP = (
        "Every sweep the daemon knows, newest last. The bar shows trials by state "
        "(█ finished, ▒ waiting); ETA assumes trials keep finishing at the rate so far."
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=False),
        Binding("c", "cancel_sweep", "Cancel sweep"),
        Binding("r", "relaunch", "Relaunch failed"),
        Binding("e", "export", "Export"),
    ]
    DEFAULT_CSS = """
    SweepsScreen DataTable { height: 1fr; }
    SweepsScreen #info {
        height: 5;
        border-top: solid $primary 50%;
        padding: 0 1;
    }
    """

    topic = None

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: list[SweepRow] = []
        self._reload: Timer | None = None
        self._wide: bool | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader("sweeps")
        yield DataTable(id="sweeps", cursor_type="row", zebra_stripes=False)
        yield Static(id="info")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._connection_changed)
        self.watch(self.app, "theme", lambda _: self._fill())

    def on_resize(self) -> None:
        wide = self.size.width >= 100
        if wide != self._wide:
            self._wide = wide
            self._fill()

    # -- data ------------------------------------------------------------------

    def load(self) -> None:
        self._reload = None
        self._fetch()

    @work(thread=True, exclusive=True, group="load")
    def _fetch(self) -> None:
        try:
            self.post_message(SweepsLoaded(self.capp.backend.call("sweeps")))
        except ClusterdError as exc:
            self.post_message(RequestFailed("sweeps", str(exc)))

    def on_sweeps_loaded(self, message: SweepsLoaded) -> None:
        self.sweeps = [SweepRow(s) for s in message.sweeps]
        self.loaded = True
        self._fill()

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        if self._reload is None:
            self._reload = self.set_timer(RELOAD_DEBOUNCE, self.load)

    def _connection_changed(self, state: ConnectionState) -> None:
        if not self.loaded:
            self._show_info()

    # -- rendering -------------------------------------------------------------

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        keep = self.current.name if self.current else None
        table.clear(columns=True)
        wide = bool(self._wide)
        bar_width = 24 if wide else 12
        table.add_column("sweep", key="name")
        if wide:
            table.add_column("driver", key="driver")
        table.add_columns("state", "trials by state", "done", "best", "ETA")
        styles = state_styles(self.app)
        now = self.capp.clock()
        for sweep in self.sweeps:
            d = sweep.data
            pct = 100 * sweep.finished / sweep.total if sweep.total else 0
            cells: list[Any] = [Text(sweep.name, style="bold")]
            if wide:
                cells.append(d.get("driver", ""))
            cells += [
                _sweep_state(d.get("state", "")),
                state_bar(sweep.counts, bar_width, styles),
                Text(f"{sweep.finished}/{sweep.total} {pct:3.0f}%", justify="right"),
                Text(fmt_value(d.get("best")), justify="right"),
                Text(fmt_duration(sweep.eta(now)), justify="right"),
            ]
            table.add_row(*cells, key=sweep.name)
        if keep is not None and keep in {s.name for s in self.sweeps}:
            table.move_cursor(row=table.get_row_index(keep))
        self._show_info()

    @property
    def current(self) -> SweepRow | None:
        table = self.query_one(DataTable)
        if not self.sweeps or not 0 <= table.cursor_row < len(self.sweeps):
            return None
        return self.sweeps[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_info()

    def _show_info(self) -> None:
        info = self.query_one("#info", Static)
        state: ConnectionState = self.capp.connection
        if not self.loaded:
            info.update(
                Text.assemble(
                    ("Waiting for the daemon", "bold"),
                    f" at {state.address}\n",
                    "Start it with `clusterd start`; this screen connects by itself.",
                )
                if not state.connected
                else Text("loading…", style="dim")
            )
            return
        sweep = self.current
        if sweep is None:
            info.update(
                Text("No sweeps yet: submit one with `clusterctl submit sweep.toml`.", style="dim")
            )
            return
        d = sweep.data
        styles, narrow = state_styles(self.app), self.size.width < 120
        metric = f"{d.get('metric')} ({d.get('mode')})" if d.get("metric") else "no metric"
        how = ""  # the methods, when not the plain ones
        if d.get("search") not in (None, "grid", "random"):
            how += f" · search: {d['search']}"
        if d.get("early_stopping") not in (None, "none"):
            how += f" · stops: {d['early_stopping']}"
        created = d.get("created_at")
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "-"
        info.update(
            Text.assemble(
                (sweep.name, "bold"),
                f" · {d.get('driver')} · {metric} · best {fmt_value(d.get('best'))}"
                f" · since {since}\n",
                state_bar(sweep.counts, 30 if narrow else 40, styles),
                "  ",
                state_legend(sweep.counts, styles, short=narrow),
                f"\n{d.get('output_dir', '')}",
                (how, "dim"),
            )
        )

    # -- actions ---------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from clusterd.tui.screens.trials import TrialsScreen

        sweep = self.current
        if sweep is not None:
            self.app.push_screen(TrialsScreen(sweep.name))

    def action_cancel_sweep(self) -> None:
        sweep = self.current
        if sweep is not None:
            live = sweep.counts.get("queued", 0) + sweep.counts.get("running", 0)
            self.ask_cancel_sweep(sweep.name, live)

    def action_relaunch(self) -> None:
        sweep = self.current
        if sweep is not None:
            self.ask_relaunch_failed(sweep.name, sweep.counts.get("failed", 0))

    def action_export(self) -> None:
        sweep = self.current
        if sweep is not None:
            self.ask_export(sweep.name)


def _sweep_state(state: str) -> Text:
    style = {"active": "bold", "done": "dim", "cancelled": "italic"}.get(state, "")
    return Text(state, style=style)
