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
    No fsync: it guards against a daemon crash (a host crash kills local jobs anyway)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
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
