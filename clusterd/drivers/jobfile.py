"""The per-attempt ``job.json`` record that lets a driver find its job again after a
daemon crash (shared by every driver; batch drivers write it through ``batch/records.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clusterd.errors import short_of_resources
from clusterd.node import names
from clusterd.node.atomic import json_bytes, replace_at

__all__ = ["JOB_FILE", "read_job_file", "write_json_atomic"]

JOB_FILE = names.JOB


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically, 0600, never through a symlink (``clusterd.node.atomic``):
    job.json may carry the sweep's ``[env] vars`` (API keys). No fsync: the record guards
    against a *daemon* crash; after a host crash a local job is dead anyway, and a batch
    job is found again by its name (``cd.<sweep>.<hex>``) in the scheduler's own records."""
    replace_at(str(path), json_bytes(dict(data)), mode=0o600, fsync=False)


def read_job_file(attempt_dir: str, token: str, *, strict: bool = False) -> dict[str, Any] | None:
    """``job.json`` of ``token``; None if absent, unreadable or written for another token.
    ``strict``: being out of descriptors or memory raises instead, for callers where
    "cannot read it now" must never pass for "there is none" (the local driver's recovery)."""
    try:
        data = json.loads((Path(attempt_dir) / JOB_FILE).read_bytes())
    except OSError as exc:
        if strict and short_of_resources(exc):
            raise
        return None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("token") != token:
        return None
    return data
