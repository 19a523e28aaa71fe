"""``clusterctl``: each verb builds one request, sends it, prints the reply.

Exit status: 0 success, 1 user error (one line on stderr), 2 daemon unreachable.
Cold path: this module imports only the stdlib and clusterd's stdlib-only
modules; the spec parser loads only for ``submit``/``count``, Textual only for
``tui``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from clusterd.client import Client
from clusterd.errors import ClusterdError, DaemonUnreachable
from clusterd.table import fmt_value, render

__all__ = ["main"]

STATES = ("pending", "queued", "running", "completed", "failed", "cancelled", "stopped")
Command = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DaemonUnreachable as exc:
        print(f"clusterctl: {exc.message}", file=sys.stderr)
        return 2
    except ClusterdError as exc:
        print(f"clusterctl: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


# -- parser -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusterctl", description="control clusterd sweeps")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func: Command, help: str, json_flag: bool = False) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    s = verb("submit", cmd_submit, "expand, persist and start scheduling a sweep")
    s.add_argument("file")
    s.add_argument("--dry-run", action="store_true", help="print the trials, persist nothing")
    s.add_argument("--extend", action="store_true", help="add only new trials to the sweep")
    s.add_argument("--follow", action="store_true", help="show progress until the sweep ends")
    s.add_argument(
        "--reuse-output",
        action="store_true",
        help="move another sweep's files in output_dir aside (into previous-<date>/) first",
    )
    verb("count", cmd_count, "print how many trials a sweep file expands to").add_argument("file")
    verb("drivers", cmd_drivers, "list installed drivers", json_flag=True)
    verb("sweeps", cmd_sweeps, "list sweeps", json_flag=True)
    t = verb("trials", cmd_trials, "list a sweep's trials", json_flag=True)
    t.add_argument("sweep")
    t.add_argument("--state", choices=STATES)
    verb("show", cmd_show, "show one trial (SWEEP/INDEX)", json_flag=True).add_argument("trial")
    lg = verb("logs", cmd_logs, "print a trial's output")
    lg.add_argument("trial")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    lg.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    lg.add_argument("--attempt", type=int, help="attempt number (default: the latest)")
    verb("cancel", cmd_cancel, "cancel a sweep or a trial").add_argument("target")
    verb("stop", cmd_stop, "stop a trial early by hand (it ends 'stopped')").add_argument("trial")
    r = verb("relaunch", cmd_relaunch, "run failed (or all finished) trials again")
    r.add_argument("sweep")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--failed", action="store_const", dest="which", const="failed")
    g.add_argument("--all", action="store_const", dest="which", const="all")
    e = verb("export", cmd_export, "export a sweep's trials as CSV or JSON")
    e.add_argument("sweep")
    e.add_argument("--format", choices=("csv", "json"), default=None)
    e.add_argument("-o", "--output", help="file to write (default: stdout)")
    b = verb("best", cmd_best, "the best trials by the sweep's metric", json_flag=True)
    b.add_argument("sweep")
    b.add_argument("-n", type=int, default=5)
    b.add_argument("--all", action="store_true", help="rank unfinished trials too")
    rm = verb("rm", cmd_rm, "remove a sweep from the database")
    rm.add_argument("sweep")
    rm.add_argument("--trash", action="store_true", help="also move its output dir to the trash")
    verb("gpus", cmd_gpus, "GPU use of a sweep's trials", json_flag=True).add_argument("sweep")
    c = verb("cluster", cmd_cluster, "what the driver sees", json_flag=True)
    c.add_argument("--driver", default="local")
    tui = verb("tui", cmd_tui, "live terminal monitor")
    tui.add_argument("target", nargs="?", help="SWEEP or SWEEP/INDEX to open at")
    tui.add_argument("--light", action="store_true", help="start in the light theme")
    return p


# -- helpers ------------------------------------------------------------------


def _call(op: str, **args: Any) -> Any:
    with Client() as client:
        return client.call(op, **args)


def _print_json(obj: Any) -> int:
    print(json.dumps(obj, indent=2, default=str))
    return 0


def _ago(t: float | None) -> str:
    if not t:
        return "-"
    return _duration(time.time() - t) + " ago"


def _duration(seconds: float | None) -> str:
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


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


# -- verbs --------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    if args.dry_run:
        return _dry_run(args.file, path)
    extra = {"reuse_output": True} if args.reuse_output else {}
    result = _call(
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
    rows = [(i, _params_text(p)) for i, p in enumerate(trials[:10])]
    if rows:
        print(render(["index", "params"], rows, right=[0]))
    if len(trials) > 10:
        print(f"... and {len(trials) - 10} more")
    return 0


def _follow(name: str) -> int:
    """A progress bar until the sweep has no unfinished trial; exit 1 if any failed."""
    width = 30
    while True:
        sweep = next((s for s in _call("sweeps") if s["name"] == name), None)
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


def cmd_drivers(args: argparse.Namespace) -> int:
    drivers = _call("drivers")
    if args.json:
        return _print_json(drivers)
    print(
        render(
            ["name", "class", "poll"],
            [(d["name"], d["class"], f"{d['poll_interval']:g}s") for d in drivers],
        )
    )
    return 0


def cmd_sweeps(args: argparse.Namespace) -> int:
    sweeps = _call("sweeps")
    if args.json:
        return _print_json(sweeps)
    if not sweeps:
        print("no sweeps yet; submit one with `clusterctl submit sweep.toml`")
        return 0
    rows = []
    for s in sweeps:
        c = s["counts"]
        live = c.get("running", 0) + c.get("queued", 0)
        best = "-" if s["best"] is None else f"{s['metric']} {s['best']:.4g}"
        rows.append(
            (
                s["name"],
                s["driver"],
                s["state"],
                f"{s['finished']}/{s.get('planned', s['trials'])}",
                live,
                c.get("failed", 0),
                best,
            )
        )
    print(
        render(
            ["sweep", "driver", "state", "done", "live", "failed", "best"], rows, right=[3, 4, 5]
        )
    )
    for s in sweeps:
        for host, n in s.get("excluded_hosts", {}).items():
            print(f"note: {s['name']} avoids host {host} ({n} failed attempts there)")
        stuck = s.get("stuck")
        if stuck:
            print(f"note: {s['name']} cannot launch trials: {stuck['reason']} (retrying)")
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    trials = _call("trials", sweep=args.sweep, state=args.state)
    if args.json:
        return _print_json(trials)
    rows = []
    for t in trials:
        note = t.get("waiting_for") or (t["reason"] if t["state"] in ("failed",) else "")
        rows.append(
            (
                t["index"],
                t["state"],
                t["attempts"],
                t["last_step"],
                t["best_value"],
                _params_text(t["params"]),
                note,
            )
        )
    print(render(["#", "state", "att", "step", "best", "params", "note"], rows, right=[0, 2, 3]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    t = _call("show", trial=args.trial)
    if args.json:
        return _print_json(t)
    print(f"trial {t['name']}  {t['state']}" + (f"  ({t['reason']})" if t["reason"] else ""))
    print(f"dir     {t['trial_dir']}")
    print(f"params  {_params_text(t['params'])}")
    ran = [a["code"] for a in t["attempt_list"] if (a.get("code") or {}).get("git")]
    code = ran[-1] if ran else t["code"]
    if code.get("git"):
        dirty = (
            f" (dirty: {code.get('git_diff') or 'diff not kept'})" if code.get("git_dirty") else ""
        )
        print(f"code    git {code['git'][:12]}{dirty}")
    if t["stop_decision"]:
        print(f"stopped {_stop_line(t['stop_decision'])}")
    if t["metrics"]:
        ms = "  ".join(f"{k}={v['value']:.4g}@{v['step']}" for k, v in t["metrics"].items())
        print(f"metrics {ms}")
    if t["attempt_list"]:
        print("\nattempts")
        rows = [
            (
                a["number"],
                a["outcome"] or a["state"],
                a["exit_code"],
                a["job_id"],
                a["host"],
                _duration(a["runtime"]),
                _code_text(a.get("code") or {}),
                a["reason"],
            )
            for a in t["attempt_list"]
        ]
        header = ["#", "outcome", "exit", "job", "host", "ran", "code", "reason"]
        print(render(header, rows, right=[0]))
    if t["checkpoints"]:
        print("\ncheckpoints")
        print(
            render(
                ["attempt", "step", "path"],
                [(c["attempt"], c["step"], c["path"]) for c in t["checkpoints"][-5:]],
            )
        )
    if t["errors"]:
        print("\nerrors")
        for e in t["errors"]:
            print(f"  attempt {e['attempt']}: {e['message']}")
    print("\nlog")
    log_rows: list[tuple[Any, ...]] = [
        (
            time.strftime("%H:%M:%S", time.localtime(x["t"])),
            x["from"] or "",
            x["to"],
            x["reason"] or "",
        )
        for x in t["transitions"]
    ]
    print(render(["time", "from", "to", "reason"], log_rows))
    return 0


def _code_text(code: dict[str, Any]) -> str:
    """``3f2c1e9a0b12+dirty``: the commit an attempt ran, and whether it had local edits."""
    if not code.get("git"):
        return "-"
    return str(code["git"])[:12] + ("+dirty" if code.get("git_dirty") else "")


def _stop_line(d: dict[str, Any]) -> str:
    """One line: which rule, at which step, and why (the rule's own words)."""
    line = f"by {d.get('rule')} at step {d.get('step')}"
    if d.get("reason"):
        return f"{line}: {d['reason']}"
    if d.get("value") is not None and d.get("threshold") is not None:
        line += f": value {d['value']:.4g} vs threshold {d['threshold']:.4g}"
    return line


def cmd_logs(args: argparse.Namespace) -> int:
    info = (
        _call("logs", trial=args.trial, stderr=args.stderr, attempt=args.attempt)
        if args.attempt
        else _call("logs", trial=args.trial, stderr=args.stderr)
    )
    return _tail(info["path"], args.follow, args.trial)


def _tail(path: str, follow: bool, trial: str) -> int:
    out = sys.stdout.buffer
    try:
        fh = open(path, "rb")  # noqa: SIM115 - kept open while following
    except FileNotFoundError:
        if not follow:
            print(f"clusterctl: no output yet at {path}", file=sys.stderr)
            return 1
        fh = _wait_for(path)
    with fh:
        while True:
            chunk = fh.read(1 << 16)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow or not _still_live(trial):
                return 0
            time.sleep(0.2)


def _wait_for(path: str) -> Any:
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            time.sleep(0.2)


def _still_live(trial: str) -> bool:
    t = _call("show", trial=trial)
    return any(a["state"] != "ended" for a in t["attempt_list"]) or t["state"] == "pending"


def cmd_cancel(args: argparse.Namespace) -> int:
    r = _call("cancel", target=args.target)
    print(
        f"{args.target}: {r['cancelled']} pending trial(s) cancelled, "
        f"{r['cancelling']} running trial(s) being stopped"
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    r = _call("stop", trial=args.trial)
    print(
        f"{r['trial']}: stopping; trial.should_stop() is true now, the attempt is terminated "
        f"in {r['grace']:.0f} s if it has not exited"
    )
    return 0


def cmd_relaunch(args: argparse.Namespace) -> int:
    r = _call("relaunch", sweep=args.sweep, which=args.which or "failed")
    print(f"{args.sweep}: {r['relaunched']} trial(s) relaunched")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    data = _call("export", sweep=args.sweep)
    fmt = args.format or ("json" if (args.output or "").endswith(".json") else "csv")
    text = _as_json(data) if fmt == "json" else _as_csv(data)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        print(f"wrote {len(data['rows'])} trial(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _as_json(data: dict[str, Any]) -> str:
    return json.dumps(data["rows"], indent=2) + "\n"


def _as_csv(data: dict[str, Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=data["columns"], lineterminator="\n")
    writer.writeheader()
    for row in data["rows"]:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
        )
    return buf.getvalue()


def cmd_best(args: argparse.Namespace) -> int:
    r = _call("best", sweep=args.sweep, n=args.n, all=args.all)
    if args.json:
        return _print_json(r)
    if not r["trials"]:
        print(
            f"no {'' if args.all else 'completed '}trial of {args.sweep} has reported "
            f"{r['metric']} yet"
        )
        return 0
    rows = [
        (i + 1, t["name"], t["state"], t["best"], t["best_step"], _params_text(t["params"]))
        for i, t in enumerate(r["trials"])
    ]
    print(
        render(
            ["rank", "trial", "state", f"{r['metric']} ({r['mode']})", "step", "params"],
            rows,
            right=[0, 3, 4],
        )
    )
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    r = _call("rm", sweep=args.sweep, trash=args.trash)
    where = (
        f"; output moved to {r['trashed_to']}"
        if r.get("trashed_to")
        else f"; output kept in {r['output_dir']}"
    )
    print(f"removed sweep {r['removed']}{where}")
    if r.get("kept"):
        print(
            f"left in {r['output_dir']} (not created by clusterd): {', '.join(r['kept'])}",
            file=sys.stderr,
        )
    return 0


def cmd_gpus(args: argparse.Namespace) -> int:
    rows = _call("gpus", sweep=args.sweep)
    if args.json:
        return _print_json(rows)
    if not rows:
        print(f"no GPU samples for {args.sweep}")
        return 0
    print(
        render(
            ["trial", "gpu", "samples", "util %", "mem max MiB", "total MiB"],
            [
                (r["trial"], r["gpu"], r["samples"], r["util_avg"], r["mem_max"], r["mem_total"])
                for r in rows
            ],
            right=[1, 2, 3, 4, 5],
        )
    )
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    info = _call("cluster", driver=args.driver)
    if args.json:
        return _print_json(info)
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


if __name__ == "__main__":
    sys.exit(main())
