"""The optional sweep.toml tables that shape how each trial runs (stdlib only).

``[resources]``, ``[resume]``, ``[retry]``, ``[early_stopping]``, ``[code]``,
``[gpu]``, ``[env]``, ``[limits]`` and ``[drivers.<name>]``: each is checked on its
own, with its defaults, into the matching ``clusterd.spec.model`` dataclass. They
are apart from ``params`` because none of them changes which trials a sweep has.

Driver options live under ``[drivers.<name>]`` (plural): TOML cannot hold both
``driver = "slurm"`` and a ``[driver.slurm]`` table.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from clusterd.spec.model import (
    CodeConfig,
    EarlyStopping,
    EnvConfig,
    GpuConfig,
    Limits,
    Resources,
    ResumePolicy,
    RetryPolicy,
)
from clusterd.spec.params import MAX_SAMPLES
from clusterd.spec.values import (
    DRIVER_RE,
    INT64_MAX,
    PLUGIN_RE,
    _check_keys,
    _enum,
    _fail,
    _got,
    _int,
    _join,
    _number,
    _plain,
    _scalar_ok,
    _str,
    _table,
)

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MAX_TIME_SECONDS = 2**31 - 1  # ~68 years: anything longer is a typo
#: the most trials a sweep may plan unless its [limits] max_trials says otherwise (checked
#: by ``expand`` from the count, before building anything)
DEFAULT_MAX_TRIALS = Limits().max_trials
#: what [limits] max_trials may be raised to (the daemon holds a sweep's trials in memory
#: while it persists them: ~1 KB each)
MAX_TRIALS_CEILING = MAX_SAMPLES
#: retry.max_failures and resume.max_resumes: beyond this a loop, not a policy
MAX_REPEATS = 1000
SIGNALS = ("USR1", "USR2", "TERM", "INT")

RESOURCE_KEYS = ("cpus", "gpus", "memory", "time", "partition", "pack")
_MEMORY_RE = re.compile(r"(\d{1,15}(?:\.\d{1,15})?)\s*([KMGT]?)(?:i?B)?", re.I)
_MEMORY_MB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
_TIME_RE = re.compile(
    r"(?:(\d{1,9})-(\d{1,9})(?::(\d{1,9})(?::(\d{1,9}))?)?|(\d{1,9})(?::(\d{1,9})(?::(\d{1,9}))?)?)"
)


def _resources(src: str, value: Any) -> Resources:
    table = _table(src, "resources", value, "cpus = 4, gpus = 1")
    _check_keys(src, "resources", table, RESOURCE_KEYS)
    cpus = table.get("cpus")
    memory, memory_mb = _memory(src, table.get("memory"))
    time, time_seconds = _time(src, table.get("time"))
    partition = table.get("partition")
    return Resources(
        cpus=None if cpus is None else _int(src, "resources.cpus", cpus, 1),
        gpus=_int(src, "resources.gpus", table.get("gpus", 0), 0),
        memory=memory,
        memory_mb=memory_mb,
        time=time,
        time_seconds=time_seconds,
        partition=None
        if partition is None
        else _str(src, "resources.partition", partition, 'a partition name like "gpu"'),
        pack=_int(src, "resources.pack", table.get("pack", 1), 1),
    )


def _memory(src: str, value: Any) -> tuple[str | None, int | None]:
    """'16G' / '512M' / '1T' / an integer of MB (Slurm units: 1G = 1024M)."""
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= INT64_MAX:
        return f"{value}M", value
    match = _MEMORY_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    megabytes = (
        math.ceil(float(match.group(1)) * _MEMORY_MB[match.group(2).upper()]) if match else 0
    )
    if not match or megabytes < 1:
        _fail(
            src,
            "resources.memory",
            f'expected a size like "16G", "512M" or an integer of MB, got {_got(value)}',
        )
    return value, megabytes


def _time(src: str, value: Any) -> tuple[str | None, int | None]:
    """Slurm time limits: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S (or an integer of minutes)."""
    if value is None:
        return None, None
    seconds = 0
    if isinstance(value, int) and not isinstance(value, bool):
        seconds, text = value * 60, str(value)
    elif isinstance(value, str):
        seconds, text = _time_seconds(value.strip()), value
    if not 0 < seconds <= MAX_TIME_SECONDS:
        _fail(
            src,
            "resources.time",
            'expected a time limit like "04:00:00", "1-12:00:00", "30:00" or an integer of '
            f"minutes, got {_got(value)}",
        )
    return text, seconds


def _time_seconds(text: str) -> int:
    """Seconds for a Slurm time string, 0 if malformed (fields after the first stay < 60/24)."""
    match = _TIME_RE.fullmatch(text)
    if not match:
        return 0
    g = [int(x) if x is not None else None for x in match.groups()]
    days, hours, minutes, secs = 0, 0, 0, 0
    if g[0] is not None:  # D-H[:M[:S]]
        days, hours, minutes, secs = g[0], g[1] or 0, g[2] or 0, g[3] or 0
        if hours >= 24:
            return 0
    elif g[6] is not None:  # H:M:S
        hours, minutes, secs = g[4] or 0, g[5] or 0, g[6]
    elif g[5] is not None:  # M:S
        minutes, secs = g[4] or 0, g[5]
    else:  # M
        minutes = g[4] or 0
    leading = g[0] is not None or g[6] is not None
    if secs >= 60 or (leading and minutes >= 60):
        return 0
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def _resume(src: str, value: Any, resources: Resources) -> ResumePolicy:
    table = _table(src, "resume", value, "exit_code = 3")
    _check_keys(src, "resume", table, ("exit_code", "max_resumes", "signal", "signal_lead"))
    lead = _int(src, "resume.signal_lead", table.get("signal_lead", 120), 0)
    signal = _signal(src, table.get("signal", "USR1"))
    limit = resources.time_seconds
    if signal != "none" and limit is not None and lead >= limit and "signal_lead" in table:
        _fail(
            src,
            "resume.signal_lead",
            f"expected fewer seconds than resources.time ({limit} s), got {_got(lead)}",
        )
    return ResumePolicy(
        exit_code=_int(src, "resume.exit_code", table.get("exit_code", 3), 1, 255),
        max_resumes=_int(src, "resume.max_resumes", table.get("max_resumes", 50), 0, MAX_REPEATS),
        signal=signal,
        signal_lead=lead,
    )


def _signal(src: str, value: Any) -> str:
    """'USR1', 'SIGUSR1', 'usr1' -> 'USR1'; 'none' disables the warning signal."""
    name = value.strip().upper() if isinstance(value, str) else ""
    if name == "NONE":
        return "none"
    name = name.removeprefix("SIG")
    if name not in SIGNALS:
        _fail(
            src,
            "resume.signal",
            f'expected one of "USR1", "USR2", "TERM", "INT" or "none", got {_got(value)}',
        )
    return name


def _retry(src: str, value: Any) -> RetryPolicy:
    table = _table(src, "retry", value, "max_failures = 1")
    _check_keys(src, "retry", table, ("max_failures", "exclude_host_after"))
    return RetryPolicy(
        max_failures=_int(src, "retry.max_failures", table.get("max_failures", 0), 0, MAX_REPEATS),
        exclude_host_after=_int(
            src, "retry.exclude_host_after", table.get("exclude_host_after", 3), 0
        ),
    )


EARLY_KEYS = (
    "rule",
    "min_steps",
    "min_trials",
    "reduction_factor",
    "max_steps",
    "grace_period",
    "options",
)


def _early_stopping(src: str, value: Any) -> EarlyStopping:
    table = _table(src, "early_stopping", value, 'rule = "median"')
    _check_keys(src, "early_stopping", table, EARLY_KEYS)
    rule = _str(
        src,
        "early_stopping.rule",
        table.get("rule", "none"),
        'a rule like "median", "asha", "hyperband" or "none"',
        PLUGIN_RE,
    )
    options: dict[str, Any] = {}
    if "min_trials" in table:
        options["min_trials"] = _int(src, "early_stopping.min_trials", table["min_trials"], 1)
    if "reduction_factor" in table:
        factor = table["reduction_factor"]
        options["reduction_factor"] = _int(src, "early_stopping.reduction_factor", factor, 2)
    if "max_steps" in table:
        options["max_steps"] = _int(src, "early_stopping.max_steps", table["max_steps"], 1)
    if "grace_period" in table:
        grace = table["grace_period"]
        options["grace_period"] = _number(src, "early_stopping.grace_period", grace, 0, False)
    if "options" in table:  # a plugin rule's own keys, checked by the rule at submit
        extra = _table(src, "early_stopping.options", table["options"], "a plugin rule's keys")
        for key, val in _plain(src, "early_stopping.options", extra).items():
            if key in options:
                _fail(src, f"early_stopping.options.{key}", "expected it at [early_stopping]")
            options[key] = val
    return EarlyStopping(
        rule=rule,
        min_steps=_int(src, "early_stopping.min_steps", table.get("min_steps", 5), 1),
        options=options,
    )


def _code(src: str, value: Any) -> CodeConfig:
    table = _table(src, "code", value, 'snapshot = "git"')
    _check_keys(src, "code", table, ("snapshot",))
    snapshot = _enum(src, "code.snapshot", table.get("snapshot", "none"), ("git", "none"))
    return CodeConfig(snapshot="git" if snapshot == "git" else "none")


_DURATION_RE = re.compile(r"(?:\s*\d{1,15}(?:\.\d{1,15})?\s*[smhd])+\s*")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


GPU_KEYS = ("interval", "idle_warning", "idle_threshold", "idle_action")


def _gpu(src: str, value: Any, keys: tuple[str, ...] = GPU_KEYS) -> GpuConfig:
    """``[gpu]`` of a sweep file (or, with ``keys`` without ``interval``, of the user's
    config file: ``clusterd.config``). Keys left out stay None: "not set"."""
    table = _table(src, "gpu", value, "interval = 10")
    _check_keys(src, "gpu", table, keys)
    interval = _number(src, "gpu.interval", table.get("interval", 10.0), 0, True)
    idle = table.get("idle_warning")
    threshold = table.get("idle_threshold")
    if threshold is not None:
        threshold = float(_number(src, "gpu.idle_threshold", threshold, 0, True))
        if threshold > 100:
            _fail(src, "gpu.idle_threshold", f"expected a percentage <= 100, got {threshold:g}")
    action = table.get("idle_action")
    return GpuConfig(
        interval=float(interval),
        idle_warning_seconds=None if idle is None else _idle_warning(src, idle),
        idle_threshold=threshold,
        idle_action=None if action is None else _idle_action(src, action),
    )


def _idle_warning(src: str, value: Any) -> float:
    """A duration, or 0.0 for ``"off"`` / ``false`` (no warning, whatever the default)."""
    if value is False or value == "off":
        return 0.0
    return _duration(src, "gpu.idle_warning", value)


def _idle_action(src: str, value: Any) -> Literal["warn", "stop"]:
    return "stop" if _enum(src, "gpu.idle_action", value, ("warn", "stop")) == "stop" else "warn"


def _duration(src: str, path: str, value: Any) -> float:
    """'30m', '2h', '90s', '1h30m' or a number of seconds; > 0."""
    seconds = 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.fullmatch(value):
        parts = _DURATION_PART_RE.findall(value)
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not 0 < seconds < math.inf:
        want = 'a duration like "30m", "2h", "90s" or a number of seconds'
        _fail(src, path, f"expected {want}, got {_got(value)}")
    return seconds


def _env(src: str, value: Any) -> EnvConfig:
    table = _table(src, "env", value, 'vars = { OMP_NUM_THREADS = "4" }')
    _check_keys(src, "env", table, ("vars", "setup", "inherit", "pass"))
    raw = _table(src, "env.vars", table.get("vars", {}), 'OMP_NUM_THREADS = "4"')
    setup = table.get("setup")
    inherit = _enum(src, "env.inherit", table.get("inherit", "submit"), ("submit", "daemon"))
    names = table.get("pass", [])
    if not isinstance(names, list):
        want = 'a list of variable names like ["WANDB_PROJECT"]'
        _fail(src, "env.pass", f"expected {want}, got {_got(names)}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            want = 'a variable name like "WANDB_PROJECT"'
            _fail(src, f"env.pass[{i}]", f"expected {want}, got {_got(name)}")
    return EnvConfig(
        vars={k: _env_value(src, _join("env.vars", k), k, v) for k, v in raw.items()},
        setup=None if setup is None else _str(src, "env.setup", setup, "a shell line"),
        inherit="daemon" if inherit == "daemon" else "submit",
        pass_vars=tuple(dict.fromkeys(names)),
    )


def _env_value(src: str, path: str, name: str, value: Any) -> str:
    """Environment values are strings; numbers and booleans are written as in TOML."""
    if not ENV_NAME_RE.fullmatch(name):
        _fail(src, path, f'expected a variable name like "OMP_NUM_THREADS", got {json.dumps(name)}')
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if _scalar_ok(value):
        return repr(value)
    _fail(src, path, f"expected a string, number or boolean, got {_got(value)}")


def _limits(src: str, value: Any) -> Limits:
    table = _table(src, "limits", value, "max_trials = 500000")
    _check_keys(src, "limits", table, ("max_trials",))
    cap = table.get("max_trials", DEFAULT_MAX_TRIALS)
    return Limits(max_trials=_int(src, "limits.max_trials", cap, 1, MAX_TRIALS_CEILING))


def _drivers(src: str, value: Any) -> dict[str, dict[str, Any]]:
    """[drivers.<name>] tables, free-form: each driver validates its own keys."""
    table = _table(src, "drivers", value, 'e.g. [drivers.slurm] account = "ml"')
    options: dict[str, dict[str, Any]] = {}
    for name, sub in table.items():
        where = _join("drivers", name)
        if not DRIVER_RE.fullmatch(name):
            _fail(src, where, f'expected a driver name like "slurm", got {json.dumps(name)}')
        options[name] = _plain(src, where, _table(src, where, sub, 'account = "ml"'))
    return options
