"""Stand-in ``condor_q`` and ``condor_history``: ``-json``, ``-constraint EXPR``,
``-attributes a,b``, job or cluster ids.

``condor_q`` lists the jobs still in the queue (idle, running, held); ``condor_history``
those that left it (completed, removed), newest first, as the schedd's history file
does. The constraint is parsed and evaluated by the real ClassAd library (``classad2``),
never by Python.
"""

from __future__ import annotations

import sys
from typing import Any

import classad2

from tests.standins.engine import StandIn, StandInError
from tests.standins.htcondor import replies
from tests.standins.htcondor.ads import ad, matches

__all__ = ["condor_history", "condor_q"]

IN_QUEUE = ("idle", "running", "held")
LEFT = ("completed", "removed")


def _parse(argv: list[str], command: str) -> tuple[dict[str, Any], str | None]:
    opts: dict[str, Any] = {"json": False, "constraint": None, "attributes": None, "ids": []}
    args = iter(argv)
    for arg in args:
        if arg == "-json":
            opts["json"] = True
        elif arg in ("-constraint", "-attributes", "-limit", "-match"):
            value = next(args, None)
            if value is None:
                return opts, f"{command}: {arg} needs a value"
            opts[arg.lstrip("-").replace("match", "limit")] = value
        elif arg in ("-allusers", "-nobatch", "-totals", "-long"):
            continue
        elif arg[:1].isdigit():
            cluster, _, proc = arg.partition(".")
            if not cluster.isdigit() or (proc and not proc.isdigit()):
                return opts, f"{command}: bad job id {arg}"
            opts["ids"].append((int(cluster), int(proc) if proc else None))
        else:
            return opts, f"{command}: stand-in does not know argument {arg}"
    return opts, None


def _run(argv: list[str], command: str, states: tuple[str, ...]) -> int:
    si = StandIn()
    si.record_call(command, argv)
    opts, error = _parse(argv, command)
    if error:
        print(error, file=sys.stderr)
        return 1
    if not opts["json"]:
        print(f"{command}: the stand-in answers -json only", file=sys.stderr)
        return 1
    constraint = None
    if opts["constraint"] is not None:
        try:
            constraint = classad2.ExprTree(opts["constraint"])
        except Exception:
            print(f"Error: Invalid constraint: {opts['constraint']}", file=sys.stderr)
            return 1
    try:
        jobs = [j for j in si.jobs() if j.state in states]
    except StandInError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if command == "condor_history":
        jobs.sort(key=lambda j: (j.end_time or 0, j.cluster, j.index), reverse=True)
    ids = opts["ids"]

    def wanted(j: Any) -> bool:
        return not ids or any(j.cluster == c and (p is None or j.index == p) for c, p in ids)

    ads = [values for j in jobs if wanted(j) for values in [ad(j)] if matches(constraint, values)]
    if opts.get("limit"):
        ads = ads[: int(opts["limit"])]
    if opts["attributes"]:
        names = [n.strip() for n in opts["attributes"].split(",") if n.strip()]
        ads = [{n: values[n] for n in sorted(names) if n in values} for values in ads]
    sys.stdout.write(replies.json_ads(ads))
    return 0


def condor_q(argv: list[str]) -> int:
    return _run(argv, "condor_q", IN_QUEUE)


def condor_history(argv: list[str]) -> int:
    return _run(argv, "condor_history", LEFT)
