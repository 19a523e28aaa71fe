"""The median rule: stop a trial whose best so far is worse than the others' median.

Optuna's ``MedianPruner`` semantics: at step ``s`` (once ``s >= min_steps``), the
trial's best value over the steps it reported is compared with the median of the
other trials' values *at* ``s``; it needs ``min_trials`` other values at ``s``. A tie
is not worse.

One intended difference (docs/early-stopping.md): Optuna compares only against
*completed* trials, we compare against every other trial that reached ``s`` and was
not stopped, running ones included. In a parallel sweep waiting for completions means
the whole first wave of trials runs to the end unjudged; with trials run one after
another the two agree exactly (tests/stopping/test_optuna_crosscheck.py).

Cost: a sorted list of values per step; a report is an ``insort`` and two indexings,
O(trials) memmove at worst, a few microseconds at 10,000 trials.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from clusterd.spec.model import EarlyStopping
from clusterd.stopping.base import Decision, StopRule, worse

__all__ = ["MedianRule"]


class MedianRule(StopRule):
    name = "median"
    options = ("min_trials",)

    def __init__(self, config: EarlyStopping, mode: str) -> None:
        super().__init__(config, mode)
        self.min_trials: int = self.option("min_trials", 5)
        self._at_step: dict[int, list[float]] = {}  # step -> sorted values of live trials
        self._values: dict[int, dict[int, float]] = {}  # trial -> step -> first value
        self._best: dict[int, float] = {}
        self._stopped: set[int] = set()

    def judge(self, trial: int, step: int, value: float) -> Decision | None:
        if trial in self._stopped:
            return None
        values = self._values.setdefault(trial, {})
        if step in values:
            return None  # re-reported after a resume: the first value counts, as in Optuna
        values[step] = value
        insort(self._at_step.setdefault(step, []), value)
        best = self._best.get(trial)
        if best is None or worse(best, value, self.mode):
            best = self._best[trial] = value
        if step < self.min_steps:
            return None
        column = self._at_step[step]
        others = len(column) - 1
        if others < max(1, self.min_trials):
            return None
        median = _median_without(column, value)
        if not worse(best, median, self.mode):
            return None
        return Decision(
            rule=self.name,
            step=step,
            value=best,
            threshold=median,
            reason=(
                f"best {best:.6g} by step {step} is worse than the median {median:.6g} "
                f"of {others} other trials at that step"
            ),
        )

    def forget(self, trial: int) -> None:
        if trial in self._stopped:
            return
        self._stopped.add(trial)
        for step, value in self._values.pop(trial, {}).items():
            column = self._at_step[step]
            del column[bisect_left(column, value)]
        self._best.pop(trial, None)


def _median_without(column: list[float], own: float) -> float:
    """Median of ``column`` (sorted) with one occurrence of ``own`` left out."""
    skip = bisect_left(column, own)
    n = len(column) - 1

    def nth(i: int) -> float:
        return column[i] if i < skip else column[i + 1]

    if n % 2:
        return nth(n // 2)
    return (nth(n // 2 - 1) + nth(n // 2)) / 2
