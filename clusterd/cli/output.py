"""Text formatting that more than one group of verbs prints.

Aligned tables come from ``clusterd.table``; this is the rest: JSON output, durations
and a trial's parameters on one line.
"""

from __future__ import annotations

import json
from typing import Any

from clusterd.table import fmt_value

__all__ = ["duration", "params_text", "print_json"]


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
