"""The user job event log, read incrementally: what each HTCondor job did, without condor_q.

HTCondor's docs advise reading the job event log (``log = ...``) over polling the
schedd. Each state dir has one log for all its batches (``submit.EVENT_LOG``), and the
driver keeps, per log file, the byte offset up to which it has read: a poll reads only
the bytes appended since, so its cost follows what happened, not how many jobs exist.

Formats: the text format (records ``NNN (cluster.proc.subproc) date time text``, body
lines, and a ``...`` line), and the JSON format (one JSON object per event, its closing
``}`` alone on a line; no ``...``), both as HTCondor writes them
(``src/condor_utils/condor_event.cpp``, ``write_user_log.cpp``). A record is consumed
only when complete: a partial last record (a writer mid-append) stays for the next read,
so no record is lost or read twice. Lines that do not make a record (garbage, a torn
header) are skipped and counted, never fatal; a record cut off mid-line (no newline)
does not hide the next one: a header anywhere in a line starts a record (``_header_in``).

We parse the text ourselves rather than with ``htcondor2.JobEventLog``: that binding
cannot start at an arbitrary byte offset through its public API (only by pickling the
reader), needs the ``htcondor`` wheel on the login node, and measured no faster (see
docs/htcondor.md). Its output and ours agree on the recorded fixtures (tests).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusterd.errors import DriverError

__all__ = [
    "ABORTED",
    "EVICTED",
    "EXECUTE",
    "HELD",
    "RELEASED",
    "SHADOW_EXCEPTION",
    "SUBMIT",
    "TERMINATED",
    "Event",
    "JobTrack",
    "LogReader",
    "Tracks",
    "parse_records",
]

SUBMIT = 0
EXECUTE = 1
EVICTED = 4
TERMINATED = 5
SHADOW_EXCEPTION = 7
ABORTED = 9
SUSPENDED = 10
UNSUSPENDED = 11
HELD = 12
RELEASED = 13

_HEADER = re.compile(
    rb"(\d{3}) \((-?\d+)\.(-?\d+)\.(-?\d+)\) (\d\d/\d\d|\d{4}-\d\d-\d\d) "
    rb"(\d\d:\d\d:\d\d(?:\.\d+)?Z?) ?(.*)"
)
#: a JSON line that opens a nested object (``"Attr": {``), not a new record
_JSON_KEY = re.compile(rb'\s*"[^"]*"\s*:\s*')
_RETURN = re.compile(r"\(1\) Normal termination \(return value (-?\d+)\)")
_SIGNAL = re.compile(r"\(0\) Abnormal termination \(signal (\d+)\)")
_HOLD_CODES = re.compile(r"Code (-?\d+) Subcode (-?\d+)")
_EVICT_CODES = re.compile(r"Job was evicted\. Code (-?\d+) Subcode (-?\d+)")
_SLOT = re.compile(r"SlotName: \S*@(\S+)")
_ALIAS = re.compile(r"alias=([^&>]+)")
_ADDR = re.compile(r"<([^:>?]+)")
#: bytes read per file per poll at most; the rest is read by the next polls
MAX_READ = 64 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    """One event: its number, job and what the driver needs of its body."""

    code: int
    cluster: int
    proc: int
    when: str
    host: str | None = None  # execute: where
    reason: str | None = None  # held/released/aborted/evicted reason, shadow message
    hold_code: int | None = None  # held: HoldReasonCode; evicted: the hold's code
    hold_subcode: int | None = None
    return_value: int | None = None  # terminated normally
    signal: int | None = None  # terminated by a signal

    @property
    def job_id(self) -> str:
        return f"{self.cluster}.{self.proc}"


def _host_of(texts: list[str]) -> str | None:
    """The execute host: the slot name's host, else the sinful string's alias or address."""
    for text in texts:
        match = _SLOT.search(text)
        if match:
            return match.group(1)
    head = texts[0] if texts else ""
    match = _ALIAS.search(head) or _ADDR.search(head)
    return match.group(1) if match else None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _text_event(header: re.Match[bytes], body: list[bytes]) -> Event | None:
    """An Event from a text record, or None for one whose header does not make sense."""
    code, cluster, proc = int(header.group(1)), int(header.group(2)), int(header.group(3))
    if cluster < 0 or proc < 0:
        return None
    when = (header.group(5) + b" " + header.group(6)).decode("ascii", "replace")
    first = header.group(7).decode("utf-8", "replace")
    lines = [line.decode("utf-8", "replace").strip() for line in body]
    lines = [line for line in lines if line]
    kw: dict[str, Any] = {}
    if code == EXECUTE:
        kw["host"] = _host_of([first, *lines])
    elif code == TERMINATED:
        for line in lines:
            if m := _RETURN.search(line):
                kw["return_value"] = int(m.group(1))
            elif m := _SIGNAL.search(line):
                kw["signal"] = int(m.group(1))
    elif code == HELD:
        reason_lines = [line for line in lines if not _HOLD_CODES.fullmatch(line)]
        codes = next((m for line in lines if (m := _HOLD_CODES.fullmatch(line))), None)
        reason = reason_lines[0] if reason_lines else None
        kw["reason"] = None if reason == "Reason unspecified" else reason
        if codes:
            kw["hold_code"], kw["hold_subcode"] = int(codes.group(1)), int(codes.group(2))
    elif code == EVICTED:
        if m := _EVICT_CODES.search(first):
            kw["hold_code"], kw["hold_subcode"] = int(m.group(1)), int(m.group(2))
        reasons = [line for line in lines if line.startswith("Reason: ")]
        if reasons:
            kw["reason"] = reasons[0].removeprefix("Reason: ")
    elif code in (RELEASED, ABORTED, SHADOW_EXCEPTION):
        kw["reason"] = lines[0] if lines else None
    return Event(code, cluster, proc, when, **kw)


def _json_event(ad: Mapping[str, Any]) -> Event | None:
    """An Event from a JSON-format record (the event's ClassAd), or None."""
    code, cluster, proc = ad.get("EventTypeNumber"), ad.get("Cluster"), ad.get("Proc", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (code, cluster, proc)):
        return None
    assert isinstance(code, int) and isinstance(cluster, int) and isinstance(proc, int)
    if cluster < 0 or proc < 0:
        return None
    kw: dict[str, Any] = {}
    if code == EXECUTE:
        slot, host = ad.get("SlotName"), ad.get("ExecuteHost")
        texts = [f"SlotName: {slot}"] if isinstance(slot, str) else []
        kw["host"] = _host_of([*texts, str(host or "")]) if (texts or host) else None
    elif code == TERMINATED:
        if ad.get("TerminatedNormally") is True:
            kw["return_value"] = _int(str(ad.get("ReturnValue")))
        else:
            kw["signal"] = _int(str(ad.get("TerminatedBySignal")))
    elif code == HELD:
        kw["reason"] = ad.get("HoldReason") if isinstance(ad.get("HoldReason"), str) else None
        kw["hold_code"] = _int(str(ad.get("HoldReasonCode", "")) or None)
        kw["hold_subcode"] = _int(str(ad.get("HoldReasonSubCode", "")) or None)
    elif code == EVICTED:
        kw["hold_code"] = _int(str(ad["ReasonCode"])) if "ReasonCode" in ad else None
        kw["hold_subcode"] = _int(str(ad["ReasonSubCode"])) if "ReasonSubCode" in ad else None
        kw["reason"] = ad.get("Reason") if isinstance(ad.get("Reason"), str) else None
    elif code in (RELEASED, ABORTED):
        kw["reason"] = ad.get("Reason") if isinstance(ad.get("Reason"), str) else None
    elif code == SHADOW_EXCEPTION:
        kw["reason"] = ad.get("Message") if isinstance(ad.get("Message"), str) else None
    when = str(ad.get("EventTime", ""))
    return Event(code, cluster, proc, when, **kw)


def parse_records(data: bytes) -> tuple[list[Event], int, int]:
    """``(events, bytes consumed, records skipped)`` of the complete records in ``data``.

    The bytes after the last complete record are not consumed (a writer may be adding
    to it). The format is told by the first non-blank byte: ``{`` is JSON, else text.
    """
    start = len(data) - len(data.lstrip())
    if data[start : start + 1] == b"{":
        return _parse_json(data)
    return _parse_text(data)


def _lines(data: bytes) -> Iterator[tuple[bytes, int]]:
    """Each complete line (without its newline) and the offset after it."""
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            return
        yield data[pos:end].rstrip(b"\r"), end + 1
        pos = end + 1


def _parse_text(data: bytes) -> tuple[list[Event], int, int]:
    events: list[Event] = []
    consumed = skipped = 0
    header: re.Match[bytes] | None = None
    body: list[bytes] = []
    junk = False  # lines since the last record that belong to no record
    for line, after in _lines(data):
        if line == b"...":
            if header is not None:
                event = _text_event(header, body)
                if event is None:
                    skipped += 1
                else:
                    events.append(event)
            elif junk or body:
                skipped += 1
            header, body, junk, consumed = None, [], False, after
            continue
        match, torn = _header_in(line)
        if match is not None:
            if header is not None or junk or torn:
                skipped += 1  # a record without its "..." (torn): dropped, never re-read
            header, body, junk = match, [], False
        elif header is not None:
            body.append(line)
        elif line.strip():
            junk = True
    return events, consumed, skipped


def _header_in(line: bytes) -> tuple[re.Match[bytes] | None, bool]:
    """The record header that ``line`` ends with, and whether bytes come before it.

    A write cut short without its newline (the writer crashed, the disk filled) joins the
    next record's header to its own last line; the last header start in the line is where
    the next record begins, so that record is kept. HTCondor's own reader skips to the
    next ``...`` instead (``ReadUserLog::synchronize``) and would lose it.
    """
    # from the right: each ") <digit>" may close a header's "(cluster.proc.subproc)";
    # a body line seldom has one, so this costs a find or two per line, not a regexp scan
    close = line.rfind(b") ")
    while close >= 0:
        if line[close + 2 : close + 3].isdigit():
            opening = line.rfind(b" (", 0, close)
            if opening >= 3:
                match = _HEADER.fullmatch(line, opening - 3)
                if match is not None:
                    return match, opening > 3
        close = line.rfind(b") ", 0, close)
    return None, False


def _parse_json(data: bytes) -> tuple[list[Event], int, int]:
    events: list[Event] = []
    consumed = skipped = 0
    record: list[bytes] = []
    for line, after in _lines(data):
        if not record and not line.strip():
            consumed = after
            continue
        if record and line.endswith(b"{") and not _JSON_KEY.fullmatch(line[:-1]):
            # a record cut off mid-line: the next one's "{" ended up on its last line
            skipped += 1
            record = []
            line = b"{"
        record.append(line)
        if line != b"}":
            continue
        try:
            ad = json.loads(b"\n".join(record).decode("utf-8", "replace"))
            event = _json_event(ad) if isinstance(ad, dict) else None
        except ValueError:
            event = None
        if event is None:
            skipped += 1
        else:
            events.append(event)
        record, consumed = [], after
    return events, consumed, skipped


@dataclass
class JobTrack:
    """What the log says of one job so far (``Tracks.apply`` moves it along)."""

    state: str = "idle"  # idle | running | suspended | held | ended | removed
    submitted: bool = False
    starts: int = 0  # execute events
    host: str | None = None
    #: the last run ended under it without the job ending (evicted, shadow exception)
    interrupted: str | None = None
    hold_reason: str | None = None
    hold_code: int | None = None
    hold_subcode: int | None = None
    #: what took the job out of its last run: "interrupted" (evicted, shadow exception)
    #: or "held"; an abort after it is its doing
    cause: str | None = None
    releases: int = 0
    return_value: int | None = None
    signal: int | None = None
    abort_reason: str | None = None


@dataclass
class Tracks:
    """Every job's track, from the events of one log in order."""

    jobs: dict[str, JobTrack] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        track = self.jobs.setdefault(event.job_id, JobTrack())
        code = event.code
        if code == SUBMIT:
            track.submitted = True
        elif code == EXECUTE:
            track.state, track.starts, track.host = "running", track.starts + 1, event.host
            track.interrupted, track.cause = None, None
        elif code == EVICTED:
            if not event.hold_code:  # with a code: a hold vacating the job, the 012 follows
                track.state = "idle" if track.state != "held" else track.state
                track.cause = "interrupted"
            track.interrupted = f"evicted: {event.reason}" if event.reason else "evicted"
        elif code == SHADOW_EXCEPTION:
            if track.state not in ("ended", "removed", "held"):
                track.state = "idle"
            track.interrupted = f"shadow exception: {event.reason or 'no message'}"
            track.cause = "interrupted"
        elif code == HELD:
            track.state, track.cause = "held", "held"
            track.hold_reason = event.reason
            track.hold_code, track.hold_subcode = event.hold_code, event.hold_subcode
        elif code == RELEASED:
            if track.state == "held":
                track.state = "idle"
            track.releases += 1
        elif code == TERMINATED:
            track.state = "ended"
            track.return_value, track.signal = event.return_value, event.signal
        elif code == ABORTED:
            track.state, track.abort_reason = "removed", event.reason
        elif code == SUSPENDED and track.state == "running":
            track.state = "suspended"
        elif code == UNSUSPENDED and track.state == "suspended":
            track.state = "running"


@dataclass
class _LogState:
    offset: int = 0
    ident: tuple[int, int] | None = None  # (st_dev, st_ino)
    tracks: Tracks = field(default_factory=Tracks)
    skipped: int = 0


class LogReader:
    """Reads each event log from where the last read stopped; keeps every job's track.

    A log that shrank or was replaced (another inode) is read again from its start, its
    tracks rebuilt. ``read`` raises ``DriverError`` when the file cannot be read (the
    driver then asks condor_q instead); a missing log reads as empty.
    """

    def __init__(self, max_read: int = MAX_READ) -> None:
        self.max_read = max_read
        self._logs: dict[str, _LogState] = {}
        self.reads = 0  # file reads, for tests and benchmarks

    def tracks(self, path: str) -> Tracks:
        state = self._logs.get(path)
        return state.tracks if state is not None else Tracks()

    def known(self, path: str) -> bool:
        return path in self._logs

    def offset(self, path: str) -> int:
        state = self._logs.get(path)
        return state.offset if state is not None else 0

    def skipped(self, path: str) -> int:
        state = self._logs.get(path)
        return state.skipped if state is not None else 0

    def read(self, path: str) -> list[Event]:
        """The events appended to ``path`` since the last read (and applied to its tracks)."""
        state = self._logs.setdefault(path, _LogState())
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DriverError(f"cannot read HTCondor event log {path}: {exc}") from exc
        try:
            stat = os.fstat(fd)
            ident = (stat.st_dev, stat.st_ino)
            if state.ident is not None and (ident != state.ident or stat.st_size < state.offset):
                state.offset, state.tracks, state.skipped = 0, Tracks(), 0
            state.ident = ident
            if stat.st_size <= state.offset:
                return []
            self.reads += 1
            data = os.pread(fd, min(stat.st_size - state.offset, self.max_read), state.offset)
        except OSError as exc:
            raise DriverError(f"cannot read HTCondor event log {path}: {exc}") from exc
        finally:
            os.close(fd)
        events, consumed, skipped = parse_records(data)
        if consumed == 0 and len(data) >= self.max_read:
            # one record larger than a whole read: skip it rather than stall forever
            end = data.rfind(b"\n...\n")
            consumed, skipped = (end + 5 if end >= 0 else len(data)), skipped + 1
        state.offset += consumed
        state.skipped += skipped
        for event in events:
            state.tracks.apply(event)
        return events

    def forget(self, path: str) -> None:
        """Drop a log's offset and tracks (its sweep is done)."""
        self._logs.pop(path, None)
