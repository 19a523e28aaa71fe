"""``?``: every key of the screen underneath, read from its live bindings.

The list is built from the screen's active bindings (screen, focused widget and
app), so it cannot drift from what the keys actually do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

__all__ = ["HelpScreen", "bindings_table"]

_KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "escape": "esc",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "space": "space",
}


#: Textual's own bindings that say nothing about clusterd
_SYSTEM_ACTIONS = frozenset(
    {
        "focus_next",
        "focus_previous",
        "copy_text",
        "screenshot",
        "scroll_left",
        "scroll_right",
        "page_left",
        "page_right",
    }
)


def _key(key: str) -> str:
    return _KEY_NAMES.get(key, key)


def bindings_table(screen: Screen[Any]) -> Table:
    """One row per action: all its keys, and its description."""
    grouped: dict[tuple[int, str], tuple[list[str], str]] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        action = binding.action.rpartition(".")[2]
        if action in _SYSTEM_ACTIONS or key in ("ctrl+c", "ctrl+q"):
            continue
        slot = grouped.setdefault((id(active.node), binding.action), ([], binding.description))
        if _key(key) not in slot[0]:
            slot[0].append(_key(key))
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, description in grouped.values():
        table.add_row("/".join(keys), description or "")
    return table


class HelpScreen(ModalScreen[None]):
    """The keys of ``screen`` plus what the screen is for; escape or ``?`` closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; background: $background 60%; }
    HelpScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: auto; max-height: 100%; }
    HelpScreen .title { text-style: bold; }
    HelpScreen .about { margin-bottom: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.target = screen

    def compose(self) -> ComposeResult:
        about = getattr(self.target, "HELP", "")
        with Vertical():
            yield Static(
                f"Keys — {getattr(self.target, 'HELP_TITLE', 'clusterd')}", classes="title"
            )
            if about:
                yield Static(Text(about), classes="about")
            with VerticalScroll():
                yield Static(bindings_table(self.target))
                yield Static(
                    Text(
                        "\nThe mouse works too: click a row to highlight it, click it again "
                        "to open it, click a column title to sort.\nThe header says whether "
                        "the daemon is connected; after a restart the TUI reconnects by itself.",
                        style="dim",
                    )
                )

    def action_close(self) -> None:
        self.dismiss(None)
