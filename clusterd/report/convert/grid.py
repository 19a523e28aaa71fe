"""A foreign grid (axes, zipped axes, derived params) as clusterd's ``[params]`` tree.

Both converters describe what the original tool runs as an ordered list of axes (one
param's values, or several params' values zipped: cluster_utils' tuple params) plus
fixed params, any of which may be a ``"{…}"`` template (``safe_expr``). clusterd's
``[params]`` has plain axes and conditional branches only, so:

- an axis nothing depends on stays a list axis;
- a fixed param that reads only other fixed params is computed here, once;
- axes that must vary together -- a zipped axis, or the axes a derived param (``x =
  "{y / 3}"``) or a templated axis value reads -- become one *group*: a conditional
  param named ``_zipN`` whose branches are the group's combinations, each setting the
  group's params (and the derived ones) to that combination's values. A group spans
  the axes between its first and last member too, so trials keep the original order
  (the product of the axes in file order, the last varying fastest).

The branch names are readable (``fn_args.x=3.0,fn_args.y=0.1``) and unique; the
``_zipN`` params are helper params that the original tool did not have
(``Conversion.helper_params``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusterd.report.convert.safe_expr import (
    Template,
    UnsafeExpression,
    has_fields,
    parse_template,
    references,
    render,
)

__all__ = ["Axis", "GridError", "build_params"]

#: combinations one group may have (they are written out as branches)
MAX_GROUP = 10_000


class GridError(ValueError):
    """A problem with one key of the source: ``key`` names it, ``message`` says what."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Axis:
    names: tuple[str, ...]  # one name, or several zipped
    values: list[Any]  # per value: the param's value, or a list of one per name (zipped)
    where: str  # the source key, for messages

    @property
    def zipped(self) -> bool:
        return len(self.names) > 1


@dataclass
class _Templ:
    template: Template
    refs: set[str]


def _maybe_template(where: str, v: Any) -> Any:
    if isinstance(v, str) and has_fields(v):
        try:
            t = parse_template(v)
        except UnsafeExpression as exc:
            raise GridError(where, f"refused expression: {exc}") from None
        return _Templ(t, references(t))
    return v


def build_params(
    axes: list[Axis], fixed: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The ``[params]`` tree (axes in order, then the fixed params), and the helper
    params it adds. GridError names the key of anything it cannot express."""
    names: dict[str, str] = {}
    for axis in axes:
        for name in axis.names:
            if name in names:
                raise GridError(axis.where, f"param {name!r} is set twice (also {names[name]})")
            names[name] = axis.where
        if not axis.values:
            raise GridError(axis.where, "expected a non-empty list of values")
        if axis.zipped:
            for j, v in enumerate(axis.values):
                if not isinstance(v, list) or len(v) != len(axis.names):
                    raise GridError(
                        f"{axis.where}.values[{j}]",
                        f"expected a list of {len(axis.names)} values (one per name in "
                        f"{list(axis.names)}), got {json.dumps(v)}",
                    )
    for name in fixed:
        if name in names:
            raise GridError(f"fixed {name}", f"param {name!r} is also swept ({names[name]})")
    axis_of = {n: i for i, a in enumerate(axes) for n in a.names}

    # templates: fixed params and axis values
    ftempl = {n: _maybe_template(n, v) for n, v in fixed.items()}
    avalues: list[list[Any]] = [
        [_values_template(a, j, v) for j, v in enumerate(a.values)] for a in axes
    ]
    known = set(axis_of) | set(fixed)

    def check_refs(where: str, refs: set[str]) -> None:
        for r in refs:
            if r not in known:
                close = [k for k in known if k.startswith(r + ".")]
                hint = f" (a namespace of {len(close)} params: name one)" if close else ""
                raise GridError(where, f"the expression reads {r!r}, which is no param{hint}")

    for n, v in ftempl.items():
        if isinstance(v, _Templ):
            check_refs(n, v.refs)

    # which axes each fixed param depends on (transitively through other fixed params)
    deps: dict[str, set[int]] = {}

    def depends(name: str, stack: tuple[str, ...]) -> set[int]:
        if name in axis_of:
            return {axis_of[name]}
        if name in deps:
            return deps[name]
        if name in stack:
            raise GridError(
                name, "the expressions read each other in a cycle: " + " -> ".join([*stack, name])
            )
        v = ftempl[name]
        out: set[int] = set()
        if isinstance(v, _Templ):
            for r in v.refs:
                out |= depends(r, (*stack, name))
        deps[name] = out
        return out

    for n in ftempl:
        depends(n, ())

    # union the axes that must vary together
    parent = list(range(len(axes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(group: set[int]) -> None:
        first = min(group)
        for j in range(first, max(group) + 1):  # the span keeps the trials' order
            parent[find(j)] = find(first)

    for d in deps.values():
        if len(d) > 1:
            union(d)
    for i, vals in enumerate(avalues):
        for j, v in enumerate(vals):
            if isinstance(v, _Templ):
                check_refs(f"{axes[i].where}.values[{j}]", v.refs)
                dep = {i}
                for r in v.refs:
                    dep |= depends(r, ())
                union(dep)
    changed = True
    while changed:  # spans may overlap after unions: merge until each group is contiguous
        changed = False
        groups: dict[int, list[int]] = {}
        for i in range(len(axes)):
            groups.setdefault(find(i), []).append(i)
        for members in groups.values():
            if members != list(range(members[0], members[-1] + 1)):
                union(set(members))
                changed = True

    groups = {}
    for i in range(len(axes)):
        groups.setdefault(find(i), []).append(i)
    constants = _constants(ftempl, deps, env)
    tree: dict[str, Any] = {}
    helpers: list[str] = []
    derived_by_group: dict[int, list[str]] = {}
    for n, d in deps.items():
        if d:
            derived_by_group.setdefault(find(min(d)), []).append(n)
    for root in sorted(groups, key=lambda r: groups[r][0]):
        members = groups[root]
        derived = [n for n in ftempl if n in derived_by_group.get(root, [])]
        simple = (
            len(members) == 1
            and not axes[members[0]].zipped
            and not derived
            and not any(isinstance(v, _Templ) for v in avalues[members[0]])
        )
        if simple:
            axis = axes[members[0]]
            tree[axis.names[0]] = [_copy(v) for v in axis.values]
            continue
        name = _helper_name(len(helpers), known)
        helpers.append(name)
        tree[name] = _group(
            [axes[i] for i in members],
            [avalues[i] for i in members],
            derived,
            ftempl,
            constants,
            env,
        )
    for n in fixed:
        if not deps[n]:
            value = constants[n]
            tree[n] = [value] if isinstance(value, list) else value
    return tree, helpers


def _values_template(axis: Axis, j: int, v: Any) -> Any:
    where = f"{axis.where}.values[{j}]"
    if axis.zipped and isinstance(v, list):
        if any(isinstance(x, str) and has_fields(x) for x in v):
            raise GridError(where, "expressions inside zipped values are not converted")
        return v
    return _maybe_template(where, v)


def _constants(
    ftempl: Mapping[str, Any], deps: Mapping[str, set[int]], env: Mapping[str, str]
) -> dict[str, Any]:
    """The fixed params that read no axis, evaluated in dependency order."""
    out: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in out:
            v = ftempl[name]
            out[name] = _render(name, v, get, env) if isinstance(v, _Templ) else v
        return out[name]

    for n in ftempl:
        if not deps[n]:
            get(n)
    return out


def _render(where: str, t: _Templ, lookup: Any, env: Mapping[str, str]) -> Any:
    try:
        value = render(t.template, lookup, env)
    except UnsafeExpression as exc:
        raise GridError(where, f"refused expression: {exc}") from None
    if value is None or isinstance(value, dict):
        raise GridError(where, f"the expression gives {value!r}, which a param cannot hold")
    return value


def _group(
    axes: list[Axis],
    avalues: list[list[Any]],
    derived: list[str],
    ftempl: Mapping[str, Any],
    constants: Mapping[str, Any],
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The branches of one group: every combination of its axes, in product order."""
    size = 1
    for a in axes:
        size *= len(a.values)
    if size > MAX_GROUP:
        raise GridError(
            axes[0].where,
            f"these axes vary together ({', '.join(a.where for a in axes)}): {size:,} "
            f"combinations, more than the {MAX_GROUP:,} written out as branches",
        )
    branches: dict[str, Any] = {}
    for combo in itertools.product(*[range(len(a.values)) for a in axes]):
        row: dict[str, Any] = {}
        pending: list[tuple[str, str, _Templ]] = []
        for a, vals, j in zip(axes, avalues, combo, strict=True):
            v = vals[j]
            if a.zipped:
                row.update(zip(a.names, v, strict=True))
            elif isinstance(v, _Templ):
                pending.append((a.names[0], f"{a.where}.values[{j}]", v))
            else:
                row[a.names[0]] = v
        values: dict[str, Any] = {}

        def get(name: str, _row: dict[str, Any] = row, _values: dict[str, Any] = values) -> Any:
            if name in _row:
                return _row[name]
            if name in constants:
                return constants[name]
            if name not in _values:
                t = ftempl[name]
                _values[name] = _render(name, t, get, env) if isinstance(t, _Templ) else t
            return _values[name]

        for name, where, t in pending:
            row[name] = _render(where, t, get, env)
        for n in derived:
            values[n] = get(n)
        row.update({n: values[n] for n in derived})
        branch = {k: [v] if isinstance(v, list) else v for k, v in row.items()}
        label = ",".join(f"{k}={json.dumps(v)}" for k, v in row.items() if k not in derived)
        label = label or "-"
        unique, copy = label, 2
        while unique in branches:
            unique, copy = f"{label} ({copy})", copy + 1
        branches[unique] = branch
    return branches


def _helper_name(i: int, taken: set[str]) -> str:
    name = f"_zip{i}"
    while name in taken:
        name = "_" + name
    return name


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v
