"""Sweep verbs: sweeps, cancel, relaunch, export, best, rm, gpus.

The same grouping as the daemon's ``handlers/sweeps.py`` (``submit`` and ``count``:
``submit.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clusterd.cli.output import Column, TrialTable, duration, print_json
from clusterd.cli.rpc import call
from clusterd.table import render


def cmd_sweeps(args: argparse.Namespace) -> int:
    group = getattr(args, "group", None)
    sweeps = call("sweeps", **({"group": group} if group else {}))
    if args.json:
        return print_json(sweeps)
    if not sweeps:
        if group:
            print(f"no sweep in group {group!r}")
            return 0
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
        if s.get("gpu_idle"):
            print(
                f"note: {s['name']} has {s['gpu_idle']} running trial(s) with idle GPUs "
                f"(!gpu-idle in `clusterctl trials {s['name']}`)"
            )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    r = call("cancel", target=args.target)
    print(
        f"{args.target}: {r['cancelled']} pending trial(s) cancelled, "
        f"{r['cancelling']} running trial(s) being stopped"
    )
    return 0


def cmd_relaunch(args: argparse.Namespace) -> int:
    which = args.which or "failed"
    r = call("relaunch", sweep=args.sweep, which=which)
    what = {"failed": "failed", "cancelled": "cancelled", "all": "every finished"}[which]
    print(f"{args.sweep}: {r['relaunched']} trial(s) relaunched ({what})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    data = call("export", sweep=args.sweep)
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
    extra = {"by": args.by} if args.by else {}
    r = call("best", sweep=args.sweep, n=args.n, all=args.all, **extra)
    if args.json:
        return print_json(r)
    if not r["trials"]:
        print(
            f"no {'' if args.all else 'completed '}trial of {args.sweep} has reported "
            f"{r['metric']} yet"
        )
        return 0
    for i, t in enumerate(r["trials"]):
        t["rank"] = i + 1
    by = r["metric"]
    table = TrialTable(
        r["trials"],
        lead=[
            Column("rank", "rank", lambda t: t["rank"], right=True),
            Column("trial", "trial", lambda t: t["name"]),
            Column("state", "state", lambda t: t["state"]),
        ],
        middle=[
            Column(f"{by}_best", f"{by}_best", lambda t: t["best"], right=True),
            Column("step", "step", lambda t: t["best_step"], right=True),
        ],
    )
    print(f"ranked by {by}, {'highest' if r['mode'] == 'max' else 'lowest'} first")
    print(table.render(args.columns))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    r = call("rm", sweep=args.sweep, trash=args.trash)
    if "deleted" in r:  # it was in the trash: gone for good
        print(f"deleted sweep {r['removed']} for good (and its files in {r['deleted']})")
        return 0
    where = (
        f"; output moved to {r['trashed_to']} (`clusterctl restore {r['removed']}` brings it back)"
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
    """Trials ranked by GPU efficiency: the most wasted GPU-hours first (``--by util``:
    the highest mean utilisation first). The header says the formula."""
    order = getattr(args, "by", None) or "waste"
    rows = call("gpus", sweep=args.sweep, order=order)
    if args.json:
        return print_json(rows)
    if not rows:
        print(f"no GPU samples for {args.sweep}")
        return 0
    threshold = rows[0].get("idle_threshold", 5)
    if order == "util":
        print("ranked by mean GPU utilisation, highest first")
    else:
        print("ranked by wasted GPU-hours = GPU-hours x (1 - mean util), most wasteful first")
    print(
        f"used = GPU-hours x mean util (util x time); idle = time in minutes with every "
        f"sample under {threshold:g} % util\n"
    )
    print(render(_GPU_HEADER, [_gpu_row(r) for r in rows], right=list(range(2, 12))))
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


_GPU_HEADER = ("trial", "state", "gpus", "util %", "peak %", "GPU-h", "used", "wasted", "idle",
               "mem peak MiB", "own MiB", "energy Wh")  # fmt: skip


def _gpu_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """One trial's line of ``gpus``: util, GPU-hours used and wasted, idle, memory, energy."""
    idle = duration(r["idle_seconds"])
    return (r["trial"], r["state"], r["gpus"], r["util_mean"], r["util_peak"], r["gpu_hours"],
            r["busy_gpu_hours"], r["wasted_gpu_hours"], idle, r["mem_peak_mib"],
            r["own_mem_peak_mib"], r["energy_wh"])  # fmt: skip
