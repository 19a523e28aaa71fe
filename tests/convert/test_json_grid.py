"""Nested JSON grids ({"args", "machine", "meta"}; the format is docs/convert.md's): the
converted sweep runs exactly the grid's combinations, ``sample`` draws N of them, and the
keys with no equivalent are listed."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from clusterd.errors import SpecError
from clusterd.report.convert import convert_path, looks_convertible
from clusterd.spec import expand, parse_sweep


def combinations(args: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """The grid as docs/convert.md defines it, enumerated here independently: a list is
    an axis, a scalar fixed, an object of objects a choice whose chosen object's own
    combinations join the run, any other object a namespace (dotted names). The product
    is in key order, the last key varying fastest."""
    options: list[list[dict[str, Any]]] = []
    for key, value in args.items():
        name = prefix + key
        if isinstance(value, list):
            options.append([{name: v} for v in value])
        elif isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values()):
            options.append(
                [
                    {name: alt, **sub}
                    for alt, branch in value.items()
                    for sub in combinations(branch)
                ]
            )
        elif isinstance(value, Mapping):
            options.append(combinations(value, name + "."))
        else:
            options.append([{name: value}])
    runs = []
    for combo in itertools.product(*options):
        run: dict[str, Any] = {}
        for part in combo:
            run.update(part)
        runs.append(run)
    return runs


def key(run: Mapping[str, Any]) -> str:
    return json.dumps(run, sort_keys=True)


@pytest.mark.parametrize("name", ["basic.json", "conditional.json"])
def test_the_sweep_runs_every_combination_of_the_grid(configs: Path, name: str) -> None:
    path = configs / "json_grid" / name
    assert looks_convertible(path) == "json_grid"
    conversion = convert_path(path)
    spec = parse_sweep(conversion.toml, "converted.toml", str(path.parent))
    expected = combinations(json.loads(path.read_text())["args"])
    assert [key(t) for t in expand(spec)] == [key(r) for r in expected]
    assert conversion.helper_params == []


def test_flags_pass_the_args_every_trial_has(configs: Path) -> None:
    conversion = convert_path(configs / "json_grid" / "conditional.json")
    spec = parse_sweep(conversion.toml, "c.toml", "/tmp")
    assert spec.command == (
        "python",
        "fit.py",
        "--seed={seed}",
        "--optimizer={optimizer}",
        "--data.augment={data.augment}",
    )
    flags = dict(conversion.mapped)["meta.flags"]
    assert "lr, momentum, betas" in flags and "params.json" in flags


def test_machine_and_refused_keys(configs: Path) -> None:
    conversion = convert_path(configs / "json_grid" / "basic.json")
    spec = parse_sweep(conversion.toml, "b.toml", "/tmp")
    assert (spec.resources.partition, spec.resources.gpus, spec.resources.cpus) == ("gpu", 1, 4)
    assert spec.resources.memory_mb == 16 * 1024 and spec.resources.time_seconds == 4 * 3600
    assert spec.driver_options == {"slurm": {"account": "ml"}}
    assert spec.max_concurrent == 8
    assert conversion.refused == [("machine.nodes", "not a machine key clusterd knows")]


def test_sample_draws_n_combinations_of_the_grid(configs: Path) -> None:
    path = configs / "json_grid" / "sample.json"
    conversion = convert_path(path)
    spec = parse_sweep(conversion.toml, "s.toml", "/tmp")
    assert (spec.search.method, spec.search.samples, spec.search.seed) == ("random", 5, 7)
    grid = {key(r) for r in combinations(json.loads(path.read_text())["args"])}
    drawn = expand(spec)
    assert len(drawn) == 5 and all(key(t) in grid for t in drawn)
    assert spec.env.vars == {"OMP_NUM_THREADS": "2"} and spec.command == ("python", "search.py")
    # --sample overrides meta.sample; N >= the grid's size is the whole grid
    bigger = parse_sweep(convert_path(path, sample=12).toml, "s.toml", "/tmp")
    assert bigger.search.samples == 12
    whole = parse_sweep(convert_path(path, sample=1000).toml, "s.toml", "/tmp")
    assert whole.search.method == "grid" and len(expand(whole)) == len(grid) == 36


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"args": {"lr": []}, "meta": {"command": "x"}}, "args.lr"),
        ({"args": {"lr": [1, None]}, "meta": {"command": "x"}}, "args.lr[1]"),
        ({"args": {"lr": [1]}, "meta": {}}, "meta.command"),
        ({"args": {"lr": [1]}, "meta": {"command": "x", "sample": 0}}, "meta.sample"),
        ({"args": {"bad name": [1]}, "meta": {"command": "x"}}, "args.bad name"),
        # caught by clusterd's own parser, on the converted file
        ({"args": {"a": {"x": {"b": [1]}}, "b": [2]}, "meta": {"command": "x"}}, "params.a.x.b"),
    ],
)
def test_bad_grids_name_the_key(tmp_path: Path, body: dict[str, Any], key: str) -> None:
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(body))
    with pytest.raises(SpecError) as err:
        convert_path(path)
    assert err.value.key == key, str(err.value)
