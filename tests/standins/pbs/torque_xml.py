"""Torque's ``qstat -x`` (XML), in the shape of the recorded real output.

The capture ``tests/drivers/fixtures/pbs/torque/qstat-x.xml`` (Torque 6, with an array
``673175[]`` and its subjobs) fixes the layout: one line ``<Data><Job>...</Job></Data>``
and a newline, elements in the server's attribute order (Torque
``src/server/job_attr_def.c``), times as epoch seconds, ``Resource_List``/
``resources_used`` nested, ``Variable_List`` one comma-joined string. An array parent
``12[].server`` carries ``job_array_request``; a subjob ``12[7].server`` is named
``<name>-7``, carries ``job_array_id`` and has ``PBS_ARRAYID`` first in its variables,
and no ``Hold_Types`` unless held. ``comment`` (a system hold's reason) sits where Torque
puts it, between ``queue_type`` and ``etime``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from tests.standins.engine import Job
from tests.standins.pbs import states
from tests.standins.pbs.ids import format_id
from tests.standins.pbs.options import seconds
from tests.standins.pbs.site import Site
from tests.standins.pbs.states import Group

__all__ = ["job_elements", "render_jobs", "to_xml"]


def render_jobs(site: Site, groups: Sequence[Group]) -> str:
    """The whole ``qstat -x`` text for ``groups`` (``states.Group``)."""
    parts = ["<Data>"]
    for group in groups:
        first = group.jobs[0]
        if group.kind == "job":
            parts.append(to_xml(job_elements(site, first, None)))
            continue
        if group.kind != "subjob":
            parts.append(to_xml(job_elements(site, first, group.jobs)))
        if group.kind != "array":
            parts += [to_xml(job_elements(site, job, None, subjob=True)) for job in group.jobs]
    parts.append("</Data>")
    return "".join(parts) + "\n"


def to_xml(elements: list[tuple[str, Any]], tag: str = "Job") -> str:
    """``<tag><k>v</k>...</tag>``; a list value nests."""
    inner = "".join(
        to_xml(value, key) if isinstance(value, list) else f"<{key}>{escape(str(value))}</{key}>"
        for key, value in elements
    )
    return f"<{tag}>{inner}</{tag}>"


def parent_state(jobs: Sequence[Job]) -> str:
    """The array summary's state: R if a subjob runs, else Q if one waits, H if held, C."""
    seen = {states.torque_state(job) for job in jobs}
    for letter in ("R", "Q", "H"):
        if letter in seen:
            return letter
    return "C"


def job_elements(
    site: Site, job: Job, array: Sequence[Job] | None, *, subjob: bool = False
) -> list[tuple[str, Any]]:
    """One job's elements; ``array``: the subjobs, when ``job`` stands for its parent."""
    info = job.attrs["pbs"]
    host = info["submit_host"]
    parent = array is not None
    state = parent_state(array) if array is not None else states.torque_state(job)
    ran = not parent and job.start_time is not None
    ended = not parent and states.ended(job)
    if parent:
        job_id = format_id(site, job.cluster, array=True)
    else:
        job_id = format_id(site, job.cluster, job.index if subjob else None, array=subjob)
    name = f"{info['job_name']}-{job.index}" if subjob else info["job_name"]
    e: list[tuple[str, Any]] = [
        ("Job_Id", job_id),
        ("Job_Name", name),
        ("Job_Owner", f"{job.owner}@{host.split('.')[0]}"),
    ]
    if ran:
        end = job.end_time if ended and job.end_time else time.time()
        used = _hms(end - (job.start_time or end))
        e.append(
            (
                "resources_used",
                [("cput", "00:00:00"), ("energy_used", 0), ("mem", "0kb"), ("vmem", "0kb"),
                 ("walltime", used)],
            )
        )  # fmt: skip
    e += [("job_state", state), ("queue", info["queue"]), ("server", site.server)]
    if info.get("account"):
        e.append(("Account_Name", info["account"]))
    e += [("Checkpoint", "u"), ("ctime", int(job.submit_time))]
    e.append(("Error_Path", f"{host}:{_path(info, job, 'e', parent)}"))
    if ran:
        e.append(("exec_host", f"{job.host}/0"))
    if array is not None:
        hold = states.hold_types(array[0]) if state == "H" else "n"
    else:
        hold = states.hold_types(job)
    if not subjob or hold != "n":
        e.append(("Hold_Types", hold))
    e += [("Join_Path", info["join"]), ("Keep_Files", "n"), ("Mail_Points", "a")]
    e.append(("mtime", int(job.end_time or job.start_time or job.submit_time)))
    e.append(("Output_Path", f"{host}:{_path(info, job, 'o', parent)}"))
    e += [("Priority", 0), ("qtime", int(job.submit_time))]
    e.append(("Rerunable", "True" if info["rerunable"] == "y" else "False"))
    e.append(("Resource_List", _resources(info["resources"])))
    if job.state == "running" and job.pid and not parent:
        e.append(("session_id", job.pid))
    variables = dict(info["variables"])
    if subjob:
        variables = {"PBS_ARRAYID": str(job.index), **variables}
    e.append(("Variable_List", ",".join(f"{k}={v}" for k, v in variables.items())))
    e += [("euser", job.owner), ("egroup", job.owner), ("queue_type", "E")]
    if not parent and job.state == "held" and hold == "s" and job.hold_reason:
        e.append(("comment", job.hold_reason))
    e.append(("etime", int(job.submit_time)))
    status = None if parent else states.exit_status(job, "torque")
    if status is not None:
        e.append(("exit_status", status))
    e.append(("submit_args", info["submit_args"]))
    if parent:
        e.append(("job_array_request", info["array"]))
    elif subjob:
        e.append(("job_array_id", job.index))
    if ran:
        e += [("start_time", int(job.start_time or 0)), ("start_count", job.runs)]
    e.append(("fault_tolerant", "False"))
    if ended and ran:
        e.append(("comp_time", int(job.end_time or time.time())))
    e.append(("job_radix", 0))
    if ended and ran:
        e.append(("total_runtime", f"{(job.end_time or 0) - (job.start_time or 0):.6f}"))
    e += [("submit_host", host), ("init_work_dir", info["workdir"]), ("request_version", 1)]
    return e


def _resources(resources: dict[str, str]) -> list[tuple[str, Any]]:
    """Torque's ``Resource_List``: as asked, sorted, ``nodect`` from ``nodes=N:...``."""
    out: dict[str, Any] = dict(resources)
    nodes = resources.get("nodes")
    if nodes:
        count = nodes.split(":")[0]
        out["nodect"] = int(count) if count.isdigit() else 1
    if "walltime" in out:
        out["walltime"] = _hms(seconds(out["walltime"]))
    return sorted(out.items())


def _path(info: dict[str, Any], job: Job, kind: str, parent: bool) -> str:
    if parent:
        given = info["output" if kind == "o" else "error"]
        return str(given) if given else f"{info['workdir']}/{info['job_name']}.{kind}{job.cluster}"
    return job.stdout if kind == "o" else job.stderr


def _hms(seconds: float) -> str:
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
