"""``clusterctl``: each verb builds one request, sends it, prints the reply.

Exit status: 0 success, 1 user error (one line on stderr), 2 daemon unreachable.
Cold path: this package imports only the stdlib and clusterd's stdlib-only
modules; the spec parser loads only for ``submit``/``count``, Textual only for
``tui``.

This module holds the verb table (the parser) and ``main``. Each verb is
``cmd_<verb>`` in the module named in ``_HOMES`` (``sweeps``, ``trials``,
``system``, grouped like the daemon's handlers) and that module is imported only
when the verb runs, so start-up pays for one parser, not for every verb's code.
``rpc`` sends requests and maps failures to exit statuses; ``output`` holds the
formatting the verbs share.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from clusterd.cli.rpc import exit_status

__all__ = ["main"]

STATES = ("pending", "queued", "running", "completed", "failed", "cancelled", "stopped")
Command = Callable[[argparse.Namespace], int]

# verb -> the module (under clusterd.cli) that defines its ``cmd_<verb>``
_HOMES: dict[str, str] = {
    **dict.fromkeys(("sweeps", "cancel", "relaunch", "export", "best", "rm", "gpus"), "sweeps"),
    **dict.fromkeys(("submit", "count"), "submit"),
    "convert": "submit",
    **dict.fromkeys(("trials", "show", "logs", "stop"), "trials"),
    **dict.fromkeys(("drivers", "cluster", "tui"), "system"),
    "report": "report",
    **dict.fromkeys(("trash", "restore"), "trash"),
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return exit_status(lambda: _command(args.verb)(args))


def _command(verb: str) -> Command:
    """Import the verb's module (only now: see the module docstring) and return its command."""
    from importlib import import_module

    command: Command = getattr(import_module(f"{__name__}.{_HOMES[verb]}"), f"cmd_{verb}")
    return command


def __getattr__(name: str) -> Any:
    """``clusterd.cli.cmd_<verb>`` still resolves, loading that verb's module on first use."""
    verb = name.removeprefix("cmd_")
    if name.startswith("cmd_") and verb in _HOMES:
        return _command(verb)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- parser -------------------------------------------------------------------


def _columns_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--columns",
        metavar="A,B,...",
        help="show these columns, in this order: index, state, attempts, step, "
        "METRIC_last, METRIC_best, a parameter's name, note (best: rank, trial); "
        "default: metrics, then the parameters that vary, fitted to the terminal",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusterctl", description="control clusterd sweeps")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str, json_flag: bool = False) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    s = verb("submit", "expand, persist and start scheduling a sweep")
    s.add_argument("file")
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="run submit's checks and print the trials; persist nothing",
    )
    s.add_argument("--extend", action="store_true", help="add only new trials to the sweep")
    s.add_argument("--follow", action="store_true", help="show progress until the sweep ends")
    s.add_argument(
        "--reuse-output",
        action="store_true",
        help="move another sweep's files in output_dir aside (into previous-<date>/) first",
    )
    s.add_argument("--sample", type=int, metavar="N", help="a JSON grid: N random combinations")
    c = verb("count", "print how many trials submit would create, per axis (after submit's checks)")
    c.add_argument("file")
    c.add_argument("--extend", action="store_true", help="count as submit --extend would")
    c.add_argument("--reuse-output", action="store_true", help="as submit --reuse-output")
    c.add_argument("--total", action="store_true", help="print only the number of trials")
    c.add_argument("--sample", type=int, metavar="N", help="a JSON grid: N random combinations")
    cv = verb("convert", "a cluster_utils config or a JSON grid as sweep.toml (docs/convert.md)")
    cv.add_argument("file")
    cv.add_argument("-o", "--output", help="write the sweep.toml here (default: stdout)")
    cv.add_argument("--force", action="store_true", help="overwrite the --output file")
    cv.add_argument("--sample", type=int, metavar="N", help="a JSON grid: N random combinations")
    d = verb("drivers", "list installed drivers (and skipped plugins)", True)
    d.add_argument("--options", metavar="DRIVER", help="list a driver's options instead")
    sw = verb("sweeps", "list sweeps", json_flag=True)
    sw.add_argument("--group", metavar="G", help="only the sweeps whose sweep.toml says group = G")
    t = verb("trials", "list a sweep's trials", json_flag=True)
    t.add_argument("sweep")
    t.add_argument("--state", choices=STATES)
    _columns_flag(t)
    verb("show", "show one trial (SWEEP/INDEX)", json_flag=True).add_argument("trial")
    lg = verb("logs", "print a trial's output")
    lg.add_argument("trial")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    lg.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    lg.add_argument("--attempt", type=int, help="attempt number (default: the latest)")
    verb("cancel", "cancel a sweep or a trial").add_argument("target")
    verb("stop", "stop a trial early by hand (it ends 'stopped')").add_argument("trial")
    r = verb("relaunch", "run a sweep's failed (or cancelled, or all finished) trials again")
    r.add_argument("sweep")
    g = r.add_mutually_exclusive_group()
    g.add_argument(
        "--failed",
        action="store_const",
        dest="which",
        const="failed",
        help="re-run the failed trials (the default)",
    )
    g.add_argument(
        "--cancelled",
        action="store_const",
        dest="which",
        const="cancelled",
        help="re-run the cancelled trials: resumes a cancelled sweep; completed, stopped "
        "and failed trials stay as they are",
    )
    g.add_argument(
        "--all",
        action="store_const",
        dest="which",
        const="all",
        help="re-run every finished trial: failed, completed, cancelled and stopped",
    )
    e = verb("export", "export a sweep's trials as CSV or JSON")
    e.add_argument("sweep")
    e.add_argument("--format", choices=("csv", "json"), default=None)
    e.add_argument("-o", "--output", help="file to write (default: stdout)")
    b = verb("best", "the best completed trials by the sweep's metric", json_flag=True)
    b.add_argument("sweep")
    b.add_argument("-n", type=int, default=5, help="how many trials (default 5)")
    b.add_argument(
        "--all",
        action="store_true",
        help="rank every trial with a value (running, stopped, failed, cancelled too)",
    )
    b.add_argument(
        "--by",
        metavar="METRIC",
        help="rank by this reported metric, in its own direction (default: [metric])",
    )
    _columns_flag(b)
    rm = verb("rm", "remove a sweep from the database")
    rm.add_argument("sweep")
    rm.add_argument("--trash", action="store_true", help="also move its output dir to the trash")
    tr = verb("trash", "list the sweeps `rm --trash` moved (restorable)", json_flag=True)
    tr.add_argument("--empty", action="store_true", help="delete them for good")
    tr.add_argument(
        "--older-than", metavar="AGE", help="with --empty: only those trashed AGE ago (30d, 12h)"
    )
    verb("restore", "bring a sweep back from the trash").add_argument("sweep")
    g = verb("gpus", "trials ranked by GPU use: most wasted GPU-hours first", json_flag=True)
    g.add_argument("sweep")
    g.add_argument(
        "--by",
        choices=("waste", "util"),
        default="waste",
        help="waste: most wasted GPU-hours first (default); util: highest mean util first",
    )
    rp = verb("report", "write a self-contained HTML report of a sweep")
    rp.add_argument("sweep")
    rp.add_argument("-o", "--output", required=True, help="the HTML file to write")
    rp.add_argument(
        "--top", type=int, default=5, help="learning curves of the best N trials (1-9, default 5)"
    )
    c = verb("cluster", "what the driver sees", json_flag=True)
    c.add_argument("--driver", default="local")
    tui = verb("tui", "live terminal monitor")
    tui.add_argument("target", nargs="?", help="SWEEP or SWEEP/INDEX to open at")
    tui.add_argument("--light", action="store_true", help="start in the light theme")
    return p
