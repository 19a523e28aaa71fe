"""What every backend's array settings take from an attempt's resources, and clock times.

Each backend keeps its own frozen settings dataclass (``ArraySettings``, ``SgeSettings``,
``SubmitSettings``: what its submit command is told); the fields they all share are read
from a ``JobRequest`` here, once.
"""

from __future__ import annotations

from typing import Any

from clusterd.drivers.base import JobRequest

__all__ = ["clock", "resource_fields"]


def resource_fields(job: JobRequest) -> dict[str, Any]:
    """``sweep``, ``cpus``, ``gpus``, ``memory_mb``, ``time_seconds`` and ``pack`` (at
    least 1) of ``job``: the part of every backend's settings that is the sweep's."""
    res = job.resources
    return {
        "sweep": job.sweep,
        "cpus": res.cpus,
        "gpus": res.gpus,
        "memory_mb": res.memory_mb,
        "time_seconds": res.time_seconds,
        "pack": max(1, res.pack),
    }


def clock(seconds: int) -> tuple[int, int, int]:
    """``(hours, minutes, seconds)`` of a time limit of at least one second; hours may
    pass 24 (each scheduler writes them its own way)."""
    hours, rest = divmod(max(1, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return hours, minutes, secs
