"""Our rules against Optuna's pruners, fed identical learning curves.

Sequential sweeps (each trial reports step by step, is judged after each report, and
completes or is stopped before the next one starts): ``median`` must prune exactly what
``MedianPruner`` prunes, and ``asha`` exactly what ``SuccessiveHalvingPruner`` prunes,
same trials at the same steps, minimising and maximising. ASHA is asynchronous in both
implementations (running trials' rung values count), so it must agree in an interleaved
(parallel) order too. The intended differences are shown at the end: ``median`` counts
running trials where Optuna counts only completed ones, and we ignore non-finite values
where Optuna prunes on NaN.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from clusterd.spec.model import EarlyStopping
from clusterd.stopping.asha import AshaRule, HyperbandRule
from clusterd.stopping.base import StopRule
from clusterd.stopping.median import MedianRule

pytest.importorskip("optuna")  # in the test extra, not a dependency of clusterd

import optuna
from optuna.pruners import BasePruner

optuna.logging.set_verbosity(optuna.logging.WARNING)

Curve = list[tuple[int, float]]  # (step, value) in report order
#: trial -> the step it was stopped at
Pruned = dict[int, int]


def curves(seed: int, n: int, mode: str, ragged: bool = True) -> list[Curve]:
    """Noisy power-law learning curves, half of them overfitting (the loss turns up
    again, so a trial's best so far and its last value differ); with ``ragged``, trials
    differ in length and in how often they report (every 1, 2 or 3 steps)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        floor = rng.uniform(0.05, 0.6)
        rate = rng.uniform(0.2, 0.9)
        overfit = rng.choice((0.0, rng.uniform(0.01, 0.05)))
        every = rng.choice((1, 2, 3)) if ragged else 1
        length = rng.randint(8, 30) if ragged else 30
        curve = []
        for step in range(every, length + 1, every):
            clean = floor + (2.3 - floor) * (1 + step) ** -rate + overfit * step
            loss = clean * (1 + rng.gauss(0, 0.02))
            curve.append((step, loss if mode == "min" else 1.0 - loss / 3.0))
        out.append(curve)
    return out


def sequential(curves: Sequence[Curve]) -> list[tuple[int, int, float]]:
    return [(i, step, value) for i, curve in enumerate(curves) for step, value in curve]


def interleaved(curves: Sequence[Curve], seed: int) -> list[tuple[int, int, float]]:
    """Every trial running at once, reports arriving in a random (seeded) interleaving."""
    rng = random.Random(seed)
    pos = [0] * len(curves)
    live = [i for i, c in enumerate(curves) if c]
    out = []
    while live:
        i = rng.choice(live)
        step, value = curves[i][pos[i]]
        out.append((i, step, value))
        pos[i] += 1
        if pos[i] == len(curves[i]):
            live.remove(i)
    return out


def run_ours(rule: StopRule, events: Sequence[tuple[int, int, float]]) -> Pruned:
    pruned: Pruned = {}
    for trial, step, value in events:
        if trial in pruned:
            continue  # a stopped trial reports nothing more
        if rule.observe(trial, step, value) is not None:
            rule.forget(trial)  # as the daemon does
            pruned[trial] = step
    return pruned


def run_optuna(
    pruner: BasePruner,
    mode: str,
    events: Sequence[tuple[int, int, float]],
    lengths: Sequence[int],
) -> Pruned:
    """The same events through an in-memory study: ask per trial, report + should_prune
    per value, tell when the trial's last value is in or it was pruned."""
    study = optuna.create_study(
        direction="minimize" if mode == "min" else "maximize",
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    trials: dict[int, optuna.Trial] = {}
    seen = dict.fromkeys(range(len(lengths)), 0)
    pruned: Pruned = {}
    for trial, step, value in events:
        if trial in pruned:
            continue
        if trial not in trials:
            trials[trial] = study.ask()
        t = trials[trial]
        t.report(value, step)
        seen[trial] += 1
        if t.should_prune():
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            pruned[trial] = step
        elif seen[trial] == lengths[trial]:
            study.tell(t, value)
    return pruned


def median_pair(min_steps: int, min_trials: int, mode: str) -> tuple[MedianRule, BasePruner]:
    ours = MedianRule(
        EarlyStopping(rule="median", min_steps=min_steps, options={"min_trials": min_trials}),
        mode,
    )
    # our min_trials counts other trials with a value at the step (at least one), as
    # n_min_trials counts completed ones; no startup phase beyond that
    theirs = optuna.pruners.MedianPruner(
        n_startup_trials=0, n_warmup_steps=min_steps, n_min_trials=max(1, min_trials)
    )
    return ours, theirs


def asha_pair(min_steps: int, factor: int, mode: str) -> tuple[AshaRule, BasePruner]:
    ours = AshaRule(
        EarlyStopping(rule="asha", min_steps=min_steps, options={"reduction_factor": factor}),
        mode,
    )
    theirs = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_steps, reduction_factor=factor, min_early_stopping_rate=0
    )
    return ours, theirs


def assert_same(
    make: Callable[[], tuple[StopRule, BasePruner]],
    mode: str,
    data: list[Curve],
    events: list[tuple[int, int, float]],
) -> Pruned:
    rule, pruner = make()
    ours = run_ours(rule, events)
    theirs = run_optuna(pruner, mode, events, [len(c) for c in data])
    assert ours == theirs
    return ours


MODES = ["min", "max"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("min_steps", "min_trials"), [(1, 1), (2, 0), (5, 1), (3, 3), (10, 5)])
@pytest.mark.parametrize("seed", range(6))
def test_median_prunes_what_median_pruner_prunes_sequentially(
    mode: str, min_steps: int, min_trials: int, seed: int
) -> None:
    data = curves(seed, 40, mode)
    pruned = assert_same(
        lambda: median_pair(min_steps, min_trials, mode), mode, data, sequential(data)
    )
    assert 0 < len(pruned) < len(data)  # the comparison had something to compare
    assert min(pruned.values()) >= min_steps


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("min_steps", "factor"), [(1, 2), (1, 3), (2, 3), (3, 4)])
@pytest.mark.parametrize("seed", range(6))
def test_asha_prunes_what_successive_halving_prunes_sequentially(
    mode: str, min_steps: int, factor: int, seed: int
) -> None:
    data = curves(seed, 40, mode)
    pruned = assert_same(lambda: asha_pair(min_steps, factor, mode), mode, data, sequential(data))
    assert 0 < len(pruned) < len(data)
    assert len(set(pruned.values())) > 1  # stops at more than one rung


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("min_steps", "factor"), [(1, 2), (1, 3), (2, 3)])
@pytest.mark.parametrize("seed", range(6))
def test_asha_agrees_with_successive_halving_in_parallel_too(
    mode: str, min_steps: int, factor: int, seed: int
) -> None:
    data = curves(seed, 30, mode)
    pruned = assert_same(
        lambda: asha_pair(min_steps, factor, mode), mode, data, interleaved(data, seed)
    )
    assert 0 < len(pruned) < len(data)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(4))
def test_hyperband_bracket_is_asha_started_at_its_first_rung(mode: str, seed: int) -> None:
    """Each hyperband bracket b decides exactly as an ASHA with min_steps * factor**b
    (Optuna's SuccessiveHalvingPruner with min_early_stopping_rate b) fed its trials."""
    data = curves(seed, 60, mode, ragged=False)
    events = interleaved(data, seed)
    config = EarlyStopping(
        rule="hyperband", min_steps=1, options={"reduction_factor": 3, "max_steps": 27}
    )
    hyperband = HyperbandRule(config, mode)
    ours = run_ours(hyperband, events)
    assert len({hyperband.bracket_of(t) for t in ours}) > 1  # several brackets stopped some
    for bracket in range(4):  # rungs from 1, 3, 9, 27
        members = [i for i in range(len(data)) if hyperband.bracket_of(i) == bracket]
        mine = [e for e in events if e[0] in members]
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3, min_early_stopping_rate=bracket
        )
        theirs = run_optuna(pruner, mode, mine, [len(data[i]) for i in range(len(data))])
        assert {t: s for t, s in ours.items() if t in members} == theirs


# --------------------------------------------------------------------------- differences


@pytest.mark.parametrize("mode", MODES)
def test_median_judges_against_running_trials_where_optuna_waits_for_completed(
    mode: str,
) -> None:
    """The intended difference: two trials running side by side, one clearly worse. We
    stop the worse one at min_steps; Optuna has no completed trial to compare with until
    the good one ends, and prunes the bad one only at its last step, all of it spent (in a
    parallel sweep the whole first wave goes unjudged)."""
    sign = 1.0 if mode == "min" else -1.0
    good = [(s, sign * 1.0 / s) for s in range(1, 11)]
    bad = [(s, sign * (2.0 + 1.0 / s)) for s in range(1, 11)]
    lockstep = [(i, *curve[k]) for k in range(10) for i, curve in enumerate((good, bad))]

    rule, pruner = median_pair(min_steps=3, min_trials=1, mode=mode)
    assert run_ours(rule, lockstep) == {1: 3}
    assert run_optuna(pruner, mode, lockstep, [10, 10]) == {1: 10}

    # one after the other, the two agree again: stopped at min_steps
    rule, pruner = median_pair(min_steps=3, min_trials=1, mode=mode)
    one_by_one = sequential([good, bad])
    assert run_ours(rule, one_by_one) == run_optuna(pruner, mode, one_by_one, [10, 10]) == {1: 3}


@pytest.mark.parametrize("rule_name", ["median", "asha"])
@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # Optuna's nanmin
def test_nan_is_ignored_where_optuna_prunes(rule_name: str) -> None:
    """Intended difference: a NaN is the trial's own business (base.StopRule.observe);
    Optuna prunes a trial whose value at a judged step is NaN."""
    data = [[(s, 1.0 / s) for s in range(1, 6)], [(1, 0.9), (2, math.nan), (3, 0.2)]]
    events = sequential(data)
    rule: StopRule
    pruner: BasePruner
    if rule_name == "median":
        rule, pruner = median_pair(min_steps=1, min_trials=1, mode="min")
        # Optuna's best over steps ignores NaN (nanmin), so it needs an all-NaN trial
        data[1] = [(1, math.nan), (2, math.nan), (3, 0.2)]
        events = sequential(data)
    else:
        rule, pruner = asha_pair(min_steps=2, factor=2, mode="min")
    assert run_ours(rule, events) == {}
    assert run_optuna(pruner, "min", events, [5, 3]) == {1: 1 if rule_name == "median" else 2}
