"""A sweep's trials by state as one coloured bar (``████▒▒▒····``), plus a legend."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from clusterd.tui.model import STATES

__all__ = ["state_bar", "state_legend"]

#: drawing order: finished work first, then what is live, then what waits
_ORDER = ("completed", "stopped", "failed", "cancelled", "running", "queued", "pending")


def state_bar(counts: dict[str, int], width: int, styles: dict[str, Style]) -> Text:
    """``width`` cells split between states in proportion to their counts.

    Largest-remainder rounding, so the cells always add up to ``width`` and a state
    with any trials at all gets at least one cell when there is room for it.
    """
    total = sum(counts.values())
    bar = Text()
    if total <= 0 or width <= 0:
        return Text("·" * max(0, width), style="dim")
    shares = [(s, counts.get(s, 0) * width / total) for s in _ORDER if counts.get(s, 0)]
    cells = {s: max(1, int(share)) if width >= len(shares) else int(share) for s, share in shares}
    while sum(cells.values()) > width:
        biggest = max(cells, key=lambda s: cells[s])
        cells[biggest] -= 1
    by_remainder = sorted(shares, key=lambda x: x[1] - int(x[1]), reverse=True)
    i = 0
    while sum(cells.values()) < width and by_remainder:
        cells[by_remainder[i % len(by_remainder)][0]] += 1
        i += 1
    for state in _ORDER:
        n = cells.get(state, 0)
        if n:
            glyph = "▒" if state in ("queued", "pending") else "█"
            bar.append(glyph * n, style=styles.get(state, Style()))
    return bar


#: short names for narrow terminals
_SHORT = {
    "pending": "pend",
    "queued": "queue",
    "running": "run",
    "completed": "done",
    "failed": "fail",
    "cancelled": "cancel",
    "stopped": "stop",
}


def state_legend(counts: dict[str, int], styles: dict[str, Style], short: bool = False) -> Text:
    """``running 3  completed 40  failed 2`` in state colours, zero counts left out."""
    text = Text()
    for state in STATES:
        n = counts.get(state, 0)
        if n:
            if text:
                text.append(" " if short else "  ")
            text.append(_SHORT[state] if short else state, style=styles.get(state, Style()))
            text.append(f" {n}")
    return text or Text("no trials", style="dim")
