"""Aligned text tables that fit the terminal (stdlib only, for the CLI).

Width: ``COLUMNS`` when set, else the terminal's width when stdout is one; piped or
redirected output has no limit (a file or ``grep`` gets whole values). Within the
width, columns keep their natural width; only the columns a caller lets shrink (free
text: notes, reasons) are cut, with an ellipsis. ``fit`` picks which of a table's
columns fit before anything is drawn, so a table too wide for the terminal leaves out
its least wanted columns whole rather than cutting every value.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Collection, Sequence
from typing import Any

__all__ = ["fit", "fmt_value", "natural_widths", "render", "render_cells", "terminal_width"]

GAP = 2  # spaces between columns


def fmt_value(value: Any) -> str:
    kind = type(value)
    if kind is str:  # the common cases first: 10,000-row tables call this per cell
        return value
    if kind is float:
        return f"{value:.4g}"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def terminal_width() -> int | None:
    """``COLUMNS`` if set, the terminal's columns if stdout is a terminal, else None (no
    limit: output going to a file or a pipe is never cut)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if not sys.stdout.isatty():
        return None
    return max(shutil.get_terminal_size((80, 24)).columns, 20)


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    width: int | None = None,
    right: Sequence[int] = (),
    shrink: Sequence[int] | None = None,
) -> str:
    """Render rows under headers, two spaces between columns, within ``width`` columns
    (default ``terminal_width()``; 0: no limit). Only the columns in ``shrink`` (default:
    every column) are cut to fit, widest first, never below their header or 6."""
    if width is None:
        width = terminal_width() or 0
    cells = [[fmt_value(v) for v in row] for row in rows]
    return render_cells(headers, cells, natural_widths(headers, cells), width, right, shrink)


def render_cells(
    headers: Sequence[str],
    cells: Sequence[Sequence[str]],
    widths: list[int],
    width: int = 0,
    right: Collection[int] = (),
    shrink: Sequence[int] | None = None,
) -> str:
    """``render`` of cells already formatted, with their ``natural_widths``."""
    if width > 0:
        _shrink(widths, headers, width, range(len(widths)) if shrink is None else shrink)
    lines = [_line(headers, widths, right), *(_line(row, widths, right) for row in cells)]
    return "\n".join(line.rstrip() for line in lines)


def natural_widths(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> list[int]:
    """Each column's widest cell (or header)."""
    return [
        max(len(h), max((len(row[i]) for row in cells), default=0)) for i, h in enumerate(headers)
    ]


def fit(widths: Sequence[int], limit: int | None, order: Sequence[int]) -> list[int]:
    """The columns (indices, in table order) that fit ``limit``: every column if they all
    do, else the columns dropped last-first from ``order`` (most wanted first) until the
    rest fit; the first column of ``order`` always stays."""
    kept = list(order)
    while limit and len(kept) > 1 and sum(widths[i] for i in kept) + GAP * (len(kept) - 1) > limit:
        kept.pop()
    return sorted(kept)


def _shrink(widths: list[int], headers: Sequence[str], limit: int, allowed: Any) -> None:
    total = sum(widths) + GAP * (len(widths) - 1)
    allowed = list(allowed)
    while total > limit and allowed:
        i = max(allowed, key=lambda k: widths[k])
        floor = max(len(headers[i]), 6)
        if widths[i] <= floor:
            break
        cut = min(widths[i] - floor, total - limit)
        widths[i] -= cut
        total -= cut


def _line(values: Sequence[str], widths: Sequence[int], right: Collection[int]) -> str:
    parts = []
    for i, (value, w) in enumerate(zip(values, widths, strict=True)):
        text = value if len(value) <= w else value[: max(w - 1, 0)] + "…"
        parts.append(text.rjust(w) if i in right else text.ljust(w))
    return (" " * GAP).join(parts)
