"""Turn a validated ``SweepSpec`` into its trials' params (stdlib only).

A trial's index is its position in ``expand(spec)``, so expansion is fully
deterministic:

- ``grid``: the cartesian product of ``[params]`` in file key order, the last
  axis varying fastest; a conditional param takes its branches in file order,
  each branch contributing its own sub-grid (flattened into the trial).
- ``random``: ``samples`` trials drawn from one ``random.Random(seed)`` stream:
  per trial, each ``[params]`` axis and conditional branch uniformly (then the
  chosen branch's sub-grid likewise), scalars fixed, then one draw per
  ``[search.space]`` entry in file order. Trial ``i`` never depends on
  ``samples``, so a larger ``samples`` only appends (what ``--extend`` needs).
  Draws use only ``Random.random()``, whose stream CPython keeps stable across
  versions, so a sweep re-expands identically after an upgrade.
- any other method (tpe, cem, ...) is adaptive: the daemon proposes trials as
  results arrive, so ``expand`` returns ``[]``.

Trials never share list objects, so a caller may mutate one without touching others.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from clusterd.errors import SpecError
from clusterd.spec.model import Distribution, SweepSpec

__all__ = ["check_trial_count", "count", "expand", "grid_count", "params_key"]

Trial = dict[str, Any]
Draw = Callable[[], Any]


def expand(spec: SweepSpec) -> list[Trial]:
    """The trials' params in index order; ``[]`` for adaptive search methods.

    SpecError, before anything is built, if the sweep plans more trials than its
    ``[limits] max_trials`` (see :func:`check_trial_count`)."""
    check_trial_count(spec)
    method = spec.search.method
    if method == "grid":
        return _detach(_grid(spec.params), spec.params)
    if method == "random":
        return _sample(spec.params, spec.search.space, spec.search.samples or 0, spec.search.seed)
    return []


def count(spec: SweepSpec) -> int:
    """How many trials the sweep plans, without building them.

    ``grid``: the grid's size (== ``len(expand(spec))``); otherwise ``samples``
    (for adaptive methods that is the planned total although ``expand`` gives ``[]``).
    """
    if spec.search.method == "grid":
        return grid_count(spec.params)
    return spec.search.samples or 0


def check_trial_count(spec: SweepSpec) -> int:
    """The planned trial count; SpecError if it is over ``[limits] max_trials``.

    From the count alone, so a 10 M-trial grid is refused in microseconds, never built
    (a 1 M-trial grid took 22 s and 1.2 GB of the daemon; 10 M died with MemoryError).
    """
    planned = count(spec)
    cap = spec.limits.max_trials
    if planned > cap:
        sampled = spec.search.method != "grid"
        raise SpecError(
            spec.source,
            "search.samples" if sampled else "params",
            f"expected at most {cap:,} trials ([limits] max_trials), got {planned:,}; "
            f"use {'fewer samples' if sampled else 'a smaller grid'} or raise "
            "[limits] max_trials",
        )
    return planned


def grid_count(params: Mapping[str, Any]) -> int:
    """Size of the grid of a ``[params]`` tree: product of axes, summed over branches."""
    total = 1
    for node in params.values():
        if isinstance(node, list):
            total *= len(node)
        elif isinstance(node, dict):
            total *= sum(grid_count(branch) for branch in node.values())
    return total


def params_key(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a trial's params (sorted keys, no spaces): equal params, equal keys.

    ``1`` and ``1.0`` give different keys on purpose: the trial sees different values.
    """
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)


# ---------------------------------------------------------------- grid


def _grid(tree: Mapping[str, Any]) -> list[Trial]:
    """Cartesian product, built factor by factor so the newest factor varies fastest."""
    rows: list[Trial] = [{}]
    for key, node in tree.items():
        if isinstance(node, list):
            options = [{key: value} for value in node]
        elif isinstance(node, dict):
            options = [{key: name, **sub} for name, branch in node.items() for sub in _grid(branch)]
        else:
            options = [{key: node}]
        rows = [{**row, **option} for row in rows for option in options]
    return rows


def _detach(rows: list[Trial], tree: Mapping[str, Any]) -> list[Trial]:
    """Give every trial its own copies of list values (the grid shares them)."""
    if not _has_list_values(tree):
        return rows
    return [{k: list(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]


def _has_list_values(tree: Mapping[str, Any]) -> bool:
    """Whether any axis of the tree (or of its branches) has list-valued elements."""
    for node in tree.values():
        if isinstance(node, list) and any(isinstance(v, list) for v in node):
            return True
        if isinstance(node, dict) and any(_has_list_values(b) for b in node.values()):
            return True
    return False


# ---------------------------------------------------------------- random


def _sample(
    tree: Mapping[str, Any], space: Mapping[str, Distribution], samples: int, seed: int
) -> list[Trial]:
    rng = random.Random(seed)
    plan = _compile(tree)
    draws = [(name, _drawer(dist, rng)) for name, dist in space.items()]
    trials: list[Trial] = []
    for _ in range(samples):
        trial: Trial = {}
        _pick(plan, rng.random, trial)
        for name, draw in draws:
            trial[name] = draw()
        trials.append(trial)
    return trials


# A compiled [params] level: (key, fixed value | axis values | branches, kind).
_FIXED, _AXIS, _BRANCH = 0, 1, 2
Plan = list[tuple[str, Any, int]]


def _compile(tree: Mapping[str, Any]) -> Plan:
    plan: Plan = []
    for key, node in tree.items():
        if isinstance(node, list):
            plan.append((key, node, _AXIS))
        elif isinstance(node, dict):
            plan.append((key, [(name, _compile(sub)) for name, sub in node.items()], _BRANCH))
        else:
            plan.append((key, node, _FIXED))
    return plan


def _pick(plan: Plan, rnd: Callable[[], float], trial: Trial) -> None:
    """One uniform draw per axis and per conditional (int(random() * n) < n for n <= 2**53)."""
    for key, node, kind in plan:
        if kind == _AXIS:
            value = node[int(rnd() * len(node))]
            trial[key] = list(value) if isinstance(value, list) else value
        elif kind == _BRANCH:
            name, sub = node[int(rnd() * len(node))]
            trial[key] = name
            _pick(sub, rnd, trial)
        else:
            trial[key] = node


def _drawer(dist: Distribution, rng: random.Random) -> Draw:
    """A zero-argument sampler for one [search.space] entry."""
    rnd = rng.random
    if dist.kind == "choice":
        values = dist.args
        n = len(values)

        def choice() -> Any:
            value = values[int(rnd() * n)]
            return list(value) if isinstance(value, list) else value

        return choice
    lo, hi = dist.args
    if dist.kind == "randint":  # both ends inclusive
        span = hi - lo + 1
        if span > 2**53:
            return lambda: rng.randrange(lo, hi + 1)
        return lambda: lo + int(rnd() * span)
    if dist.kind == "loguniform":
        log_lo, log_width, exp = math.log(lo), math.log(hi) - math.log(lo), math.exp

        def loguniform() -> float:
            value = exp(log_lo + log_width * rnd())
            return lo if value < lo else hi if value > hi else value  # exp(log(x)) may round

        return loguniform
    width = hi - lo
    if not math.isfinite(width):  # bounds near +-1.7e308: interpolate without overflowing

        def wide() -> float:
            r = rnd()
            return lo * (1 - r) + hi * r

        return wide

    def uniform() -> float:
        value = lo + width * rnd()
        return hi if value > hi else value

    return uniform
