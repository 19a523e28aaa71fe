"""Stand-in ``qdel`` / ``qrls``: many ids in one call, the real error lines for the rest.

``qdel id...`` removes every named job in one engine call (a running job's process group
gets SIGTERM, then SIGKILL: PBS's ``kill_delay``); an array id (``12[]``) removes its
active subjobs. Errors, one line per id on stderr, the others done all the same:

* PBS Pro (OpenPBS ``src/cmds/qdel.c`` with ``pbs_messages.c``, as recorded in
  ``tests/drivers/fixtures/pbs/pbspro/qdel-unknown.stderr.txt``): ``qdel: Unknown Job Id
  <id>``, and ``qdel: Job has finished <id>`` for a job in history; exit 153 / 35
  (PBSE_UNKJOBID 15001 / PBSE_HISTJOBID 15139, as ``exit`` leaves them);
* Torque (``src/cmds/qdel.c``; no capture found): ``qdel: nonexistent job id: <id>``,
  ``qdel: Request invalid for state of job <id>`` for a completed one; exit 153 / 16.

``qrls id...`` releases held jobs (every held subjob of an array id); unknown ids as
qdel, with ``qrls:``.
"""

from __future__ import annotations

import contextlib
import getopt
import sys

from tests.standins.engine import ACTIVE, Job, StandIn, WrongState
from tests.standins.pbs.ids import parse_id
from tests.standins.pbs.site import Site, read_site

__all__ = ["main", "qrls"]

UNKNOWN_EXIT = 15001 % 256
FINISHED_EXIT = {"pbspro": 15139 % 256, "torque": 15016 % 256}


def main(argv: list[str]) -> int:
    """``qdel [-W force] [-x] id...``."""
    si = StandIn()
    si.record_call("qdel", argv)
    site = read_site(si.root)
    try:
        _, operands = getopt.gnu_getopt(argv, "W:x" if site.pro else "acm:pW:t:")
    except getopt.GetoptError as exc:
        print(f"qdel: invalid option -- '{exc.opt}'", file=sys.stderr)
        return 2
    targets, status = _targets(si, site, "qdel", operands)
    ids = [(job.cluster, job.index) for job in targets if job.state in ACTIVE]
    if ids:
        si.remove(ids)
    return status


def qrls(argv: list[str]) -> int:
    """``qrls [-h u|o|s] id...``: held jobs (or an array's held subjobs) start again."""
    si = StandIn()
    si.record_call("qrls", argv)
    site = read_site(si.root)
    try:
        _, operands = getopt.gnu_getopt(argv, "h:")
    except getopt.GetoptError as exc:
        print(f"qrls: invalid option -- '{exc.opt}'", file=sys.stderr)
        return 2
    targets, status = _targets(si, site, "qrls", operands)
    for job in targets:
        if job.state == "held":
            with contextlib.suppress(WrongState):  # it ended or was released meanwhile
                si.release(job.cluster, job.index)
    return status


def _targets(si: StandIn, site: Site, command: str, operands: list[str]) -> tuple[list[Job], int]:
    """The jobs the ids name, and the exit status after printing an error per bad id."""
    if not operands:
        print(f"usage: {command} [-W force|suppress_mail=<N>] [-x] job_identifier...",
              file=sys.stderr)  # fmt: skip
        return [], 2
    clusters: dict[int, list[Job]] = {}
    for job in si.jobs():
        if job.attrs.get("pbs", {}).get("flavor") == site.flavor:
            clusters.setdefault(job.cluster, []).append(job)
    found: list[Job] = []
    status = 0
    for text in operands:
        full = text if "." in text else f"{text}.{site.server}"
        job_id = parse_id(site, text)
        jobs = clusters.get(job_id.cluster, []) if job_id else []
        array = bool(jobs) and jobs[0].attrs["pbs"].get("array") is not None
        if job_id is not None and jobs and job_id.array == array and job_id.index is not None:
            jobs = [job for job in jobs if job.index == job_id.index]
        if job_id is None or not jobs or job_id.array != array:
            unknown = "Unknown Job Id" if site.pro else "nonexistent job id:"
            print(f"{command}: {unknown} {full}", file=sys.stderr)
            status = UNKNOWN_EXIT
            continue
        if all(job.state not in ACTIVE for job in jobs):
            done = "Job has finished" if site.pro else "Request invalid for state of job"
            print(f"{command}: {done} {full}", file=sys.stderr)
            status = FINISHED_EXIT[site.flavor]
            continue
        found += jobs
    return found, status
