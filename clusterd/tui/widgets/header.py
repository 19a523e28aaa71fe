"""The one-line header: where you are, and whether the daemon is there.

Every screen has one. It watches the app's ``connection`` so a daemon restart
shows as "reconnecting" within a second and clears by itself once the event
stream is back; no screen has to know.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

__all__ = ["ConnectionState", "StatusHeader"]


@dataclass(frozen=True)
class ConnectionState:
    """What the header says about the daemon."""

    connected: bool = False
    detail: str = "connecting…"
    version: str | None = None
    address: str = ""


class StatusHeader(Static):
    """Breadcrumbs (``clusterd > lr-depth > 7``) left, ``● connected`` (or why not) right."""

    DEFAULT_CSS = """
    StatusHeader {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    StatusHeader.-offline {
        background: $error 40%;
    }
    """

    def __init__(self, *crumbs: str) -> None:
        super().__init__()
        self.crumbs = crumbs

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._on_connection)

    def _on_connection(self, state: ConnectionState) -> None:
        self.set_class(not state.connected, "-offline")
        self.refresh()

    def render(self) -> Text:
        state: ConnectionState = getattr(self.app, "connection", ConnectionState())
        left = Text(" clusterd", style="bold")
        for crumb in self.crumbs:
            left.append(" › ", style="dim")  # noqa: RUF001
            left.append(crumb, style="bold")
        if state.connected:
            right = Text("● connected ", style="bold")
            if state.version:
                right.append(f"v{state.version}", style="dim")
        else:
            right = Text(f"○ {state.detail}", style="bold")
        right.append(" ")
        width = self.size.width
        room = width - left.cell_len - 1
        if right.cell_len > room:
            right.truncate(max(0, room), overflow="ellipsis")
        gap = max(1, width - left.cell_len - right.cell_len)
        return Text.assemble(left, " " * gap, right)
