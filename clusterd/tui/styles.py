"""State colours taken from the current theme, so every screen reads in light and dark.

Colours come from the theme's ``text-*`` variables (made to be legible on that
theme's background) rather than fixed names: a fixed ``yellow`` is fine on black
and unreadable on white. Recomputed when the theme changes; cached otherwise.
"""

from __future__ import annotations

from rich.style import Style
from textual.app import App
from textual.color import Color

__all__ = ["state_styles"]

#: state -> (theme variable, bold, italic)
_STATE_VARS: dict[str, tuple[str, bool, bool]] = {
    "pending": ("foreground-muted", False, False),
    "queued": ("text-secondary", False, False),
    "running": ("text-primary", True, False),
    "completed": ("text-success", False, False),
    "failed": ("text-error", True, False),
    "cancelled": ("text-warning", False, False),
    "stopped": ("text-accent", False, True),
    "stopping": ("text-accent", True, False),  # shown, not a state: running + stop decision
}

_cache: dict[str, dict[str, Style]] = {}


def state_styles(app: App[object]) -> dict[str, Style]:
    """``{state: rich Style}`` for the app's current theme (unknown states: no style)."""
    theme = app.theme
    styles = _cache.get(theme)
    if styles is None:
        variables = app.get_css_variables()
        background = Color.parse(variables.get("background", "#000000"))
        styles = {}
        for state, (var, bold, italic) in _STATE_VARS.items():
            color = background + Color.parse(variables.get(var, variables["foreground"]))
            styles[state] = Style(color=color.rich_color, bold=bold, italic=italic)
        _cache[theme] = styles
    return styles
