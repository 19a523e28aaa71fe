"""TPE and Optuna's other samplers over conditional ``[params]``: define-by-run proposals
that are always a combination the grid has, and a rebuilt searcher (a restarted daemon)
that proposes what the live one would."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterd.search.base import Result
from clusterd.search.cem import CemSearcher
from clusterd.spec import expand, params_key, parse_sweep
from clusterd.spec.expand import grid_count

optuna = pytest.importorskip("optuna")

from clusterd.search.optuna_samplers import OptunaSearcher, TpeSearcher  # noqa: E402

EXAMPLES = 200 if os.environ.get("CLUSTERD_STRESS") else 25

# -- generated conditional [params] trees ----------------------------------------

VALUES = st.one_of(
    st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True),
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3, unique=True),
    st.just([[1, 2], [3]]),  # list-valued choices
)
FIXED = st.one_of(st.integers(0, 5), st.sampled_from(["x", "y"]), st.booleans())


@st.composite
def level(draw: Any, depth: int, prefix: str = "p") -> dict[str, Any]:
    """One level of a tree; names are ``<parent's>_<i>``: the branches of one conditional
    share names (with different values), and no name repeats along a path."""
    n = draw(st.integers(1 if depth == 0 else 0, 3))
    out: dict[str, Any] = {}
    for i in range(n):
        name = f"{prefix}_{i}"
        kinds = ["axis", "fixed"] + (["branch"] if depth < 2 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "axis":
            out[name] = draw(VALUES)
        elif kind == "fixed":
            out[name] = draw(FIXED)
        else:
            names = draw(
                st.lists(
                    st.sampled_from(["sgd", "adam", "rms"]), min_size=1, max_size=3, unique=True
                )
            )
            out[name] = {b: draw(level(depth + 1, name)) for b in names}
    return out


def toml_tables(tree: dict[str, Any], path: str) -> list[str]:
    """The tree as TOML: ``[params]``'s own keys, then a ``[params.k.branch]`` table each."""
    head = [f"[{path}]"] + [
        f"{k} = {json.dumps(v)}" for k, v in tree.items() if not isinstance(v, dict)
    ]
    out = ["\n".join(head)]
    for k, node in tree.items():
        if isinstance(node, dict):
            for branch, sub in node.items():
                out.extend(toml_tables(sub, f"{path}.{k}.{branch}"))
    return out


def sweep_text(tree: dict[str, Any], method: str, options: str = "") -> str:
    search = (
        '[search]\nmethod = "grid"\n'
        if method == "grid"
        else f'[search]\nmethod = "{method}"\nsamples = 50\nseed = 7\n'
        "[search.space]\nx = { uniform = [0.0, 1.0] }\n"
        f"[search.options]\n{options}\n"
    )
    return (
        'name = "c"\ncommand = "python train.py"\n[metric]\nname = "loss"\n'
        + "\n".join(toml_tables(tree, "params"))
        + "\n"
        + search
    )


def grid_keys(tree: dict[str, Any]) -> set[str]:
    spec = parse_sweep(sweep_text(tree, "grid"), source="grid.toml", base_dir="/tmp")
    return {params_key(p) for p in expand(spec)}


def valid(keys: set[str], p: dict[str, Any]) -> bool:
    rest = {k: v for k, v in p.items() if k != "x"}
    return 0.0 <= p["x"] <= 1.0 and params_key(rest) in keys


def loss(p: dict[str, Any]) -> float:
    """Something to learn: depends on the branch taken and on x."""
    text = json.dumps(p, sort_keys=True)
    return (sum(map(ord, text)) % 17) / 17 + p["x"]


# -- properties ------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level(0), st.randoms(use_true_random=False))
def test_tpe_proposes_only_combinations_the_grid_has(tree: dict[str, Any], rnd: Any) -> None:
    spec_text = sweep_text(tree, "tpe", "n_startup_trials = 3")
    spec = parse_sweep(spec_text, source="c.toml", base_dir="/tmp")
    assert TpeSearcher.check(spec) is None  # conditional sweeps are accepted
    if grid_count(spec.params) > 2000:
        return
    keys = grid_keys(tree)
    live = TpeSearcher(spec)
    proposed: list[dict[str, Any]] = []
    for i in range(10):
        p = live.ask(i)
        assert p is not None and valid(keys, p), (p, spec_text)
        proposed.append(p)
        if i % 4 != 3:  # every fourth stays in flight
            value = None if rnd.random() < 0.1 else loss(p)
            live.tell(Result(i, p, value, "completed" if value is not None else "failed"))
    # a restarted daemon: ended trials told in index order, the others running
    rebuilt = TpeSearcher(spec)
    for i, p in enumerate(proposed):
        if i % 4 == 3:
            rebuilt.running(i, p)
        else:
            told = live._study.trials[i]
            value = told.value
            rebuilt.tell(Result(i, p, value, "completed" if value is not None else "failed"))
    nxt = live.ask(10)
    assert nxt is not None and valid(keys, nxt)
    assert rebuilt.ask(10) == nxt


def test_branches_keep_their_own_params_and_tpe_learns_the_better_branch() -> None:
    text = """
name = "opt"
command = "python train.py"
[metric]
name = "loss"
[params]
epochs = 5
[params.optimizer.sgd]
lr = [0.1, 0.01]
momentum = [0.0, 0.9]
[params.optimizer.adam]
lr = [0.001, 0.0001, 0.00001]
betas = [[0.9, 0.999]]
[search]
method = "tpe"
samples = 40
seed = 1
[search.options]
n_startup_trials = 5
"""
    spec = parse_sweep(text, source="opt.toml", base_dir="/tmp")
    s = TpeSearcher(spec)
    picks = []
    for i in range(30):
        p = s.ask(i)
        assert p is not None
        if p["optimizer"] == "sgd":
            assert set(p) == {"epochs", "optimizer", "lr", "momentum"}
            assert p["lr"] in (0.1, 0.01)
        else:
            assert set(p) == {"epochs", "optimizer", "lr", "betas"}
            assert p["lr"] in (0.001, 0.0001, 0.00001) and p["betas"] == [0.9, 0.999]
        assert list(p)[:2] == ["epochs", "optimizer"]  # the file's order, as the grid's
        picks.append(p["optimizer"])
        s.tell(Result(i, p, 1.0 if p["optimizer"] == "sgd" else 0.1 + p["lr"], "completed"))
    assert picks[15:].count("adam") > picks[15:].count("sgd")


@pytest.mark.parametrize("sampler", ["RandomSampler", "QMCSampler", "TPESampler"])
def test_optunas_other_samplers_search_branches_too(sampler: str) -> None:
    if sampler == "QMCSampler":
        pytest.importorskip("scipy")
    tree = {"depth": [1, 2], "model": {"cnn": {"k": [3, 5]}, "mlp": {"width": [8, 16, 32]}}}
    spec = parse_sweep(
        sweep_text(tree, "optuna", f'sampler = "{sampler}"'), source="c.toml", base_dir="/tmp"
    )
    assert OptunaSearcher.check(spec) is None
    keys = grid_keys(tree)
    s = OptunaSearcher(spec)
    for i in range(12):
        p = s.ask(i)
        assert p is not None and valid(keys, p), p
        s.tell(Result(i, p, loss(p), "completed"))


def test_a_trial_from_an_edited_file_is_replayed_with_what_still_fits() -> None:
    """``--extend`` with an edited file: an old trial's branch or value may be gone; the
    rebuild keeps the dimensions that still fit instead of failing."""
    tree = {"model": {"cnn": {"k": [3, 5]}, "mlp": {"width": [8, 16]}}}
    spec = parse_sweep(sweep_text(tree, "tpe"), source="c.toml", base_dir="/tmp")
    s = TpeSearcher(spec)
    s.tell(Result(0, {"model": "rnn", "hidden": 4, "x": 0.5}, 1.0, "completed"))
    s.tell(Result(1, {"model": "cnn", "k": 7, "x": 2.0}, 1.0, "completed"))
    s.running(2, {"model": "mlp", "width": 16, "x": 0.1})
    p = s.ask(3)
    assert p is not None and valid(grid_keys(tree), p)


def test_cem_still_refuses_conditional_params_and_names_what_does_not() -> None:
    tree = {"model": {"cnn": {"k": [3, 5]}, "mlp": {}}}
    spec = parse_sweep(sweep_text(tree, "cem"), source="c.toml", base_dir="/tmp")
    problem = CemSearcher.check(spec) or ""
    assert "cannot search conditional [params] (model)" in problem
    assert '"tpe" or "optuna"' in problem
