"""Text formatting that more than one group of verbs prints.

Aligned tables come from ``clusterd.table``; this is the rest: JSON output, durations,
a trial's parameters on one line, and the trial tables of ``trials`` and ``best``
(``TrialTable``): metrics and swept parameters as columns, fixed parameters once above.

Column names (``--columns``, comma-separated, in the order wanted): ``index``, ``state``,
``attempts``, ``step``, ``<metric>_last`` and ``<metric>_best`` for every reported metric
(the same names as ``export``'s columns), a parameter's name (or ``param.<name>``),
``note``; ``best`` adds ``rank`` and ``trial``. Without ``--columns`` a table shows
every metric's best, the ``[metric]``'s last too, and every swept parameter; columns
that do not fit the terminal are left out whole (least wanted first: other metrics,
then attempts and step, then the last swept parameters) and named on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from clusterd.errors import InvalidRequest
from clusterd.table import fit, fmt_value, natural_widths, render_cells, terminal_width

__all__ = [
    "Column",
    "TrialTable",
    "duration",
    "params_text",
    "print_json",
    "split_params",
]

#: a free-text column never takes more than this when the table must fit a terminal
NOTE_FIT = 24


def print_json(obj: Any) -> int:
    print(json.dumps(obj, indent=2, default=str))
    return 0


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


def split_params(all_params: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """(the swept parameters: their values differ between the trials, or some trials lack
    them, in first-seen order; the fixed ones with their one value)."""
    names: dict[str, None] = {}
    for p in all_params:
        names.update(dict.fromkeys(p))
    missing = object()
    swept, fixed = [], {}
    for name in names:
        first = all_params[0].get(name, missing)
        if any(p.get(name, missing) != first for p in all_params):
            swept.append(name)
        else:
            fixed[name] = first
    return swept, fixed


def metric_names(trials: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Every metric the trials carry, the sweep's ``[metric]`` (the one whose entries have
    ``best_step``) first, then by name; and each one's mode."""
    modes: dict[str, str] = {}
    primary: str | None = None
    for t in trials:
        for name, entry in (t.get("metrics") or {}).items():
            modes.setdefault(name, entry.get("mode", "min"))
            if "best_step" in entry:
                primary = name
    rest = sorted(n for n in modes if n != primary)
    return ([primary, *rest] if primary else rest), modes


class Column:
    """One column: its ``--columns`` name, header, how a trial gives its value."""

    __slots__ = ("get", "header", "name", "right")

    def __init__(
        self, name: str, header: str, get: Callable[[dict[str, Any]], Any], right: bool = False
    ) -> None:
        self.name, self.header, self.get, self.right = name, header, get, right


def _metric_get(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda t: ((t.get("metrics") or {}).get(name) or {}).get(key)


def _param_get(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda t: t["params"].get(name)


class TrialTable:
    """The columns of a list of trials (``trials``/``best`` replies) and their rendering.

    ``lead`` and ``trail`` are the verb's own columns before and after the metric and
    parameter columns; ``wanted`` lists column names in the order they are given up
    when the terminal is too narrow (see the module docstring)."""

    def __init__(
        self,
        trials: Sequence[dict[str, Any]],
        lead: Sequence[Column],
        middle: Sequence[Column] = (),
        trail: Sequence[Column] = (),
    ) -> None:
        self.trials = trials
        self.metrics, self.modes = metric_names(trials)
        self.swept, self.fixed = split_params([t.get("params") or {} for t in trials])
        metric_cols = [
            Column(f"{m}_{k}", f"{m}_{k}", _metric_get(m, k), right=True)
            for m in self.metrics
            for k in ("last", "best")
        ]
        params = list(self.swept) + [p for p in self.fixed]
        param_cols = [Column(p, p, _param_get(p)) for p in params]
        self.columns: dict[str, Column] = {}
        for c in [*lead, *middle, *metric_cols, *param_cols, *trail]:
            self.columns.setdefault(c.name, c)
        for p in params:  # ``param.lr`` names the parameter when a column is called lr too
            self.columns.setdefault(f"param.{p}", Column(f"param.{p}", p, _param_get(p)))
        self.lead = [c.name for c in lead]
        self.middle = [c.name for c in middle]
        self.trail = [c.name for c in trail]

    def default(self) -> tuple[list[str], list[str]]:
        """(columns in table order, the same in the order they are kept when space runs
        out)."""
        first = self.metrics[:1]
        others = self.metrics[1:]
        # table order: lead, the [metric]'s last and best, the others' best, swept params
        metric_cols = [f"{m}_{k}" for m in first for k in ("last", "best")]
        metric_cols += [f"{m}_best" for m in others]
        shown = [c for c in self.lead if c not in ("attempts", "step")]
        table = [*self.lead, *self.middle, *metric_cols, *self.swept, *self.trail]
        keep = [
            *shown,
            *[f"{m}_best" for m in first],
            *self.swept[:3],
            *self.trail,
            *[f"{m}_last" for m in first],
            *self.middle,
            *self.swept[3:],
            *[f"{m}_best" for m in others],
            *[c for c in self.lead if c not in shown],
        ]
        table = list(dict.fromkeys(table))
        keep = [c for c in dict.fromkeys(keep) if c in table]
        return table, keep + [c for c in table if c not in keep]

    def chosen(self, spec: str | None) -> tuple[list[str], list[str]]:
        """``--columns a,b,c`` -> those columns (every one kept); None -> the default."""
        if not spec:
            return self.default()
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            raise InvalidRequest(
                f"unknown column(s) for --columns: {', '.join(unknown)}; "
                f"columns: {', '.join(n for n in self.columns if not n.startswith('param.'))}"
            )
        return names, names

    def render(self, spec: str | None, shrink: Sequence[str] = ("note",)) -> str:
        """The table (and, above it, the fixed parameters' one line) for ``--columns``."""
        names, keep = self.chosen(spec)
        cols = [self.columns[n] for n in names]
        cells = [[fmt_value(c.get(t)) for c in cols] for t in self.trials]
        headers = [c.header for c in cols]
        width = terminal_width()
        left_out: list[str] = []
        if width and not spec:
            widths = natural_widths(headers, cells)
            for i, c in enumerate(cols):
                if c.name in shrink:
                    widths[i] = min(widths[i], max(len(headers[i]), NOTE_FIT))
            order = [names.index(n) for n in keep if n in names]
            kept = fit(widths, width, order)
            left_out = [names[i] for i in range(len(names)) if i not in kept]
            cols = [cols[i] for i in kept]
            headers = [headers[i] for i in kept]
            cells = [[row[i] for i in kept] for row in cells]
        text = render_cells(
            headers,
            cells,
            natural_widths(headers, cells),
            width=width or 0,
            right={i for i, c in enumerate(cols) if c.right},
            shrink=[i for i, c in enumerate(cols) if c.name in shrink],
        )
        if left_out:
            print(
                f"(left out to fit {width} columns: {', '.join(left_out)}; "
                "choose with --columns, or widen COLUMNS)",
                file=sys.stderr,
            )
        return "\n".join([*self.header_lines(shown=names), text])

    def header_lines(self, shown: Sequence[str] = ()) -> list[str]:
        """Above the table: the fixed parameters (``fixed: epochs=20 batch=64``: every
        trial listed has these values; not repeated in the table unless asked with
        ``--columns``) and which way "best" goes for each metric."""
        lines = []
        fixed = {k: v for k, v in self.fixed.items() if k not in shown}
        if fixed:
            lines.append(f"fixed: {params_text(fixed)}")
        if self.metrics:
            ways = ", ".join(
                f"{m} {'highest' if self.modes.get(m) == 'max' else 'lowest'}" for m in self.metrics
            )
            lines.append(f"best: {ways}")
        return lines
