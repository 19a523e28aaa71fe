"""What handlers can reach, and the small argument checks they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterd.daemon.hub import Hub
from clusterd.daemon.scheduler import Scheduler
from clusterd.daemon.store import Store
from clusterd.errors import InvalidRequest

__all__ = ["Context", "arg_bool", "arg_int", "arg_str", "split_trial"]


@dataclass
class Context:
    store: Store
    scheduler: Scheduler
    hub: Hub
    db_url: str
    home: Path
    started_at: float
    request_shutdown: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)


def gpu_idle_threshold(ctx: Any) -> float | None:
    """The user config file's ``[gpu] idle_threshold`` (None: not set), which the GPU
    views use where a sweep sets none, as the idle watch does. ``ctx`` may lack a
    scheduler: the read-only reader (``daemon/readonly.py``) serves the same views."""
    drivers = getattr(getattr(ctx, "scheduler", None), "drivers", None)
    defaults = drivers.config.gpu if drivers is not None else None
    return None if defaults is None else defaults.idle_threshold


def arg_str(args: dict[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str) or not value:
        if default is None and key not in args:
            raise InvalidRequest(f"argument {key!r} is required (a string)")
        raise InvalidRequest(f"argument {key!r} must be a non-empty string")
    return value


def arg_opt_str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"argument {key!r} must be a string")
    return value


def arg_bool(args: dict[str, Any], key: str, default: bool = False) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"argument {key!r} must be true or false")
    return value


def arg_int(args: dict[str, Any], key: str, default: int, minimum: int = 0) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"argument {key!r} must be an integer >= {minimum}")
    return value


def split_trial(name: str) -> tuple[str, int]:
    """``"lr-depth/7"`` -> ``("lr-depth", 7)``; a clear error for anything else."""
    sweep, sep, index = name.rpartition("/")
    if not sep or not sweep or not index.isdigit():
        raise InvalidRequest(f"{name!r} is not a trial name; expected SWEEP/INDEX, e.g. lr-depth/7")
    return sweep, int(index)
