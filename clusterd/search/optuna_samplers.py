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

Conditional ``[params]`` (``[params.optimizer.sgd]``, ``[params.optimizer.adam]``) are
searched define-by-run, as in Optuna itself: each proposal suggests the branch, then
that branch's own params (``Space.walk``; each under a key unique in the tree, so two
branches may both have an ``lr``). TPE samples each dimension from the trials that
took it; samplers with a joint model (GP, CMA-ES, QMC) model the dimensions every
trial has and sample the branch-only ones independently, as Optuna does. A restarted
daemon replays each trial with only the dimensions of its branch.

Needs the ``optuna`` extra (``pip install 'clusterd[optuna]'``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from clusterd.search.base import Result, Searcher
from clusterd.search.space import same_value
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
        return None  # conditional [params] too: ``ask`` is define-by-run

    def ask(self, index: int) -> dict[str, Any] | None:
        seed = (self.seed * 1_000_003 + index) % 2**32
        self._study.sampler = self._sampler_class(seed=seed, **self._sampler_options)
        trial = self._study.ask()  # define-by-run: a conditional space's branches
        params = self.space.walk(lambda key, dist: _suggest(trial, key, dist))
        self._numbers[index] = trial.number
        return params

    def running(self, index: int, params: dict[str, Any]) -> None:
        optuna = self._optuna
        frozen = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, **self._replayed(params)
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
                intermediate_values=intermediate,
                **self._replayed(result.params),
            )
            self._study.add_trial(frozen)
            return
        value = result.value if state == optuna.trial.TrialState.COMPLETE else None
        self._study.tell(number, value, state=state)

    def _replayed(self, params: dict[str, Any]) -> dict[str, Any]:
        """Our params -> Optuna's ``params`` and ``distributions`` for ``create_trial``:
        the dimensions this trial took (one branch of a conditional space), categoricals
        as indices (Optuna can't hold list values)."""
        internal: dict[str, Any] = {}
        dists: dict[str, Any] = {}
        for key, (dist, value) in self.space.dims_of(params).items():
            dists[key] = _distribution(self._optuna, dist)
            if dist.kind == "choice":
                value = next(i for i, v in enumerate(dist.args) if same_value(v, value))
            internal[key] = value
        return {"params": internal, "distributions": dists}


class TpeSearcher(OptunaSearcher):
    name = "tpe"

    @classmethod
    def sampler_name(cls, options: dict[str, Any]) -> str:
        return "TPESampler"

    def default_options(self) -> dict[str, Any]:
        return {"constant_liar": True}


def _suggest(trial: Any, key: str, dist: Distribution) -> Any:
    """One dimension's value from an Optuna trial (a choice's index back to its value)."""
    if dist.kind == "choice":
        value = dist.args[trial.suggest_categorical(key, list(range(len(dist.args))))]
        return list(value) if isinstance(value, list) else value
    lo, hi = dist.args
    if dist.kind == "randint":
        return trial.suggest_int(key, lo, hi)
    return trial.suggest_float(key, lo, hi, log=dist.kind == "loguniform")


def _distribution(optuna: Any, dist: Distribution) -> Any:
    d = optuna.distributions
    if dist.kind == "choice":
        return d.CategoricalDistribution(list(range(len(dist.args))))
    lo, hi = dist.args
    if dist.kind == "randint":
        return d.IntDistribution(lo, hi)
    return d.FloatDistribution(lo, hi, log=dist.kind == "loguniform")
