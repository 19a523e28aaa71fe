"""Incremental ingestion of events files into the database.

The events files are the durable log (principle 1): the daemon keeps, per
attempt, the byte offset up to which it has ingested, and advances it in the
same transaction that inserts the rows. A crash therefore re-reads at most what
was not committed, and never inserts a line twice. A half-written last line is
left for the next read; a malformed line becomes a trial error and is skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from clusterd import layout
from clusterd.daemon.store import Store
from clusterd.events import CheckpointEvent, GpuEvent, MetricEvent, parse_chunk

__all__ = ["AttemptCursor", "IngestResult", "ingest_attempt"]

#: most bytes read from one events file per pass, so one chatty trial can't stall the loop
CHUNK_LIMIT = 8 << 20
#: most parse errors recorded per attempt per pass (the rest are counted in one line)
ERROR_LIMIT = 20


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


@dataclass
class IngestResult:
    lines: int = 0
    metrics: int = 0
    checkpoints: int = 0
    errors: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    #: (step, value) of the sweep's metric, in file order: what the stop rule judges
    observations: list[tuple[int, float]] = field(default_factory=list)


def ingest_attempt(
    store: Store, conn: Connection, cur: AttemptCursor, final: bool = False
) -> IngestResult:
    """Ingest what is new in one attempt's events file (inside the caller's transaction).

    With ``final`` (the attempt ended), a trailing line without its newline is
    recorded as an error instead of being kept for later.
    """
    result = IngestResult()
    data = _read_new(cur, final)
    if not data:
        return result
    parsed = parse_chunk(data, cur.offset)
    now = time.time()
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
    if final and consumed < len(data):
        errors.append(f"line at byte {cur.offset + consumed}: truncated (no newline at the end)")
        consumed = len(data)
    store.add_metrics(conn, metrics)
    store.add_checkpoints(conn, checkpoints)
    store.add_gpu_samples(conn, gpus)
    _record_errors(store, conn, cur, errors, now)
    cur.offset += consumed
    store.update_attempt(conn, cur.attempt_id, events_offset=cur.offset)
    if result.progress:
        store.update_trial_progress(conn, cur.trial_id, **result.progress)
    result.metrics, result.checkpoints, result.errors = len(metrics), len(checkpoints), len(errors)
    return result


def _read_new(cur: AttemptCursor, final: bool) -> bytes:
    path = layout.events_path(cur.attempt_dir)
    try:
        size = os.stat(path).st_size
    except OSError:
        return b""
    if size <= cur.offset:
        return b""
    with open(path, "rb") as fh:
        fh.seek(cur.offset)
        return fh.read(min(size - cur.offset, CHUNK_LIMIT))


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
    rows = []
    for gpu in event.gpus:
        rows.append(
            {
                "trial_id": cur.trial_id,
                "attempt": cur.number,
                "gpu": int(gpu.get("index", 0)),
                "util": gpu.get("util"),
                "mem_used": gpu.get("mem_used"),
                "mem_total": gpu.get("mem_total"),
                "t": event.t if event.t is not None else now,
            }
        )
    return rows


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
