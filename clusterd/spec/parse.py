"""Read and validate a sweep.toml into a ``SweepSpec`` (stdlib only).

Every problem raises ``SpecError(source, key_path, expected)``, so the user sees
``sweep.toml: params.lr: expected a list or a scalar, got table``: the file, the
dotted key, what was expected and what was found. Nothing is half-parsed: either
a complete, normalised spec comes back or an error does.

``[params]`` semantics (see ``expand`` for how trials are produced):

- a list is a grid axis; its elements are scalars or lists of scalars (a list
  value for a param is written as a one-element axis: ``layers = [[64, 64]]``);
- a scalar (string, integer, float, boolean) is fixed for every trial;
- a table whose values are all tables is a conditional choice: the param takes
  each sub-table's name in turn, and that sub-table's own params (a sub-grid,
  possibly empty, possibly conditional again) are added at the top level of the
  trial. Names may not repeat along any path a trial can take.

The validated ``[params]`` tree is stored as-is (dicts in file order, lists,
scalars): its key order is significant, so persist it as JSON, not JSONB.

``[search.space]`` entries are ``{ uniform = [lo, hi] }``, ``{ loguniform =
[lo, hi] }`` (0 < lo), ``{ randint = [lo, hi] }`` (integers, INCLUSIVE of both
ends, like ``random.randint``) and ``{ choice = [a, b, ...] }``; lo < hi always.
A space only makes sense when sampling, so method "grid" rejects it (and
``samples``); every other method requires ``samples``. Method-specific keys go
in ``[search.options]``.

``{name}`` placeholders in ``command`` follow str.format escaping (``{{``, ``}}``)
and must name a param every trial has; ``fill_placeholders`` does the substitution.

Driver options live under ``[drivers.<name>]`` (plural): TOML cannot hold both
``driver = "slurm"`` and a ``[driver.slurm]`` table.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from clusterd.errors import SpecError
from clusterd.spec.model import (
    CodeConfig,
    Distribution,
    EarlyStopping,
    EnvConfig,
    GpuConfig,
    Limits,
    Metric,
    Resources,
    ResumePolicy,
    RetryPolicy,
    Search,
    SweepSpec,
)

__all__ = [
    "fill_placeholders",
    "format_value",
    "load_sweep",
    "parse_sweep",
    "placeholders",
]

NAME_RE = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}")  # "." and ".." are paths
PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
DRIVER_RE = re.compile(r"[A-Za-z0-9_-]+")
PLUGIN_RE = re.compile(r"[a-z0-9_-]+")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")

INT64_MAX = 2**63 - 1
MAX_TIME_SECONDS = 2**31 - 1  # ~68 years: anything longer is a typo
MAX_DEPTH = 16  # conditional params nested deeper than this are surely a mistake
MAX_SAMPLES = 10_000_000  # guards against a typo such as samples = 1e9 hanging expand()
#: the most trials a sweep may plan unless its [limits] max_trials says otherwise (checked
#: by ``expand`` from the count, before building anything)
DEFAULT_MAX_TRIALS = Limits().max_trials
#: what [limits] max_trials may be raised to (the daemon holds a sweep's trials in memory
#: while it persists them: ~1 KB each)
MAX_TRIALS_CEILING = MAX_SAMPLES
#: one parameter value, as the trial's command line gets it (a 52 MB string became a
#: 945 MB database and "Argument list too long")
MAX_VALUE_BYTES = 64 * 1024
#: a whole sweep file (read, parsed and validated in the daemon)
MAX_FILE_BYTES = 16 * 1024 * 1024
#: retry.max_failures and resume.max_resumes: beyond this a loop, not a policy
MAX_REPEATS = 1000
ADAPTIVE_NOTE = "adaptive methods propose trials later"
SIGNALS = ("USR1", "USR2", "TERM", "INT")
DIST_KINDS = ("uniform", "loguniform", "randint", "choice")
Scalar = str | int | float | bool

TOP_KEYS = (
    "name",
    "command",
    "driver",
    "max_concurrent",
    "output_dir",
    "metric",
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
)


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

_BRACES_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def placeholders(command: str | Sequence[str]) -> set[str]:
    """The ``{name}`` placeholders of a command (str.format rules: ``{{``/``}}`` are literal).

    Raises ValueError on a lone brace or a field that is not a plain param name
    (no ``{0}``, ``{x!r}``, ``{x:.3f}``): the runner substitutes names, nothing more.
    """
    args = [command] if isinstance(command, str) else list(command)
    names: set[str] = set()
    for arg in args:
        for match in _BRACES_RE.finditer(arg):
            token = match.group(0)
            if token in ("{{", "}}"):
                continue
            field_name = match.group(1)
            if field_name is None:
                raise ValueError(f"a lone {token!r} in {arg!r} (write {{{{ or }}}} for a brace)")
            if not PARAM_NAME_RE.fullmatch(field_name):
                raise ValueError(
                    f"{token} in {arg!r}, which is not a param name "
                    "(write {{ or }} for a literal brace)"
                )
            names.add(field_name)
    return names


def format_value(value: Any) -> str:
    """How a param value is written into a command: strings as-is, everything else as JSON.

    Same rule as ``clusterd.runner.render_value``.
    """
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def fill_placeholders(
    command: Sequence[str],
    params: Mapping[str, Any],
    render: Callable[[Any], str] = format_value,
) -> list[str]:
    """Substitute ``{name}`` by ``render(params[name])`` and ``{{``/``}}`` by braces.

    Call it on every command, placeholders or not, so escaped braces are always
    unescaped the same way. KeyError if a placeholder has no param.
    """

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        if match.group(1) is None or not PARAM_NAME_RE.fullmatch(match.group(1)):
            raise ValueError(f"invalid placeholder {token!r}")
        return render(params[match.group(1)])

    return [_BRACES_RE.sub(one, arg) for arg in command]


# ---------------------------------------------------------------- messages


def _fail(src: str, key: str, expected: str) -> NoReturn:
    raise SpecError(src, key, expected)


def _join(path: str, key: str) -> str:
    """Dotted key path, quoting keys that TOML would quote."""
    part = key if BARE_KEY_RE.fullmatch(key) else json.dumps(key)
    return f"{path}.{part}" if path else part


def _kind(value: Any) -> str:
    """The TOML type name of a value, for 'got ...' messages."""
    if isinstance(value, dict):
        return "table" if value else "empty table"
    if isinstance(value, list):
        return "list" if value else "empty list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime.datetime):
        return "date-time"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _got(value: Any) -> str:
    """'table', 'list', 'integer 0', 'string "abc"': the type, and the value if short."""
    kind = _kind(value)
    if isinstance(value, bool):
        return f"{kind} {str(value).lower()}"
    if isinstance(value, int | float):
        return f"{kind} {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{kind} {json.dumps(shown)}"
    return kind


def _show(value: Any) -> str:
    """A value as TOML-ish text (for lists of bounds)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _check_keys(src: str, path: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Reject unknown keys, suggesting the closest allowed one."""
    for key in table:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
        hint = f"did you mean '{close[0]}'?" if close else "expected one of: " + ", ".join(allowed)
        _fail(src, _join(path, key), f"unknown key, {hint}")


# ---------------------------------------------------------------- TOML


def _decode(data: bytes, src: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        _fail(src, f"line {line}, column {column}", "invalid TOML: not UTF-8 text")


_TOML_POS_RE = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.S)
_TOML_END_RE = re.compile(r"^(.*) \(at end of document\)$", re.S)
_DRIVER_HEADER_RE = re.compile(r"\s*\[+\s*\"?driver\"?\s*\.\s*\"?([A-Za-z0-9_-]*)")


def _load_toml(text: str, src: str) -> dict[str, Any]:
    """tomllib.loads, with its error turned into 'line L, column C: invalid TOML: reason'."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
    except RecursionError:
        _fail(src, "", "invalid TOML: nested too deeply")
    except ValueError:  # tomllib lets int()'s 4300-digit limit through as a plain ValueError
        _fail(src, "", "invalid TOML: an integer literal is too long")
    if match := _TOML_POS_RE.match(message):
        reason, line, column = match.group(1), int(match.group(2)), int(match.group(3))
    elif match := _TOML_END_RE.match(message):
        reason, lines = match.group(1), text.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    else:
        _fail(src, "", f"invalid TOML: {message}")
    _fail(src, f"line {line}, column {column}", f"invalid TOML: {reason}{_toml_hint(text, line)}")


def _toml_hint(text: str, line: int) -> str:
    """Explain the one TOML error the design's own example invites: driver + [driver.x]."""
    lines = text.split("\n")
    header = _DRIVER_HEADER_RE.match(lines[line - 1]) if 0 < line <= len(lines) else None
    if header is None:
        return ""
    name = header.group(1) or "<name>"
    return f" (driver is already a string; put driver options under [drivers.{name}])"


# ---------------------------------------------------------------- scalars


def _table(src: str, path: str, value: Any, example: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(src, path, f"expected a table ({example}), got {_got(value)}")
    return value


def _int(src: str, path: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer in [lo, hi]; booleans are not integers here."""
    if lo is not None and hi is not None:
        want = f"an integer from {lo} to {hi}"
    elif lo is not None:
        want = f"an integer >= {lo}"
    else:
        want = "an integer"
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        _fail(src, path, f"expected {want}, got {_got(value)}")
    if value > INT64_MAX:  # what a database column or a JSON reader can hold
        _fail(src, path, f"expected {want} that fits in 64 bits, got {_got(value)}")
    return int(value)


def _number(src: str, path: str, value: Any, lo: float, strict: bool) -> int | float:
    """A finite number > lo (strict) or >= lo."""
    want = f"a number {'>' if strict else '>='} {lo:g}"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < lo or (strict and value == lo):
        _fail(src, path, f"expected {want}, got {_got(value)}")
    return value


def _str(src: str, path: str, value: Any, want: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
        _fail(src, path, f"expected {want}, got {_got(value)}")
    return value


def _enum(src: str, path: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        quoted = [json.dumps(c) for c in choices]
        want = " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
        _fail(src, path, f"expected {want}, got {_got(value)}")
    return value


def _required(src: str, table: Mapping[str, Any], path: str, key: str, example: str) -> Any:
    if key not in table:
        _fail(src, _join(path, key), f"required key missing ({example})")
    return table[key]


def _scalar_ok(value: Any) -> bool:
    """A TOML string, integer, boolean or finite float."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _plain(src: str, path: str, value: Any) -> Any:
    """Free-form TOML (driver/search options): anything JSON can hold; no dates, no nan."""
    if isinstance(value, dict):
        return {k: _plain(src, _join(path, k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(src, f"{path}[{i}]", v) for i, v in enumerate(value)]
    if not _scalar_ok(value):
        _fail(src, path, f"expected a string, number, boolean, list or table, got {_got(value)}")
    return value


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


# ---------------------------------------------------------------- [params]


def _params(src: str, value: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The validated tree, and every name a trial can get -> where it is defined."""
    table = _table(src, "params", value, "lr = [0.1, 0.01]")
    return _level(src, "params", table, {}, 0)


def _level(
    src: str, path: str, table: dict[str, Any], outer: dict[str, str], depth: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """One grid level: its own names may not repeat names a trial already has (``outer``)."""
    direct = {key: _join(path, key) for key in table}
    taken = {**outer, **direct}
    produced = dict(direct)
    tree: dict[str, Any] = {}
    for key, value in table.items():
        where = direct[key]
        if not PARAM_NAME_RE.fullmatch(key):
            _fail(
                src,
                where,
                f'expected a param name like "lr" or "model.depth", got {json.dumps(key)}',
            )
        if key in outer:
            _fail(
                src,
                where,
                f"expected a param name not already set in the same trial, got {json.dumps(key)} "
                f"(also {outer[key]})",
            )
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tree[key], names = _conditional(src, where, value, taken, depth)
            taken.update(names)
            produced.update(names)
        else:
            tree[key] = _leaf(src, where, value)
    return tree, produced


def _conditional(
    src: str, path: str, table: dict[str, Any], outer: dict[str, str], depth: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """A choice among branches, each a sub-grid whose names join the trial's top level."""
    if depth >= MAX_DEPTH:
        _fail(src, path, f"expected conditional params nested at most {MAX_DEPTH} deep, got more")
    tree: dict[str, Any] = {}
    names: dict[str, str] = {}
    for branch, sub in table.items():
        if not branch:
            _fail(src, _join(path, branch), "expected a branch name, got empty string")
        tree[branch], produced = _level(src, _join(path, branch), sub, outer, depth + 1)
        for name, where in produced.items():
            names.setdefault(name, where)
    return tree, names


def _leaf(src: str, path: str, value: Any) -> Any:
    """A grid axis (non-empty list) or a fixed scalar."""
    if isinstance(value, list):
        if not value:
            _fail(src, path, "expected a non-empty list of values (a grid axis), got empty list")
        return [_axis_value(src, f"{path}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict) and not value:
        _fail(
            src,
            path,
            f"expected a list, a scalar or branch tables like [{path}.<choice>], got empty table",
        )
    if not _scalar_ok(value):
        _fail(src, path, f"expected a list or a scalar, got {_got(value)}")
    return _small_value(src, path, value)


def _axis_value(src: str, path: str, value: Any) -> Any:
    """An axis element: a scalar, or a list of scalars (the param's value is that list)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not _scalar_ok(item):
                _fail(src, f"{path}[{i}]", f"expected a scalar, got {_got(item)}")
        return _small_value(src, path, list(value))
    if not _scalar_ok(value):
        _fail(src, path, f"expected a scalar or a list of scalars, got {_got(value)}")
    return _small_value(src, path, value)


def _small_value(src: str, path: str, value: Any) -> Any:
    """A param value whose rendered text (what the command line gets) is at most
    MAX_VALUE_BYTES: a bigger one belongs in a file that the trial reads."""
    if isinstance(value, str) and len(value) * 4 <= MAX_VALUE_BYTES:
        return value  # short enough whatever its characters (UTF-8: <= 4 bytes each)
    size = len(format_value(value).encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        _fail(
            src,
            path,
            f"expected a value of at most {MAX_VALUE_BYTES // 1024} KiB as text (put bigger "
            f"data in a file and pass its path), got {_kind(value)} of {size:,} bytes",
        )
    return value


def _always_present(tree: Mapping[str, Any]) -> set[str]:
    """Names every trial of this (sub-)grid has: its keys, plus names all branches share."""
    names = set(tree)
    for node in tree.values():
        if isinstance(node, dict):
            shared: set[str] | None = None
            for branch in node.values():
                got = _always_present(branch)
                shared = got if shared is None else shared & got
            names |= shared or set()
    return names


# ---------------------------------------------------------------- [search]

SEARCH_KEYS = ("method", "samples", "seed", "space", "options")


def _search(src: str, value: Any, produced: Mapping[str, str]) -> Search:
    table = _table(src, "search", value, 'method = "random", samples = 50')
    _check_keys(src, "search", table, SEARCH_KEYS)
    method = _str(
        src,
        "search.method",
        table.get("method", "grid"),
        'a search method like "grid", "random" or "tpe"',
        PLUGIN_RE,
    )
    space = _space(src, table.get("space", {}), produced)
    samples = _samples(src, method, table.get("samples"))
    if method == "grid" and space:
        _fail(
            src,
            "search.space",
            'expected no [search.space] with method "grid" (set method = "random" to sample), '
            f"got {len(space)} distribution(s)",
        )
    options = _table(src, "search.options", table.get("options", {}), "method-specific keys")
    return Search(
        method=method,
        samples=samples,
        seed=_int(src, "search.seed", table.get("seed", 0), 0),
        space=space,
        options=_plain(src, "search.options", options),
    )


def _samples(src: str, method: str, value: Any) -> int | None:
    if method == "grid":
        if value is not None:
            _fail(
                src,
                "search.samples",
                'expected no samples with method "grid" (it runs the whole grid; '
                f'set method = "random" to sample), got {_got(value)}',
            )
        return None
    if value is None:
        _fail(src, "search.samples", f'required key missing (a trial count like 50 for "{method}")')
    return _int(src, "search.samples", value, 1, MAX_SAMPLES)


def _space(src: str, value: Any, produced: Mapping[str, str]) -> dict[str, Distribution]:
    table = _table(src, "search.space", value, "lr = { loguniform = [1e-5, 1e-1] }")
    space: dict[str, Distribution] = {}
    for name, entry in table.items():
        where = _join("search.space", name)
        if not PARAM_NAME_RE.fullmatch(name):
            _fail(src, where, f'expected a param name like "lr", got {json.dumps(name)}')
        if name in produced:
            _fail(
                src,
                where,
                f"expected a name not already in [params], got {json.dumps(name)} "
                f"(also {produced[name]})",
            )
        space[name] = _distribution(src, where, entry)
    return space


def _distribution(src: str, path: str, value: Any) -> Distribution:
    example = "{ uniform = [0.0, 1.0] }"
    if not isinstance(value, dict) or not value:
        _fail(src, path, f"expected a table like {example}, got {_got(value)}")
    _check_keys(src, path, value, DIST_KINDS)
    if len(value) != 1:
        _fail(
            src,
            path,
            f"expected exactly one of {', '.join(DIST_KINDS)}, got {len(value)} "
            f"({', '.join(value)})",
        )
    kind, args = next(iter(value.items()))
    where = _join(path, kind)
    if kind == "choice":
        return Distribution("choice", _choices(src, where, args))
    if kind == "randint":
        lo, hi = _bounds(src, where, args, integers=True)
        return Distribution("randint", (lo, hi))
    lo, hi = _bounds(src, where, args, integers=False)
    if kind == "loguniform":
        if lo <= 0:
            _fail(src, where, f"expected 0 < low < high, got {_show(args)}")
        return Distribution("loguniform", (float(lo), float(hi)))
    return Distribution("uniform", (float(lo), float(hi)))


def _bounds(src: str, path: str, value: Any, integers: bool) -> tuple[Any, Any]:
    """[low, high] with low < high; randint bounds are integers, both inclusive."""
    what = "two integers (both inclusive)" if integers else "two numbers"
    if not isinstance(value, list) or len(value) != 2:
        got = f"list of {len(value)}" if isinstance(value, list) else _got(value)
        _fail(src, path, f"expected [low, high] with {what}, got {got}")
    for bound in value:
        numeric = isinstance(bound, int | float) and not isinstance(bound, bool)
        if not numeric or (integers and not isinstance(bound, int)) or not math.isfinite(bound):
            _fail(src, path, f"expected [low, high] with {what}, got {_show(value)}")
    if value[0] >= value[1]:
        _fail(src, path, f"expected low < high, got {_show(value)}")
    return value[0], value[1]


def _choices(src: str, path: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        _fail(src, path, f"expected a non-empty list of values, got {_got(value)}")
    return tuple(_axis_value(src, f"{path}[{i}]", v) for i, v in enumerate(value))


def _check_placeholders(
    src: str,
    command: Sequence[str],
    params: Mapping[str, Any],
    produced: Mapping[str, str],
    search: Search,
) -> None:
    """Every {name} in the command must be a param that every trial has."""
    try:
        names = placeholders(command)
    except ValueError as exc:
        _fail(src, "command", f"expected {{name}} placeholders naming params, got {exc}")
    always = _always_present(params) | set(search.space)
    known = sorted(set(produced) | set(search.space))
    for name in sorted(names - always):
        if name in produced:
            _fail(
                src,
                "command",
                f"expected placeholders that every trial has, got {{{name}}}, "
                f"set only by some branches ({produced[name]})",
            )
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f" (did you mean {{{close[0]}}}?)" if close else ""
        _fail(src, "command", f"expected placeholders naming params, got {{{name}}}{hint}")


# ---------------------------------------------------------------- other sections

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


def _gpu(src: str, value: Any) -> GpuConfig:
    table = _table(src, "gpu", value, "interval = 10")
    _check_keys(src, "gpu", table, ("interval", "idle_warning"))
    interval = _number(src, "gpu.interval", table.get("interval", 10.0), 0, True)
    idle = table.get("idle_warning")
    return GpuConfig(
        interval=float(interval),
        idle_warning_seconds=None if idle is None else _duration(src, "gpu.idle_warning", idle),
    )


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
    _check_keys(src, "env", table, ("vars", "setup"))
    raw = _table(src, "env.vars", table.get("vars", {}), 'OMP_NUM_THREADS = "4"')
    setup = table.get("setup")
    return EnvConfig(
        vars={k: _env_value(src, _join("env.vars", k), k, v) for k, v in raw.items()},
        setup=None if setup is None else _str(src, "env.setup", setup, "a shell line"),
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
