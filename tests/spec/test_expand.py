"""Expansion: grid order, conditional branches, seeded sampling, counts, keys, speed."""

from __future__ import annotations

import itertools
import json
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.spec import expand, params_key, parse_sweep
from clusterd.spec.expand import count, grid_count
from clusterd.spec.model import Distribution, Search, SweepSpec

from .test_parse import MINIMAL, params_trees, same, toml_value, with_params

# ---------------------------------------------------------------- a reference implementation


def reference_grid(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """itertools.product over per-key option lists: the obvious (slow) definition."""
    per_key: list[list[dict[str, Any]]] = []
    for key, node in tree.items():
        if isinstance(node, list):
            per_key.append([{key: v} for v in node])
        elif isinstance(node, dict):
            per_key.append(
                [{key: b, **sub} for b, branch in node.items() for sub in reference_grid(branch)]
            )
        else:
            per_key.append([{key: node}])
    rows = []
    for combo in itertools.product(*per_key):
        row: dict[str, Any] = {}
        for part in combo:
            row.update(part)
        rows.append(row)
    return rows


def reference_count(tree: dict[str, Any]) -> int:
    return math.prod(
        len(n)
        if isinstance(n, list)
        else sum(map(reference_count, n.values()))
        if isinstance(n, dict)
        else 1
        for n in tree.values()
    )


def satisfies(trial: dict[str, Any], tree: dict[str, Any], space: dict[str, Distribution]) -> bool:
    """Every value comes from its axis / fixed value / branch / distribution, nothing extra."""
    expected: set[str] = set()

    def walk(level: dict[str, Any]) -> bool:
        for key, node in level.items():
            expected.add(key)
            if key not in trial:
                return False
            if isinstance(node, list):
                if not any(same(trial[key], v) for v in node):
                    return False
            elif isinstance(node, dict):
                if trial[key] not in node or not walk(node[trial[key]]):
                    return False
            elif not same(trial[key], node):
                return False
        return True

    if not walk(tree):
        return False
    for name, dist in space.items():
        expected.add(name)
        value = trial[name]
        if dist.kind == "choice":
            if not any(same(value, v) for v in dist.args):
                return False
        elif dist.kind == "randint":
            if not (isinstance(value, int) and dist.args[0] <= value <= dist.args[1]):
                return False
        elif not (isinstance(value, float) and dist.args[0] <= value <= dist.args[1]):
            return False
    return set(trial) == expected


def random_spec(tree: dict[str, Any], samples: int, seed: int, space: str = "") -> SweepSpec:
    extra = f'[search]\nmethod = "random"\nsamples = {samples}\nseed = {seed}\n'
    return parse_sweep(with_params(tree, extra + "[search.space]\n" + space))


# grids small enough for the slow reference implementation
small_trees = params_trees(max_keys=3, max_axis=3).filter(lambda t: reference_count(t) <= 500)

SPACE = (
    "s_lr = { loguniform = [1e-5, 1e-1] }\n"
    "s_width = { randint = [64, 66] }\n"
    "s_drop = { uniform = [0.0, 0.5] }\n"
    's_act = { choice = ["relu", [1, 2], 3.5] }\n'
)

# ---------------------------------------------------------------- grid


def test_grid_order_last_axis_fastest_and_branches_in_file_order() -> None:
    text = MINIMAL + '[params]\nlr = [1, 2]\nepochs = 20\nname = "n"\n'
    text += "[params.opt.sgd]\nm = [0.9, 0.99]\n[params.opt.adam]\n"
    assert expand(parse_sweep(text)) == [
        {"lr": 1, "epochs": 20, "name": "n", "opt": "sgd", "m": 0.9},
        {"lr": 1, "epochs": 20, "name": "n", "opt": "sgd", "m": 0.99},
        {"lr": 1, "epochs": 20, "name": "n", "opt": "adam"},
        {"lr": 2, "epochs": 20, "name": "n", "opt": "sgd", "m": 0.9},
        {"lr": 2, "epochs": 20, "name": "n", "opt": "sgd", "m": 0.99},
        {"lr": 2, "epochs": 20, "name": "n", "opt": "adam"},
    ]


def test_axis_after_a_conditional_varies_faster() -> None:
    text = MINIMAL + "[params]\nopt = { a = { x = [1, 2] }, b = {} }\nseed = [7, 8]\n"
    assert expand(parse_sweep(text)) == [
        {"opt": "a", "x": 1, "seed": 7},
        {"opt": "a", "x": 1, "seed": 8},
        {"opt": "a", "x": 2, "seed": 7},
        {"opt": "a", "x": 2, "seed": 8},
        {"opt": "b", "seed": 7},
        {"opt": "b", "seed": 8},
    ]


def test_trials_do_not_share_list_values() -> None:
    trials = expand(parse_sweep(MINIMAL + "[params]\nlayers = [[1, 2]]\nseed = [1, 2]\n"))
    trials[0]["layers"].append(3)
    assert trials[1]["layers"] == [1, 2]


def test_count_of_a_huge_grid_is_instant() -> None:
    axes = "\n".join(f"a{i} = [{', '.join(str(j) for j in range(10))}]" for i in range(9))
    spec = parse_sweep(
        MINIMAL + "[params]\n" + axes + "\n[params.opt.sgd]\nm = [1, 2]\n[params.opt.adam]\n"
    )
    started = time.perf_counter()
    assert count(spec) == 10**9 * 3
    assert time.perf_counter() - started < 0.01


@settings(max_examples=200, deadline=None)
@given(tree=small_trees)
def test_grid_matches_reference_and_counts(tree: dict[str, Any]) -> None:
    spec = parse_sweep(with_params(tree))
    trials = expand(spec)
    assert count(spec) == grid_count(spec.params) == len(trials) == reference_count(tree)
    assert same(trials, reference_grid(tree))
    assert all(satisfies(t, tree, {}) for t in trials)


# ---------------------------------------------------------------- random


def test_random_is_deterministic_and_in_range() -> None:
    text = MINIMAL + "[params]\nlr = [1, 2, 3]\nfixed = true\n[params.opt.sgd]\nm = [0.9, 0.99]\n"
    text += '[params.opt.adam]\n[search]\nmethod = "random"\nsamples = 200\nseed = 3\n'
    text += "[search.space]\n" + SPACE
    spec = parse_sweep(text)
    trials = expand(spec)
    assert len(trials) == count(spec) == 200
    assert trials == expand(parse_sweep(text))
    assert all(satisfies(t, spec.params, spec.search.space) for t in trials)
    # every option shows up: the draws are not stuck
    assert {t["lr"] for t in trials} == {1, 2, 3}
    assert {t["opt"] for t in trials} == {"sgd", "adam"}
    assert {t["s_width"] for t in trials} == {64, 65, 66}  # randint includes both ends
    assert {json.dumps(t["s_act"]) for t in trials} == {'"relu"', "[1, 2]", "3.5"}
    other_seed = expand(parse_sweep(text.replace("seed = 3", "seed = 4")))
    assert other_seed != trials


def test_random_pinned_values() -> None:
    """A change here re-draws every existing random sweep on --extend: do not."""
    text = MINIMAL + "[params]\nlr = [1, 2, 3]\n"
    text += '[search]\nmethod = "random"\nsamples = 3\nseed = 0\n'
    text += "[search.space]\nwd = { loguniform = [1e-5, 1e-1] }\nw = { randint = [64, 512] }\n"
    assert expand(parse_sweep(text)) == [
        {"lr": 3, "wd": 0.01076013231434323, "w": 252},
        {"lr": 1, "wd": 0.0011094273944918017, "w": 245},
        {"lr": 3, "wd": 0.0001633995681191814, "w": 277},
    ]


@settings(max_examples=100, deadline=None)
@given(
    tree=params_trees(),
    seed=st.integers(0, 2**63 - 1),
    n=st.integers(0, 30),
    more=st.integers(0, 30),
)
def test_random_determinism_prefix_stability_and_validity(
    tree: dict[str, Any], seed: int, n: int, more: int
) -> None:
    small = expand(random_spec(tree, max(n, 1), seed, SPACE))
    large_spec = random_spec(tree, max(n, 1) + more, seed, SPACE)
    large = expand(large_spec)
    assert same(large[: len(small)], small)
    assert same(small, expand(random_spec(tree, max(n, 1), seed, SPACE)))
    assert len(large) == count(large_spec)
    assert all(satisfies(t, large_spec.params, large_spec.search.space) for t in large)


@settings(max_examples=100, deadline=None)
@given(
    lo=st.floats(-1e300, 1e300),
    width=st.floats(1e-300, 1e300),
    seed=st.integers(0, 1000),
)
def test_uniform_and_loguniform_stay_in_bounds(lo: float, width: float, seed: int) -> None:
    hi = lo + width
    if not lo < hi:
        return
    space = {"u": Distribution("uniform", (lo, hi))}
    if lo > 0:
        space["g"] = Distribution("loguniform", (lo, hi))
    spec = SweepSpec(
        name="x",
        command=("t",),
        source="s",
        output_dir="/o",
        search=Search("random", 50, seed, space),
    )
    for trial in expand(spec):
        assert lo <= trial["u"] <= hi
        if "g" in trial:
            assert lo <= trial["g"] <= hi


def test_random_without_params_or_space_gives_empty_trials() -> None:
    spec = parse_sweep(MINIMAL + '[search]\nmethod = "random"\nsamples = 3\n')
    assert expand(spec) == [{}, {}, {}]


def test_adaptive_methods_expand_to_nothing() -> None:
    spec = parse_sweep(
        MINIMAL + '[metric]\nname = "l"\n[search]\nmethod = "cem"\nsamples = 40\n'
        "[search.space]\nx = { uniform = [0, 1] }\n"
    )
    assert expand(spec) == [] and count(spec) == 40


# ---------------------------------------------------------------- params_key


def test_params_key_is_canonical() -> None:
    assert params_key({"b": 1, "a": [1, "x"]}) == '{"a":[1,"x"],"b":1}'
    assert params_key({"a": 1, "b": 2}) == params_key({"b": 2, "a": 1})
    assert params_key({"a": 1}) != params_key({"a": 1.0}) != params_key({"a": True})
    assert params_key({}) == "{}"
    with pytest.raises(ValueError):
        params_key({"a": math.nan})


@settings(max_examples=100, deadline=None)
@given(tree=small_trees)
def test_params_key_survives_json_and_distinguishes_trials(tree: dict[str, Any]) -> None:
    trials = expand(parse_sweep(with_params(tree)))
    keys = [params_key(t) for t in trials]
    assert keys == [params_key(json.loads(json.dumps(t))) for t in trials]
    # a grid has no duplicate trials unless an axis repeats a value
    if all(len({json.dumps(v) for v in n}) == len(n) for n in _axes(tree)):
        assert len(set(keys)) == len(keys)


def _axes(tree: dict[str, Any]) -> list[list[Any]]:
    found = []
    for node in tree.values():
        if isinstance(node, list):
            found.append(node)
        elif isinstance(node, dict):
            for branch in node.values():
                found.extend(_axes(branch))
    return found


def test_extend_adds_only_new_trials() -> None:
    def trials(samples: int) -> list[dict[str, Any]]:
        text = MINIMAL + "[params]\nlr = [1, 2]\n"
        text += f'[search]\nmethod = "random"\nseed = 1\nsamples = {samples}\n'
        return expand(parse_sweep(text + "[search.space]\nx = { uniform = [0, 1] }\n"))

    first, second = trials(10), trials(25)
    known = {params_key(t) for t in first}
    added = [t for t in second if params_key(t) not in known]
    assert len(added) == 15 and added == second[10:]


# ---------------------------------------------------------------- speed


def _best_of(runs: int, fn: Any) -> float:
    best = math.inf
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def test_expanding_ten_thousand_trials_is_fast() -> None:
    lr = toml_value([i / 1000 for i in range(100)])
    grid = parse_sweep(
        MINIMAL + f"[params]\nlr = {lr}\ndepth = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nepochs = 20\n"
        "[params.opt.sgd]\nm = [1, 2, 3, 4, 5, 6, 7, 8, 9]\n[params.opt.adam]\nb = [0.9]\n"
    )
    assert len(expand(grid)) == 10_000
    sampled = random_spec(
        {"depth": [1, 2, 3, 4], "opt": {"sgd": {"m": [1, 2]}, "adam": {}}}, 10_000, 0, SPACE
    )
    assert len(expand(sampled)) == 10_000
    # the target is well under 50 ms; the bound here is loose so a loaded CI box does not flake
    assert _best_of(5, lambda: expand(grid)) < 0.05
    assert _best_of(5, lambda: expand(sampled)) < 0.15
