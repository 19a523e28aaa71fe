"""Submit verbs: submit (``--dry-run``, ``--follow``) and count.

The same grouping as the daemon's ``handlers/submit.py``; ``count`` and
``submit --dry-run`` read the sweep file here, so only they load the spec parser.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from clusterd.cli.output import params_text
from clusterd.cli.rpc import call
from clusterd.table import render

__all__ = ["cmd_count", "cmd_submit"]


def cmd_submit(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    if args.dry_run:
        return _dry_run(args.file, path)
    extra = {"reuse_output": True} if args.reuse_output else {}
    result = call(
        "submit", path=path, display=args.file, extend=args.extend, python=sys.executable, **extra
    )
    if args.extend:
        print(
            f"sweep {result['name']}: added {result['added']} new trial(s); "
            f"{result['existing']} already present"
        )
    else:
        print(
            f"sweep {result['name']}: {result['trials']} trial(s) submitted; "
            f"output in {result['output_dir']}"
        )
        if result.get("previous_output"):
            print(f"the files found there were moved to {result['previous_output']}")
    if args.follow:
        return _follow(result["name"])
    return 0


def _dry_run(display: str, path: str) -> int:
    from clusterd.spec import expand, load_sweep

    spec = load_sweep(display if os.path.exists(display) else path)
    trials = expand(spec)
    print(
        f"sweep {spec.name}: {len(trials)} trial(s), driver {spec.driver}, "
        f"max_concurrent {spec.max_concurrent}; nothing was submitted"
    )
    rows = [(i, params_text(p)) for i, p in enumerate(trials[:10])]
    if rows:
        print(render(["index", "params"], rows, right=[0]))
    if len(trials) > 10:
        print(f"... and {len(trials) - 10} more")
    return 0


def _follow(name: str) -> int:
    """A progress bar until the sweep has no unfinished trial; exit 1 if any failed."""
    width = 30
    while True:
        sweep = next((s for s in call("sweeps") if s["name"] == name), None)
        if sweep is None:
            print(f"\nsweep {name} was removed", file=sys.stderr)
            return 1
        done, total = sweep["finished"], sweep["trials"]
        filled = width * done // total if total else width
        counts = " ".join(f"{k} {v}" for k, v in sorted(sweep["counts"].items()))
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {counts}"
        print(line.ljust(79)[:79], end="", flush=True)
        if sweep["state"] != "active":
            print()
            return 1 if sweep["counts"].get("failed") else 0
        time.sleep(0.5)


def cmd_count(args: argparse.Namespace) -> int:
    from clusterd.spec import load_sweep
    from clusterd.spec.expand import count

    print(count(load_sweep(args.file)))
    return 0
