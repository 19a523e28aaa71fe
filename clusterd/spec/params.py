"""``[params]``, ``[search]`` and the command's ``{name}`` placeholders (stdlib only).

These are the tables that decide which trials a sweep has, so they are checked
together: a ``[search.space]`` name may not repeat a ``[params]`` name, and every
placeholder must name a param that every trial gets (see ``expand`` for how trials
are produced).

``[params]`` semantics:

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

``{name}`` placeholders in ``command`` follow str.format escaping (``{{``, ``}}``).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from clusterd.node.placeholders import PARAM_NAME_RE, placeholders, render_value
from clusterd.spec.model import Distribution, Search
from clusterd.spec.values import (
    PLUGIN_RE,
    _check_keys,
    _fail,
    _got,
    _int,
    _join,
    _kind,
    _plain,
    _scalar_ok,
    _show,
    _str,
    _table,
)

MAX_DEPTH = 16  # conditional params nested deeper than this are surely a mistake
MAX_SAMPLES = 10_000_000  # guards against a typo such as samples = 1e9 hanging expand()
#: one parameter value, as the trial's command line gets it (a 52 MB string became a
#: 945 MB database and "Argument list too long")
MAX_VALUE_BYTES = 64 * 1024
DIST_KINDS = ("uniform", "loguniform", "randint", "choice")


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
    size = len(render_value(value).encode("utf-8"))
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


# ---------------------------------------------------------------- placeholders


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
