"""The per-attempt ``job.json`` record that lets a driver find its job again after a
daemon crash (shared by the local and Slurm drivers)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["JOB_FILE", "read_job_file", "write_json_atomic"]

JOB_FILE = "job.json"


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Temp file + rename, so a reader sees the old record or the new one, never half.
    No fsync: it guards against a daemon crash (a host crash kills local jobs anyway).
    The temp file is created 0600 with O_EXCL|O_NOFOLLOW: job.json may carry the
    sweep's ``[env] vars`` (API keys), and a symlink planted in a shared output dir
    must never be written through (DESIGN.md principle 7)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)  # our own leftover of a crash; unlink never follows a link
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(tmp, flags, 0o600), "w") as fh:
        fh.write(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_job_file(attempt_dir: str, token: str) -> dict[str, Any] | None:
    """``job.json`` of ``token``; None if absent, unreadable or written for another token."""
    try:
        data = json.loads((Path(attempt_dir) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("token") != token:
        return None
    return data
