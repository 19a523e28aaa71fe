"""The space an adaptive method searches: ``[search.space]`` plus the ``[params]`` axes.

Scalars in ``[params]`` are fixed, lists are categorical choices, ``[search.space]``
entries are the distributions. A conditional ``[params]`` table (``[params.optimizer.sgd]``,
``[params.optimizer.adam]``) is a tree: its branch is a choice, and the chosen branch's
own params exist only in trials that took it. ``walk`` lays that tree out define-by-run,
as Optuna does: choose the branch, then that branch's params, in file order. Each
dimension has a *key* unique in the whole tree -- its name at the top level,
``optimizer=sgd/momentum`` inside a branch -- so two branches may both have an ``lr``
with different ranges. Methods that only know a flat space (``cem``, plugins keeping
the base ``check``) refuse conditional sweeps with a clear error (:meth:`Space.check`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clusterd.spec.model import Distribution, SweepSpec

__all__ = ["Space", "in_range", "same_value"]

#: ``choose(key, dist)`` -> a value of ``dist`` (one of its ``args`` for a choice)
Chooser = Callable[[str, Distribution], Any]


@dataclass(frozen=True)
class Space:
    dims: dict[str, Distribution]  # in file order: top-level [params] axes, then [search.space]
    fixed: dict[str, Any]
    order: tuple[str, ...] = ()  # every top-level name in file order
    #: the [params] tree (``spec.params``); branches make it conditional
    tree: Mapping[str, Any] | None = None
    space: Mapping[str, Distribution] | None = None  # [search.space]

    @classmethod
    def from_spec(cls, spec: SweepSpec) -> Space:
        dims: dict[str, Distribution] = {}
        fixed: dict[str, Any] = {}
        for name, node in spec.params.items():
            if isinstance(node, list):
                dims[name] = Distribution("choice", tuple(node))
            elif not isinstance(node, dict):
                fixed[name] = node
        dims.update(spec.search.space)
        order = (*spec.params, *spec.search.space)
        return cls(dims=dims, fixed=fixed, order=order, tree=spec.params, space=spec.search.space)

    @property
    def conditional(self) -> bool:
        return any(isinstance(node, dict) for node in (self.tree or {}).values())

    @staticmethod
    def check(spec: SweepSpec) -> str | None:
        """The refusal of a method that searches only flat spaces (the base ``check``)."""
        branches = [name for name, node in spec.params.items() if isinstance(node, dict)]
        if branches:
            return (
                f"method {spec.search.method!r} cannot search conditional [params] "
                f'({", ".join(branches)}); use method = "tpe" or "optuna" (they choose the '
                'branch, then its params), "grid" or "random", or flatten them'
            )
        return None  # a missing [metric] is refused by the parser already

    def complete(self, drawn: dict[str, Any]) -> dict[str, Any]:
        """A trial's params: fixed and drawn values, in the sweep file's key order."""
        values = {**self.fixed, **drawn}
        return {name: values[name] for name in self.order if name in values}

    # -- the tree, define-by-run ----------------------------------------------------

    def walk(self, choose: Chooser) -> dict[str, Any]:
        """A trial's params, asking ``choose`` for each dimension the trial has, in order:
        the top-level axes and branch choices, each chosen branch's own, then
        ``[search.space]``. Keys are in the order ``expand`` gives a grid trial's."""
        params: dict[str, Any] = {}
        _walk_level(self.tree or {}, "", choose, params)
        for name, dist in (self.space or {}).items():
            params[name] = choose(name, dist)
        return params

    def dims_of(self, params: Mapping[str, Any]) -> dict[str, tuple[Distribution, Any]]:
        """The dimensions a trial with ``params`` took, ``key -> (distribution, value)``.

        Used to replay a trial into a rebuilt study. A value the space no longer has (the
        sweep file was edited for ``--extend``) is left out, and so are the params of a
        branch no longer there."""
        out: dict[str, tuple[Distribution, Any]] = {}

        def take(key: str, dist: Distribution) -> Any:
            name = key.rpartition("/")[2]
            if name not in params:
                raise _Absent
            value = params[name]
            if dist.kind == "choice":
                if not any(same_value(value, v) for v in dist.args):
                    raise _Absent
            elif not in_range(dist, value):
                raise _Absent
            out[key] = (dist, value)
            return value

        _walk_level(self.tree or {}, "", take, {}, skip_absent=True)
        for name, dist in (self.space or {}).items():
            with contextlib.suppress(_Absent):
                take(name, dist)
        return out


class _Absent(Exception):
    """A dimension the replayed trial does not have (or has a value outside)."""


def _walk_level(
    level: Mapping[str, Any],
    prefix: str,
    choose: Chooser,
    params: dict[str, Any],
    skip_absent: bool = False,
) -> None:
    for name, node in level.items():
        key = prefix + name
        try:
            if isinstance(node, list):
                params[name] = choose(key, Distribution("choice", tuple(node)))
            elif isinstance(node, dict):
                branch = choose(key, Distribution("choice", tuple(node)))
                params[name] = branch
                _walk_level(node[branch], f"{key}={branch}/", choose, params, skip_absent)
            else:
                params[name] = node
        except _Absent:
            if not skip_absent:
                raise


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type: a choice of 1 is not the choice 1.0 or True."""
    return bool(a == b) and type(a) is type(b)


def in_range(dist: Distribution, value: Any) -> bool:
    """A number inside a numeric distribution's bounds (an int for ``randint``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if dist.kind == "randint" and not isinstance(value, int):
        return False
    lo, hi = dist.args
    return bool(lo <= value <= hi)
