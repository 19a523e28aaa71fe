"""``method = "nevergrad"``: any of nevergrad's optimizers, ask/tell, rebuilt from the database.

cluster_utils' ``hp_optimization`` runs nevergrad's TwoPointsDE, OnePlusOne, CMA, TBPSA,
PSO or RandomSearch; ``[search.options] optimizer = "CMA"`` picks one (any name of
``nevergrad.optimizers.registry``; default ``"NGOpt"``, nevergrad's own choice for the
budget, the dimension and ``max_concurrent``). The budget is ``samples``.

Nevergrad's optimizers keep state that depends on the order of every ask and tell, and
their pickles are not stable across versions, so nothing of theirs is stored: the
database stays the only record (DESIGN.md). A proposal is a function of the seed, the
trial's index, the trials that ended with a value and those still in flight -- not of
the order results arrived in -- so a restarted daemon proposes exactly what the live
one would have:

- a *base* optimizer (seeded with ``seed``) has been told the ended trials of the
  longest run of indices ``0..p-1`` that have all ended, in index order: each one
  through ``suggest`` + ``ask`` + ``tell`` (nevergrad's own way to tell a point it did
  not propose), so optimizers that count their asks see every trial;
- ``ask(k)`` copies the base, tells the copy the trials ended beyond ``p`` (index
  order), asks the copy once for each trial in flight (suggesting its params: the
  optimizer knows those points are taken), reseeds it from ``(seed, k)`` and asks.

The base only ever moves forward, so the cost of a proposal is one copy (tens of ms)
plus the trials ended out of order and in flight (at most about ``max_concurrent``).
Failed trials and trials without a value are not told (nevergrad has no "failed").
A conditional ``[params]`` is refused (nevergrad's spaces here are flat).

Needs the ``nevergrad`` extra (``pip install 'clusterd[nevergrad]'``).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings
import zlib
from typing import Any

from clusterd.search.base import Result, Searcher
from clusterd.search.space import in_range, same_value
from clusterd.spec.model import SweepSpec

__all__ = ["NevergradSearcher"]

DEFAULT_OPTIMIZER = "NGOpt"
OPTIONS = ("optimizer",)
#: trial states whose value the optimizer is told
_TOLD_STATES = ("completed", "stopped")


def _nevergrad() -> Any:
    import nevergrad

    return nevergrad


class NevergradSearcher(Searcher):
    name = "nevergrad"

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        self._ng = _nevergrad()
        self._optimizer_name = str(self.option("optimizer", DEFAULT_OPTIMIZER))
        self._ended: dict[int, tuple[dict[str, Any], float] | None] = {}  # None: not told
        self._pending: dict[int, dict[str, Any]] = {}
        self._base = self._new_optimizer()
        self._prefix = 0  # trials 0.._prefix-1 are in the base

    @classmethod
    def check(cls, spec: SweepSpec) -> str | None:
        if importlib.util.find_spec("nevergrad") is None:
            return (
                "method 'nevergrad' uses the nevergrad package, which is not installed in the "
                "daemon's environment; pip install 'clusterd[nevergrad]' and restart the daemon"
            )
        options = spec.search.options
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            return (
                f"search.options: unknown key(s) for method 'nevergrad': {', '.join(unknown)} "
                f"(it uses: {', '.join(OPTIONS)})"
            )
        name = options.get("optimizer", DEFAULT_OPTIMIZER)
        registry = _nevergrad().optimizers.registry
        if not isinstance(name, str) or name not in registry:
            some = ", ".join(
                n
                for n in ("NGOpt", "CMA", "TwoPointsDE", "OnePlusOne", "PSO", "TBPSA")
                if n in registry
            )
            return (
                f"search.options.optimizer: expected a nevergrad optimizer name ({some}, ... "
                f"any of nevergrad.optimizers.registry), got {name!r}"
            )
        return super().check(spec)  # a conditional [params] is refused

    # -- the optimizer ------------------------------------------------------------

    def _parametrization(self) -> Any:
        p = self._ng.p
        dims: dict[str, Any] = {}
        for name, dist in self.space.dims.items():
            if dist.kind == "choice":
                dims[name] = p.Choice(list(range(len(dist.args))))
            elif dist.kind == "randint":
                lo, hi = dist.args
                dims[name] = p.Scalar(lower=lo, upper=hi).set_integer_casting()
            elif dist.kind == "loguniform":
                dims[name] = p.Log(lower=dist.args[0], upper=dist.args[1])
            else:
                dims[name] = p.Scalar(lower=dist.args[0], upper=dist.args[1])
        parametrization = p.Dict(**dims)
        parametrization.random_state.seed(self.seed % 2**32)
        return parametrization

    def _new_optimizer(self) -> Any:
        cls = self._ng.optimizers.registry[self._optimizer_name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(
                parametrization=self._parametrization(),
                budget=max(self.spec.search.samples or 1, 1),
                num_workers=self.spec.max_concurrent,
            )

    def _internal(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """A trial's params as the parametrization's value; None if one is outside the
        space (the sweep file was edited for ``--extend``): such a trial is not told."""
        value: dict[str, Any] = {}
        for name, dist in self.space.dims.items():
            if name not in params:
                return None
            v = params[name]
            if dist.kind == "choice":
                index = next((i for i, a in enumerate(dist.args) if same_value(a, v)), None)
                if index is None:
                    return None
                value[name] = index
            elif not in_range(dist, v):
                return None
            else:
                value[name] = v
        return value

    @staticmethod
    def _tell(opt: Any, value: dict[str, Any], loss: float | None) -> None:
        opt.suggest(value)
        candidate = opt.ask()
        if loss is not None:
            opt.tell(candidate, loss)

    def _advance(self) -> None:
        """Move the base over every trial that ended right after its prefix."""
        while self._prefix in self._ended:
            told = self._ended[self._prefix]
            if told is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._tell(self._base, *told)
            self._prefix += 1

    # -- the Searcher interface ---------------------------------------------------

    def ask(self, index: int) -> dict[str, Any] | None:
        self._advance()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = copy.deepcopy(self._base)
            for i in sorted(i for i in self._ended if i >= self._prefix):
                told = self._ended[i]
                if told is not None:
                    self._tell(opt, *told)
            for i in sorted(self._pending):
                if i < index and (value := self._internal(self._pending[i])) is not None:
                    self._tell(opt, value, None)
            opt.parametrization.random_state.seed(_seed(self.seed, index))
            candidate = opt.ask()
        drawn = self._external(candidate.value)
        self._pending[index] = drawn
        return self.space.complete(drawn)

    def _external(self, value: dict[str, Any]) -> dict[str, Any]:
        drawn: dict[str, Any] = {}
        for name, dist in self.space.dims.items():
            v = value[name]
            if dist.kind == "choice":
                chosen = dist.args[int(v)]
                drawn[name] = list(chosen) if isinstance(chosen, list) else chosen
            elif dist.kind == "randint":
                drawn[name] = min(max(int(v), dist.args[0]), dist.args[1])
            else:
                drawn[name] = min(max(float(v), float(dist.args[0])), float(dist.args[1]))
        return drawn

    def running(self, index: int, params: dict[str, Any]) -> None:
        self._pending[index] = params

    def tell(self, result: Result) -> None:
        self._pending.pop(result.index, None)
        value = self._internal(result.params)
        usable = (
            result.state in _TOLD_STATES
            and result.value is not None
            and math.isfinite(result.value)
            and value is not None
        )
        if usable:
            assert result.value is not None and value is not None
            loss = result.value if self.mode == "min" else -result.value
            self._ended[result.index] = (value, float(loss))
        else:
            self._ended[result.index] = None


def _seed(seed: int, index: int) -> int:
    return zlib.crc32(f"clusterd-nevergrad/{seed}/{index}".encode())
