"""``python -m clusterd.tui [SWEEP[/INDEX]] [--socket PATH] [--light]``: open the TUI at a sweep.

``clusterctl tui`` opens the sweeps list; this entry point can start on a
sweep or a trial (handy for benchmarks and for a tmux pane per sweep).
"""

from __future__ import annotations

import argparse
import sys

from clusterd.tui.app import DARK, LIGHT, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusterd.tui", description=__doc__)
    parser.add_argument("target", nargs="?", help="SWEEP or SWEEP/INDEX to open")
    parser.add_argument("--socket", help="the daemon's socket (default: $CLUSTERD_HOME's)")
    parser.add_argument("--light", action="store_true", help="start in the light theme")
    args = parser.parse_args(argv)
    sweep, trial = args.target, None
    if args.target and "/" in args.target:
        sweep, _, index = args.target.rpartition("/")
        if not index.isdigit():
            parser.error(f"{args.target!r} is not SWEEP or SWEEP/INDEX")
        trial = int(index)
    return run(args.socket, sweep=sweep, trial=trial, theme=LIGHT if args.light else DARK)


if __name__ == "__main__":
    sys.exit(main())
