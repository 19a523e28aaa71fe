"""Read and validate a sweep.toml into a ``SweepSpec`` (stdlib only).

Every problem raises ``SpecError(source, key_path, expected)``, so the user sees
``sweep.toml: params.lr: expected a list or a scalar, got table``: the file, the
dotted key, what was expected and what was found. Nothing is half-parsed: either
a complete, normalised spec comes back or an error does.

This module holds the entry points and the top-level table (``name``, ``command``,
``driver``, ``output_dir``, ``max_concurrent``, ``[metric]``, and the checks that
span tables); the rest is split by job:

- ``values``: error messages, TOML loading and its hints, the scalar checkers;
- ``params``: ``[params]``, ``[search]`` and the command's placeholders (what
  decides which trials a sweep has; the semantics are in its docstring);
- ``sections``: ``[resources]``, ``[resume]``, ``[retry]``, ``[early_stopping]``,
  ``[code]``, ``[gpu]``, ``[env]``, ``[limits]``, ``[drivers.<name>]``.

``{name}`` placeholders in ``command`` follow str.format escaping (``{{``, ``}}``)
and must name a param every trial has; ``fill_placeholders`` does the substitution.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clusterd.errors import SpecError
from clusterd.node.placeholders import placeholders, render_value, substitute
from clusterd.spec.model import Metric, SweepSpec
from clusterd.spec.params import MAX_VALUE_BYTES as MAX_VALUE_BYTES
from clusterd.spec.params import _check_placeholders, _params, _search
from clusterd.spec.sections import (
    _code,
    _drivers,
    _early_stopping,
    _env,
    _gpu,
    _limits,
    _resources,
    _resume,
    _retry,
)
from clusterd.spec.values import (
    DRIVER_RE,
    _check_keys,
    _decode,
    _enum,
    _fail,
    _got,
    _int,
    _join,
    _load_toml,
    _required,
    _str,
    _table,
)

__all__ = [
    "fill_placeholders",
    "format_value",
    "load_sweep",
    "parse_sweep",
    "placeholders",
]

NAME_RE = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}")  # "." and ".." are paths

#: a whole sweep file (read, parsed and validated in the daemon)
MAX_FILE_BYTES = 16 * 1024 * 1024

TOP_KEYS = (
    "name",
    "command",
    "driver",
    "max_concurrent",
    "output_dir",
    "metric",
    "metrics",
    "params",
    "search",
    "resources",
    "resume",
    "retry",
    "early_stopping",
    "code",
    "gpu",
    "env",
    "drivers",
    "limits",
    "group",
)

#: ``group = "..."``: a label ``clusterctl sweeps --group`` filters on
GROUP_RE = re.compile(r"[A-Za-z0-9._/:-]{1,128}")


# ---------------------------------------------------------------- entry points


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; relative paths in it are relative to its directory."""
    source = str(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:  # refused before it is read
            _fail(
                source,
                "",
                f"expected a sweep file of at most {MAX_FILE_BYTES // (1024 * 1024)} MiB, "
                f"got {size / (1024 * 1024):.0f} MiB",
            )
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError(source, "", f"cannot read sweep file ({reason})") from None
    text = _decode(data, source)
    return parse_sweep(text, source, Path(os.path.abspath(path)).parent)


def parse_sweep(
    text: str, source: str = "<string>", base_dir: str | Path | None = None
) -> SweepSpec:
    """Validate sweep.toml text; ``base_dir`` anchors relative paths (default: cwd)."""
    if len(text) > MAX_FILE_BYTES:  # characters: at least as many bytes
        _fail(
            source,
            "",
            f"expected a sweep file of at most {MAX_FILE_BYTES // (1024 * 1024)} MiB, "
            f"got {len(text) / (1024 * 1024):.0f} MiB",
        )
    data = _load_toml(text, source)
    base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    try:
        return _build(data, source, base)
    except RecursionError:
        raise SpecError(source, "", "expected a less deeply nested file") from None


# ---------------------------------------------------------------- placeholders
# One implementation, shared with the runner: clusterd/node/placeholders.py. The sweep
# side is strict (``placeholders`` rejects lone braces and fields that are no param name).

#: how a param value is written into a command: strings as-is, everything else as JSON
format_value = render_value


def fill_placeholders(
    command: Sequence[str],
    params: Mapping[str, Any],
    render: Callable[[Any], str] = format_value,
) -> list[str]:
    """Substitute ``{name}`` by ``render(params[name])`` and ``{{``/``}}`` by braces.

    Call it on every command, placeholders or not, so escaped braces are always
    unescaped the same way. KeyError if a placeholder has no param.
    """
    return [substitute(arg, params, render, strict=True) for arg in command]


# ---------------------------------------------------------------- the sweep


def _build(data: dict[str, Any], src: str, base: Path) -> SweepSpec:
    _check_keys(src, "", data, TOP_KEYS)
    name = _str(
        src,
        "name",
        _required(src, data, "", "name", 'a name like "lr-depth"'),
        'a name of 1-64 letters, digits, ".", "_" or "-" like "lr-depth"',
        NAME_RE,
    )
    command = _command(src, _required(src, data, "", "command", 'a command like "python train.py"'))
    params, produced = _params(src, data.get("params", {}))
    metric = _metric(src, data["metric"]) if "metric" in data else None
    search = _search(src, data.get("search", {}), produced)
    resources = _resources(src, data.get("resources", {}))
    _check_placeholders(src, command, params, produced, search)
    spec = SweepSpec(
        name=name,
        command=command,
        source=src,
        output_dir=_output_dir(src, data.get("output_dir"), base, name),
        driver=_driver(src, data.get("driver", "local")),
        max_concurrent=_int(src, "max_concurrent", data.get("max_concurrent", 4), 1),
        metric=metric,
        metric_modes=_metric_modes(src, data.get("metrics", {}), metric),
        params=params,
        search=search,
        resources=resources,
        resume=_resume(src, data.get("resume", {}), resources),
        retry=_retry(src, data.get("retry", {})),
        early_stopping=_early_stopping(src, data.get("early_stopping", {})),
        code=_code(src, data.get("code", {})),
        gpu=_gpu(src, data.get("gpu", {})),
        env=_env(src, data.get("env", {})),
        driver_options=_drivers(src, data.get("drivers", {})),
        limits=_limits(src, data.get("limits", {})),
        group=_str(src, "group", data["group"], 'a label like "ablations/2024"', GROUP_RE)
        if "group" in data
        else None,
    )
    _check_metric_needed(src, spec)
    return spec


def _command(src: str, value: Any) -> tuple[str, ...]:
    """A string is split like a shell would (no shell ever runs it); a list is argv."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            _fail(src, "command", f"expected a shell-like command line, got {exc}")
        if not argv:
            _fail(src, "command", f'expected a command like "python train.py", got {_got(value)}')
        return tuple(argv)
    if not isinstance(value, list) or not value:
        _fail(src, "command", f"expected a string or a list of strings, got {_got(value)}")
    for i, arg in enumerate(value):
        if not isinstance(arg, str):
            _fail(src, f"command[{i}]", f"expected a string, got {_got(arg)}")
    if not value[0]:
        _fail(src, "command[0]", "expected a program name, got empty string")
    return tuple(value)


def _driver(src: str, value: Any) -> str:
    if isinstance(value, dict):
        first = next(iter(value), "<name>")
        _fail(
            src,
            "driver",
            f'expected a driver name like "slurm", got table '
            f"(driver options go under [drivers.{first}])",
        )
    return _str(src, "driver", value, 'a driver name like "local" or "slurm"', DRIVER_RE)


def _output_dir(src: str, value: Any, base: Path, name: str) -> str:
    """Absolute: '~' expanded, relative paths taken from the sweep file's directory."""
    if value is None:
        return os.path.abspath(base / "runs" / name)
    raw = _str(src, "output_dir", value, 'a directory like "runs/lr-depth"')
    if "\0" in raw:
        _fail(src, "output_dir", f"expected a directory path, got {_got(raw)}")
    return os.path.abspath(base / os.path.expanduser(raw))


def _metric(src: str, value: Any) -> Metric:
    table = _table(src, "metric", value, 'name = "val_loss", mode = "min"')
    _check_keys(src, "metric", table, ("name", "mode"))
    name = _str(
        src,
        "metric.name",
        _required(src, table, "metric", "name", 'a metric name like "val_loss"'),
        'a metric name like "val_loss"',
    )
    mode = _enum(src, "metric.mode", table.get("mode", "min"), ("min", "max"))
    return Metric(name=name, mode="max" if mode == "max" else "min")


def _metric_modes(src: str, value: Any, metric: Metric | None) -> dict[str, Any]:
    """``[metrics.<name>] mode = "max"``: the direction of each further metric."""
    table = _table(src, "metrics", value, 'val_acc = { mode = "max" }')
    modes: dict[str, Any] = {}
    for name, entry in table.items():
        path = _join("metrics", name)
        sub = _table(src, path, entry, 'mode = "max"')
        _check_keys(src, path, sub, ("mode",))
        mode = _enum(
            src,
            _join(path, "mode"),
            _required(src, sub, path, "mode", '"min" or "max"'),
            ("min", "max"),
        )
        if metric is not None and metric.name == name and mode != metric.mode:
            _fail(
                src,
                _join(path, "mode"),
                f"expected {json.dumps(metric.mode)} as in [metric], got {json.dumps(mode)}",
            )
        modes[name] = mode
    return modes


def _check_metric_needed(src: str, spec: SweepSpec) -> None:
    """Early stopping and adaptive search rank trials, so they need [metric]."""
    if spec.metric is not None:
        return
    if spec.early_stopping.rule != "none":
        why = f'rule "{spec.early_stopping.rule}" compares trials by a metric'
        _fail(src, "early_stopping.rule", f"expected a [metric] table ({why}), got none")
    if spec.search.method not in ("grid", "random"):
        why = f'method "{spec.search.method}" optimises a metric'
        _fail(src, "search.method", f"expected a [metric] table ({why}), got none")
