"""cluster_utils configs (recorded from cluster_utils 3.0.0, tests/convert/fixtures/SOURCES.md)
convert into sweep files that clusterd accepts and that expand to exactly the runs
cluster_utils makes; every key is mapped or refused by name."""

from __future__ import annotations

import itertools
import json
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.errors import SpecError
from clusterd.report.convert import Conversion, convert_path, looks_convertible
from clusterd.spec import expand, parse_sweep

Derived = dict[str, Callable[[dict[str, Any]], Any]]


def load(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return dict(json.loads(path.read_text()))
    return tomllib.loads(path.read_text())


def flat(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, Mapping) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def cluster_utils_runs(
    config: Mapping[str, Any],
    derived: Derived | None = None,
    values: dict[int, list[Any]] | None = None,
) -> list[dict[str, Any]]:
    """What cluster_utils' grid_search runs, enumerated independently of the converter:
    itertools.product over hyperparam_list (a list ``param`` unzips its values), every
    fixed param added, the whole grid ``restarts`` times (GridSearchOptimizer.ask).
    ``derived``: the fixture's ``"{…}"`` fixed params, written out by hand here;
    ``values``: an axis whose values are an expression, written out by hand."""
    derived = derived or {}
    items = config["hyperparam_list"]
    axes = [(values or {}).get(i, item["values"]) for i, item in enumerate(items)]
    fixed = {k: v for k, v in flat(config.get("fixed_params") or {}).items() if k not in derived}
    runs: list[dict[str, Any]] = []
    for _ in range(config.get("restarts") or 1):
        for combo in itertools.product(*axes):
            run: dict[str, Any] = {}
            for item, value in zip(items, combo, strict=True):
                if isinstance(item["param"], list):
                    run.update(zip(item["param"], value, strict=True))
                else:
                    run[item["param"]] = value
            run.update(fixed)
            for name, fn in derived.items():
                run[name] = fn(run)
            runs.append(run)
    return runs


def trials(conversion: Conversion) -> list[dict[str, Any]]:
    """The converted sweep's trials without the helper params (``_zipN``, ``_restart``)
    cluster_utils' runs do not have."""
    spec = parse_sweep(conversion.toml, "converted.toml", "/tmp")
    helpers = set(conversion.helper_params)
    return [{k: v for k, v in t.items() if k not in helpers} for t in expand(spec)]


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal runs, in order, with equal types (1 and 1.0 are different params)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


GRIDS: list[tuple[str, Derived, dict[int, list[Any]]]] = [
    (
        "basic_constrained_grid.json",
        {
            "fn_args.sharp_penalty": lambda r: r["fn_args.u"] < 0.2,
            "fn_args.x": lambda r: r["fn_args.y"] / 3,
        },
        {1: [1, 2, 3]},  # "{list(range(1,4))}"
    ),
    (
        "basic_grid_search_with_tuples.json",
        {"fn_args.u": lambda r: r["pairs"][0], "fn_args.v": lambda r: r["pairs"][1]},
        {},
    ),
    ("checkpointing_grid_search_checkpointing.json", {}, {}),
    ("slurm_timeout_signal_grid_search.toml", {}, {}),
    ("tests_grid_search_resume.json", {}, {}),
    ("tests_grid_search_with_venv.toml", {}, {}),
    ("tests_main_no_save_metrics.json", {}, {}),
]


@pytest.mark.parametrize(("name", "derived", "values"), GRIDS, ids=[g[0] for g in GRIDS])
def test_a_grid_expands_to_the_runs_cluster_utils_makes(
    configs: Path, name: str, derived: Derived, values: dict[int, list[Any]]
) -> None:
    path = configs / "cluster_utils" / name
    conversion = convert_path(path)
    assert conversion.kind == "cluster_utils" and looks_convertible(path) == "cluster_utils"
    expected = cluster_utils_runs(load(path), derived, values)
    assert same(trials(conversion), expected), conversion.toml


@pytest.mark.parametrize(
    "name", ["basic_grid_search.json", "basic_grid_search_main_w_decorator.json"]
)
def test_samples_draw_that_many_runs_from_the_grid(configs: Path, name: str) -> None:
    """``samples = 50``: cluster_utils draws each param uniformly; so does method "random"."""
    path = configs / "cluster_utils" / name
    conversion = convert_path(path)
    spec = parse_sweep(conversion.toml, "converted.toml", "/tmp")
    assert (spec.search.method, spec.search.samples) == ("random", 50)
    grid = cluster_utils_runs(load(configs / "cluster_utils" / "basic_grid_search.json"))
    keys = {json.dumps(r, sort_keys=True) for r in grid}
    drawn = trials(conversion)
    assert len(drawn) == 50 and all(json.dumps(t, sort_keys=True) in keys for t in drawn)


def test_restarts_and_zipped_params_with_expressions(configs: Path) -> None:
    """restarts = 3 runs the grid three times; tuple params and a param derived from two
    axes (with another axis between them) keep cluster_utils' order."""
    config = {
        "optimization_procedure_name": "zips",
        "results_dir": "results",
        "script_relative_path": "main.py",
        "restarts": 3,
        "fixed_params": {"ratio": "{a / b}", "tag": "run-{a}", "c": "{2 ** 3}"},
        "hyperparam_list": [
            {"param": "a", "values": [1, 2]},
            {"param": ["p", "q"], "values": [[1, "x"], [2, "y"], [1, "x"]]},
            {"param": "b", "values": [4, 8]},
            {"param": "d", "values": [True, False]},
        ],
    }
    path = configs / "zips.json"
    path.write_text(json.dumps(config))
    conversion = convert_path(path)
    derived: Derived = {
        "ratio": lambda r: r["a"] / r["b"],
        "tag": lambda r: f"run-{r['a']}",
        "c": lambda r: 8,
    }
    expected = cluster_utils_runs(config, derived)
    assert len(expected) == 3 * 2 * 3 * 2 * 2
    assert same(trials(conversion), expected), conversion.toml
    assert "_restart" in conversion.helper_params
    assert ("restarts", "_restart = [0, 1, 2] (each run of the grid)") in conversion.mapped


def test_hp_optimization_keeps_its_optimizer_and_space(configs: Path) -> None:
    ng = convert_path(configs / "cluster_utils" / "basic_optimization_ng.json")
    spec = parse_sweep(ng.toml, "ng.toml", "/tmp")
    assert spec.search.method == "nevergrad" and spec.search.options == {"optimizer": "CMA"}
    assert (spec.metric.name, spec.metric.mode) == ("result", "min") if spec.metric else False
    assert spec.search.samples == 1000 and spec.max_concurrent == 100
    space = {k: (d.kind, d.args) for k, d in spec.search.space.items()}
    assert space == {
        "fn_args.u": ("uniform", (-3.0, 3.0)),
        "fn_args.v": ("randint", (1, 1000)),
        "fn_args.w": ("randint", (-5, 5)),
        "fn_args.x": ("uniform", (0.0, 4.0)),
        "fn_args.y": ("loguniform", (0.01, 100.0)),
        "fn_args.sharp_penalty": ("choice", (False, True)),
    }
    cem_json = convert_path(configs / "cluster_utils" / "basic_optimization_metaopt.json")
    cem_toml = convert_path(configs / "cluster_utils" / "basic_optimization_metaopt.toml")
    for conversion in (cem_json, cem_toml):
        spec = parse_sweep(conversion.toml, "cem.toml", "/tmp")
        assert spec.search.method == "cem"
        assert spec.search.options["population"] == 100
        assert spec.search.options["elite_fraction"] == pytest.approx(0.1)
        assert set(spec.search.space) == {f"fn_args.{n}" for n in "uvwxy"} | {
            "fn_args.sharp_penalty"
        }
    assert any(key == "optimizer_settings.with_restarts" for key, _ in cem_toml.refused)


ALL = sorted(p.name for p in (Path(__file__).parent / "fixtures" / "cluster_utils").iterdir())


@pytest.mark.parametrize("name", ALL)
def test_every_key_is_mapped_or_refused_and_the_result_is_accepted(
    configs: Path, name: str
) -> None:
    path = configs / "cluster_utils" / name
    conversion = convert_path(path)
    parse_sweep(conversion.toml, "converted.toml", str(path.parent))  # clusterd accepts it
    said = [k for k, _ in conversion.mapped + conversion.refused]
    for key, value in load(path).items():
        if isinstance(value, Mapping) and value and key not in ("fixed_params",):
            for sub, v in value.items():
                if v is None or v == [] or v == {}:
                    continue
                hit = any(s in (key, f"{key}.{sub}") or s.startswith(f"{key}.{sub}") for s in said)
                assert hit, (name, f"{key}.{sub}", said)
        elif value not in ({}, [], None):
            assert any(
                s == key or s.startswith(f"{key}[") or s.startswith(f"{key}.") for s in said
            ), (
                name,
                key,
                said,
            )


def test_the_refused_keys_say_why(configs: Path) -> None:
    conversion = convert_path(configs / "cluster_utils" / "basic_grid_search.json")
    refused = dict(conversion.refused)
    assert "HTCondor" in refused["cluster_requirements.bid"]
    assert "check out" in refused["git_params.branch"]
    assert "clusterctl report" in refused["generate_report"]
    assert set(refused) == {
        "cluster_requirements.bid",
        "cluster_requirements.hostname_list",
        "git_params.branch",
        "generate_report",
        "remove_jobs_dir",
    }
    rosenbrock = dict(
        convert_path(configs / "cluster_utils" / "rosenbrock_optimization.json").refused
    )
    assert "not converted" in rosenbrock["fixed_params.__import_promise__"]


def test_paths_environment_and_resources(configs: Path) -> None:
    root = configs / "cluster_utils"
    venv = convert_path(root / "tests_grid_search_with_venv.toml")
    spec = parse_sweep(venv.toml, "v.toml", "/tmp")
    assert spec.command[0] == "python3" and spec.command[1] == str(
        root / "examples/basic/main_no_fail.py"
    )
    assert spec.env.setup is not None and "bin/activate" in spec.env.setup
    timeout = parse_sweep(
        convert_path(root / "slurm_timeout_signal_grid_search.toml").toml, "t", "/tmp"
    )
    assert timeout.resources.partition == "cpu-galvani"
    assert timeout.resources.time_seconds == 240 and timeout.resources.memory_mb == 1000
    assert timeout.output_dir == "/tmp/slurm_timeout_signal_example/timeout_signal_test"
    constrained = parse_sweep(convert_path(root / "basic_constrained_grid.json").toml, "c", "/tmp")
    assert constrained.output_dir == "/is/cluster/work/alice/tmp/constrained_grid"  # {$USER}
    grid = parse_sweep(convert_path(root / "basic_grid_search.json").toml, "g", "/tmp")
    assert grid.env.vars == {"ENVIRONMENT_VARIABLE_TO_SET": "value"}
    assert grid.code.snapshot == "git" and grid.resources.memory_mb == 16000


@pytest.mark.parametrize(
    ("fixed", "key", "words"),
    [
        ("\"{open('/etc/passwd').read()}\"", "fixed_params.evil", "call to 'open'"),
        ("\"{__import__('os').system('id')}\"", "fixed_params.evil", "call to '__import__'"),
        ('"{a.__class__}"', "fixed_params.evil", "attribute access"),
        ('"{[x for x in range(3)]}"', "fixed_params.evil", "list comprehension"),
        ('"{lambda: 1}"', "fixed_params.evil", "lambda"),
        ('"{10 ** 10 ** 10}"', "fixed_params.evil", "exponent"),
        ('"{list(range(10 ** 9))}"', "fixed_params.evil", "range of more than"),
        ('"{nope + 1}"', "fixed_params.evil", "'nope', which is no param"),
        ('"{a if a else 2}"', "fixed_params.evil", "conditional expression"),
        ('"{evil}"', "fixed_params.evil", "cycle"),
    ],
)
def test_an_expression_outside_the_subset_is_refused_by_name(
    configs: Path, fixed: str, key: str, words: str
) -> None:
    path = configs / "evil.json"
    text = (
        '{"optimization_procedure_name": "e", "results_dir": "r", "script_relative_path": "m.py",'
        f' "restarts": 1, "fixed_params": {{"evil": {fixed}}},'
        ' "hyperparam_list": [{"param": "a", "values": [1, 2]}]}'
    )
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        convert_path(path)
    message = str(err.value)
    assert str(path) in message and "evil" in message and words in message, message


def test_bad_configs_name_the_key(configs: Path) -> None:
    head = '{"optimization_procedure_name": "x", "script_relative_path": "m.py", '
    cases = {
        head + '"restarts": 1,'
        ' "hyperparam_list": [{"param": ["a", "b"], "values": [[1, 2], [3]]}]}': (
            "hyperparam_list[0].values[1]"
        ),
        head + '"optimized_params": [{"param": "a", "distribution": "Beta", "bounds": [0, 1]}],'
        ' "optimization_setting": {"metric_to_optimize": "m", "number_of_samples": 5}}': (
            "optimized_params[0].distribution"
        ),
        '{"optimization_procedure_name": "x", "script_relative_path": "m.py", "restarts": 0,'
        ' "hyperparam_list": [{"param": "a", "values": [1]}]}': "restarts",
    }
    for i, (text, key) in enumerate(cases.items()):
        path = configs / f"bad{i}.json"
        path.write_text(text)
        with pytest.raises(SpecError) as err:
            convert_path(path)
        assert err.value.key == key, (err.value, key)
    broken = configs / "broken.json"
    broken.write_text('{"optimization_procedure_name": ')
    with pytest.raises(SpecError, match="invalid JSON"):
        convert_path(broken)


def test_a_native_sweep_file_is_not_convertible(tmp_path: Path) -> None:
    native = tmp_path / "sweep.toml"
    native.write_text('name = "n"\ncommand = "python t.py"\n[params]\nlr = [1, 2]\n')
    assert looks_convertible(native) is None
    assert looks_convertible(tmp_path / "missing.json") is None
    with pytest.raises(SpecError, match="expected a cluster_utils config"):
        convert_path(native)


@st.composite
def grids(draw: st.DrawFn) -> tuple[dict[str, Any], Derived]:
    """A random cluster_utils grid: single and tuple params, restarts, and maybe a fixed
    param derived from two single-param axes (``"{pA + pB}"``)."""
    items: list[dict[str, Any]] = []
    singles: list[str] = []
    for i in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            name = f"p{i}"
            singles.append(name)
            values = draw(st.lists(st.integers(-5, 5), min_size=1, max_size=3))
            items.append({"param": name, "values": values})
        else:
            pairs = draw(
                st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=3)
            )
            items.append({"param": [f"t{i}a", f"t{i}b"], "values": [list(p) for p in pairs]})
    config: dict[str, Any] = {
        "optimization_procedure_name": "h",
        "results_dir": "r",
        "script_relative_path": "m.py",
        "restarts": draw(st.integers(1, 2)),
        "fixed_params": {"f": 1.5},
        "hyperparam_list": items,
    }
    derived: Derived = {}
    if len(singles) >= 2 and draw(st.booleans()):
        a, b = draw(st.permutations(singles))[:2]
        config["fixed_params"]["d"] = f"{{{a} + {b}}}"
        derived["d"] = lambda r: r[a] + r[b]
    return config, derived


@settings(max_examples=80, deadline=None)
@given(grids())
def test_random_grids_expand_to_the_runs_cluster_utils_makes(
    grid: tuple[dict[str, Any], Derived],
) -> None:
    config, derived = grid
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config))
        conversion = convert_path(path)
    assert same(trials(conversion), cluster_utils_runs(config, derived)), conversion.toml
