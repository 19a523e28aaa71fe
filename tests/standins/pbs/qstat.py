"""Stand-in ``qstat`` for both dialects, printing the recorded real formats.

* ``qstat --version``: ``pbs_version = 22.05.11`` (PBS Pro) / ``Version: 6.1.2`` (Torque),
  the recorded first lines;
* ``qstat -B -f [-F json]``: the server's attributes (``max_array_size``);
* PBS Pro ``qstat -f -F json [-x] [-t] [-u user] [ids]`` (``pro_json``), ``qstat -f``
  the same as text; ``-x`` adds finished jobs (``F``), ``-t`` subjobs;
* Torque ``qstat -x [-t] [-u user] [ids]`` (``torque_xml``): completed jobs (``C``) are
  always listed, as with ``keep_completed``; ``-t`` adds subjobs;
* without ``-f``/``-x``: the short table.

An id it does not know: ``qstat: Unknown Job Id <id>`` (Torque: ``... Id Error <id>``, the
recorded line) on stderr, exit 153 (PBSE_UNKJOBID 15001 as an exit status), the other
ids still listed.
"""

from __future__ import annotations

import getopt
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.standins.engine import Job, StandIn
from tests.standins.pbs import pro_json, states, torque_xml
from tests.standins.pbs.ids import format_id, parse_id
from tests.standins.pbs.site import Site, read_site
from tests.standins.pbs.states import Group

__all__ = ["main", "select_groups"]

PRO_GETOPT = "ainpqrstwxu:fGHJMQEBW:T1F:D:"
TORQUE_GETOPT = "acCeE:filn1pqrstu:xGMQRBW:"
UNKNOWN_EXIT = 15001 % 256  # PBSE_UNKJOBID, as exit() leaves it
TORQUE_VERSION = "6.1.2"


def main(argv: list[str]) -> int:
    si = StandIn()
    si.record_call("qstat", argv)
    site = read_site(si.root)
    if "--version" in argv:
        print(f"pbs_version = {pro_json.PBS_VERSION}" if site.pro else f"Version: {TORQUE_VERSION}")
        return 0
    try:
        pairs, operands = getopt.gnu_getopt(argv, PRO_GETOPT if site.pro else TORQUE_GETOPT)
    except getopt.GetoptError as exc:
        print(f"qstat: invalid option -- '{exc.opt}'", file=sys.stderr)
        return 2
    flags = {flag[1]: value for flag, value in pairs}
    if "B" in flags:
        sys.stdout.write(server_text(si, site, json_format=flags.get("F") == "json"))
        return 0
    history = "x" in flags if site.pro else True
    groups, unknown = select_groups(si, site, operands, history, "t" in flags, flags.get("u"))
    now = time.time()
    if site.pro and "f" in flags:
        if flags.get("F") == "json":
            sys.stdout.write(pro_json.render_jobs(site, groups, now))
        else:
            sys.stdout.write(full_text(site, groups))
    elif not site.pro and "x" in flags:
        sys.stdout.write(torque_xml.render_jobs(site, groups))
    else:
        sys.stdout.write(table(site, groups))
    for text in unknown:
        word = "Unknown Job Id" if site.pro else "Unknown Job Id Error"
        print(f"qstat: {word} {text}", file=sys.stderr)
    return UNKNOWN_EXIT if unknown else 0


def select_groups(
    si: StandIn,
    site: Site,
    operands: Sequence[str],
    history: bool,
    subjobs: bool,
    user: str | None,
) -> tuple[list[Group], list[str]]:
    """``(groups to list, unknown ids)`` for the command line: every submission of the
    server (``history``: finished ones too), or those named."""
    clusters: dict[int, list[Job]] = {}
    for job in si.jobs():
        if job.attrs.get("pbs", {}).get("flavor") == site.flavor:
            clusters.setdefault(job.cluster, []).append(job)
    if user:
        users = set(user.split(","))
        clusters = {c: jobs for c, jobs in clusters.items() if jobs[0].owner in users}
    whole = "array+subjobs" if subjobs else "array"
    if not operands:
        return [
            Group(jobs, whole if _is_array(jobs) else "job")
            for jobs in clusters.values()
            if history or not _finished(jobs)
        ], []
    groups: list[Group] = []
    unknown: list[str] = []
    for text in operands:
        job_id = parse_id(site, text)
        jobs = clusters.get(job_id.cluster) if job_id else None
        if job_id is None or jobs is None or (not history and _finished(jobs)):
            unknown.append(_full(site, text))
            continue
        if job_id.array != _is_array(jobs):
            unknown.append(_full(site, text))
        elif job_id.index is None:
            groups.append(Group(jobs, whole if job_id.array else "job"))
        else:
            match = [job for job in jobs if job.index == job_id.index]
            if match:
                groups.append(Group(match, "subjob"))
            else:
                unknown.append(_full(site, text))
    return groups, unknown


def _is_array(jobs: Sequence[Job]) -> bool:
    return jobs[0].attrs["pbs"].get("array") is not None


def _finished(jobs: Sequence[Job]) -> bool:
    return all(states.ended(job) for job in jobs)


def _full(site: Site, text: str) -> str:
    """An id as the server names it in errors (its server part added)."""
    return text if "." in text else f"{text}.{site.server}"


def server_text(si: StandIn, site: Site, *, json_format: bool) -> str:
    """``qstat -B -f`` (PBS Pro ``-F json`` as in the recorded ``qstat-Bf-F-json.json``)."""
    jobs = si.jobs()
    count = {"Queued": 0, "Held": 0, "Running": 0}
    for job in jobs:
        key = {"idle": "Queued", "held": "Held", "running": "Running"}.get(job.state)
        if key:
            count[key] += 1
    attrs: dict[str, Any] = {
        "server_state": "Active",
        "server_host": site.server,
        "scheduling": "True",
        "total_jobs": sum(count.values()),
        "state_count": f"Transit:0 Queued:{count['Queued']} Held:{count['Held']} Waiting:0 "
        f"Running:{count['Running']} Exiting:0 Begun:0 ",
        "default_queue": site.queue,
        "log_events": 511,
        "mail_from": "adm",
        "query_other_jobs": "True",
        "resources_default": {"ncpus": 1},
        "default_chunk": {"ncpus": 1},
        "scheduler_iteration": 600,
        "flatuid": "True",
        "resv_enable": "True",
        "node_fail_requeue": 310,
    }
    if site.pro:
        attrs["max_array_size"] = site.max_array_size
        attrs["pbs_version"] = pro_json.PBS_VERSION
        attrs.update(job_history_enable="True", job_history_duration="336:00:00")
    else:
        attrs["max_job_array_size"] = site.max_array_size
        attrs["pbs_version"] = TORQUE_VERSION
    if json_format and site.pro:
        out = {
            "timestamp": int(time.time()),
            "pbs_version": pro_json.PBS_VERSION,
            "pbs_server": site.server,
            "Server": {site.server: attrs},
        }
        return pro_json.dumps(out) + "\n"
    return f"Server: {site.server}\n" + "".join(_text_lines(attrs)) + "\n"


def _text_lines(attrs: dict[str, Any]) -> list[str]:
    """``    key = value`` lines, nested objects as ``key.sub = value``, lists of
    variables comma-joined (``qstat -f``'s text form)."""
    lines = []
    for key, value in attrs.items():
        if isinstance(value, dict) and key == "Variable_List":
            joined = ",".join(f"{k}={v}" for k, v in value.items())
            lines.append(f"    {key} = {joined}\n")
        elif isinstance(value, dict):
            lines += [f"    {key}.{k} = {v}\n" for k, v in value.items()]
        else:
            lines.append(f"    {key} = {value}\n")
    return lines


def full_text(site: Site, groups: Sequence[Group]) -> str:
    """PBS Pro ``qstat -f`` as text: the JSON's attributes, one ``Job Id:`` block each."""
    data = json.loads(pro_json.render_jobs(site, groups, time.time())).get("Jobs", {})
    blocks = [f"Job Id: {job_id}\n" + "".join(_text_lines(a)) for job_id, a in data.items()]
    return "\n".join(blocks) + ("\n" if blocks else "")


def table(site: Site, groups: Sequence[Group]) -> str:
    """The default listing (``Job id  Name  User  Time Use S Queue``)."""
    rows: list[tuple[str, Job, str]] = []
    for group in groups:
        first = group.jobs[0]
        if group.kind == "job":
            rows.append((format_id(site, first.cluster, array=False), first, _letter(site, first)))
            continue
        if group.kind != "subjob":
            jobs = group.jobs
            state = states.parent_state(jobs) if site.pro else torque_xml.parent_state(jobs)
            rows.append((format_id(site, first.cluster, array=True), first, state))
        if group.kind != "array":
            for job in group.jobs:
                job_id = format_id(site, job.cluster, job.index, array=True)
                rows.append((job_id, job, _letter(site, job)))
    if not rows:
        return ""
    head = "Job id            Name             User              Time Use S Queue\n"
    head += "----------------  ---------------- ----------------  -------- - -----\n"
    body = "".join(
        f"{job_id[:16]:<16}  {job.attrs['pbs']['job_name'][:16]:<16} {job.owner[:16]:<16}  "
        f"{0:>8} {state} {job.attrs['pbs']['queue']}\n"
        for job_id, job, state in rows
    )
    return head + body


def _letter(site: Site, job: Job) -> str:
    return states.pro_state(job, _is_array([job])) if site.pro else states.torque_state(job)
