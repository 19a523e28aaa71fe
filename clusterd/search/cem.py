"""The cross-entropy method, as cluster_utils' ``hp_optimization`` offers it, natively.

Trials come in generations of ``population`` (trial ``i`` is in generation
``i // population``). Generation 0 samples the space's own distributions. Generation
``g`` samples a fitted distribution: per numeric dimension a normal (over the log for
``loguniform``) with the mean and standard deviation of the elite trials -- the best
``elite_fraction`` of all trials of earlier generations that reported a value --
blended with generation ``g - 1``'s by ``smoothing``; per categorical dimension the
elites' frequencies, blended likewise. A generation starts once the previous one has
ended entirely (as cluster_utils' iterations do), which makes the proposals a function
of the seed and the results only: a restarted daemon proposes exactly the same trials.

Options (``[search.options]``): ``population`` (default 10), ``elite_fraction``
(0.2), ``smoothing`` (0.7, the weight of the new fit), ``min_std`` (0.02, as a
fraction of a dimension's range, so the search never collapses to a point).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from clusterd.search.base import Result, Searcher
from clusterd.spec.model import Distribution, SweepSpec

__all__ = ["CemSearcher"]


@dataclass
class _Normal:
    mean: float
    std: float


@dataclass
class _Generation:
    """The sampling distribution of one generation; None entries mean "the prior"."""

    normals: dict[str, _Normal | None]
    weights: dict[str, list[float] | None]


class CemSearcher(Searcher):
    name = "cem"

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        self.population = int(self.option("population", 10))
        self.elite_fraction = float(self.option("elite_fraction", 0.2))
        self.smoothing = float(self.option("smoothing", 0.7))
        self.min_std = float(self.option("min_std", 0.02))
        self._results: dict[int, Result] = {}
        self._generations: list[_Generation] = [
            _Generation(
                normals={n: None for n, d in self.space.dims.items() if d.kind != "choice"},
                weights={n: None for n, d in self.space.dims.items() if d.kind == "choice"},
            )
        ]

    @classmethod
    def check(cls, spec: SweepSpec) -> str | None:
        options = spec.search.options
        checks = (
            ("population", lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
            ("elite_fraction", lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
            ("smoothing", lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
            ("min_std", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
        )
        for key, ok, want in checks:
            if key in options and not ok(options[key]):
                return f"search.options.{key}: expected {want}, got {options[key]!r}"
        unknown = sorted(set(options) - {k for k, _, _ in checks})
        if unknown:
            return f"search.options: unknown key(s) for method 'cem': {', '.join(unknown)}"
        return super().check(spec)

    def ask(self, index: int) -> dict[str, Any] | None:
        generation = self._generation(index // self.population)
        if generation is None:
            return None
        rng = random.Random(f"clusterd-cem/{self.seed}/{index}")
        drawn: dict[str, Any] = {}
        for name, dist in self.space.dims.items():
            if dist.kind == "choice":
                drawn[name] = _copy(dist.args[_pick(rng, generation.weights[name], dist)])
            else:
                drawn[name] = _draw(rng, generation.normals[name], dist)
        return self.space.complete(drawn)

    def tell(self, result: Result) -> None:
        self._results[result.index] = result

    def _generation(self, g: int) -> _Generation | None:
        """Generation ``g``'s distribution, fitted once every earlier trial has ended."""
        while len(self._generations) <= g:
            ready = len(self._generations) * self.population
            if any(i not in self._results for i in range(ready)):
                return None
            self._generations.append(self._fit(self._generations[-1], ready))
        return self._generations[g]

    def _fit(self, previous: _Generation, upto: int) -> _Generation:
        scored = [(r.value, r) for i in range(upto) if (r := self._results[i]).value is not None]
        if not scored:
            return previous
        sign = 1.0 if self.mode == "min" else -1.0
        scored.sort(key=lambda vr: (sign * vr[0], vr[1].index))
        elites = [r for _, r in scored[: max(1, math.ceil(self.elite_fraction * len(scored)))]]
        a = self.smoothing
        normals: dict[str, _Normal | None] = {}
        for name, prior_normal in previous.normals.items():
            dist = self.space.dims[name]
            xs = [_to_line(dist, r.params[name]) for r in elites]
            lo, hi = _line_bounds(dist)
            prior = prior_normal or _Normal((lo + hi) / 2, (hi - lo) / math.sqrt(12))
            mean = sum(xs) / len(xs)
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
            std = a * std + (1 - a) * prior.std
            normals[name] = _Normal(
                mean=a * mean + (1 - a) * prior.mean, std=max(std, self.min_std * (hi - lo))
            )
        weights: dict[str, list[float] | None] = {}
        for name, old_weights in previous.weights.items():
            values = self.space.dims[name].args
            n = len(values)
            counts = [0.0] * n
            for r in elites:
                counts[_index_of(values, r.params[name])] += 1
            prior_weights = old_weights or [1.0 / n] * n
            fresh = [c / len(elites) for c in counts]
            floor = self.min_std / n
            weights[name] = [
                max(a * f + (1 - a) * o, floor) for f, o in zip(fresh, prior_weights, strict=True)
            ]
        return _Generation(normals=normals, weights=weights)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _to_line(dist: Distribution, value: Any) -> float:
    return math.log(value) if dist.kind == "loguniform" else float(value)


def _line_bounds(dist: Distribution) -> tuple[float, float]:
    lo, hi = dist.args
    if dist.kind == "loguniform":
        return math.log(lo), math.log(hi)
    return float(lo), float(hi)


def _draw(rng: random.Random, normal: _Normal | None, dist: Distribution) -> Any:
    lo, hi = _line_bounds(dist)
    if normal is None and dist.kind == "randint":  # generation 0: the prior itself
        return dist.args[0] + int(rng.random() * (dist.args[1] - dist.args[0] + 1))
    if normal is None:
        x = lo + (hi - lo) * rng.random()
    else:
        for _ in range(20):  # a truncated normal, by rejection (then clipped)
            x = rng.gauss(normal.mean, normal.std)
            if lo <= x <= hi:
                break
        x = min(max(x, lo), hi)
    if dist.kind == "loguniform":
        return min(max(math.exp(x), dist.args[0]), dist.args[1])
    if dist.kind == "randint":
        return min(max(round(x), dist.args[0]), dist.args[1])
    return x


def _pick(rng: random.Random, weights: list[float] | None, dist: Distribution) -> int:
    n = len(dist.args)
    if weights is None:
        return int(rng.random() * n)
    return rng.choices(range(n), weights=weights)[0]


def _index_of(values: tuple[Any, ...], value: Any) -> int:
    for i, v in enumerate(values):
        if v == value and type(v) is type(value):
            return i
    return 0  # a value no longer in the space (the sweep file was edited): count as the first


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
