"""Trash verbs: ``trash [--empty [--older-than AGE]]`` and ``restore SWEEP``.

``rm --trash`` hides a sweep and moves its files to ``$CLUSTERD_HOME/trash`` (the
daemon's ``daemon/trash.py`` says how); these list, restore and empty it.
"""

from __future__ import annotations

import argparse
import re
import time

from clusterd.cli.output import print_json
from clusterd.cli.rpc import call
from clusterd.errors import InvalidRequest
from clusterd.table import render

__all__ = ["cmd_restore", "cmd_trash", "parse_age", "size_text"]

_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*")
_UNIT = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``"30d"`` -> seconds; a bare number is days. A clear error for anything else."""
    m = _AGE.fullmatch(text)
    if m is None:
        raise InvalidRequest(
            f"--older-than: expected an age like 30d, 12h, 90m or 2w, got {text!r}"
        )
    return float(m.group(1)) * _UNIT[m.group(2)]


def size_text(n: int) -> str:
    """Bytes as people read them: 0 B, 812 KiB, 3.4 GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_trash(args: argparse.Namespace) -> int:
    if args.older_than is not None and not args.empty:
        raise InvalidRequest("--older-than goes with --empty (what to delete for good)")
    if args.empty:
        extra = {} if args.older_than is None else {"older_than": parse_age(args.older_than)}
        gone = call("trash", empty=True, **extra)
        if args.json:
            return print_json(gone)
        freed = sum(e["bytes"] for e in gone)
        print(f"deleted {len(gone)} trashed sweep(s) for good, {size_text(freed)} freed")
        return 0
    entries = call("trash")
    if args.json:
        return print_json(entries)
    if not entries:
        print("the trash is empty")
        return 0
    rows = [
        (e["name"], _when(e["trashed_at"]), e["trials"], size_text(e["bytes"]), e["path"])
        for e in entries
    ]
    print(render(["sweep", "trashed", "trials", "size", "path"], rows, right=[2, 3]))
    print("`clusterctl restore SWEEP` brings one back; `clusterctl rm SWEEP` deletes it for good")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    r = call("restore", sweep=args.sweep)
    print(f"restored sweep {r['restored']}; its files are back in {r['output_dir']}")
    return 0
