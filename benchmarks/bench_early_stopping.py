"""Early stopping: steps saved and best found on synthetic curves, and decision cost.

- Quality: ``curves.generate`` learning curves (loss, 81 steps each) fed, in the same
  order, to a simulated parallel sweep: ``--workers`` slots; a trial trains a step every
  1, 2 or 3 ticks (its curve's speed) and reports it; a trial ends at its last step or
  when stopped, and the next curve starts in the freed slot. Rules: none, our median / asha /
  hyperband (the ``clusterd.stopping`` classes, called as the daemon calls them:
  ``observe`` per value, ``forget`` after a decision), and Optuna's ``MedianPruner`` /
  ``SuccessiveHalvingPruner`` on an in-memory study (``ask`` per trial, ``report`` +
  ``should_prune`` per step, ``tell``). Per rule: training steps consumed, their ratio
  to none, and the best final loss among trials that reached the last step, with its
  gap to the true best (the best final value of all curves: what none finds). Medians
  over ``--seeds`` curve sets.
- Cost: µs per ``observe()`` over a sweep of 10,000 trials x 10 steps (arrival order of
  a 64-worker sweep), median and p99, for median and asha; beside it Optuna's
  ``should_prune`` at the same sweep size (10,000 finished trials loaded into the study
  with ``add_trials``, then 50 new trials x 10 steps timed; feeding Optuna all 10,000
  trials through ``should_prune`` takes O(trials) per call -- minutes).
Targets (issue "Early stopping"): asha uses <= 35 % of none's steps and finds a trial
within 1 % of the true best; <= 1 ms per reported metric with 10,000 trials.

    python benchmarks/bench_early_stopping.py [--quick] [--min-steps N] [--reduction-factor F]
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import _common as C
import curves as Curves

from clusterd.spec.model import EarlyStopping
from clusterd.stopping.asha import AshaRule, HyperbandRule
from clusterd.stopping.base import StopRule
from clusterd.stopping.median import MedianRule

if TYPE_CHECKING:
    from optuna.pruners import BasePruner

TARGET_STEPS = 0.35
TARGET_GAP = 0.01
TARGET_COST = 1e-3
STEPS = 81

#: one decision source, as the simulation sees it: start(trial), report(trial, step,
#: value) -> stop?, end(trial, final value or None if stopped)
Judge = tuple[
    Callable[[int], None],
    Callable[[int, int, float], bool],
    Callable[[int, float | None], None],
]


@dataclass(frozen=True)
class Outcome:
    steps: int
    best: float  # best final value among trials that reached the last step


# --------------------------------------------------------------------------- judges


def ours(rule: StopRule | None) -> Judge:
    def report(trial: int, step: int, value: float) -> bool:
        if rule is None or rule.observe(trial, step, value) is None:
            return False
        rule.forget(trial)  # what the daemon does right after a decision
        return True

    return (lambda trial: None), report, (lambda trial, final: None)


def optuna_judge(pruner: BasePruner) -> Judge:
    import optuna

    study = optuna.create_study(
        direction="minimize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    live: dict[int, optuna.Trial] = {}

    def start(trial: int) -> None:
        live[trial] = study.ask()

    def report(trial: int, step: int, value: float) -> bool:
        t = live[trial]
        t.report(value, step)
        return t.should_prune()

    def end(trial: int, final: float | None) -> None:
        t = live.pop(trial)
        if final is None:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t, final)

    return start, report, end


# --------------------------------------------------------------------------- simulation


def simulate(curves: Sequence[Curves.Curve], workers: int, judge: Judge) -> Outcome:
    """A parallel sweep on ``workers`` slots. Time goes in ticks; a trial trains one step
    every ``curve.ticks`` ticks and reports it; within a tick, reports arrive in the
    order the trials started. A stopped or finished trial frees its slot for the next."""
    start, report, end = judge
    pending = iter(range(len(curves)))
    running: dict[int, int] = {}  # trial -> ticks trained
    steps = 0
    best = float("inf")

    def fill() -> None:
        while len(running) < workers:
            trial = next(pending, None)
            if trial is None:
                return
            start(trial)
            running[trial] = 0

    fill()
    while running:
        for trial in list(running):
            curve = curves[trial]
            ticks = running[trial] = running[trial] + 1
            if ticks % curve.ticks:
                continue  # still training this step
            step = ticks // curve.ticks
            steps += 1
            value = curve.values[step - 1]
            last = step == len(curve.values)
            if report(trial, step, value):
                del running[trial]
                end(trial, None)
            elif last:
                del running[trial]
                end(trial, value)
            if last:  # stopped at its last report or not, it ran to the end
                best = min(best, value)
        fill()
    return Outcome(steps=steps, best=best)


def rules(min_steps: int, factor: int, min_trials: int) -> dict[str, Callable[[], Judge]]:
    import optuna

    def es(rule: str, **options: int) -> EarlyStopping:
        return EarlyStopping(rule=rule, min_steps=min_steps, options=options)

    return {
        "none": lambda: ours(None),
        "median": lambda: ours(MedianRule(es("median", min_trials=min_trials), "min")),
        "asha": lambda: ours(AshaRule(es("asha", reduction_factor=factor), "min")),
        "hyperband": lambda: ours(
            HyperbandRule(es("hyperband", reduction_factor=factor, max_steps=STEPS), "min")
        ),
        "optuna MedianPruner": lambda: optuna_judge(
            optuna.pruners.MedianPruner(
                n_startup_trials=0, n_warmup_steps=min_steps, n_min_trials=min_trials
            )
        ),
        "optuna SuccessiveHalving": lambda: optuna_judge(
            optuna.pruners.SuccessiveHalvingPruner(
                min_resource=min_steps, reduction_factor=factor, min_early_stopping_rate=0
            )
        ),
    }


# --------------------------------------------------------------------------- cost


def our_cost(rule: StopRule, trials: int, steps: int, workers: int) -> list[float]:
    """Seconds per observe() over a sweep of ``trials`` x ``steps`` in waves of ``workers``."""
    curves = Curves.generate(trials, steps, seed=1)
    timer = time.perf_counter_ns
    out: list[float] = []
    stopped: set[int] = set()
    for wave in range(0, trials, workers):
        batch = range(wave, min(wave + workers, trials))
        for step in range(1, steps + 1):
            for trial in batch:
                if trial in stopped:
                    continue
                value = curves[trial].values[step - 1]
                t0 = timer()
                decision = rule.observe(trial, step, value)
                if decision is not None:
                    rule.forget(trial)
                out.append((timer() - t0) / 1e9)
                if decision is not None:
                    stopped.add(trial)
    return out


def optuna_cost(pruner: BasePruner, trials: int, steps: int, timed: int) -> list[float]:
    """Seconds per ``report + should_prune`` with ``trials`` finished trials in the study."""
    import optuna

    curves = Curves.generate(trials + timed, steps, seed=1)
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    factor = 3
    finished = []
    for c in curves[:trials]:
        attrs = {}
        rung = 0
        while 1 * factor**rung <= steps:  # the rung values a SuccessiveHalving run leaves
            attrs[f"completed_rung_{rung}"] = c.values[factor**rung - 1]
            rung += 1
        finished.append(
            optuna.trial.create_trial(
                value=c.final,
                intermediate_values={s: v for s, v in enumerate(c.values, start=1)},
                system_attrs=attrs,
            )
        )
    study.add_trials(finished)
    timer = time.perf_counter_ns
    out: list[float] = []
    for c in curves[trials:]:
        t = study.ask()
        for step, value in enumerate(c.values, start=1):
            t0 = timer()
            t.report(value, step)
            prune = t.should_prune()
            out.append((timer() - t0) / 1e9)
            if prune:
                break
        study.tell(t, state=optuna.trial.TrialState.PRUNED)  # keep the study at ``trials``
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--min-steps", type=int, default=5, help="min_steps of every rule (default 5)")
    p.add_argument("--reduction-factor", type=int, default=3, help="asha/hyperband factor")
    p.add_argument("--min-trials", type=int, default=5, help="median's min_trials")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--seeds", type=int, default=10, help="curve sets (full mode)")
    args = p.parse_args()
    n = 60 if args.quick else 200
    seeds = 1 if args.quick else args.seeds
    cost_trials = 1_000 if args.quick else 10_000
    optuna_timed = 5 if args.quick else 50
    C.header("bench_early_stopping: steps saved, best found, decision cost", args.quick)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    judges = rules(args.min_steps, args.reduction_factor, args.min_trials)
    #: per rule and seed: (steps / none's steps, best found / true best - 1, best found)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in judges}
    for seed in range(seeds):
        curves = Curves.generate(n, STEPS, seed=seed)
        true_best = min(c.final for c in curves)
        full = len(curves) * STEPS
        for name, make in judges.items():
            out = simulate(curves, args.workers, make())
            results[name].append((out.steps / full, out.best / true_best - 1, out.best))

    t = C.Table(
        f"{n} curves x {STEPS} steps, {args.workers} workers, min_steps {args.min_steps}, "
        f"reduction_factor {args.reduction_factor}, median min_trials {args.min_trials}; "
        f"medians of {seeds} curve sets"
    )
    peer = {"median": "optuna MedianPruner", "asha": "optuna SuccessiveHalving"}
    for name in ("none", "median", "asha", "hyperband"):
        rows = results[name]
        other = results.get(peer.get(name, ""), [])
        ratio = C.median([r[0] for r in rows])
        gap = C.median([r[1] for r in rows])
        within = sum(r[1] <= TARGET_GAP for r in rows)
        their_ratio = C.median([r[0] for r in other]) if other else None
        their_gap = C.median([r[1] for r in other]) if other else None
        asha = name == "asha"
        t.add(
            f"{name}: steps consumed, share of none's",
            f"{ratio:.1%} (max {max(r[0] for r in rows):.1%})",
            "-" if their_ratio is None else f"{their_ratio:.1%}",
            "-" if their_ratio is None else C.fmt_ratio(their_ratio / ratio),
            f"<= {TARGET_STEPS:.0%}" if asha else "-",
            ratio <= TARGET_STEPS if asha else None,
        )
        t.add(
            f"{name}: best final loss found, gap to true best",
            f"{C.median([r[2] for r in rows]):.4f}, gap {gap:.2%} "
            f"({within}/{seeds} sets within {TARGET_GAP:.0%})",
            "-" if their_gap is None else f"{their_gap:.2%}",
            target=f"<= {TARGET_GAP:.0%}" if asha else "-",
            ok=gap <= TARGET_GAP if asha else None,
        )

    for name, rule in (
        ("median", MedianRule(EarlyStopping("median", 3, {"min_trials": 5}), "min")),
        ("asha", AshaRule(EarlyStopping("asha", 1, {"reduction_factor": 3}), "min")),
    ):
        costs = our_cost(rule, cost_trials, 10, 64)
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=3, n_min_trials=5)
            if name == "median"
            else optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=3, min_early_stopping_rate=0
            )
        )
        theirs = optuna_cost(pruner, cost_trials, 10, optuna_timed)
        mine, their = C.median(costs), C.median(theirs)
        t.add(
            f"{name} observe() median / p99, {cost_trials:,} trials",
            f"{C.fmt_s(mine)} / {C.fmt_s(C.percentile(costs, 99))}",
            f"{C.fmt_s(their)} / {C.fmt_s(C.percentile(theirs, 99))}",
            C.fmt_ratio(their / mine),
            f"<= {TARGET_COST * 1e3:.0f} ms",
            C.percentile(costs, 99) <= TARGET_COST,
        )
    t.note(
        "baseline on rule rows: Optuna's pruner of the same definition (MedianPruner, "
        "SuccessiveHalvingPruner), same curves, same order; ratio = Optuna's steps / ours"
    )
    t.note(
        "gap: best final loss among trials that reached the last step / the best final "
        "loss of all curves (what none finds) - 1"
    )
    t.note(
        f"cost baseline: Optuna report + should_prune per step on an in-memory study holding "
        f"{cost_trials:,} finished trials ({optuna_timed} new trials timed)"
    )
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
