"""Incremental ingestion of events files into the database.

The events files are the durable log (principle 1): the daemon keeps, per
attempt, the byte offset up to which it has ingested, and advances it in the
same transaction that inserts the rows. A crash therefore re-reads at most what
was not committed, and never inserts a line twice. A half-written last line is
left for the next read; a malformed line becomes a trial error and is skipped.

The edges (docs/reliability.md, "Ingestion at the edges"):

* Memory is bounded by the chunk size, however large the file: a read never takes
  more than ``limit`` bytes (a live pass reads one chunk per attempt, so a chatty
  trial cannot stall the loop; the scheduler comes back at once while a backlog
  remains). The final read of an ended attempt goes on, chunk after chunk, to the end.
* A line longer than ``events.MAX_LINE`` is one error, whatever its size: the offset
  moves past what was read of it, and the reader then skips to its newline without
  holding it. An offset that does not follow a newline means exactly "inside a line
  already reported as too long", so this survives a restart with nothing but the offset.
* Only a partial line at the very end of an ended attempt's file is "truncated".
* The file is opened with ``O_NOFOLLOW``: a symlink (or anything not a regular file)
  is never read, and is reported once. A file that shrank below the offset was
  truncated by its trial: reported once, and read again from its start (what the trial
  writes after truncating it is kept, like ``tail -F``).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from clusterd.daemon.store import Store
from clusterd.node import events, layout
from clusterd.node.events import CheckpointEvent, GpuEvent, MetricEvent, parse_chunk

__all__ = ["AttemptCursor", "IngestResult", "ingest_attempt", "open_cursor"]

#: most bytes read from one events file per call, so one chatty trial can't stall the loop
CHUNK_LIMIT = 8 << 20
#: most parse errors recorded per attempt per chunk (the rest are counted in one line)
ERROR_LIMIT = 20
#: bytes read at a time while skipping the rest of an over-long line
SKIP_PIECE = 1 << 20
#: an over-long line is skipped at most this many chunks' worth per call (then next call)
SKIP_CHUNKS = 8
#: the prefixes of the errors about the file itself, each said once per attempt
NOT_FOLLOWED = "events: events.jsonl is a symbolic link or not a regular file"
SHRANK = "events: events.jsonl shrank"


@dataclass
class AttemptCursor:
    """What ingestion needs to know about one attempt."""

    attempt_id: int
    trial_id: int
    number: int
    attempt_dir: str
    offset: int
    metric: str | None
    mode: str | None  # "min" | "max"
    last_step: int | None = None
    best_value: float | None = None
    best_step: int | None = None
    index: int = -1  # the trial's index in its sweep
    #: the trial row's best differs from this lineage's: written on the next ingest
    best_dirty: bool = False
    #: the attempt's job is gone: what is left of the file is being read (a backlog)
    ended: bool = False
    #: errors about the file itself already said (a prefix each), so a pass says them once
    said: set[str] = field(default_factory=set)


@dataclass
class IngestResult:
    lines: int = 0
    metrics: int = 0
    checkpoints: int = 0
    errors: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    #: (step, value) of the sweep's metric, in file order: what the stop rule judges
    observations: list[tuple[int, float]] = field(default_factory=list)
    #: bytes remain unread after this call (a backlog: read again soon)
    more: bool = False


def open_cursor(
    store: Store, conn: Connection, attempt: Any, sweep: Any, attempt_dir: str
) -> AttemptCursor:
    """A cursor for ``attempt`` whose running best starts from its lineage's best
    (``Store.lineage``), not from the trial row: that row may still hold the best of
    attempts the new one discarded (a retry from scratch). After a restart, the
    attempt's own rows so far are part of the lineage, so the best is the same."""
    metric, mode = sweep.metric_name, sweep.metric_mode
    cursor = AttemptCursor(
        attempt_id=attempt.id,
        trial_id=attempt.trial_id,
        index=attempt.index,
        number=attempt.number,
        attempt_dir=attempt_dir,
        offset=attempt.events_offset or 0,
        metric=metric,
        mode=mode,
    )
    if attempt.number == 1 and not attempt.events_offset:
        # a first attempt with nothing ingested yet: its lineage holds no row (the offset
        # is committed with the rows), so there is nothing to ask the database
        return cursor
    trial = store.trial_by_id(conn, attempt.trial_id)
    best = (
        store.lineage_best(conn, attempt.trial_id, attempt.number, metric, mode) if metric else None
    )
    cursor.best_value, cursor.best_step = best if best is not None else (None, None)
    cursor.best_dirty = metric is not None and (cursor.best_value, cursor.best_step) != (
        trial.best_value,
        trial.best_step,
    )
    cursor.last_step = store.attempt_last_step(conn, attempt.trial_id, attempt.number)
    if cursor.last_step is None:
        segments = store.lineage(conn, attempt.trial_id, attempt.number)
        cursor.last_step = segments[1][1] if len(segments) > 1 else None
    return cursor


def ingest_attempt(
    store: Store,
    conn: Connection,
    cur: AttemptCursor,
    final: bool = False,
    limit: int = CHUNK_LIMIT,
) -> IngestResult:
    """Ingest what is new in one attempt's events file (inside the caller's transaction).

        Reads at most ``limit`` bytes, unless ``final`` (the attempt ended): then it reads to
        the end, one chunk at a time, each chunk's rows handed to the database before the
        next is read, and a trailing line without its newline is an error, not kept for
        later. ``result.more`` says that bytes remain that this call did not look at (a
    backlog; a partial last line, which waits for its newline, is not one).
    """
    result = IngestResult()
    now = time.time()
    if cur.best_dirty:
        cur.best_dirty = False
        result.progress.update(best_value=cur.best_value, best_step=cur.best_step)
    fd = _open(store, conn, cur, now)
    if fd is not None:
        try:
            size = os.fstat(fd).st_size
            if size < cur.offset:
                _once(
                    store,
                    conn,
                    cur,
                    SHRANK,
                    f"from {cur.offset} to {size} bytes (truncated "
                    "by the trial?); reading it again from its start",
                    now,
                )
                cur.offset = 0
            while True:
                seen = _ingest_chunk(store, conn, cur, fd, size, final, limit, now, result)
                if not final or cur.offset >= size:
                    break
            result.more = seen < size
        finally:
            os.close(fd)
    store.update_attempt(conn, cur.attempt_id, events_offset=cur.offset)
    if result.progress:
        store.update_trial_progress(conn, cur.trial_id, **result.progress)
    return result


def _open(store: Store, conn: Connection, cur: AttemptCursor, now: float) -> int | None:
    """The events file, never through a symlink; None if absent or not to be read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(layout.events_path(cur.attempt_dir), flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _once(store, conn, cur, NOT_FOLLOWED, "(not followed)", now)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        _once(store, conn, cur, NOT_FOLLOWED, "(not read)", now)
        return None
    return fd


def _once(
    store: Store, conn: Connection, cur: AttemptCursor, prefix: str, rest: str, now: float
) -> None:
    """Record an error about the file itself once per attempt (also across restarts)."""
    if prefix in cur.said:
        return
    cur.said.add(prefix)
    if not store.has_trial_error(conn, cur.trial_id, cur.number, prefix):
        row = {"trial_id": cur.trial_id, "attempt": cur.number, "message": f"{prefix} {rest}"}
        store.add_trial_errors(conn, [{**row, "t": now}])


def _skip_long_line(fd: int, cur: AttemptCursor, size: int, budget: int) -> bool:
    """If the offset is inside a line already reported as too long, move it past that
    line's newline (or as far as ``budget`` bytes and the file go), holding no more
    than SKIP_PIECE bytes of it. True if the offset is still inside that line."""
    if cur.offset == 0 or os.pread(fd, 1, cur.offset - 1) == b"\n":
        return False
    end = min(size, cur.offset + budget)
    while cur.offset < end:
        piece = os.pread(fd, min(SKIP_PIECE, end - cur.offset), cur.offset)
        if not piece:
            break
        newline = piece.find(b"\n")
        if newline >= 0:
            cur.offset += newline + 1
            return False
        cur.offset += len(piece)
    return True


def _ingest_chunk(
    store: Store,
    conn: Connection,
    cur: AttemptCursor,
    fd: int,
    size: int,
    final: bool,
    limit: int,
    now: float,
    result: IngestResult,
) -> int:
    """Read, parse and hand to the database one chunk (at most ``limit`` bytes, and always
    enough to hold a line of MAX_LINE bytes, so that every read makes progress). Returns
    the end of what it looked at: bytes past it are a backlog (a partial last line isn't)."""
    if _skip_long_line(fd, cur, size, limit * SKIP_CHUNKS) or cur.offset >= size:
        return cur.offset
    data = os.pread(fd, min(size - cur.offset, max(limit, events.MAX_LINE + 2)), cur.offset)
    parsed = parse_chunk(data, cur.offset)
    metrics, checkpoints, gpus = [], [], []
    for event in parsed.events:
        result.lines += 1
        if isinstance(event, MetricEvent):
            t = event.t if event.t is not None else now
            for name, value in event.values.items():
                metrics.append(
                    {
                        "trial_id": cur.trial_id,
                        "attempt": cur.number,
                        "step": event.step,
                        "name": name,
                        "value": value,
                        "t": t,
                    }
                )
            _track(cur, event, result)
        elif isinstance(event, CheckpointEvent):
            checkpoints.append(
                {
                    "trial_id": cur.trial_id,
                    "attempt": cur.number,
                    "step": event.step,
                    "path": event.path,
                    "t": event.t if event.t is not None else now,
                }
            )
        elif isinstance(event, GpuEvent):
            gpus.extend(_gpu_rows(cur, event, now))
    errors = [e.reason for e in parsed.errors]
    consumed = parsed.consumed
    at_end = cur.offset + len(data) >= size
    if final and at_end and consumed < len(data):
        errors.append(f"line at byte {cur.offset + consumed}: truncated (no newline at the end)")
        consumed = len(data)
    store.add_metrics(conn, metrics)
    store.add_checkpoints(conn, checkpoints)
    store.add_gpu_samples(conn, gpus)
    _record_errors(store, conn, cur, errors, now)
    seen = cur.offset + len(data)
    cur.offset += consumed
    result.metrics += len(metrics)
    result.checkpoints += len(checkpoints)
    result.errors += len(errors)
    return seen


def _track(cur: AttemptCursor, event: MetricEvent, result: IngestResult) -> None:
    """Keep the trial's last step and best value of the sweep's metric up to date."""
    if cur.last_step is None or event.step >= cur.last_step:
        cur.last_step = event.step
        result.progress["last_step"] = event.step
    if cur.metric is None or cur.metric not in event.values:
        return
    value = event.values[cur.metric]
    result.observations.append((event.step, value))
    result.progress["last_value"] = value
    better = (
        cur.best_value is None
        or (cur.mode == "max" and value > cur.best_value)
        or (cur.mode != "max" and value < cur.best_value)
    )
    if better:
        cur.best_value, cur.best_step = value, event.step
        result.progress["best_value"] = value
        result.progress["best_step"] = event.step


def _gpu_rows(cur: AttemptCursor, event: GpuEvent, now: float) -> list[dict[str, Any]]:
    """One ``gpu_samples`` row per GPU of the line (contract: docs/gpu.md). The integer
    columns are 32-bit on PostgreSQL: a reading beyond that range is kept at its edge,
    and an entry whose index does not fit is dropped, so that one odd line cannot fail
    the transaction that ingests everyone's metrics."""
    rows = []
    t = event.t if event.t is not None else now
    for gpu in event.gpus:
        index = int(gpu.get("index", 0))
        if index > _INT32_MAX:
            continue
        rows.append(
            {
                "trial_id": cur.trial_id,
                "attempt": cur.number,
                "gpu": index,
                "util": gpu.get("util"),
                "mem_used": gpu.get("mem_used"),
                "mem_total": gpu.get("mem_total"),
                "power_w": gpu.get("power_w"),
                "temp_c": _int32(gpu.get("temp_c")),
                "own_procs": _int32(gpu.get("own_procs")),
                "own_mem": _int32(gpu.get("own_mem")),
                "t": t,
            }
        )
    return rows


_INT32_MAX = (1 << 31) - 1


def _int32(value: Any) -> int | None:
    """A reading (a finite number or None: the parser checked) for an Integer column."""
    if value is None:
        return None
    return round(min(max(float(value), -_INT32_MAX), _INT32_MAX))


def _record_errors(
    store: Store, conn: Connection, cur: AttemptCursor, errors: list[str], now: float
) -> None:
    if not errors:
        return
    kept = errors[:ERROR_LIMIT]
    if len(errors) > ERROR_LIMIT:
        kept.append(f"... and {len(errors) - ERROR_LIMIT} more malformed lines")
    rows = [
        {"trial_id": cur.trial_id, "attempt": cur.number, "message": f"events: {m}", "t": now}
        for m in kept
    ]
    store.add_trial_errors(conn, rows)
