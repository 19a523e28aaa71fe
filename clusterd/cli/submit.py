"""Submit verbs: submit (``--dry-run``, ``--follow``) and count.

The same grouping as the daemon's ``handlers/submit.py``. ``count``, ``submit --dry-run``
and ``submit`` agree because all three ask the daemon's ``submit`` op, which runs every
check (the file, the plugins' own checks, the sweep name, the output dir); the first two
with ``dry_run`` so nothing is persisted. Only when the daemon is not running do
``count`` and ``--dry-run`` read the file here (loading the spec parser), and they say
on stderr that only the file itself was checked.

A cluster_utils config or a nested JSON grid (``clusterd.report.convert``, docs/convert.md)
is converted here, on the fly: ``submit``, ``count`` and ``--dry-run`` send the converted
text (``text``) with the config's own path, and print what was mapped and refused on
stderr. ``convert`` prints (or writes) the sweep.toml itself.

``count`` prints each axis with its number of values (branches with their trials), then
the total alone on the last line; ``--total`` prints only the number.

``submit`` sends the shell's environment and ``sys.executable``: the daemon keeps only
what ``[env] inherit``/``pass`` ask for (``daemon/environment.py``) so trials run with
the interpreter this shell would run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from clusterd.cli.output import params_text
from clusterd.cli.rpc import call
from clusterd.errors import DaemonUnreachable, SpecError
from clusterd.table import render

__all__ = ["cmd_convert", "cmd_count", "cmd_submit"]

#: what a dry run could not check without the daemon (printed on stderr)
OFFLINE_NOTE = (
    "the daemon is not running: checked the sweep file only, not the search method's, "
    "stop rule's and driver's own checks, the sweep name or the output dir "
    "(`clusterd start` first for the checks `submit` runs)"
)


def _converted(args: argparse.Namespace, path: str, announce: bool = True) -> dict[str, Any]:
    """``{"text": <sweep.toml>}`` when the file is another tool's config (converted here,
    the mapping printed on stderr), else ``{}``: the daemon reads the file itself."""
    sample = getattr(args, "sample", None)
    if not path.endswith((".json", ".toml")) and sample is None:
        return {}
    from pathlib import Path

    from clusterd.report.convert import convert_path, looks_convertible

    if looks_convertible(Path(path)) is None:
        if sample is not None:
            raise SpecError(args.file, "--sample", "is for a nested JSON grid")
        return {}
    conversion = convert_path(Path(path), sample=sample)
    if announce:
        print(conversion.report(), file=sys.stderr)
    return {"text": conversion.toml}


def cmd_submit(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    if args.dry_run:
        return _dry_run(args, path)
    extra: dict[str, Any] = {"reuse_output": True} if args.reuse_output else {}
    extra.update(_converted(args, path))
    result = call(
        "submit",
        path=path,
        display=args.file,
        extend=args.extend,
        python=sys.executable,
        environ=dict(os.environ),
        **extra,
    )
    if args.extend:
        print(
            f"sweep {result['name']}: added {result['added']} new trial(s); "
            f"{result['existing']} already present"
        )
    else:
        total = result.get("planned", result["trials"]) if result.get("adaptive") else None
        later = f" (method {result['method']} proposes them as results arrive)" if total else ""
        print(
            f"sweep {result['name']}: {total or result['trials']} trial(s) submitted{later}; "
            f"output in {result['output_dir']}"
        )
        if result.get("previous_output"):
            print(f"the files found there were moved to {result['previous_output']}")
    if args.follow:
        return _follow(result["name"])
    return 0


def _check(args: argparse.Namespace, path: str, converted: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's dry run of this submit (every check, nothing persisted); None when
    the daemon is not running. ``converted``: see ``_converted``."""
    extra = {"reuse_output": True} if getattr(args, "reuse_output", False) else {}
    extra.update(converted)
    try:
        result: dict[str, Any] = call(
            "submit",
            path=path,
            display=args.file,
            extend=bool(getattr(args, "extend", False)),
            dry_run=True,
            python=sys.executable,
            environ=dict(os.environ),
            **extra,
        )
    except DaemonUnreachable:
        return None
    return result


def _offline(
    display: str, path: str, converted: dict[str, Any], first: bool = True
) -> dict[str, Any]:
    """The dry run's reply from the file alone (the daemon is not running); ``first``:
    expand the trials to show the first ones (``count`` needs only the number)."""
    from clusterd.spec.expand import check_trial_count, expand

    spec = _load(display, path, converted)
    planned = check_trial_count(spec)  # refuses more than [limits] max_trials, as submit
    trials = expand(spec)[:10] if first else []
    print(f"clusterctl: {OFFLINE_NOTE}", file=sys.stderr)
    return {
        "name": spec.name,
        "count": planned,
        "adaptive": spec.search.method not in ("grid", "random"),
        "method": spec.search.method,
        "first": trials,
        "driver": spec.driver,
        "max_concurrent": spec.max_concurrent,
    }


def _load(display: str, path: str, converted: dict[str, Any]) -> Any:
    """The spec from the file (or from its converted text)."""
    from clusterd.spec import load_sweep, parse_sweep

    if "text" in converted:
        return parse_sweep(converted["text"], display, os.path.dirname(path))
    return load_sweep(display if os.path.exists(display) else path)


def _dry_run(args: argparse.Namespace, path: str) -> int:
    converted = _converted(args, path)
    result = _check(args, path, converted) or _offline(args.file, path, converted)
    total, first = result["count"], result["first"]
    print(
        f"sweep {result['name']}: {total} trial(s), driver {result['driver']}, "
        f"max_concurrent {result['max_concurrent']}; nothing was submitted"
    )
    if result.get("adaptive"):
        print(f"method {result['method']} proposes them as results arrive: none is known yet")
    environment = result.get("environment")
    if environment and environment.get("vars"):
        names = ", ".join(environment["vars"])
        print(f"trials get from this shell: {names}")
    if environment and environment.get("program"):
        program, found = environment["program"], environment.get("resolved")
        if found:
            print(f"{program} is {found} here")
        else:
            print(
                f"{program} is not on the PATH the trials get here: they fail with "
                f"'command not found' unless the compute nodes have it ([env] in sweep-file.md)"
            )
    rows = [(i, params_text(p)) for i, p in enumerate(first)]
    if rows:
        print(render(["index", "params"], rows, right=[0]))
    if len(first) and total > len(first):
        print(f"... and {total - len(first)} more")
    return 0


def _follow(name: str) -> int:
    """Progress until the sweep has no unfinished trial; exit 1 if any failed.

    On a terminal, one bar redrawn in place with ``\\r``; into a pipe or a file, one
    whole line each time the counts change (a log stays readable, ``grep`` works)."""
    width = 30
    live = sys.stdout.isatty()
    last = ""
    while True:
        sweep = next((s for s in call("sweeps") if s["name"] == name), None)
        if sweep is None:
            print(("\n" if live and last else "") + f"sweep {name} was removed", file=sys.stderr)
            return 1
        done, total = sweep["finished"], sweep["trials"]
        counts = " ".join(f"{k} {v}" for k, v in sorted(sweep["counts"].items()))
        ended = sweep["state"] != "active"
        if live:
            filled = width * done // total if total else width
            line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {counts}"
            print("\r" + line.ljust(78)[:78], end="", flush=True)
            last = line
            if ended:
                print()
        else:
            line = f"{done}/{total} finished  {counts}"
            if ended:
                line += f"  (sweep {sweep['state']})"
            if line != last:
                print(line, flush=True)
                last = line
        if ended:
            return 1 if sweep["counts"].get("failed") else 0
        time.sleep(0.5)


def cmd_count(args: argparse.Namespace) -> int:
    """The trials ``submit`` would plan, after the same checks (see the module docstring):
    each axis with its number of values, then the total alone on the last line."""
    path = os.path.abspath(args.file)
    converted = _converted(args, path, announce=False)
    result = _check(args, path, converted) or _offline(args.file, path, converted, first=False)
    if not args.total:
        for line in _axes_lines(_load(args.file, path, converted), result["count"]):
            print(line)
    print(result["count"])
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Print (or write, never over a file without ``--force``) the converted sweep.toml;
    the mapping and the refused keys go to stderr."""
    from pathlib import Path

    from clusterd.report.convert import convert_path

    conversion = convert_path(Path(args.file), sample=args.sample)
    text = conversion.toml
    if args.output is None:
        sys.stdout.write(text)
    else:
        out = Path(args.output)
        if out.exists() and not args.force:
            raise SpecError(args.output, "", "exists: pass --force to overwrite it")
        out.write_text(text, encoding="utf-8")
    print(conversion.report(), file=sys.stderr)
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _axes_lines(spec: Any, total: int) -> list[str]:
    """What ``count`` prints above the total: each axis and its values, each conditional
    with its branches' trials, the fixed params, and what the number means."""
    from clusterd.spec.expand import grid_count

    method = spec.search.method
    lines: list[str] = []
    rows: list[tuple[str, str]] = []
    fixed: list[str] = []
    for name, node in spec.params.items():
        if isinstance(node, list):
            rows.append((name, f"{len(node)} value{'s' if len(node) != 1 else ''}"))
        elif isinstance(node, dict):
            parts = [f"{b} ({grid_count(sub)})" for b, sub in list(node.items())[:6]]
            more = f", ... {len(node) - 6} more" if len(node) > 6 else ""
            what = f"{len(node)} branch{'es' if len(node) != 1 else ''}"
            rows.append((name, f"{what}: {', '.join(parts)}{more}"))
        else:
            fixed.append(name)
    space = [(n, f"{d.kind} {list(d.args)}") for n, d in spec.search.space.items()]
    if method == "grid":
        lines.append(f"grid: the product of {len(rows)} axis/axes")
    elif method == "random":
        lines.append(f"random: {total} trial(s) (samples), each drawing one value per axis")
    else:
        lines.append(
            f"method {method}: proposes up to {total} trial(s) (samples) as results arrive"
        )
    width = max((len(n) for n, _ in rows + space), default=0)
    lines += [f"  {n:<{width}}  {what}" for n, what in rows]
    lines += [f"  {n:<{width}}  {what}" for n, what in space]
    if fixed:
        lines.append(f"  fixed: {', '.join(fixed)}")
    return lines
