"""``TrialTable``: a virtual table that renders only the lines on screen.

Why not ``DataTable``: a sweep can hold 10,000+ trials and 100 of them report
ten times a second. ``DataTable`` keeps a cell object per value and re-measures
columns on updates; here a row is one ``TrialRow`` and a line is rendered on
demand from it (Textual's Line API), cached by the row's ``version``. Trials
marked with ``v`` (``marked``) show a ``+`` before their index: the detail screen
plots them together; trials whose GPUs sit idle (``gpu_idle``, the daemon's
``[gpu] idle_warning``) show a ``!`` before their GPU utilisation. Scrolling
costs the ~20 visible lines, an event costs a version bump, and nothing is done
for rows off screen. Column widths are fixed; ``params`` takes what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from clusterd.tui.model import TrialRow, fmt_duration, fmt_value
from clusterd.tui.styles import state_styles

__all__ = ["COLUMNS", "Column", "TrialTable"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # 0: the flexible column, takes the rest of the line
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("index", "#", 6, right=True),
    Column("state", "state", 9),
    Column("attempts", "att", 3, right=True),
    Column("step", "step", 7, right=True),
    Column("last", "last", 9, right=True),
    Column("best", "best", 9, right=True),
    Column("gpu", "gpu%", 4, right=True),
    Column("runtime", "runtime", 7, right=True),
    Column("params", "params", 0),
)


def _cell(row: TrialRow, key: str, now: float) -> str:
    if key == "index":
        return str(row.index)
    if key == "state":
        return row.shown_state
    if key == "attempts":
        return str(row.attempts)
    if key == "step":
        return "-" if row.last_step is None else str(row.last_step)
    if key == "last":
        return fmt_value(row.last_value)
    if key == "best":
        return fmt_value(row.best_value)
    if key == "gpu":
        return "-" if row.gpu_util is None else f"{row.gpu_util:.0f}"
    if key == "runtime":
        return fmt_duration(row.runtime(now))
    return row.params_str


def _fit(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        return text[: max(0, width - 1)] + "…" if width > 0 else ""
    return text.rjust(width) if right else text.ljust(width)


class TrialTable(ScrollView, can_focus=True):
    """The trials of one sweep, one line each; keys move a cursor, enter opens a trial."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "trial-table--header",
        "trial-table--cursor",
        "trial-table--empty",
        "trial-table--gpu-idle",
    }

    DEFAULT_CSS = """
    TrialTable {
        overflow-x: hidden;
        overflow-y: auto;
        height: 1fr;
        background: $surface;
    }
    TrialTable > .trial-table--header {
        text-style: bold;
        background: $panel;
    }
    TrialTable > .trial-table--cursor {
        background: $primary 30%;
    }
    TrialTable:focus > .trial-table--cursor {
        background: $accent 40%;
        text-style: bold;
    }
    TrialTable > .trial-table--empty {
        color: $text-muted;
        text-style: italic;
    }
    TrialTable > .trial-table--gpu-idle {
        color: $text-warning;
        text-style: bold;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f,space", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        """The cursor moved onto the trial with this index."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class Selected(Message):
        """Enter (or a click on the highlighted row) on the trial with this index."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class HeaderClicked(Message):
        """A click on a column title: sort by ``key``."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, clock: Any = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[TrialRow] = []
        self.sort_key = "index"
        self.descending = False
        self.empty_text = "no trials"
        self._clock = clock
        self._lines: dict[tuple[Any, ...], Strip] = {}
        self._tick = 0
        self.lines_rendered = 0  # for the benchmark: proves off-screen rows cost nothing
        #: called as the cursor moves, before the repaint (the screen's status line)
        self.on_cursor: Callable[[TrialRow], None] | None = None
        #: trials marked (``v``) to plot together: their index shows a ``+``
        self.marked: set[int] = set()
        #: trials whose GPUs the daemon flagged idle: their GPU column shows a ``!``
        self.gpu_idle: set[int] = set()

    # -- data ------------------------------------------------------------------

    def set_rows(self, rows: list[TrialRow], keep: int | None = None) -> None:
        """Show ``rows``; keep the cursor on trial ``keep`` if it is still there."""
        self.rows = rows
        self.virtual_size = Size(self.scrollable_content_region.width, len(rows) + 1)
        target = 0
        if keep is not None:
            target = next((i for i, r in enumerate(rows) if r.index == keep), 0)
        self._lines.clear()
        self.cursor = min(target, max(0, len(rows) - 1))
        self.refresh()

    def toggle_mark(self) -> TrialRow | None:
        """Mark the highlighted trial for the plot overlay, or unmark it."""
        row = self.current
        if row is not None:
            self.marked ^= {row.index}
            row.version += 1  # its cached line shows the mark now
            self.refresh()
        return row

    def set_gpu_idle(self, indices: set[int]) -> None:
        """Flag these trials' GPUs idle (and no others); repaint the rows that changed."""
        changed = indices ^ self.gpu_idle
        self.gpu_idle = set(indices)
        for row in self.rows:
            if row.index in changed:
                row.version += 1
        if changed:
            self.refresh()

    def rows_changed(self, indices: set[int]) -> None:
        """Some rows' fields changed in place; repaint if any of them is on screen."""
        if any(r.index in indices for r in self._visible_rows()):
            self.refresh()

    @property
    def current(self) -> TrialRow | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def _visible_rows(self) -> list[TrialRow]:
        top = int(self.scroll_offset.y)
        return self.rows[top : top + max(0, self.size.height - 1)]

    def _now(self) -> float:
        return float(self._clock()) if self._clock else time.time()

    # -- cursor ----------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        row = self.current
        if row is not None:
            if self.on_cursor is not None:
                self.on_cursor(row)  # same frame as the cursor: no message round trip
            self.post_message(self.Highlighted(row.index))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        if self.rows:
            self.cursor = len(self.rows) - 1 if where < 0 else 0

    def action_select(self) -> None:
        row = self.current
        if row is not None:
            self.post_message(self.Selected(row.index))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            key = self._column_at(offset.x)
            if key:
                self.post_message(self.HeaderClicked(key))
            return
        i = int(self.scroll_offset.y) + offset.y - 1
        if 0 <= i < len(self.rows):
            if i == self.cursor or event.chain > 1:
                self.post_message(self.Selected(self.rows[i].index))
            self.cursor = i

    def _column_at(self, x: int) -> str | None:
        pos = 0
        for col, width in self._widths():
            if pos <= x < pos + width + 1:
                return col.key if col.key != "params" else None
            pos += width + 1
        return None

    # -- rendering -------------------------------------------------------------

    def tick(self) -> None:
        """Advance running trials' runtime column (the screen calls this once a second)."""
        if any(r.running_since is not None for r in self._visible_rows()):
            self._tick += 1
            self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()

    def on_resize(self) -> None:
        self._lines.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.rows) + 1)

    def _widths(self) -> list[tuple[Column, int]]:
        width = self.scrollable_content_region.width
        fixed = sum(c.width + 1 for c in COLUMNS if c.width)
        return [(c, c.width or max(0, width - fixed)) for c in COLUMNS]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            return self._header_line(width)
        i = int(self.scroll_offset.y) + y - 1
        if not self.rows and y == 1:
            style = self.get_component_rich_style("trial-table--empty")
            return Strip([Segment(_fit(f" {self.empty_text}", width, False), style)], width)
        if i >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        row = self.rows[i]
        cursor = i == self.cursor
        key = (row.index, row.version, width, cursor, self._tick if row.running_since else 0)
        strip = self._lines.get(key)
        if strip is None:
            if len(self._lines) > 4096:
                self._lines.clear()
            strip = self._lines[key] = self._row_line(row, width, cursor)
        return strip

    def _header_line(self, width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("trial-table--header")
        parts = []
        for col, w in self._widths():
            label = col.label
            if col.key == self.sort_key:
                label += "▼" if self.descending else "▲"
            parts.append(_fit(label, w, col.right))
        return Strip([Segment(" ".join(parts), style)], width).adjust_cell_length(width, style)

    def _row_line(self, row: TrialRow, width: int, cursor: bool) -> Strip:
        self.lines_rendered += 1
        base = self.rich_style
        if cursor:
            base = base + self.get_component_rich_style("trial-table--cursor")
        state_style = state_styles(self.app).get(row.shown_state, Style())
        now = self._now()
        segments = []
        for n, (col, w) in enumerate(self._widths()):
            cell = _cell(row, col.key, now)
            style = base + state_style if col.key in ("state", "index") else base
            if col.key == "index" and row.index in self.marked:
                cell = "+" + cell
            elif col.key == "gpu" and row.index in self.gpu_idle:
                cell = "!" + cell.lstrip("-")
                style = base + self.get_component_rich_style("trial-table--gpu-idle")
            text = _fit(cell, w, col.right)
            segments.append(Segment(text if n == 0 else " " + text, style))
        return Strip(segments).adjust_cell_length(width, base)
