"""method = "nevergrad": proposals in the space, a restarted searcher proposes what the live
one would (whatever order results arrived in), and clear refusals at submit."""

from __future__ import annotations

import importlib.util
import math
import random
from typing import Any

import pytest

from clusterd.search.base import Result
from clusterd.spec import parse_sweep

pytest.importorskip("nevergrad")

from clusterd.search.nevergrad_search import NevergradSearcher

SPACE = (
    "lr = { loguniform = [1e-5, 1e-1] }\n"
    "width = { randint = [8, 64] }\n"
    "drop = { uniform = [0.0, 0.5] }\n"
    'act = { choice = ["relu", "gelu", [1, 2]] }\n'
)


def sweep(options: str = 'optimizer = "CMA"', params: str = "", samples: int = 40) -> Any:
    text = (
        'name = "s"\ncommand = "python train.py"\nmax_concurrent = 3\n'
        '[metric]\nname = "loss"\nmode = "min"\n'
        f"[params]\nsteps = 10\n{params}\n"
        f'[search]\nmethod = "nevergrad"\nsamples = {samples}\nseed = 5\n'
        f"[search.space]\n{SPACE}\n[search.options]\n{options}\n"
    )
    return parse_sweep(text, source="sweep.toml", base_dir="/tmp")


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


def ask(searcher: Any, index: int) -> dict[str, Any]:
    p = searcher.ask(index)
    assert p is not None, index
    return dict(p)


def rebuilt(spec: Any, trials: dict[int, dict[str, Any]], ended: dict[int, Result]) -> Any:
    """What the daemon does at start: ended trials told in index order, the rest running."""
    searcher = NevergradSearcher(spec)
    for i in sorted(trials):
        if i in ended:
            searcher.tell(ended[i])
        else:
            searcher.running(i, trials[i])
    return searcher


@pytest.mark.parametrize(("optimizer", "n"), [("CMA", 24), ("TwoPointsDE", 24), ("NGOpt", 12)])
def test_a_restarted_searcher_proposes_what_the_live_one_would(optimizer: str, n: int) -> None:
    """Three trials in flight, results arriving out of order; after every event a rebuilt
    searcher's next proposal equals the live one's."""
    spec = sweep(f'optimizer = "{optimizer}"', samples=30)
    live = NevergradSearcher(spec)
    rng = random.Random(1)
    trials: dict[int, dict[str, Any]] = {}
    ended: dict[int, Result] = {}
    running: list[int] = []
    checked = 0
    while len(trials) < n:
        while len(running) < 3:
            index = len(trials)
            # the daemon may restart right here: a rebuilt searcher proposes the same
            p = ask(live, index)
            assert ask(rebuilt(spec, trials, ended), index) == p
            checked += 1
            assert inside(p), p
            trials[index] = p
            running.append(index)
        done = running.pop(rng.randrange(len(running)))  # any of them ends first
        state = "failed" if done % 7 == 3 else "completed"
        value = None if state == "failed" else objective(trials[done])
        ended[done] = Result(done, trials[done], value, state)
        live.tell(ended[done])
    assert checked == n


def test_same_seed_same_proposals_and_the_search_improves() -> None:
    spec = sweep('optimizer = "OnePlusOne"', samples=40)
    a, b = NevergradSearcher(spec), NevergradSearcher(spec)
    values = []
    for i in range(40):
        p = ask(a, i)
        assert p == ask(b, i)
        value = objective(p)
        values.append(value)
        for s in (a, b):
            s.tell(Result(i, p, value, "completed"))
    assert min(values[20:]) < min(values[:10])


def test_maximised_metric_is_negated() -> None:
    spec = sweep()
    spec = parse_sweep(
        'name = "s"\ncommand = "x"\n[metric]\nname = "acc"\nmode = "max"\n'
        '[search]\nmethod = "nevergrad"\nsamples = 20\n[search.space]\n'
        'x = { uniform = [0.0, 1.0] }\n[search.options]\noptimizer = "OnePlusOne"\n',
        "sweep.toml",
        "/tmp",
    )
    s = NevergradSearcher(spec)
    best = []
    for i in range(20):
        p = ask(s, i)
        best.append(p["x"])
        s.tell(Result(i, p, p["x"], "completed"))  # higher x is better
    assert max(best[10:]) >= max(best[:5])


def test_check_refuses_what_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    assert NevergradSearcher.check(sweep()) is None
    bad = NevergradSearcher.check(sweep('optimizer = "NoSuchOpt"'))
    assert bad and "search.options.optimizer" in bad and "'NoSuchOpt'" in bad
    unknown = NevergradSearcher.check(sweep('optimizer = "CMA"\npopsize = 3'))
    assert unknown and "popsize" in unknown
    conditional = NevergradSearcher.check(
        sweep(params="[params.opt.sgd]\nm = [0.9]\n[params.opt.adam]\nb = [0.9]\n")
    )
    assert conditional and "conditional" in conditional
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "nevergrad" else real(name, *a),
    )
    missing = NevergradSearcher.check(sweep())
    assert missing and "pip install 'clusterd[nevergrad]'" in missing


def test_trials_outside_the_space_are_not_told() -> None:
    """A trial from before the file was edited (--extend) is skipped, not a crash."""
    s = NevergradSearcher(sweep())
    s.tell(Result(0, {"lr": 5.0, "width": 8, "drop": 0.1, "act": "relu"}, 1.0, "completed"))
    s.tell(Result(1, {"lr": 1e-3, "width": 8, "drop": 0.1, "act": "tanh"}, 1.0, "completed"))
    assert inside(ask(s, 2))


def test_registered_as_a_builtin_method() -> None:
    from clusterd.plugins import SearchRegistry
    from clusterd.search.registry import clusterd_register_search_methods

    registry = SearchRegistry()
    clusterd_register_search_methods(registry)
    assert registry.get("nevergrad") is NevergradSearcher
