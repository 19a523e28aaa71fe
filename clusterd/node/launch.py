"""``launch.json``: what the daemon tells the runner to run, defined once.

The daemon builds it with :func:`launch_record` (``daemon/launchfile.py`` writes it 0600
before the submit); the runner reads it with :func:`load_launch` into a :class:`Launch`.
:data:`FIELDS` is the one list of its fields (docs/runtime.md "launch.json"): the
attribute, where it sits in the JSON, how it is checked and its default. A missing or
mistyped field is a :class:`LaunchError` naming it.

Stdlib only and cheap to import (no dataclasses, no typing): every trial's runner
imports it.
"""

from __future__ import annotations

import json
import os
import signal

from clusterd.node import files

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "FIELDS",
    "VERSION",
    "Launch",
    "LaunchError",
    "launch_from",
    "launch_record",
    "load_launch",
]

#: the schema's version; a runner refuses a launch.json of any other
VERSION = 1
#: the largest launch.json a runner reads
MAX_SIZE = 64 << 20


class LaunchError(ValueError):
    """launch.json is missing, unreadable or invalid; the message says which field."""


_REQUIRED: Any = object()


def _of(kind: type) -> Callable[[Any, str], Any]:
    """A check that the value has the JSON type ``kind`` (a bool is not an int here)."""

    def check(value: Any, name: str) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise LaunchError(f"{name}: expected {kind.__name__}, got {value!r}")
        return value

    return check


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise LaunchError(f"{name}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _abs_path(value: Any, name: str) -> str:
    value = _of(str)(value, name)
    if not os.path.isabs(value):
        raise LaunchError(f"{name}: expected an absolute path, got {value!r}")
    return value


def _command(value: Any, name: str) -> list[str]:
    value = _of(list)(value, name)
    if not value or not all(isinstance(part, str) for part in value):
        raise LaunchError(f"{name}: expected a non-empty list of strings, got {value!r}")
    return list(value)


def _env_vars(value: Any, name: str) -> dict[str, str]:
    out = {}
    for key, item in _of(dict)(value, name).items():
        if not key or "=" in key or isinstance(item, bool | dict | list) or item is None:
            raise LaunchError(f"{name}.{key}: expected a string value, got {item!r}")
        out[key] = item if isinstance(item, str) else json.dumps(item)
    return out


def _names(value: Any, name: str) -> tuple[str, ...]:
    value = _of(list)(value, name)
    for item in value:
        if not isinstance(item, str) or not item or "=" in item:
            raise LaunchError(f"{name}: expected a list of variable names, got {item!r}")
    return tuple(value)


def _setup(value: Any, name: str) -> str | None:
    return _of(str)(value, name) or None


def _signal(value: Any, name: str) -> signal.Signals | None:
    """``"USR1"``, ``"SIGUSR1"`` or a number; ``"none"`` (the sweep's ``resume.signal =
    "none"``): no signal, only the ``CHECKPOINT_REQUESTED`` marker."""
    if isinstance(value, str) and value.strip().lower() == "none":
        return None
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signal.Signals(value)
        text = str(value).upper()
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise LaunchError(f"{name}: unknown signal {value!r}") from None


_str, _int, _bool, _dict = _of(str), _of(int), _of(bool), _of(dict)

#: (attribute of Launch, key in launch.json -- dotted in the ``resume`` table --, check,
#: default or _REQUIRED); a JSON null is the default
FIELDS: tuple[tuple[str, str, Callable[[Any, str], Any], Any], ...] = (
    ("sweep", "sweep", _str, _REQUIRED),
    ("token", "token", _str, None),
    ("trial_index", "trial_index", _int, _REQUIRED),
    ("trial_id", "trial_id", _str, _REQUIRED),
    ("attempt", "attempt", _int, _REQUIRED),
    ("trial_dir", "trial_dir", _abs_path, _REQUIRED),
    ("attempt_dir", "attempt_dir", _abs_path, _REQUIRED),
    ("command", "command", _command, _REQUIRED),
    ("params", "params", _dict, {}),
    ("cwd", "cwd", _abs_path, None),
    ("env", "env", _env_vars, {}),
    ("submit_env", "submit_env", _env_vars, {}),
    ("submit_unset", "submit_unset", _names, ()),
    ("setup", "setup", _setup, None),
    ("resume_exit_code", "resume.exit_code", _int, 3),
    ("resume_signal", "resume.signal", _signal, signal.SIGUSR1),
    ("signal_lead", "resume.signal_lead", _seconds, 120.0),
    ("time_limit", "time_limit", _seconds, None),
    ("enforce_time_limit", "enforce_time_limit", _bool, True),
    ("kill_grace", "kill_grace", _seconds, 10.0),
    ("gpu_interval", "gpu_interval", _seconds, 0.0),
)


class Launch:
    """A validated launch.json; times are in seconds.

    A plain slotted class rather than a dataclass: importing ``dataclasses`` costs
    ~6 ms, paid by every trial's runner.
    """

    __slots__ = tuple(attr for attr, _key, _check, _default in FIELDS)
    sweep: str
    token: str | None
    trial_index: int
    trial_id: str
    attempt: int
    trial_dir: str
    attempt_dir: str
    command: list[str]
    params: dict[str, Any]
    cwd: str | None
    env: dict[str, str]
    #: the submitting shell's variables (daemon/environment.py), set before ``env``
    submit_env: dict[str, str]
    #: names removed from the runner's environment first (unset when submitting)
    submit_unset: tuple[str, ...]
    setup: str | None
    resume_exit_code: int
    resume_signal: signal.Signals | None
    signal_lead: float
    time_limit: float | None
    enforce_time_limit: bool
    kill_grace: float
    gpu_interval: float

    def __init__(self, **fields: Any) -> None:
        missing = set(self.__slots__) - set(fields)
        if missing:
            raise TypeError(f"Launch is missing {sorted(missing)}")
        for name, value in fields.items():
            setattr(self, name, value)


def load_launch(path: str) -> Launch:
    """Read and validate launch.json; raise LaunchError naming the offending field.

    Only a regular file of our own uid that group and others cannot write is read: in
    a shared output dir another user could rename a forged one over ours."""
    try:
        data = json.loads(files.read_own(path, MAX_SIZE))
    except files.UnsafeFile as exc:
        raise LaunchError(f"refused: {exc}") from None
    except OSError as exc:
        raise LaunchError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise LaunchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LaunchError(f"{path}: not a JSON object")
    try:
        return launch_from(data)
    except LaunchError as exc:
        raise LaunchError(f"{path}: {exc}") from None


def launch_from(data: dict[str, Any]) -> Launch:
    """A :class:`Launch` of the parsed JSON object ``data``; LaunchError naming the field."""
    if data.get("version") != VERSION:
        raise LaunchError(f"version: expected {VERSION}, got {data.get('version')!r}")
    resume = data.get("resume")
    resume = {} if resume is None else _dict(resume, "resume")
    values = {}
    for attr, key, check, default in FIELDS:
        table, name = (resume, key[7:]) if key.startswith("resume.") else (data, key)
        value = table.get(name)
        if value is None:
            if default is _REQUIRED:
                raise LaunchError(f"{key}: missing")
            value = dict(default) if isinstance(default, dict) else default
        else:
            value = check(value, key)
        values[attr] = value
    return Launch(**values)


def launch_record(**fields: Any) -> dict[str, Any]:
    """launch.json as the daemon writes it: keyword arguments named as :class:`Launch`'s
    attributes (every required one; the others default), nested and versioned.

    Unknown or missing names are a TypeError: a field added to :data:`FIELDS` must be
    filled in by the daemon too."""
    known = {attr for attr, _key, _check, _default in FIELDS}
    unknown = sorted(set(fields) - known)
    missing = sorted(a for a, _k, _c, d in FIELDS if d is _REQUIRED and a not in fields)
    if unknown or missing:
        raise TypeError(f"launch_record: unknown {unknown}, missing {missing}")
    record: dict[str, Any] = {"version": VERSION}
    for attr, key, _check, _default in FIELDS:
        if attr not in fields:
            continue
        if key.startswith("resume."):
            record.setdefault("resume", {})[key[7:]] = fields[attr]
        else:
            record[key] = fields[attr]
    return record
