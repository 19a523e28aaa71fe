"""Aligned text tables that fit the terminal (stdlib only, for the CLI).

Columns keep their natural width when they fit; otherwise the widest
shrinkable column is cut with an ellipsis until the table fits ``width``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["fmt_value", "render"]


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    width: int | None = None,
    right: Sequence[int] = (),
) -> str:
    """Render rows under headers, two spaces between columns, within ``width`` columns."""
    if width is None:
        width = _terminal_width()
    cells = [[fmt_value(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    _shrink(widths, headers, width)
    lines = [_line(headers, widths, right), *(_line(row, widths, right) for row in cells)]
    return "\n".join(line.rstrip() for line in lines)


def _terminal_width() -> int:
    try:
        return min(max(os.get_terminal_size().columns, 40), 200)
    except OSError:
        return 80


def _shrink(widths: list[int], headers: Sequence[str], limit: int) -> None:
    total = sum(widths) + 2 * (len(widths) - 1)
    while total > limit:
        i = max(range(len(widths)), key=lambda k: widths[k])
        floor = max(len(headers[i]), 6)
        if widths[i] <= floor:
            break
        cut = min(widths[i] - floor, total - limit)
        widths[i] -= cut
        total -= cut


def _line(values: Sequence[str], widths: Sequence[int], right: Sequence[int]) -> str:
    parts = []
    for i, (value, w) in enumerate(zip(values, widths, strict=True)):
        text = value if len(value) <= w else value[: max(w - 1, 0)] + "…"
        parts.append(text.rjust(w) if i in right else text.ljust(w))
    return "  ".join(parts)
