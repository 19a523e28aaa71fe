"""Daemon-level verbs: drivers, cluster (the daemon's ``handlers/system.py`` ops) and tui.

``tui`` is here because it is about the whole daemon, not one sweep; it is the
only verb that loads Textual.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clusterd.cli.output import print_json
from clusterd.cli.rpc import call
from clusterd.errors import ClusterdError
from clusterd.table import render


def cmd_drivers(args: argparse.Namespace) -> int:
    info = call("drivers", problems=True)
    if args.options:
        return _driver_options(info, args.options, args.json)
    if args.json:
        return print_json(info)
    rows = [
        (
            d["name"],
            " ".join(filter(None, (d.get("distribution"), d.get("version")))) or "-",
            "yes" if d.get("builtin") else "no",
            d["class"],
            f"{d['poll_interval']:g}s",
        )
        for d in info["drivers"]
    ]
    print(render(["name", "distribution", "built in", "class", "poll"], rows))
    if info["problems"]:
        print("problems (plugins skipped, see the daemon log):")
    for p in info["problems"]:
        dist = " ".join(filter(None, (p.get("distribution"), p.get("version"))))
        print(f"  {p['plugin']}{f' ({dist})' if dist else ''}: {p['why']}")
    return 0


def _driver_options(info: dict[str, Any], name: str, as_json: bool) -> int:
    """One driver's options, and what the user's config file sets for it."""
    from pathlib import Path

    from clusterd.config import read_config  # stdlib only, like this package

    by_name = {d["name"]: d for d in info["drivers"]}
    if name not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        raise ClusterdError(f"no driver named {name!r} is installed (installed: {known})")
    driver = by_name[name]
    try:
        on_disk: Any = read_config(Path(info["config_file"])).table(name)
    except ClusterdError as exc:
        on_disk = exc.message
    if as_json:
        return print_json({**driver, "config_file": info["config_file"], "on_disk": on_disk})
    rows = [
        (o["name"], o["must"], o["default"], "sweep" if o["sweep"] else "driver-wide", o["help"])
        for o in driver["options"]
    ]
    if rows:
        headers = ["option", "must be", "default", "set in", "help"]
        print(render(headers, rows, width=1 << 16))  # reference text: never cut short
    else:
        print(f"driver {name} declares no options")
    sets = ", ".join(f"{k} = {json.dumps(v)}" for k, v in driver["config"].items()) or "nothing"
    print(f"{info['config_file']} sets for [drivers.{name}]: {sets}")
    if isinstance(on_disk, str):
        print(f"note: the file is unusable now (the daemon read it at start): {on_disk}")
    elif on_disk != driver["config"]:
        print("note: the file changed since the daemon started; restart it to apply")
    return 0


def gpu_idle_line(status: dict[str, Any], most: int = 10) -> str | None:
    """``clusterd status``'s line for running trials whose GPUs sit idle ([gpu]
    idle_warning): "gpu idle  2 trials with idle GPUs: x/3, y/7"."""
    idle = status.get("gpu_idle") or []
    if not idle:
        return None
    names = ", ".join(idle[:most]) + (f" and {len(idle) - most} more" if len(idle) > most else "")
    what = "trial" if len(idle) == 1 else "trials"
    return f"gpu idle  {len(idle)} {what} with idle GPUs: {names}"


def cmd_cluster(args: argparse.Namespace) -> int:
    info = call("cluster", driver=args.driver)
    if args.json:
        return print_json(info)
    print(f"driver {info['driver']}")
    for key in ("partitions", "nodes", "gpus", "queue"):
        items = info[key]
        if items:
            print(f"\n{key}")
            headers = list(items[0])
            print(render(headers, [[it.get(h) for h in headers] for it in items]))
    for note in info["notes"]:
        print(f"note: {note}")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        from clusterd.tui.__main__ import main as tui_main
    except ImportError as exc:
        print(
            f"clusterctl: the TUI needs Textual: pip install 'clusterd[tui]' ({exc})",
            file=sys.stderr,
        )
        return 1
    argv = [args.target] if args.target else []
    return int(tui_main(argv + ["--light"] * args.light))
