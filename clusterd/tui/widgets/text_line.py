"""``TextLine``: a fixed-height line of rich text that repaints without a layout pass.

``Static.update`` asks for a layout refresh of the screen (its size may change);
for the status lines that change on every cursor move that pass cost ~10 ms a
keypress. A ``TextLine`` never changes size, so ``show`` only repaints it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

__all__ = ["TextLine"]


class TextLine(Widget):
    """One or more lines of ``Text``; the height comes from CSS, not from the content."""

    DEFAULT_CSS = """
    TextLine { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Text()

    @property
    def text(self) -> Text:
        return self._text

    def show(self, text: Text | str) -> None:
        self._text = Text(text) if isinstance(text, str) else text
        self.refresh()

    def render(self) -> Text:
        return self._text
