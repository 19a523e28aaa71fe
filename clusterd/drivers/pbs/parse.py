"""What PBS's commands print, read: ``qstat`` (PBS Pro JSON, Torque XML), ``qsub``, versions.

Both dialects land in one ``PbsJob``, so that the driver judges states in one place
(``job_status``). Every reader takes arbitrary text: anything it cannot read is a
``PbsOutputError`` (a ``DriverError``) naming the command and what was wrong, never
another exception -- the daemon then backs off and asks again. The formats are pinned by
recorded output in ``tests/drivers/fixtures/pbs/`` (sources in its ``SOURCES.md``).

Torque's XML is our own scheduler's output, read with ``xml.etree`` -- but bounded
(``MAX_OUTPUT_BYTES``) and with any DTD refused, so that no entity is ever expanded.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree import ElementTree

from clusterd.drivers.base import JobStatus
from clusterd.errors import DriverError

__all__ = [
    "FINISHED_STATES",
    "MAX_OUTPUT_BYTES",
    "QUEUED_STATES",
    "RUNNING_STATES",
    "Flavor",
    "PbsJob",
    "PbsOutputError",
    "array_parent",
    "job_key",
    "job_status",
    "parse_max_array_size",
    "parse_qstat_json",
    "parse_qstat_xml",
    "parse_qsub",
    "parse_version",
    "unknown_job_lines",
]

Flavor = Literal["pbspro", "torque"]

#: the most a qstat answer may be (10,000 jobs of PBS Pro's JSON are ~30 MB)
MAX_OUTPUT_BYTES = 256 * 1024 * 1024

#: waiting for resources, a hold, a start time or a move: the attempt has not started
QUEUED_STATES = frozenset({"Q", "H", "W", "T", "M"})
#: started: running, exiting (epilogue), suspended, an array with a running subjob
RUNNING_STATES = frozenset({"R", "E", "S", "U", "B"})
#: ended: PBS Pro finished (F) or a finished subjob (X); Torque completed (C)
FINISHED_STATES = frozenset({"F", "X", "C"})

#: the ``qstat -x`` elements ``_job`` reads: only these are looked at (10,000 jobs of
#: Torque's XML are ~20 MB with ~35 elements each)
_XML_TAGS = frozenset(
    {
        "Job_Id",
        "job_state",
        "Job_Name",
        "comment",
        "exit_status",
        "Exit_status",
        "substate",
        "Hold_Types",
        "Variable_List",
        "Job_Owner",
        "exec_host",
        "run_count",
        "start_count",
    }
)
#: a subjob's index in its id
_INDEX = re.compile(r"\[\d+\]")
#: a job id: sequence number, optional ``[index]`` (``[]`` for an array), optional server
_JOB_ID = re.compile(r"(\d+)(\[\d*\])?(?:\.[^\s\[\]]+)?")
#: PBS Pro's ``Exit_status`` codes of a job the mom killed for a resource (``job.h``)
_KILLED_FOR = {
    -24: "ncpus (burst)",
    -25: "ncpus (sum)",
    -26: "vmem",
    -27: "mem",
    -28: "cput",
    -29: "walltime",
}
JOB_EXEC_KILL_WALLTIME = -29
#: PBS Pro substates of a finished job (``job.h``): deleted, finished, failed
_TERMINATED, _FINISHED, _FAILED = 91, 92, 93


class PbsOutputError(DriverError):
    """A PBS command printed something the driver cannot read."""


@dataclass(frozen=True)
class PbsJob:
    """One job, array parent or subjob as ``qstat`` showed it (either dialect)."""

    job_id: str
    state: str
    name: str | None = None
    comment: str | None = None
    exit_status: int | None = None
    substate: int | None = None
    hold_types: str | None = None
    #: ``CLUSTERD_BATCH`` from the job's variables (set with ``qsub -v``)
    batch: str | None = None
    owner: str | None = None
    host: str | None = None
    run_count: int | None = None

    @property
    def key(self) -> str:
        """``job_key(job_id)``: the id without its server."""
        return job_key(self.job_id)

    @property
    def is_array(self) -> bool:
        return "[]" in self.job_id


# --------------------------------------------------------------------------- ids


def job_key(job_id: str) -> str:
    """``"1234[7].server"`` -> ``"1234[7]"``: a job's id without the server suffix.

    Torque lists subjobs under another server name than their array (a recorded
    ``qstat -x`` shows ``673175[].superserver...`` with ``673175[19].fruster...``), so jobs
    are matched on this key. PbsOutputError if ``job_id`` is no PBS job id.
    """
    match = _JOB_ID.fullmatch(job_id.strip())
    if match is None:
        raise PbsOutputError(f"not a PBS job id: {job_id[:80]!r}")
    return match.group(1) + (match.group(2) or "")


def array_parent(job_id: str) -> str:
    """The id to ask ``qstat -t`` about: ``"1234[7].s"`` -> ``"1234[].s"``; others as given."""
    return _INDEX.sub("[]", job_id, count=1) if "[" in job_id else job_id


# --------------------------------------------------------------------------- small replies


def parse_version(text: str) -> tuple[Flavor, str]:
    """``qstat --version`` -> ``("pbspro", "22.05.11")`` or ``("torque", "6.1.2")``.

    PBS Pro and OpenPBS print ``pbs_version = X``; Torque ``Version: X`` (2.4: lowercase).
    """
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "pbs_version" and value.strip():
            return "pbspro", value.strip()
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "version" and value.strip():
            return "torque", value.strip()
    raise PbsOutputError(
        f"qstat --version named neither PBS Pro nor Torque: {_gist(text)}; set "
        f'[drivers.pbs] flavor = "pbspro" or "torque"'
    )


def parse_qsub(text: str) -> str:
    """The job id ``qsub`` printed (``1234[].server`` or ``1235.server``), its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise PbsOutputError("qsub printed no job id")
    try:
        job_key(lines[-1])
    except PbsOutputError:
        raise PbsOutputError(f"qsub printed no job id: {_gist(text)}") from None
    return lines[-1]


def parse_max_array_size(text: str) -> int | None:
    """``max_array_size`` from ``qstat -B -f -F json`` (PBS Pro), None if it has none."""
    data = _json_object(text, "qstat -B -f -F json")
    servers = data.get("Server")
    if not isinstance(servers, dict):
        return None
    for attrs in servers.values():
        value = attrs.get("max_array_size") if isinstance(attrs, dict) else None
        number = _int(value)
        if number is not None and number > 0:
            return number
    return None


def unknown_job_lines(stderr: str) -> tuple[list[str], list[str]]:
    """``(lines about ids the server no longer knows, other lines)`` of a PBS command's
    stderr. PBS Pro: ``Unknown Job Id <id>``, ``Job has finished <id>`` (OpenPBS
    ``qdel.c``, ``pbs_messages.c``); Torque: ``Unknown Job Id Error <id>`` (qstat),
    ``nonexistent job id: <id>`` and ``Request invalid for state of job <id>`` (a
    completed job) from qdel -- Torque's lines are read from its source, not recorded."""
    known: list[str] = []
    other: list[str] = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        if re.search(
            r"Unknown Job Id|Job has finished|nonexistent job id|Request invalid for state of job",
            line,
        ):
            known.append(line.strip())
        else:
            other.append(line.strip())
    return known, other


# --------------------------------------------------------------------------- qstat


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a big answer becomes objects: 10,000 jobs of
    XML are ~360,000 elements, whose allocation would start collections over and over
    (0.2 s of a 0.65 s parse). Never left off: a caller that found the collector on
    turns it on again; other threads' garbage just waits a moment."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_gc_paused()
def parse_qstat_json(text: str) -> dict[str, PbsJob]:
    """PBS Pro's ``qstat -f -F json [-x] [-t]``: ``{job_key: PbsJob}``.

    ``Jobs`` is missing when no job matched (seen on a real server). ``Exit_status`` is a
    number, or a string in some versions: both are read. ``Variable_List`` is an object
    (a ``"K=V,..."`` string is read too). The document ends with a newline.
    """
    if text.strip() and not text.endswith("\n"):
        # qstat writes the document and a newline (OpenPBS ``pbs_json_print``): output
        # without it was cut short, even where what is left still parses
        raise PbsOutputError(f"qstat -F json output is cut short: {_gist(text[-200:])}")
    data = _json_object(text, "qstat -F json")
    jobs = data.get("Jobs", {})
    if not isinstance(jobs, dict):
        raise PbsOutputError("qstat -F json: 'Jobs' is not an object")
    out: dict[str, PbsJob] = {}
    for job_id, attrs in jobs.items():
        if not isinstance(attrs, dict):
            raise PbsOutputError(f"qstat -F json: job {job_id[:80]!r} is not an object")
        key, job = _job(job_id, attrs, "qstat -F json")
        out[key] = job
    return out


@_gc_paused()
def parse_qstat_xml(text: str) -> dict[str, PbsJob]:
    """Torque's ``qstat -x [-t]``: ``{job_key: PbsJob}``; empty output means no jobs.

    Bounded, and a DTD (so any entity) is refused: the text is ``qstat``'s, but nothing
    in it may make the parser expand or fetch anything. Of each ``<Job>`` only the
    elements ``_job`` reads (``_XML_TAGS``) are looked at: building a dict of all ~35
    made a poll of 10,000 jobs cost 0.3 s more.
    """
    if len(text) > MAX_OUTPUT_BYTES:
        raise PbsOutputError(f"qstat -x printed more than {MAX_OUTPUT_BYTES} bytes")
    if not text.strip():
        return {}
    if re.search(r"<!DOCTYPE|<!ENTITY", text, re.IGNORECASE):
        raise PbsOutputError("qstat -x: a DTD or entity in the XML is refused")
    try:
        root = ElementTree.fromstring(text.strip())
    except (ElementTree.ParseError, ValueError) as exc:
        raise PbsOutputError(f"qstat -x printed no readable XML ({exc}): {_gist(text)}") from None
    if root.tag != "Data":
        raise PbsOutputError(f"qstat -x: expected <Data>, got <{root.tag[:40]}>")
    out: dict[str, PbsJob] = {}
    for node in root:
        if node.tag != "Job":
            continue
        attrs: dict[str, Any] = {
            child.tag: (child.text or "").strip() if len(child) == 0 else None
            for child in node
            if child.tag in _XML_TAGS
        }
        job_id = attrs.get("Job_Id")
        if not isinstance(job_id, str) or not job_id:
            raise PbsOutputError("qstat -x: a <Job> without <Job_Id>")
        key, job = _job(job_id, attrs, "qstat -x")
        out[key] = job
    return out


def _job(job_id: str, attrs: Mapping[str, Any], command: str) -> tuple[str, PbsJob]:
    """One job's attributes (JSON or XML alike): ``(job_key, PbsJob)``."""
    key = job_key(job_id)  # a PbsOutputError for anything that is no job id
    state = attrs.get("job_state")
    if not isinstance(state, str) or len(state.strip()) != 1:
        raise PbsOutputError(f"{command}: job {job_id[:80]!r} has no job_state")
    exit_status = attrs.get("Exit_status", attrs.get("exit_status"))
    return key, PbsJob(
        job_id=job_id.strip(),
        state=state.strip().upper(),
        name=_text(attrs.get("Job_Name")),
        comment=_text(attrs.get("comment")),
        exit_status=_int(exit_status),
        substate=_int(attrs.get("substate")),
        hold_types=_text(attrs.get("Hold_Types")),
        batch=_variable(attrs.get("Variable_List"), "CLUSTERD_BATCH"),
        owner=_text(attrs.get("Job_Owner")),
        host=_first_host(attrs.get("exec_host")),
        run_count=_int(attrs.get("run_count", attrs.get("start_count"))),
    )


def _json_object(text: str, command: str) -> dict[str, Any]:
    if len(text) > MAX_OUTPUT_BYTES:
        raise PbsOutputError(f"{command} printed more than {MAX_OUTPUT_BYTES} bytes")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PbsOutputError(f"{command} printed no readable JSON ({exc}): {_gist(text)}") from None
    if not isinstance(data, dict):
        raise PbsOutputError(f"{command} printed JSON that is not an object: {_gist(text)}")
    return data


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def _int(value: Any) -> int | None:
    """An integer from a JSON number or a string ("-29", " 0"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
        return int(value)
    return None


def _variable(variables: Any, name: str) -> str | None:
    """``name`` from ``Variable_List``: an object (PBS Pro JSON) or ``"K=V,K=V"`` (Torque)."""
    if isinstance(variables, dict):
        return _text(variables.get(name))
    if isinstance(variables, str):
        # the first item ``name=value``, items split at commas without a backslash
        # before them: one scan for the name (PATH makes the list long), not a split
        for match in _variable_item(name).finditer(variables):
            if _starts_item(variables, match.start()):
                return match.group(1).strip() or None
    return None


@functools.lru_cache(maxsize=8)
def _variable_item(name: str) -> re.Pattern[str]:
    """``name=value`` up to the next comma without a backslash before it."""
    return re.compile(re.escape(name) + r"\s*=((?:[^,]|(?<=\\),)*)")


def _starts_item(text: str, at: int) -> bool:
    """True if only blanks stand between ``at`` and the start of its ``K=V`` item."""
    at -= 1
    while at >= 0 and text[at].isspace():
        at -= 1
    return at < 0 or (text[at] == "," and (at == 0 or text[at - 1] != "\\"))


def _first_host(exec_host: Any) -> str | None:
    """``"charon24/0*2+charon21/0*2"`` -> ``"charon24"``."""
    text = _text(exec_host)
    if text is None:
        return None
    return text.split("+", 1)[0].split("/", 1)[0] or None


def _gist(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "(nothing)"
    return repr(first[:200])


# --------------------------------------------------------------------------- states


def job_status(job: PbsJob) -> JobStatus:
    """What a PBS state means to the daemon (both dialects).

    Queued (``Q``, held ``H``, waiting ``W``, in transit ``T``, moved ``M``) is ``queued``
    with the reason the server gives in ``comment`` (a hold without one says which
    hold); running, exiting, suspended (``R``, ``E``, ``S``, ``U``, ``B``) is ``running``;
    finished (``F``, ``X``, Torque's ``C``) is ``gone``. Whatever else appears is ``gone``
    with the letter as the reason, so that the daemon looks at status.json.
    """
    if job.state in QUEUED_STATES:
        return JobStatus("queued", job.job_id, _pending_reason(job), scheduler_state=job.state)
    if job.state in RUNNING_STATES:
        return JobStatus("running", job.job_id, host=job.host, scheduler_state=job.state)
    reason, state = _finish(job)
    return JobStatus("gone", job.job_id, reason, host=job.host, scheduler_state=state)


def _pending_reason(job: PbsJob) -> str | None:
    if job.state != "H":
        return job.comment
    if job.comment:
        return f"held: {job.comment}"
    kinds = {"u": "user", "o": "operator", "s": "system", "p": "bad password"}
    held = [kinds[c] for c in (job.hold_types or "") if c in kinds]
    return f"held ({', '.join(held)} hold)" if held else "held"


def _finish(job: PbsJob) -> tuple[str | None, str]:
    """``(reason, scheduler_state)`` of an ended job. The state is what the daemon reads:
    ``CANCELLED by <user>`` when someone ``qdel``-ed it (PBS Pro: substate 91, the
    comment ``... and terminated by <user>``), ``TIMEOUT`` when the mom killed it for its
    walltime (``Exit_status`` -29)."""
    code = job.exit_status
    detail = [f"Exit_status {code}"] if code not in (None, 0) else []
    tail = _comment_tail(job.comment)
    if tail and tail != "finished":
        detail.append(tail)
    if job.substate == _TERMINATED or (tail or "").startswith("terminated"):
        who = re.search(r"terminated by (\S+)", job.comment or "")
        state = f"CANCELLED by {who.group(1)}" if who else "CANCELLED"
        return f"{state} ({job.state}{', ' + tail if tail else ''})", state
    if code == JOB_EXEC_KILL_WALLTIME:
        return f"TIMEOUT ({job.state}, {'; '.join(detail)})", "TIMEOUT"
    if code is not None and code in _KILLED_FOR:
        what = f"killed for exceeding {_KILLED_FOR[code]}"
        return f"{job.state} ({what}, Exit_status {code})", job.state
    if (code in (None, 0) and job.substate != _FAILED) and not detail:
        return None, job.state
    return f"{job.state} ({'; '.join(detail)})" if detail else job.state, job.state


def _comment_tail(comment: str | None) -> str | None:
    """What ``... and finished`` / ``... and terminated by bob`` says: the server appends
    it to the run comment at the end (``update_job_finish_comment``)."""
    if not comment:
        return None
    match = re.search(
        r"\band (finished|failed|terminated(?: by \S+)?|exceeded resource \S+(?: \(\w+\))?)\s*$",
        comment,
    )
    return match.group(1) if match else None
