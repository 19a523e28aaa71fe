"""The building blocks every part of the sweep.toml parser shares (stdlib only).

Kept apart from ``parse`` (the entry points), ``params`` and ``sections`` so that each
of those reads as the rules of its own tables, while the one way of reporting a
problem lives here: ``SpecError(source, key_path, expected)`` with a dotted key and
a "got ..." that names the TOML type. Also here: reading TOML (its errors turned
into the same shape, with a hint for the ``driver`` + ``[driver.x]`` mistake) and
the scalar checkers (``_int``, ``_str``, ``_enum``, ...) that the tables are made of.

The names stay underscored: they are private to ``clusterd.spec``.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from clusterd.errors import SpecError

DRIVER_RE = re.compile(r"[A-Za-z0-9_-]+")
PLUGIN_RE = re.compile(r"[a-z0-9_-]+")
BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")

INT64_MAX = 2**63 - 1


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
