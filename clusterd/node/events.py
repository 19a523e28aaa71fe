"""Parse the events protocol: JSON lines appended to ``$CLUSTERD_EVENTS`` (docs/runtime.md).

Stdlib only and pure: the daemon reads new bytes of an events file from its saved offset
and hands them to :func:`parse_chunk`, which returns the events, the malformed lines, and
how many bytes it consumed. Only complete lines (ending in ``\\n``) are consumed, so a
line that a trial is still writing is read, once, on a later pass.

Speed matters (a chatty sweep writes millions of lines), so an ASCII chunk, the common
case, is decoded once and walked with the C JSON scanner, one call per line; anything
unusual (non-ASCII bytes, whitespace around the object, a parse failure) falls back to a
careful per-line path that gives exact byte offsets in its error messages.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable
from json.decoder import JSONDecoder
from typing import Any, NamedTuple

__all__ = [
    "MAX_LINE",
    "CheckpointEvent",
    "Event",
    "GpuEvent",
    "LineError",
    "MetricEvent",
    "ParseResult",
    "parse_chunk",
    "parse_line",
]

#: longest line accepted, in bytes without its newline; longer lines are skipped as errors
MAX_LINE = 1 << 20
#: largest step accepted (the database stores steps as signed 64-bit integers)
MAX_STEP = (1 << 63) - 1

#: readings of a gpu entry: a finite number or null (docs/gpu.md, "The events line")
_GPU_NUMBERS = ("util", "mem_used", "mem_total", "power_w", "temp_c", "own_mem")
#: longest ``uuid`` accepted (NVML's are 40 to 44 characters)
MAX_GPU_UUID = 128


class MetricEvent(NamedTuple):
    """``{"type": "metric", "step": 3, "values": {"loss": 0.25}}``; ``t`` None if absent."""

    step: int
    values: dict[str, float]
    t: float | None


class CheckpointEvent(NamedTuple):
    """``{"type": "checkpoint", "step": 3, "path": "/abs/ckpt.pt"}``."""

    step: int
    path: str
    t: float | None


class GpuEvent(NamedTuple):
    """``{"type": "gpu", "gpus": [{"index": 0, "util": 93, ...}]}``, written by the runner.

    Each entry: ``index``, optional ``uuid``, and the readings ``util``, ``mem_used``,
    ``mem_total``, ``power_w``, ``temp_c``, ``own_procs``, ``own_mem`` (each may be
    null or absent; lines of older runners have the first three only)."""

    t: float | None
    gpus: list[dict[str, Any]]


Event = MetricEvent | CheckpointEvent | GpuEvent


class LineError(NamedTuple):
    """A malformed line: its absolute byte offset and a reason that names the offset."""

    offset: int
    reason: str  # e.g. "line at byte 1234: not valid JSON"


class ParseResult(NamedTuple):
    events: list[Event]
    errors: list[LineError]
    consumed: int  # bytes up to and including the last newline that was dealt with


class _Bad(Exception):
    """A line is JSON but not a valid event; the message is the reason."""


#: the C scanner behind json.loads, called directly: one call per line, no wrapper overhead
_scan_once: Callable[[str, int], tuple[Any, int]] = JSONDecoder().scan_once  # type: ignore[attr-defined]
_loads = json.loads
_isfinite = math.isfinite
_new_tuple = tuple.__new__


def parse_chunk(data: bytes, base_offset: int = 0) -> ParseResult:
    """Parse the complete lines of ``data``, which starts at byte ``base_offset`` of the file.

    Never raises on any input. A trailing partial line is not consumed, unless it is
    already longer than :data:`MAX_LINE`: it is then consumed and reported, so that a
    runaway writer cannot stall the reader forever (the rest of that line, once its
    newline arrives, is read as a line of its own and reported as malformed too).
    """
    end = data.rfind(b"\n") + 1
    events: list[Event] = []
    errors: list[LineError] = []
    if end:
        body = data[:end] if end < len(data) else data
        # The objects built here hold no reference cycles, but their sheer number makes
        # the cyclic collector run (and walk everything kept alive) over and over: pausing
        # it for the parse of one chunk makes ingestion about a third faster.
        paused = gc.isenabled()
        gc.disable()
        try:
            _parse_body(body, base_offset, events, errors)
        finally:
            if paused:
                gc.enable()
    if len(data) - end > MAX_LINE:
        errors.append(_error(base_offset + end, "longer than 1 MiB without a newline (skipped)"))
        end = len(data)
    return ParseResult(events, errors, end)


def parse_line(line: bytes, offset: int = 0) -> Event | LineError | None:
    """Parse one line (without its newline): an event, an error, or None (blank/unknown type)."""
    events: list[Event] = []
    errors: list[LineError] = []
    _parse_one_bytes(line, offset, events, errors)
    if errors:
        return errors[0]
    return events[0] if events else None


def _parse_body(body: bytes, base: int, events: list[Event], errors: list[LineError]) -> None:
    """Decode the whole body at once when it is valid UTF-8 (it nearly always is)."""
    if body.isascii():
        _parse_text(body.decode("ascii"), _Offsets(base, None), events, errors)
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _parse_bytes(body, base, events, errors)
        return
    _parse_text(text, _Offsets(base, text), events, errors)


class _Offsets:
    """Maps character positions to byte offsets, lazily: only error messages need them,
    and positions only grow, so the total cost stays linear in the chunk's size."""

    def __init__(self, base: int, text: str | None) -> None:
        self.base = base
        self.text = text  # None: ASCII, positions are byte offsets
        self.char = 0
        self.byte = 0
        # a line this many characters long is surely within MAX_LINE bytes
        self.fast_limit = MAX_LINE if text is None else MAX_LINE // 4

    def at(self, pos: int) -> int:
        if self.text is None:
            return self.base + pos
        self.byte += len(self.text[self.char : pos].encode("utf-8"))
        self.char = pos
        return self.base + self.byte


def _parse_text(text: str, offsets: _Offsets, events: list[Event], errors: list[LineError]) -> None:
    """Walk text that ends with a newline, with one C scanner call per well-formed line."""
    pos = 0
    size = len(text)
    scan = _scan_once
    limit = offsets.fast_limit
    while pos < size:
        try:
            obj, stop = scan(text, pos)
        except (StopIteration, ValueError, RecursionError):
            stop = -1
        if stop > pos and text[stop] == "\n" and stop - pos <= limit:
            try:
                event = _to_event(obj)
            except _Bad as exc:
                errors.append(_error(offsets.at(pos), str(exc)))
            else:
                if event is not None:
                    events.append(event)
            pos = stop + 1
            continue
        stop = text.find("\n", pos)
        line = text[pos:stop]
        if len(line) > limit and len(line.encode("utf-8")) > MAX_LINE:
            errors.append(_error(offsets.at(pos), "longer than 1 MiB (skipped)"))
        else:
            _parse_text_line(line, offsets, pos, events, errors)
        pos = stop + 1


def _parse_bytes(body: bytes, base: int, events: list[Event], errors: list[LineError]) -> None:
    """Split bytes on newlines (the slow path, exact byte offsets for any content)."""
    offset = base
    lines = body.split(b"\n")
    lines.pop()  # body ends with a newline: the last piece is empty
    for line in lines:
        _parse_one_bytes(line, offset, events, errors)
        offset += len(line) + 1


def _parse_one_bytes(
    line: bytes, offset: int, events: list[Event], errors: list[LineError]
) -> None:
    if len(line) > MAX_LINE:
        errors.append(_error(offset, "longer than 1 MiB (skipped)"))
        return
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(_error(offset, "not UTF-8"))
        return
    _parse_text_line(text, _Offsets(offset, None), 0, events, errors)


def _parse_text_line(
    line: str, offsets: _Offsets, pos: int, events: list[Event], errors: list[LineError]
) -> None:
    """Parse one decoded line the careful way; blank lines are skipped (``echo`` of nothing)."""
    if not line.strip():
        return
    try:
        obj = _loads(line)
    except (ValueError, RecursionError):
        errors.append(_error(offsets.at(pos), "not valid JSON"))
        return
    try:
        event = _to_event(obj)
    except _Bad as exc:
        errors.append(_error(offsets.at(pos), str(exc)))
        return
    if event is not None:
        events.append(event)


def _error(offset: int, why: str) -> LineError:
    return LineError(offset, f"line at byte {offset}: {why}")


def _to_event(obj: Any) -> Event | None:
    """Validate one decoded line; None for an unknown ``type`` (ignored, not an error)."""
    if type(obj) is not dict:
        raise _Bad("not a JSON object")
    kind = obj.get("type")
    if kind == "metric":
        return _metric(obj)
    if kind == "checkpoint":
        return CheckpointEvent(_step(obj), _path(obj), _time(obj))
    if kind == "gpu":
        return GpuEvent(_time(obj), _gpus(obj))
    if type(kind) is not str:
        raise _Bad('"type" is missing or not a string')
    return None


def _metric(obj: dict[str, Any]) -> MetricEvent:
    """The hot path: checks are inlined, and the tuple is built without NamedTuple's
    Python-level ``__new__`` (ingestion parses millions of these)."""
    step = obj.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise _Bad('metric "step" is not a non-negative integer')
    values = obj.get("values")
    if type(values) is not dict:
        raise _Bad('metric "values" is not an object')
    for name, value in values.items():
        kind = type(value)
        if kind is float:
            if _isfinite(value):
                continue
        elif kind is int:
            try:
                values[name] = float(value)
                continue
            except OverflowError:
                pass
        raise _Bad(f"metric value {name!r} is not a finite number")
    t = obj.get("t")
    if type(t) is not float or not _isfinite(t):
        t = _time(obj)
    return _new_tuple(MetricEvent, (step, values, t))


def _step(obj: dict[str, Any]) -> int:
    step = obj.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise _Bad(f'{obj["type"]} "step" is not a non-negative integer')
    return step


def _time(obj: dict[str, Any]) -> float | None:
    t = obj.get("t")
    if t is None:
        return None
    if type(t) is float and _isfinite(t):
        return t
    if type(t) is int and abs(t) < 1 << 53:
        return float(t)
    raise _Bad('"t" is not a finite number')


def _path(obj: dict[str, Any]) -> str:
    path = obj.get("path")
    if type(path) is not str or not path:
        raise _Bad('checkpoint "path" is not a non-empty string')
    return path


def _gpus(obj: dict[str, Any]) -> list[dict[str, Any]]:
    gpus = obj.get("gpus")
    if type(gpus) is not list:
        raise _Bad('gpu "gpus" is not a list')
    for gpu in gpus:
        if type(gpu) is not dict:
            raise _Bad('gpu "gpus" entry is not an object')
        index = gpu.get("index", 0)
        if type(index) is not int or not 0 <= index <= MAX_STEP:
            raise _Bad('gpu "index" is not a non-negative integer')
        for key in _GPU_NUMBERS:
            if not _is_number_or_null(gpu.get(key)):
                raise _Bad(f"gpu {key!r} is not a finite number")
        procs = gpu.get("own_procs")
        if procs is not None and (type(procs) is not int or not 0 <= procs <= MAX_STEP):
            raise _Bad('gpu "own_procs" is not a non-negative integer')
        uuid = gpu.get("uuid")
        if uuid is not None and (type(uuid) is not str or not 0 < len(uuid) <= MAX_GPU_UUID):
            raise _Bad(f'gpu "uuid" is not a string of 1 to {MAX_GPU_UUID} characters')
    return gpus


def _is_number_or_null(value: Any) -> bool:
    kind = type(value)
    if value is None or kind is int:
        return True
    return kind is float and _isfinite(value)
