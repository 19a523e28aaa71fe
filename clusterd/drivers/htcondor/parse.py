"""What HTCondor's commands print: ``condor_submit -terse``, ``-json`` ad lists, errors.

Formats as HTCondor writes them (``tests/drivers/fixtures/htcondor/SOURCES.md``):
``condor_submit -terse`` prints ``first - last`` job ids per cluster (``23.0 - 23.9``);
``condor_q -json`` / ``condor_history -json`` print a JSON array of job ads, or nothing
at all when no job matched. Anything else is a ``DriverError`` that quotes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clusterd.errors import DriverError

__all__ = [
    "JOB_STATUS",
    "JobAd",
    "constraint_for",
    "parse_ads",
    "parse_submit_terse",
]

#: HTCondor's JobStatus numbers
JOB_STATUS = {
    1: "IDLE",
    2: "RUNNING",
    3: "REMOVED",
    4: "COMPLETED",
    5: "HELD",
    6: "TRANSFERRING_OUTPUT",
    7: "SUSPENDED",
}
#: the attributes ``condor_q``/``condor_history`` are asked for
AD_ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "JobBatchName",
    "ClusterdToken",
    "NumJobStarts",
    "RemoteHost",
    "LastRemoteHost",
    "HoldReason",
    "HoldReasonCode",
    "HoldReasonSubCode",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "RemoveReason",
)

_TERSE = re.compile(r"(\d+)\.(\d+) - (\d+)\.(\d+)")


def parse_submit_terse(text: str) -> tuple[str, int]:
    """``(cluster id, number of jobs)`` from ``condor_submit -terse``'s reply.

    One submit description makes one cluster; several lines or clusters mean it was not
    ours, and are refused rather than guessed at.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ranges = [m for line in lines if (m := _TERSE.fullmatch(line))]
    if len(ranges) != 1:
        raise DriverError(f"unexpected condor_submit -terse reply: {text.strip()[:200]!r}")
    first_cluster, first, last_cluster, last = (int(g) for g in ranges[0].groups())
    if first_cluster != last_cluster or last < first:
        raise DriverError(f"unexpected condor_submit -terse reply: {text.strip()[:200]!r}")
    return str(first_cluster), last - first + 1


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class JobAd:
    """The attributes of one job ad the driver uses."""

    cluster: int
    proc: int
    status: int | None = None
    batch: str | None = None
    token: str | None = None
    starts: int = 0
    host: str | None = None
    hold_reason: str | None = None
    hold_code: int | None = None
    hold_subcode: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    remove_reason: str | None = None

    @property
    def job_id(self) -> str:
        return f"{self.cluster}.{self.proc}"

    @property
    def status_name(self) -> str:
        return JOB_STATUS.get(self.status or 0, f"JobStatus {self.status}")

    @classmethod
    def of(cls, ad: Mapping[str, Any]) -> JobAd | None:
        """The ad's fields, or None for an ad without ClusterId/ProcId."""
        cluster, proc = _int(ad.get("ClusterId")), _int(ad.get("ProcId"))
        if cluster is None or proc is None:
            return None
        host = _str(ad.get("RemoteHost")) or _str(ad.get("LastRemoteHost"))
        signalled = ad.get("ExitBySignal") is True
        return cls(
            cluster=cluster,
            proc=proc,
            status=_int(ad.get("JobStatus")),
            batch=_str(ad.get("JobBatchName")),
            token=_str(ad.get("ClusterdToken")),
            starts=_int(ad.get("NumJobStarts")) or 0,
            host=host.rsplit("@", 1)[-1] if host else None,
            hold_reason=_str(ad.get("HoldReason")),
            hold_code=_int(ad.get("HoldReasonCode")),
            hold_subcode=_int(ad.get("HoldReasonSubCode")),
            exit_code=None if signalled else _int(ad.get("ExitCode")),
            exit_signal=_int(ad.get("ExitSignal")) if signalled else None,
            remove_reason=_str(ad.get("RemoveReason")),
        )


def parse_ads(text: str, command: str = "condor_q") -> dict[str, JobAd]:
    """``{"cluster.proc": JobAd}`` from ``-json`` output; empty output is no jobs."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DriverError(f"{command} -json printed something that is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise DriverError(f"{command} -json printed {type(data).__name__}, not a list of ads")
    ads = {}
    for item in data:
        ad = JobAd.of(item) if isinstance(item, dict) else None
        if ad is not None:
            ads[ad.job_id] = ad
    return ads


def classad_list(values: Iterable[str]) -> str:
    """``{"a", "b"}``: ClassAd string literals in a list."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ", ".join(quoted) + "}"


def constraint_for(batches: Iterable[str]) -> str:
    """Jobs clusterd submitted (they carry the token attribute) in these batches."""
    names = sorted(set(batches))
    return f"ClusterdToken =!= undefined && member(JobBatchName, {classad_list(names)})"
