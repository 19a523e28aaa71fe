"""Stand-in ``condor_rm``, ``condor_release``, ``condor_hold`` (many ``cluster.proc`` or
``cluster`` ids in one call) and ``condor_version``.

Each id acted on gets the recorded one-line reply; an id the queue does not hold is
reported on stderr and makes the exit status 1, as HTCondor's tools do.
"""

from __future__ import annotations

import sys

from tests.standins.engine import StandIn, StandInError, WrongState
from tests.standins.htcondor import replies

__all__ = ["condor_hold", "condor_release", "condor_rm", "condor_version"]


def _ids(si: StandIn, args: list[str]) -> list[tuple[str, list[tuple[int, int]]]] | str:
    """Each argument with the (cluster, proc) pairs it names now, or an error text."""
    out = []
    queued: dict[int, list[int]] = {}  # cluster -> procs still in the queue
    for job in si.jobs():
        if job.state in ("idle", "running", "held"):
            queued.setdefault(job.cluster, []).append(job.index)
    sets = {cluster: set(procs) for cluster, procs in queued.items()}
    for arg in args:
        cluster, _, proc = arg.partition(".")
        if not cluster.isdigit() or (proc and not proc.isdigit()):
            return f"Invalid job id {arg!r}"
        c = int(cluster)
        if not proc:
            pairs = [(c, p) for p in queued.get(c, [])]
        else:
            pairs = [(c, int(proc))] if int(proc) in sets.get(c, set()) else []
        out.append((arg, pairs))
    return out


def _control(argv: list[str], command: str, verb: str) -> int:
    si = StandIn()
    si.record_call(command, argv)
    reason = "via condor_hold"
    args = []
    it = iter(argv)
    for arg in it:
        if arg in ("-reason", "-r"):
            reason = next(it, reason)
        elif arg.startswith("-"):
            print(f"{command}: stand-in does not know option {arg}", file=sys.stderr)
            return 1
        else:
            args.append(arg)
    if not args:
        print(f"{command}: no job ids", file=sys.stderr)
        return 1
    try:
        found = _ids(si, args)
    except StandInError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if isinstance(found, str):
        print(f"{command}: {found}", file=sys.stderr)
        return 1
    rc = 0
    out: list[str] = []
    removed = set(si.remove([p for _, pairs in found for p in pairs])) if verb == "rm" else set()
    for arg, pairs in found:
        done: list[tuple[int, int]] = []
        if verb == "rm":
            done = [p for p in pairs if p in removed]
        else:
            for cluster, index in pairs:
                try:
                    if verb == "release":
                        si.release(cluster, index)
                    else:
                        si.hold(cluster, index, f"{reason} (by user {si_owner()})", 1)
                    done.append((cluster, index))
                except WrongState:
                    continue
        if not done:
            sys.stderr.write(replies.rm_missing(arg))
            rc = 1
        elif "." in arg:
            out.append(replies.rm_reply(verb, arg))
        else:
            out.extend(replies.rm_reply(verb, f"{c}.{i}") for c, i in done)
    sys.stdout.write("".join(out))
    return rc


def si_owner() -> str:
    import getpass

    return getpass.getuser()


def condor_rm(argv: list[str]) -> int:
    return _control(argv, "condor_rm", "rm")


def condor_release(argv: list[str]) -> int:
    return _control(argv, "condor_release", "release")


def condor_hold(argv: list[str]) -> int:
    return _control(argv, "condor_hold", "hold")


def condor_version(argv: list[str]) -> int:
    StandIn().record_call("condor_version", argv)
    sys.stdout.write(replies.version())
    return 0
