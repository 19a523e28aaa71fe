"""``qstat -f -F json`` of PBS Pro / OpenPBS, in the shape of the recorded real output.

The recorded captures (``tests/drivers/fixtures/pbs/pbspro/qstat-x-f-F-json-*.json``,
PBS Pro 19.0.0 and 2022.1.7) fix the layout: four-space indents, ``"key":value`` with no
space, attributes in the server's order, ``Resource_List``/``resources_used``/
``Variable_List`` as objects, every value that parses as JSON written as JSON (``"Priority":0``,
``"Exit_status":-29``; ``"Rerunable":"False"`` stays a string: OpenPBS
``pbs_json_insert_parsed``), and no ``Jobs`` key at all when no job matches (qstat.c adds
it with the first job). Arrays (not in those captures) follow OpenPBS's attribute names:
the parent ``12[].server`` has ``array``, ``array_state_count``, ``array_indices_submitted``
and ``array_indices_remaining``; a subjob ``12[7].server`` has ``array_id`` and
``array_index``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from tests.standins.engine import Job
from tests.standins.pbs import states
from tests.standins.pbs.ids import format_id
from tests.standins.pbs.options import seconds
from tests.standins.pbs.site import Site
from tests.standins.pbs.states import Group

__all__ = ["PBS_VERSION", "dumps", "job_attrs", "render_jobs", "resource_list"]

PBS_VERSION = "22.05.11"  # as in the recorded qstat-version.txt and the composed capture

#: job_state -> substate, as the captures show them
_SUBSTATE = {"Q": 10, "H": 20, "R": 42, "E": 50, "F": 92, "X": 92, "B": 11}


def render_jobs(site: Site, groups: Sequence[Group], now: float) -> str:
    """The whole ``qstat -f -F json`` text for ``groups`` (``states.Group``)."""
    out: dict[str, Any] = {
        "timestamp": int(now),
        "pbs_version": PBS_VERSION,
        "pbs_server": site.server,
    }
    jobs: dict[str, Any] = {}
    for group in groups:
        first = group.jobs[0]
        if group.kind == "job":
            jobs[format_id(site, first.cluster, array=False)] = job_attrs(site, first, None)
            continue
        if group.kind != "subjob":
            jobs[format_id(site, first.cluster, array=True)] = job_attrs(site, first, group.jobs)
        if group.kind != "array":
            for job in group.jobs:
                key = format_id(site, job.cluster, job.index, array=True)
                jobs[key] = job_attrs(site, job, None, subjob=True)
    if jobs:
        out["Jobs"] = jobs
    return dumps(out) + "\n"


def job_attrs(
    site: Site, job: Job, array: Sequence[Job] | None, *, subjob: bool = False
) -> dict[str, Any]:
    """One job's attributes, in OpenPBS 22.05's order (the composed capture's, taken
    from a real 22.05.11 one); ``array``: the subjobs, when ``job`` stands for its parent."""
    info = job.attrs["pbs"]
    host = info["submit_host"]
    parent = array is not None
    state = states.parent_state(array) if array is not None else states.pro_state(job, subjob)
    ran = not parent and job.start_time is not None
    ended = not parent and states.ended(job)
    resources = resource_list(info["resources"])
    ncpus = int(resources.get("ncpus", 1))
    vnode = f"{job.host}:ncpus={ncpus}"
    if "mem" in resources:
        vnode += f":mem={_kb(resources['mem'])}"
    a: dict[str, Any] = {"Job_Name": info["job_name"], "Job_Owner": f"{job.owner}@{host}"}
    if ran:
        end = job.end_time if ended and job.end_time else time.time()
        a["resources_used"] = {
            "cpupercent": 0,
            "cput": "00:00:00",
            "mem": "0kb",
            "ncpus": ncpus,
            "vmem": "0kb",
            "walltime": _hms(end - (job.start_time or end)),
        }
    a.update(job_state=state, queue=info["queue"], server=site.server)
    if info.get("account"):
        a["Account_Name"] = info["account"]
    a.update(Checkpoint="u", ctime=states.pbs_time(job.submit_time))
    a["Error_Path"] = f"{host}:{_path(info, job, 'e', site, parent)}"
    if array is not None:
        hold = states.hold_types(array[0]) if state == "H" else "n"
    else:
        hold = states.hold_types(job)
    a.update(Hold_Types=hold, Join_Path=info["join"], Keep_Files="n", Mail_Points="a")
    a["mtime"] = states.pbs_time(job.end_time or job.start_time or job.submit_time)
    a["Output_Path"] = f"{host}:{_path(info, job, 'o', site, parent)}"
    a.update(Priority=0, qtime=states.pbs_time(job.submit_time))
    a["Rerunable"] = "True" if info["rerunable"] == "y" else "False"
    a["Resource_List"] = resources
    if ran:
        a["exec_host"] = f"{job.host}/0" + (f"*{ncpus}" if ncpus > 1 else "")
        a["exec_vnode"] = f"({vnode})"
    started = min((j.start_time for j in array if j.start_time), default=None) if array else None
    if ran or started:
        a["stime"] = states.pbs_time(job.start_time if ran else started)
    if ended and ran:
        a["obittime"] = states.pbs_time(job.end_time)
    a["substate"] = _substate(job, state, parent)
    if job.state == "running" and job.pid and not parent:
        a["session_id"] = job.pid
        a["jobdir"] = job.workdir
    comment = _comment(job, state, ended, parent, vnode)
    if comment:
        a["comment"] = comment
    if job.runs and not parent:
        a["run_count"] = job.runs
    status = None if parent else states.exit_status(job, "pbspro")
    if status is not None:
        a["Exit_status"] = status
    a["Variable_List"] = {key: parsed(value) for key, value in _variables(job, subjob).items()}
    a["etime"] = states.pbs_time(job.submit_time)
    a["Submit_arguments"] = info["submit_args"]
    if state == "F":
        a["history_timestamp"] = int(job.end_time or time.time())
    a["project"] = "_pbs_project_default"
    a["Submit_Host"] = host
    if parent and array is not None:
        a.update(_array_parent(info, array))
    elif subjob:
        a["array_id"] = format_id(site, job.cluster, array=True)
        a["array_index"] = job.index
    return a


def _substate(job: Job, state: str, parent: bool) -> int:
    """OpenPBS ``job.h``: an ended job is TERMINATED (91, deleted), FINISHED (92) or
    FAILED (93, killed by the mom for a resource, as the Aurora captures show)."""
    if parent or state not in ("F", "X"):
        return _SUBSTATE.get(state, 10)
    if job.state == "removed":
        return 91
    return 93 if job.end_reason == "time limit" else 92


def _array_parent(info: dict[str, Any], jobs: Sequence[Job]) -> dict[str, Any]:
    counts = {"Queued": 0, "Running": 0, "Exiting": 0, "Expired": 0}
    for job in jobs:
        if states.ended(job):
            counts["Expired"] += 1
        elif job.state == "running":
            counts["Running"] += 1
        else:
            counts["Queued"] += 1
    remaining = [job.index for job in jobs if job.state in ("idle", "held")]
    out: dict[str, Any] = {
        "array": "True",
        "array_state_count": "".join(f"{key}:{value} " for key, value in counts.items()),
        "array_indices_submitted": info["array"],
        "array_indices_remaining": _ranges(remaining) or "-",
    }
    if info.get("throttle"):
        out["max_run_subjobs"] = info["throttle"]
    return out


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (PBS's range spelling)."""
    parts: list[str] = []
    for index in sorted(indices):
        if parts and index == _last(parts) + 1:
            start = parts[-1].split("-")[0]
            parts[-1] = f"{start}-{index}"
        else:
            parts.append(str(index))
    return ",".join(parts)


def _last(parts: list[str]) -> int:
    return int(parts[-1].split("-")[-1])


def _comment(job: Job, state: str, ended: bool, parent: bool, vnode: str) -> str | None:
    """The scheduler's and server's words, as in the captures."""
    if parent:
        return None
    if job.state == "held":
        if states.hold_types(job) == "u":
            return None  # qsub -h: no comment until someone says why (capture 157.pbs)
        return job.hold_reason
    if job.start_time is None:
        return None
    ran = time.strftime("%a %b %d at %H:%M", time.localtime(job.start_time))
    text = f"Job run at {ran} on ({vnode})"
    if not ended:
        return text
    if job.end_reason == "time limit":
        return f"{text} and exceeded resource walltime"
    if job.state == "removed":
        return f"{text} and terminated by {job.owner}"  # update_job_finish_comment
    return f"{text} and finished"


def _variables(job: Job, subjob: bool) -> dict[str, str]:
    found = dict(job.attrs["pbs"]["variables"])
    if subjob:
        found["PBS_ARRAY_INDEX"] = str(job.index)
    return found


def _path(info: dict[str, Any], job: Job, kind: str, site: Site, parent: bool) -> str:
    if parent:
        given = info["output" if kind == "o" else "error"]
        if given:
            return str(given)
        return f"{info['workdir']}/{info['job_name']}.{kind}{job.cluster}^array_index^"
    return job.stdout if kind == "o" else job.stderr


def resource_list(resources: dict[str, str]) -> dict[str, Any]:
    """``Resource_List`` as PBS Pro expands it: ``select=N:ncpus=C:...`` gives ``nodect``
    N and ``ncpus`` N*C (and ``mem``/``ngpus`` likewise); keys sorted, as the server
    prints them; ``place`` "free" where none was asked."""
    out: dict[str, Any] = {}
    for key, value in resources.items():
        if key == "walltime":
            out[key] = _hms(seconds(value))
        else:
            out[key] = parsed(value)
    select = resources.get("select")
    if select:
        chunks, _, rest = select.partition(":")
        count = int(chunks) if chunks.isdigit() else 1
        out["nodect"] = count
        for part in rest.split(":"):
            name, _, value = part.partition("=")
            if name in ("ncpus", "ngpus") and value.isdigit():
                out[name] = count * int(value)
            elif name == "mem" and value:
                out[name] = value
        out.setdefault("ncpus", count)
    out.setdefault("ncpus", 1)
    out.setdefault("place", "free")
    return dict(sorted(out.items()))


def parsed(value: Any) -> Any:
    """A value as ``pbs_json_insert_parsed`` writes it: as JSON if it is JSON, else a string."""
    if not isinstance(value, str):
        return value
    try:
        got = json.loads(value, parse_constant=_no_constant)
    except ValueError:
        return value
    return got if not isinstance(got, dict | list) else value


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # cJSON knows no NaN/Infinity


def _kb(mem: Any) -> str:
    """``4gb`` -> ``4194304kb`` (exec_vnode's spelling)."""
    text = str(mem).lower()
    for unit, factor in (("tb", 1 << 30), ("gb", 1 << 20), ("mb", 1 << 10), ("kb", 1), ("b", 0)):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            number = int(text[: -len(unit)])
            return f"{number * factor if factor else max(1, number // 1024)}kb"
    return text


def _hms(seconds: float) -> str:
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def dumps(value: Any, depth: int = 0) -> str:
    """PBS's JSON layout: objects one member a line, four spaces a level, ``"k":v``."""
    if not isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if not value:
        return "{}"
    pad = "    " * (depth + 1)
    members = [
        f"{pad}{json.dumps(key, ensure_ascii=False)}:{dumps(item, depth + 1)}"
        for key, item in value.items()
    ]
    return "{\n" + ",\n".join(members) + "\n" + "    " * depth + "}"
