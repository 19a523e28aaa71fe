"""Asynchronous successive halving (ASHA) and Hyperband as brackets of it.

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020):
rungs sit at ``min_steps * reduction_factor**k``. When a trial first reports a step at
or past a rung, its value there is recorded in the rung, and it continues only if that
value is in the top ``1/reduction_factor`` of all values recorded in the rung so far
(itself included; a rung with fewer than ``reduction_factor`` values promotes its
best). The decision is made once per rung and never revisited: that is what makes it
asynchronous -- no trial waits for a rung to fill up.

This is Optuna's ``SuccessiveHalvingPruner`` with ``min_resource = min_steps``,
``min_early_stopping_rate = 0`` and ``bootstrap_count = 0``, including its rule for
the promotion threshold, so the two agree decision for decision
(tests/stopping/test_optuna_crosscheck.py).

Hyperband runs several ASHA brackets, bracket ``b`` with its first rung at
``min_steps * reduction_factor**b``, and trial ``i`` in bracket ``i % brackets``
(Optuna picks brackets by a hash of the study name; ours is plain round robin, so it
is reproducible). Trials compete only within their bracket.
"""

from __future__ import annotations

import math
from bisect import insort

from clusterd.spec.model import EarlyStopping
from clusterd.stopping.base import Decision, StopRule, worse

__all__ = ["AshaRule", "HyperbandRule"]


class _Halving:
    """One ASHA bracket: rung values and each trial's next rung."""

    def __init__(self, first_rung: int, factor: int, mode: str) -> None:
        self.first_rung = first_rung
        self.factor = factor
        self.mode = mode
        self.rungs: list[list[float]] = []  # sorted values recorded per rung
        self.next_rung: dict[int, int] = {}

    def rung_step(self, k: int) -> int:
        return self.first_rung * self.factor**k

    def judge(self, rule: str, trial: int, step: int, value: float) -> Decision | None:
        k = self.next_rung.get(trial, 0)
        if k < 0:
            return None  # already stopped
        while step >= self.rung_step(k):
            if len(self.rungs) <= k:
                self.rungs.append([])
            rung = self.rungs[k]
            insort(rung, value)
            threshold = self._threshold(rung)
            if worse(value, threshold, self.mode):
                self.next_rung[trial] = -1
                keep = f"top 1/{self.factor}"
                return Decision(
                    rule=rule,
                    step=step,
                    value=value,
                    threshold=threshold,
                    reason=(
                        f"value {value:.6g} at rung {k} (step {self.rung_step(k)}) is not in "
                        f"the {keep} of the {len(rung)} trials that reached it "
                        f"(needed {threshold:.6g})"
                    ),
                )
            k += 1
        self.next_rung[trial] = k
        return None

    def _threshold(self, rung: list[float]) -> float:
        """The worst value still promoted: Optuna's ``_is_trial_promotable_to_next_rung``."""
        keep = max(len(rung) // self.factor, 1)
        return rung[keep - 1] if self.mode == "min" else rung[-keep]


class AshaRule(StopRule):
    name = "asha"
    options = ("reduction_factor",)

    def __init__(self, config: EarlyStopping, mode: str) -> None:
        super().__init__(config, mode)
        self.factor: int = self.option("reduction_factor", 3)
        self._bracket = _Halving(self.min_steps, self.factor, mode)
        self._last: dict[int, int] = {}

    def judge(self, trial: int, step: int, value: float) -> Decision | None:
        if step <= self._last.get(trial, -1):
            return None  # an earlier step re-reported after a resume
        self._last[trial] = step
        return self._bracket.judge(self.name, trial, step, value)


class HyperbandRule(StopRule):
    name = "hyperband"
    options = ("reduction_factor", "max_steps")

    def __init__(self, config: EarlyStopping, mode: str) -> None:
        super().__init__(config, mode)
        self.factor = int(self.option("reduction_factor", 3))
        max_steps = int(self.option("max_steps", 0))
        count = brackets(self.min_steps, max_steps, self.factor)
        self._brackets = [
            _Halving(self.min_steps * self.factor**b, self.factor, mode) for b in range(count)
        ]
        self._last: dict[int, int] = {}

    def bracket_of(self, trial: int) -> int:
        return trial % len(self._brackets)

    def judge(self, trial: int, step: int, value: float) -> Decision | None:
        if step <= self._last.get(trial, -1):
            return None
        self._last[trial] = step
        return self._brackets[self.bracket_of(trial)].judge(self.name, trial, step, value)

    @classmethod
    def check(cls, config: EarlyStopping) -> str | None:
        max_steps = config.options.get("max_steps")
        if not isinstance(max_steps, int) or max_steps <= config.min_steps:
            return (
                f"rule 'hyperband' needs max_steps (the steps of a full trial), greater than "
                f"min_steps = {config.min_steps}; got {max_steps!r}"
            )
        return None


def brackets(min_steps: int, max_steps: int, factor: int) -> int:
    """Hyperband's bracket count: floor(log_factor(max_steps / min_steps)) + 1."""
    if max_steps <= min_steps:
        return 1
    return math.floor(math.log(max_steps / min_steps, factor) + 1e-9) + 1
