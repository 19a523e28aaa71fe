"""Attempt requests for the batch/ tests (real attempt dirs under ``tmp_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.spec.model import Resources


def request(root: Path | str, index: int, **changes: Any) -> JobRequest:
    """Attempt ``index`` of sweep "sw"; its dir exists when ``root`` is a Path."""
    adir = Path(root) / "runs" / str(index) / "attempt-1"
    if isinstance(root, Path):
        adir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "token": f"cd-sw-{index}-1-t{index:04d}",
        "sweep": "sw",
        "trial_index": index,
        "attempt": 1,
        "attempt_dir": str(adir),
        "argv": ("true",),
        "resources": Resources(cpus=1),
    }
    fields.update(changes)
    return JobRequest(**fields)
