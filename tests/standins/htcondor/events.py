"""The user job event log, written as HTCondor's shadow and schedd write it.

``notify`` is the engine's transition hook (``"tests.standins.htcondor.events:notify"``):
it runs in whichever process made the transition -- a frontend command, the task wrapper
whose job ended, the test -- and appends one record to the job's ``UserLog`` (the
description's ``log``) in the text format of ``tests/drivers/fixtures/htcondor/event-log.txt``
(recorded from HTCondor; see ``SOURCES.md`` there): ``NNN (cluster.proc.subproc) date time
Title``, body lines, then a ``...`` line. Each record is one ``write`` on an ``O_APPEND``
descriptor, so records from concurrent processes never interleave.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from tests.standins.htcondor.ads import hold_info, requirements_met

__all__ = ["TIME_FORMAT", "notify", "records", "shadow_exception_reason"]

#: the date of each record's header line (HTCondor's default ISO 8601 user-log dates)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: an eviction whose reason starts with this is a shadow exception (event 007) instead
#: of an eviction (004); the rest of the reason is the exception's message
SHADOW_EXCEPTION = "shadow exception: "

USAGE = "Usr 0 00:00:00, Sys 0 00:00:00"
RUN_USAGE = f"\t\t{USAGE}  -  Run Remote Usage\n\t\t{USAGE}  -  Run Local Usage\n"
TOTAL_USAGE = f"\t\t{USAGE}  -  Total Remote Usage\n\t\t{USAGE}  -  Total Local Usage\n"
RUN_BYTES = "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
TOTAL_BYTES = "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n"
#: the resources table of a 25.x terminated event (Usage/Request/Allocated columns)
RESOURCES = (
    "\tPartitionable Resources :    Usage  Request Allocated \n"
    "\t   Cpus                 :        0 {cpus:>8} {cpus:>9} \n"
    "\t   Disk (KB)            :        0 {disk:>8} {disk:>9} \n"
    "\t   GPUs                 :          {gpus_request:>8} {gpus:>9} \n"
    "\t   Memory (MB)          :        0 {memory:>8} {memory:>9} \n"
    "\t   TimeExecute (s)      : {secs:>8}                    \n"
    "\t   TimeSlotBusy (s)     : {secs:>8}                    \n"
)


def shadow_exception_reason(message: str) -> str:
    """The engine ``evict`` reason that makes the next record a shadow exception."""
    return SHADOW_EXCEPTION + message


def _address(daemon: str) -> str:
    return f"<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={socket.gethostname()}&noUDP&sock={daemon}>"


def _header(number: int, job: Any, title: str, when: float) -> str:
    stamp = time.strftime(TIME_FORMAT, time.localtime(when))
    return f"{number:03d} ({job.cluster:03d}.{job.index:03d}.000) {stamp} {title}\n"


def _resources(job: Any) -> dict[str, int]:
    attrs = job.attrs
    return {
        "cpus": int(attrs.get("RequestCpus", 1)),
        "disk": int(attrs.get("RequestDisk", 1)),
        "gpus": int(attrs.get("RequestGpus", 0)),
        "memory": int(attrs.get("RequestMemory", 128)),
    }


def _executing(job: Any) -> str:
    r = _resources(job)
    return (
        f"\tSlotName: slot1_{job.index % 64 + 1}@{socket.gethostname()}\n"
        f'\tCondorScratchDir = "{job.attrs.get("Iwd", "/tmp")}"\n'
        f"\tCpus = {r['cpus']}\n\tDisk = {r['disk']}\n\tGPUs = {r['gpus']}\n"
        f"\tMemory = {r['memory']}\n"
    )


def _terminated(job: Any, when: float) -> str:
    secs = int(when - job.start_time) if job.start_time else 0
    gpus_request = job.attrs.get("RequestGpus", "")
    table = RESOURCES.format(secs=secs, gpus_request=gpus_request, **_resources(job))
    if job.exit_code is not None:
        how = f"\t(1) Normal termination (return value {job.exit_code})\n"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        tail = f"\n\tJob terminated of its own accord at {stamp} with exit-code {job.exit_code}.\n"
    else:
        how = f"\t(0) Abnormal termination (signal {job.term_signal or signal.SIGKILL})\n"
        how += "\t(0) No core file\n"
        tail = ""
    return how + RUN_USAGE + TOTAL_USAGE + RUN_BYTES + TOTAL_BYTES + table + tail


def _evicted(code: int, reason: str) -> str:
    """004 as 25.x writes it when a running job is held: code in the title, Reason line."""
    return (
        f"004|Job was evicted. Code {code} Subcode 0\n\t(0) CPU times\n{RUN_USAGE}{RUN_BYTES}"
        f"\tReason: {reason}\n"
    )


def records(job: Any, event: str, when: float | None = None) -> list[str]:
    """The text records ``event`` writes for ``job`` (a hold of a running job is an
    eviction then a hold; an event HTCondor does not log writes none)."""
    when = time.time() if when is None else when
    bodies: list[str] = []
    if event == "submit":
        bodies.append(f"000|Job submitted from host: {_address('schedd_1_1')}\n")
    elif event == "execute" and requirements_met(job.attrs, job.runs - 1):
        bodies.append(f"001|Job executing on host: {_address('startd_1_1')}\n{_executing(job)}")
    elif event == "evicted":
        reason = (job.end_reason or "").removeprefix("evicted: ")
        if reason.startswith(SHADOW_EXCEPTION):
            message = reason[len(SHADOW_EXCEPTION) :]
            bodies.append(f"007|Shadow exception!\n\t{message}\n{RUN_BYTES}")
        else:
            bodies.append(f"004|Job was evicted.\n\t(0) CPU times\n{RUN_USAGE}{RUN_BYTES}")
    elif event == "held":
        reason, code, subcode = hold_info(job)
        if job.start_time is not None and job.end_reason in (None, "time limit"):
            bodies.append(_evicted(code, reason))  # it was running
        bodies.append(f"012|Job was held.\n\t{reason}\n\tCode {code} Subcode {subcode}\n")
    elif event == "released":
        bodies.append(f"013|Job was released.\n\tvia condor_release (by user {job.owner})\n")
    elif event == "terminated":
        bodies.append("005|Job terminated.\n" + _terminated(job, when))
    elif event == "aborted":
        bodies.append(f"009|Job was aborted.\n\tvia condor_rm (by user {job.owner})\n")
    out = []
    for body in bodies:
        number, _, rest = body.partition("|")
        title, _, lines = rest.partition("\n")
        out.append(_header(int(number), job, title, when) + lines + "...\n")
    return out


def notify(root: str, job: Any, event: str) -> None:
    """The engine hook: append ``event``'s record to the job's user log, if it has one."""
    path = job.attrs.get("UserLog")
    text = "".join(records(job, event))
    if not path or not text:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
