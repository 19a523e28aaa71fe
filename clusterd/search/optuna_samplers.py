"""Optuna's samplers (TPE and the others) over an in-memory study rebuilt from our DB.

Optuna is only the proposal engine here: its study lives in memory, is rebuilt at
daemon start from the sweep's trials (ended ones with their values, in-flight ones as
running), and is never stored -- our database stays the only record (DESIGN.md:
never a second database). Each proposal uses a sampler seeded from ``(seed, index)``,
so a restarted daemon with the same results proposes the same trial -- whatever order
they ended in, since Optuna's trial numbers follow our trial indices (asked in index
order live; rebuilt in index order at start), not the order results arrive in.

``method = "tpe"`` is ``TPESampler``; ``method = "optuna"`` takes the sampler's class
name from ``[search.options] sampler = "..."`` (``GPSampler``, ``QMCSampler``,
``CmaEsSampler`` where its dependencies are installed, ...). Every other option is
passed to the sampler's constructor. For TPE, ``constant_liar`` defaults to true, so
trials proposed while others run are spread out rather than piled on one spot.

Needs the ``optuna`` extra (``pip install 'clusterd[optuna]'``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from clusterd.search.base import Result, Searcher
from clusterd.spec.model import Distribution, SweepSpec

__all__ = ["OptunaSearcher", "TpeSearcher"]

#: trial states as Optuna knows them
_STATES = {"completed": "COMPLETE", "stopped": "PRUNED"}


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaSearcher(Searcher):
    name = "optuna"

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        optuna = self._optuna = _optuna()
        options = dict(spec.search.options)
        self._sampler_class = getattr(optuna.samplers, self.sampler_name(options))
        options.pop("sampler", None)
        self._sampler_options = self.default_options() | options
        direction = "maximize" if self.mode == "max" else "minimize"
        self._study = optuna.create_study(direction=direction)
        self._dists = {n: _distribution(optuna, d) for n, d in self.space.dims.items()}
        self._numbers: dict[int, int] = {}  # our index -> optuna trial number

    @classmethod
    def sampler_name(cls, options: dict[str, Any]) -> str:
        return str(options.get("sampler", ""))

    def default_options(self) -> dict[str, Any]:
        return {}

    @classmethod
    def check(cls, spec: SweepSpec) -> str | None:
        if importlib.util.find_spec("optuna") is None:
            return (
                f"method {spec.search.method!r} uses Optuna, which is not installed in the "
                f"daemon's environment; pip install 'clusterd[optuna]' and restart the daemon"
            )
        name = cls.sampler_name(spec.search.options)
        samplers = _optuna().samplers
        if not name.endswith("Sampler") or not isinstance(getattr(samplers, name, None), type):
            known = ", ".join(n for n in dir(samplers) if n.endswith("Sampler"))
            return f"search.options.sampler: expected an Optuna sampler ({known}), got {name!r}"
        return super().check(spec)

    def ask(self, index: int) -> dict[str, Any] | None:
        seed = (self.seed * 1_000_003 + index) % 2**32
        self._study.sampler = self._sampler_class(seed=seed, **self._sampler_options)
        trial = self._study.ask(self._dists)
        self._numbers[index] = trial.number
        return self.space.complete(self._values(trial.params))

    def running(self, index: int, params: dict[str, Any]) -> None:
        optuna = self._optuna
        frozen = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            params=self._internal(params),
            distributions=self._dists,
        )
        self._study.add_trial(frozen)
        self._numbers[index] = len(self._study.get_trials(deepcopy=False)) - 1

    def tell(self, result: Result) -> None:
        optuna = self._optuna
        state = getattr(optuna.trial.TrialState, _STATES.get(result.state, "FAIL"))
        if state == optuna.trial.TrialState.COMPLETE and result.value is None:
            state = optuna.trial.TrialState.FAIL  # exited 0 without reporting the metric
        number = self._numbers.pop(result.index, None)
        if number is None:  # ended before this daemon started: add it whole
            intermediate = {}
            if result.value is not None and result.step is not None:
                intermediate = {result.step: result.value}
            frozen = optuna.trial.create_trial(
                state=state,
                value=result.value if state == optuna.trial.TrialState.COMPLETE else None,
                params=self._internal(result.params),
                distributions=self._dists,
                intermediate_values=intermediate,
            )
            self._study.add_trial(frozen)
            return
        value = result.value if state == optuna.trial.TrialState.COMPLETE else None
        self._study.tell(number, value, state=state)

    def _internal(self, params: dict[str, Any]) -> dict[str, Any]:
        """Our params -> Optuna's (categoricals as indices: Optuna can't hold list values)."""
        out: dict[str, Any] = {}
        for name, dist in self.space.dims.items():
            value = params.get(name)
            if dist.kind == "choice":
                out[name] = next(
                    (i for i, v in enumerate(dist.args) if v == value and type(v) is type(value)),
                    0,
                )
            else:
                out[name] = value
        return out

    def _values(self, internal: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, dist in self.space.dims.items():
            value = internal[name]
            if dist.kind == "choice":
                value = dist.args[value]
                value = list(value) if isinstance(value, list) else value
            out[name] = value
        return out


class TpeSearcher(OptunaSearcher):
    name = "tpe"

    @classmethod
    def sampler_name(cls, options: dict[str, Any]) -> str:
        return "TPESampler"

    def default_options(self) -> dict[str, Any]:
        return {"constant_liar": True}


def _distribution(optuna: Any, dist: Distribution) -> Any:
    d = optuna.distributions
    if dist.kind == "choice":
        return d.CategoricalDistribution(list(range(len(dist.args))))
    lo, hi = dist.args
    if dist.kind == "randint":
        return d.IntDistribution(lo, hi)
    return d.FloatDistribution(lo, hi, log=dist.kind == "loguniform")
