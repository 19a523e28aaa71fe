"""Trial verbs: trials, show, logs, stop (the daemon's ``handlers/trials.py`` ops).

``logs`` reads the trial's output file directly; the daemon only says where it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from clusterd.cli.output import Column, TrialTable, duration, params_text, print_json
from clusterd.cli.rpc import call
from clusterd.table import fmt_value, render


def cmd_trials(args: argparse.Namespace) -> int:
    trials = call("trials", sweep=args.sweep, state=args.state, metrics=True)
    if args.json:
        return print_json(trials)
    if not trials:
        what = f"{args.state} trials" if args.state else "trials"
        print(f"sweep {args.sweep} has no {what}")
        return 0
    table = TrialTable(
        trials,
        lead=[
            Column("index", "#", lambda t: t["index"], right=True),
            Column("state", "state", lambda t: t["state"]),
            Column("attempts", "att", lambda t: t["attempts"], right=True),
            Column("step", "step", lambda t: t["last_step"], right=True),
        ],
        trail=[Column("note", "note", _note)],
    )
    print(table.render(args.columns))
    return 0


def _note(t: dict[str, Any]) -> str:
    note = str(t.get("waiting_for") or (t["reason"] if t["state"] == "failed" else "") or "")
    since = t.get("gpu_idle_since")
    if since is not None:  # [gpu] idle_warning: its GPUs stayed idle
        idle = f"!gpu-idle {duration(max(0.0, time.time() - since))}"
        note = f"{idle} {note}".rstrip()
    return note


def cmd_show(args: argparse.Namespace) -> int:
    t = call("show", trial=args.trial)
    if args.json:
        return print_json(t)
    print(f"trial {t['name']}  {t['state']}" + (f"  ({t['reason']})" if t["reason"] else ""))
    if t.get("gpu_idle_since") is not None:
        ago = duration(max(0.0, time.time() - t["gpu_idle_since"]))
        print(f"gpu     !gpu-idle: its GPUs have been idle for {ago}")
    print(f"dir     {t['trial_dir']}")
    print(f"params  {params_text(t['params'])}")
    ran = [a["code"] for a in t["attempt_list"] if (a.get("code") or {}).get("git")]
    code = ran[-1] if ran else t["code"]
    if code.get("git"):
        dirty = (
            f" (dirty: {code.get('git_diff') or 'diff not kept'})" if code.get("git_dirty") else ""
        )
        print(f"code    git {code['git'][:12]}{dirty}")
    env = t.get("environment")
    if env:
        program = env.get("program")
        found = f"; {program} is {env.get('resolved') or 'not found'}" if program else ""
        print(f"env     {env['note']}: {', '.join(env['vars']) or '-'}{found}")
    if t["stop_decision"]:
        print(f"stopped {_stop_line(t['stop_decision'])}")
    if t["metrics"]:
        print(f"metrics {_metrics_text(t['metrics'])}")
    if t["attempt_list"]:
        print("\nattempts")
        rows = [
            (
                a["number"],
                a["outcome"] or a["state"],
                a["exit_code"],
                a["job_id"],
                a["host"],
                duration(a["runtime"]),
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
    if t.get("gpu_list"):
        _print_gpus(t)
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


def _print_gpus(t: dict[str, Any]) -> None:
    """``show``'s GPU block: the trial's totals, then one line per attempt and GPU."""
    g = t["gpu"]
    energy = "-" if g["energy_wh"] is None else f"{g['energy_wh']:.4g} Wh"
    print(
        f"\ngpus    util mean {fmt_value(g['util_mean'])} % (peak {fmt_value(g['util_peak'])} %)"
        f", memory peak {fmt_value(g['mem_peak_mib'])} MiB"
        f" (own {fmt_value(g['own_mem_peak_mib'])}), energy {energy},"
        f" idle {duration(g['idle_seconds'])} (under {g['idle_threshold']:g} %)"
    )
    header = ["attempt", "gpu", "samples", "util %", "peak %", "mem peak MiB", "own MiB",
              "power W", "energy Wh", "idle"]  # fmt: skip
    rows = [
        (x["attempt"], x["gpu"], x["samples"], x["util_mean"], x["util_peak"], x["mem_peak_mib"],
         x["own_mem_peak_mib"], x["power_mean_w"], x["energy_wh"], duration(x["idle_seconds"]))
        for x in t["gpu_list"]
    ]  # fmt: skip
    print(render(header, rows, right=list(range(10))))


def _metrics_text(metrics: dict[str, Any]) -> str:
    """``val_loss last 0.31@19 best 0.29 (min)  val_acc last 0.91@19 best 0.93 (max)``."""
    parts = []
    for name, m in metrics.items():
        last = f"{fmt_value(m.get('last', m.get('value')))}@{m.get('step')}"
        best = f" best {fmt_value(m['best'])} ({m.get('mode', 'min')})" if "best" in m else ""
        parts.append(f"{name} last {last}{best}")
    return "\n        ".join(parts)


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
        call("logs", trial=args.trial, stderr=args.stderr, attempt=args.attempt)
        if args.attempt
        else call("logs", trial=args.trial, stderr=args.stderr)
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
    t = call("show", trial=trial)
    return any(a["state"] != "ended" for a in t["attempt_list"]) or t["state"] == "pending"


def cmd_stop(args: argparse.Namespace) -> int:
    r = call("stop", trial=args.trial)
    print(
        f"{r['trial']}: stopping; trial.should_stop() is true now, the attempt is terminated "
        f"in {r['grace']:.0f} s if it has not exited"
    )
    return 0
