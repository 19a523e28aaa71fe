"""Modal dialogs: confirm an action, choose a state filter, name an export file.

Every action that changes the daemon's state (cancel, relaunch) or writes a
file (export) goes through one of these, so a stray key never cancels a trial.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from clusterd.tui.model import STATES
from clusterd.tui.styles import state_styles

__all__ = ["ConfirmScreen", "ExportScreen", "FilterScreen"]

_DIALOG_CSS = """
{name} {{
    align: center middle;
    background: $background 60%;
}}
{name} > Vertical {{
    width: 64;
    max-width: 100%;
    height: auto;
    max-height: 100%;
    border: round $primary;
    background: $surface;
    padding: 0 1;
}}
{name} .title {{
    text-style: bold;
    margin-bottom: 1;
}}
{name} Horizontal {{
    height: auto;
    align: right middle;
    margin-top: 1;
}}
{name} Button {{
    margin-left: 1;
    min-width: 10;
}}
"""


class ConfirmScreen(ModalScreen[bool]):
    """``y`` confirms, ``n`` or escape backs out; the buttons do the same with the mouse."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str = "", danger: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            if self.body:
                yield Static(self.body)
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class FilterScreen(ModalScreen["str | None"]):
    """Pick the state to show: ``0`` all, ``1``-``7`` a state, or arrows and enter.

    Dismisses with ``""`` for all states, a state name, or None when cancelled.
    """

    DEFAULT_CSS = (
        _DIALOG_CSS.format(name="FilterScreen")
        + """
    FilterScreen > Vertical { width: 40; }
    FilterScreen OptionList, FilterScreen OptionList:focus {
        height: auto; max-height: 12; border: none; padding: 0; background: $surface;
    }
    """
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel"),
        *(Binding(str(i), f"pick({i})", show=False) for i in range(len(STATES) + 1)),
    ]

    def __init__(self, counts: dict[str, int], current: str | None) -> None:
        super().__init__()
        self.counts = counts
        self.current = current

    def compose(self) -> ComposeResult:
        styles = state_styles(self.app)
        total = sum(self.counts.values())
        options = [Option(Text.assemble("0  all ", (f"({total})", "dim")), id="")]
        for i, state in enumerate(STATES, start=1):
            label = Text.assemble(
                f"{i}  ", (state, styles[state]), " ", (f"({self.counts.get(state, 0)})", "dim")
            )
            options.append(Option(label, id=state))
        with Vertical():
            yield Static("Show trials in state", classes="title")
            yield OptionList(*options)

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = (STATES.index(self.current) + 1) if self.current else 0
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id or "")

    def action_pick(self, i: int) -> None:
        self.dismiss("" if i == 0 else STATES[i - 1])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen["str | None"]):
    """Ask where to write an export (``.csv`` or ``.json`` by extension); escape cancels."""

    DEFAULT_CSS = (
        _DIALOG_CSS.format(name="ExportScreen")
        + """
    ExportScreen Input { margin-top: 1; }
    """
    )
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, sweep: str, default_path: str) -> None:
        super().__init__()
        self.sweep = sweep
        self.default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Export sweep {self.sweep}", classes="title")
            yield Static("One row per trial: state, metric, runtime and every parameter.")
            yield Input(self.default_path, id="path", select_on_focus=False)
            yield Static("enter writes the file (.csv or .json) · escape cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        self.dismiss(path or None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
