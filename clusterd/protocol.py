"""The socket protocol: JSON lines over ``$CLUSTERD_HOME/clusterd.sock`` (stdlib only).

On connect the daemon sends one greeting line::

    {"hello": "clusterd", "version": "0.1.0", "protocol": 1}

then answers each request line with exactly one reply line, in order::

    -> {"id": 3, "op": "trials", "args": {"sweep": "lr-depth", "state": "failed"}}
    <- {"id": 3, "ok": true, "result": [...]}
    <- {"id": 3, "ok": false, "error": {"code": "not_found", "message": "no sweep named 'x'"}}

``subscribe`` is the one streaming request: after its ``ok`` reply the daemon
sends ``{"id": N, "event": {...}}`` lines until the client disconnects. See
docs/protocol.md for every op and its arguments.
"""

from __future__ import annotations

import json
from typing import Any

from clusterd.errors import ClusterdError, InvalidRequest

__all__ = [
    "MAX_LINE",
    "OPS",
    "TRIAL_COLUMNS",
    "Request",
    "decode_request",
    "encode",
    "error_reply",
    "ok_reply",
]

#: A trial in ``trials``/``show`` replies: these columns of its row, after ``sweep`` and
#: ``name`` (the daemon builds the views from them; the TUI's fake daemon serves the same)
TRIAL_COLUMNS = (
    "index",
    "state",
    "attempts",
    "failures",
    "resumes",
    "last_step",
    "last_value",
    "best_value",
    "best_step",
    "reason",
    "stop_decision",
    "params",
    "updated_at",
)

#: Longest accepted line in either direction (bytes, newline included).
MAX_LINE = 1 << 20

#: The closed set of operations the daemon answers.
OPS = frozenset(
    {
        "ping",
        "status",
        "shutdown",
        "drivers",
        "cluster",
        "submit",
        "sweeps",
        "trials",
        "show",
        "logs",
        "cancel",
        "stop",
        "relaunch",
        "rm",
        "export",
        "best",
        "subscribe",
        "gpus",
        "metrics",
        "gpu_samples",
        "trash",
        "restore",
        "metric_table",
    }
)


class Request:
    """One decoded request (a plain class: ``dataclasses`` would cost every CLI call ~6 ms)."""

    __slots__ = ("args", "id", "op")

    def __init__(self, id: int | str | None, op: str, args: dict[str, Any] | None = None):
        self.id = id
        self.op = op
        self.args = args if args is not None else {}

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, op={self.op!r}, args={self.args!r})"


def encode(obj: Any) -> bytes:
    """One JSON line; NaN/inf are refused so every line is valid JSON for any client."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Parse and check one request line; raise InvalidRequest saying what is wrong."""
    if len(line) > MAX_LINE:
        raise InvalidRequest(f"request is {len(line)} bytes; the limit is {MAX_LINE}")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"request is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest(f"request must be a JSON object, got {type(obj).__name__}")
    req_id = obj.get("id")
    if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, int | str)):
        raise InvalidRequest("request 'id' must be an integer or a string")
    op = obj.get("op")
    if not isinstance(op, str):
        raise InvalidRequest("request needs an 'op' string")
    if op not in OPS:
        raise InvalidRequest(f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise InvalidRequest("request 'args' must be a JSON object")
    unknown = set(obj) - {"id", "op", "args"}
    if unknown:
        raise InvalidRequest(f"unknown request field(s): {', '.join(sorted(unknown))}")
    return Request(id=req_id, op=op, args=args)


def ok_reply(req_id: int | str | None, result: Any) -> dict[str, Any]:
    return {"id": req_id, "ok": True, "result": result}


def error_reply(req_id: int | str | None, error: ClusterdError) -> dict[str, Any]:
    return {"id": req_id, "ok": False, "error": error.to_wire()}
