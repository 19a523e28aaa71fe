"""Adaptive search methods: proposals stay in the space and depend on seed and results only."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.search.base import Result
from clusterd.search.cem import CemSearcher
from clusterd.search.space import Space
from clusterd.spec import parse_sweep


def sweep(method: str, space: str, samples: int = 40, options: str = "", params: str = "") -> Any:
    text = (
        'name = "s"\ncommand = "python train.py"\n[metric]\nname = "loss"\nmode = "min"\n'
        f"[params]\nsteps = 10\n{params}\n"
        f'[search]\nmethod = "{method}"\nsamples = {samples}\nseed = 3\n'
        f"[search.space]\n{space}\n[search.options]\n{options}\n"
    )
    return parse_sweep(text, source="sweep.toml", base_dir="/tmp")


SPACE = (
    "lr = { loguniform = [1e-5, 1e-1] }\n"
    "width = { randint = [8, 64] }\n"
    "drop = { uniform = [0.0, 0.5] }\n"
    'act = { choice = ["relu", "gelu", [1, 2]] }\n'
)


def objective(p: dict[str, Any]) -> float:
    return (math.log10(p["lr"]) + 3) ** 2 + (p["width"] - 40) ** 2 / 100 + p["drop"]


def inside(p: dict[str, Any]) -> bool:
    return (
        1e-5 <= p["lr"] <= 1e-1
        and isinstance(p["width"], int)
        and 8 <= p["width"] <= 64
        and 0.0 <= p["drop"] <= 0.5
        and p["act"] in ("relu", "gelu", [1, 2])
        and p["steps"] == 10
    )


def run(searcher: Any, n: int, values: list[float | None] | None = None) -> list[dict]:
    proposed = []
    for i in range(n):
        p = searcher.ask(i)
        assert p is not None, i
        proposed.append(p)
        value = objective(p) if values is None else values[i]
        searcher.tell(Result(i, p, value, "completed" if value is not None else "failed"))
    return proposed


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=30, max_size=30))
def test_cem_proposals_stay_in_the_space_whatever_the_results(values: list) -> None:
    spec = sweep("cem", SPACE, options="population = 5\nmin_std = 0.0")
    assert all(inside(p) for p in run(CemSearcher(spec), 30, values))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(0, 10), min_size=20, max_size=20))
def test_cem_is_a_function_of_seed_and_results(values: list[float]) -> None:
    spec = sweep("cem", SPACE, options="population = 5")
    assert run(CemSearcher(spec), 20, list(values)) == run(CemSearcher(spec), 20, list(values))


def test_cem_waits_for_a_generation_to_end_before_the_next() -> None:
    searcher = CemSearcher(sweep("cem", SPACE, options="population = 4"))
    first = [searcher.ask(i) for i in range(4)]
    assert searcher.ask(4) is None  # generation 0 still running
    for i, p in enumerate(first[:3]):
        searcher.tell(Result(i, p, objective(p), "completed"))
    assert searcher.ask(4) is None
    searcher.tell(Result(3, first[3], None, "failed"))  # a failure ends it too
    assert searcher.ask(4) is not None


def test_cem_closes_in_on_the_optimum() -> None:
    proposed = run(CemSearcher(sweep("cem", SPACE, samples=80, options="population = 10")), 80)
    first, last = proposed[:10], proposed[-10:]
    assert sum(map(objective, last)) / 10 < sum(map(objective, first)) / 10 / 5


def test_tpe_proposes_the_same_trials_when_rebuilt_from_the_same_results() -> None:
    pytest.importorskip("optuna")
    from clusterd.search.optuna_samplers import TpeSearcher

    spec = sweep("tpe", SPACE, samples=16)
    live = TpeSearcher(spec)
    proposed = run(live, 12)
    rebuilt = TpeSearcher(spec)  # what a restarted daemon builds from the database
    for i, p in enumerate(proposed):
        rebuilt.tell(Result(i, p, objective(p), "completed", step=9))
    assert rebuilt.ask(12) == live.ask(12)
    assert all(inside(p) for p in proposed)


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(["tpe", "optuna"]))
def test_optuna_proposals_do_not_depend_on_the_order_results_arrived_in(
    rnd: Any, method: str
) -> None:
    """Trials end in any order; a restarted daemon tells them in index order. Either way,
    the same results give the same next proposal (and stopped trials count alike)."""
    pytest.importorskip("optuna")
    from clusterd.search.optuna_samplers import OptunaSearcher, TpeSearcher

    options = 'sampler = "TPESampler"\nn_startup_trials = 5' if method == "optuna" else ""
    spec = sweep(method, SPACE, samples=40, options=options)
    cls = TpeSearcher if method == "tpe" else OptunaSearcher
    live = cls(spec)
    proposed = [live.ask(i) for i in range(30)]  # all in flight at once
    assert all(p is not None and inside(p) for p in proposed)
    ended = list(range(28))  # 28 and 29 still run
    rnd.shuffle(ended)
    results = {}
    for i in ended:
        p = proposed[i]
        state = "stopped" if i % 5 else "completed"
        results[i] = Result(i, p, objective(p), state, step=3 if state == "stopped" else 9)
        live.tell(results[i])
    rebuilt = cls(spec)  # what a restarted daemon builds from the database
    for i in range(30):
        if i in results:
            rebuilt.tell(results[i])
        else:
            rebuilt.running(i, proposed[i])
    assert rebuilt.ask(30) == live.ask(30)


def test_adaptive_methods_refuse_conditional_params() -> None:
    spec = sweep("cem", SPACE, params="[params.model.cnn]\ndepth = [2, 4]\n[params.model.mlp]\n")
    assert "cannot search conditional [params] (model)" in (CemSearcher.check(spec) or "")
    assert Space.check(sweep("cem", SPACE)) is None


def test_params_lists_become_choices_and_keep_the_file_order() -> None:
    spec = sweep("cem", SPACE, params='opt = ["adam", "sgd"]\n')
    space = Space.from_spec(spec)
    assert space.dims["opt"].args == ("adam", "sgd")
    p = CemSearcher(spec).ask(0)
    assert p is not None and list(p) == ["steps", "opt", "lr", "width", "drop", "act"]
