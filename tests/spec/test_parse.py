"""sweep.toml parsing: the design's example, defaults, each section, helpers, round trips."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterd.errors import SpecError
from clusterd.spec import load_sweep, parse_sweep
from clusterd.spec.expand import count, expand, grid_count
from clusterd.spec.model import Distribution, SweepSpec
from clusterd.spec.parse import fill_placeholders, format_value, placeholders

# DESIGN.md's full example, with the two changes TOML and the contract force:
# [driver.slurm] -> [drivers.slurm] (TOML cannot have driver = "..." and a [driver.x] table),
# and the space's "lr" renamed "wd" (a space name may not also be a [params] key).
DESIGN_EXAMPLE = """
name = "lr-depth"                 # [A-Za-z0-9._-]{1,64}, unique among the user's sweeps
command = "python train.py"       # string (shlex-split) or list
driver = "local"                  # local | slurm | htcondor | pbs | a plugin's name
max_concurrent = 4                # trials running or queued at once
output_dir = "runs/lr-depth"      # optional

[metric]
name = "val_loss"
mode = "min"                      # min | max

[params]                          # lists are grid axes, scalars are fixed
lr = [0.1, 0.01, 0.001]
epochs = 20
[params.optimizer.sgd]            # conditional: optimizer in {sgd, adam}
momentum = [0.9, 0.99]
[params.optimizer.adam]
beta1 = [0.9]

[search]                          # optional: default is the full grid of [params]
method = "random"                 # grid | random | tpe (optuna, optional extra) | ...
samples = 50
seed = 0
[search.space]
wd = { loguniform = [1e-5, 1e-1] }
width = { randint = [64, 512] }
dropout = { uniform = [0.0, 0.5] }

[resources]                       # translated by each driver
cpus = 4
gpus = 1
memory = "16G"
time = "04:00:00"
partition = "gpu"
pack = 1                          # trials per scheduler job

[resume]
exit_code = 3
max_resumes = 50
signal = "USR1"
signal_lead = 120

[retry]
max_failures = 1

[early_stopping]
rule = "median"                   # median | asha | none
min_steps = 5

[code]
snapshot = "git"

[gpu]
interval = 10                     # seconds between GPU samples; idle_warning = "30m"

[env]
vars = { OMP_NUM_THREADS = "4" }
setup = "source ~/venvs/train/bin/activate"

[drivers.slurm]                   # free-form options for one driver
account = "ml"
extra = ["--constraint=a100"]
"""

MINIMAL = 'name = "x"\ncommand = "python t.py"\n'


# ---------------------------------------------------------------- a small TOML writer

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_str(text: str) -> str:
    """A TOML basic string: escapes quotes, backslashes and control characters."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else toml_str(key)


def toml_value(value: Any) -> str:
    """Any TOML value inline (tables as inline tables, which keep key order)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(type(value))


def toml_doc(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


# ---------------------------------------------------------------- strategies

NAME_STEMS = ["lr", "depth", "model.width", "drop-out", "_seed", "Beta1", "x"]
finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
scalars = st.one_of(st.integers(-(2**40), 2**40), finite_floats, st.booleans(), st.text(max_size=8))
axis_values = st.one_of(scalars, st.lists(scalars, max_size=3))


@st.composite
def params_trees(
    draw: st.DrawFn, max_depth: int = 2, max_keys: int = 4, max_axis: int = 4
) -> dict[str, Any]:
    """A valid [params] tree; names are unique across the whole tree, so no clashes."""
    counter = [0]

    def fresh() -> str:
        counter[0] += 1
        return f"{draw(st.sampled_from(NAME_STEMS))}{counter[0]}"

    def level(depth: int) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for _ in range(draw(st.integers(0, max_keys))):
            kind = draw(st.sampled_from(["axis", "fixed", "cond"] if depth else ["axis", "fixed"]))
            name = fresh()
            if kind == "axis":
                tree[name] = draw(st.lists(axis_values, min_size=1, max_size=max_axis))
            elif kind == "fixed":
                tree[name] = draw(scalars)
            else:
                branches = draw(
                    st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3, unique=True)
                )
                tree[name] = {b: level(depth - 1) for b in branches}
        return tree

    return level(max_depth)


def with_params(tree: dict[str, Any], extra: str = "") -> str:
    return MINIMAL + f"params = {toml_value(tree)}\n" + extra


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 and True from 1."""
    return json.dumps(a) == json.dumps(b)


# ---------------------------------------------------------------- the design example


def test_design_example_parses(tmp_path: Path) -> None:
    spec = parse_sweep(DESIGN_EXAMPLE, "sweep.toml", tmp_path)
    assert spec.name == "lr-depth"
    assert spec.command == ("python", "train.py")
    assert spec.driver == "local"
    assert spec.output_dir == str(tmp_path / "runs" / "lr-depth")
    assert spec.metric is not None and (spec.metric.name, spec.metric.mode) == ("val_loss", "min")
    assert spec.params == {
        "lr": [0.1, 0.01, 0.001],
        "epochs": 20,
        "optimizer": {"sgd": {"momentum": [0.9, 0.99]}, "adam": {"beta1": [0.9]}},
    }
    assert grid_count(spec.params) == 3 * (2 + 1) == 9
    assert count(spec) == 50 == len(expand(spec))
    assert spec.search.space == {
        "wd": Distribution("loguniform", (1e-5, 1e-1)),
        "width": Distribution("randint", (64, 512)),
        "dropout": Distribution("uniform", (0.0, 0.5)),
    }
    res = spec.resources
    assert (res.cpus, res.gpus, res.memory, res.memory_mb) == (4, 1, "16G", 16384)
    assert (res.time, res.time_seconds, res.partition, res.pack) == ("04:00:00", 14400, "gpu", 1)
    assert (spec.resume.exit_code, spec.resume.max_resumes) == (3, 50)
    assert (spec.resume.signal, spec.resume.signal_lead) == ("USR1", 120)
    assert spec.retry.max_failures == 1
    assert (spec.early_stopping.rule, spec.early_stopping.min_steps) == ("median", 5)
    assert spec.code.snapshot == "git"
    assert spec.gpu.interval == 10.0
    assert spec.env.vars == {"OMP_NUM_THREADS": "4"}
    assert spec.env.setup == "source ~/venvs/train/bin/activate"
    assert spec.driver_options == {"slurm": {"account": "ml", "extra": ["--constraint=a100"]}}


def test_design_example_as_a_grid_has_nine_trials() -> None:
    text = (
        DESIGN_EXAMPLE.split("[search]")[0] + "[resources]" + DESIGN_EXAMPLE.split("[resources]")[1]
    )
    spec = parse_sweep(text, "sweep.toml")
    assert spec.search.method == "grid"
    assert count(spec) == len(expand(spec)) == 9


def test_design_example_verbatim_points_at_the_driver_table() -> None:
    verbatim = DESIGN_EXAMPLE.replace("[drivers.slurm]", "[driver.slurm]")
    with pytest.raises(SpecError, match=r"put driver options under \[drivers\.slurm\]"):
        parse_sweep(verbatim, "sweep.toml")


# ---------------------------------------------------------------- defaults and paths


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    spec = parse_sweep(MINIMAL, "s.toml", tmp_path)
    assert spec == SweepSpec(
        name="x",
        command=("python", "t.py"),
        source="s.toml",
        output_dir=str(tmp_path / "runs" / "x"),
    )
    assert spec.params == {} and spec.search.method == "grid" and spec.metric is None
    assert expand(spec) == [{}] and count(spec) == 1


def test_output_dir_relative_absolute_and_home(tmp_path: Path) -> None:
    def out(value: str) -> str:
        return parse_sweep(MINIMAL + f"output_dir = {toml_str(value)}\n", "s", tmp_path).output_dir

    assert out("results/a") == str(tmp_path / "results" / "a")
    assert out("../up") == str(tmp_path.parent / "up")
    assert out("/abs/dir") == "/abs/dir"
    assert out("~/runs") == os.path.expanduser("~/runs")


def test_parse_without_base_dir_uses_cwd() -> None:
    assert parse_sweep(MINIMAL).output_dir == os.path.join(os.getcwd(), "runs", "x")
    assert parse_sweep(MINIMAL).source == "<string>"


def test_load_sweep_uses_the_files_directory_and_name(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    path = tmp_path / "exp" / "sweep.toml"
    path.write_text(MINIMAL)
    spec = load_sweep(path)
    assert spec.source == str(path)
    assert spec.output_dir == str(tmp_path / "exp" / "runs" / "x")
    assert load_sweep(str(path)) == spec


def test_load_sweep_relative_path_is_reported_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("sweep.toml").write_text('name = "x"\n')
    with pytest.raises(SpecError) as info:
        load_sweep("sweep.toml")
    assert str(info.value) == (
        'sweep.toml: command: required key missing (a command like "python train.py")'
    )


def test_load_sweep_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_sweep(tmp_path / "nope.toml")
    assert (
        str(info.value)
        == f"{tmp_path}/nope.toml: cannot read sweep file (No such file or directory)"
    )
    with pytest.raises(SpecError) as info:
        load_sweep(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read sweep file (Is a directory)"


def test_load_sweep_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b'name = "x"\ncommand = "caf\xe9"\n')
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    assert str(info.value) == f"{path}: line 2, column 15: invalid TOML: not UTF-8 text"


def test_load_sweep_accepts_a_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_sweep(path).name == "x"


def test_toml_error_at_end_of_document() -> None:
    with pytest.raises(SpecError) as info:
        parse_sweep('name = "x"\ncommand = "a', "s.toml")
    assert str(info.value).startswith("s.toml: line 2, column ")
    assert "invalid TOML: " in str(info.value)


# ---------------------------------------------------------------- sections


def test_command_as_list_and_quoted_string() -> None:
    spec = parse_sweep('name = "x"\ncommand = ["python", "my script.py", ""]\n')
    assert spec.command == ("python", "my script.py", "")
    spec = parse_sweep('name = "x"\ncommand = "python \'my script.py\' --a=1"\n')
    assert spec.command == ("python", "my script.py", "--a=1")


@pytest.mark.parametrize(
    ("value", "megabytes"),
    [
        ('"16G"', 16384),
        ('"512M"', 512),
        ('"1T"', 1048576),
        ("2048", 2048),
        ('"16gb"', 16384),
        ('"1.5G"', 1536),
        ('"2048K"', 2),
        ('"100"', 100),
    ],
)
def test_memory(value: str, megabytes: int) -> None:
    spec = parse_sweep(MINIMAL + f"[resources]\nmemory = {value}\n")
    assert spec.resources.memory_mb == megabytes
    assert spec.resources.memory == (f"{value}M" if value.isdigit() else json.loads(value))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ('"04:00:00"', 14400),
        ('"1-12:00:00"', 129600),
        ('"30:00"', 1800),
        ("90", 5400),
        ('"90"', 5400),
        ('"2-0"', 172800),
        ('"1-2:30"', 95400),
        ('"100:00:00"', 360000),
        ('"90:30"', 5430),
    ],
)
def test_time(value: str, seconds: int) -> None:
    assert parse_sweep(MINIMAL + f"[resources]\ntime = {value}\n").resources.time_seconds == seconds


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("USR1", "USR1"),
        ("SIGUSR2", "USR2"),
        ("term", "TERM"),
        ("SIGINT", "INT"),
        ("none", "none"),
        ("NONE", "none"),
    ],
)
def test_resume_signal_is_normalised(value: str, stored: str) -> None:
    spec = parse_sweep(MINIMAL + f'[resume]\nsignal = "{value}"\n')
    assert spec.resume.signal == stored


def test_early_stopping_options_and_plugin_rule() -> None:
    text = MINIMAL + '[metric]\nname = "acc"\nmode = "max"\n[early_stopping]\nrule = "asha"\n'
    text += "min_steps = 2\nmin_trials = 4\nreduction_factor = 3\ngrace_period = 1.5\n"
    es = parse_sweep(text).early_stopping
    assert (es.rule, es.min_steps) == ("asha", 2)
    assert es.options == {"min_trials": 4, "reduction_factor": 3, "grace_period": 1.5}
    spec = parse_sweep(MINIMAL + '[metric]\nname = "a"\n[early_stopping]\nrule = "my_rule-2"\n')
    assert spec.early_stopping.rule == "my_rule-2" and spec.early_stopping.options == {}


def test_env_values_become_strings() -> None:
    env = parse_sweep(
        MINIMAL + '[env]\nvars = { A = "x", B = 4, C = 0.5, D = true, E = false }\n'
    ).env
    assert env.vars == {"A": "x", "B": "4", "C": "0.5", "D": "true", "E": "false"}
    assert env.setup is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ('"30m"', 1800.0),
        ('"2h"', 7200.0),
        ('"90s"', 90.0),
        ('"1h30m"', 5400.0),
        ("45", 45.0),
        ("2.5", 2.5),
        ('"1d"', 86400.0),
    ],
)
def test_gpu_idle_warning(value: str, seconds: float) -> None:
    gpu = parse_sweep(MINIMAL + f"[gpu]\ninterval = 2.5\nidle_warning = {value}\n").gpu
    assert gpu.idle_warning_seconds == seconds and gpu.interval == 2.5


def test_search_options_and_adaptive_methods() -> None:
    text = MINIMAL + '[metric]\nname = "loss"\n[search]\nmethod = "tpe"\nsamples = 30\nseed = 7\n'
    text += "[search.options]\nn_startup_trials = 5\n[search.space]\n"
    text += 'act = { choice = ["relu", "gelu", [1, 2]] }\n'
    spec = parse_sweep(text)
    assert spec.search.options == {"n_startup_trials": 5}
    assert spec.search.space["act"] == Distribution("choice", ("relu", "gelu", [1, 2]))
    assert (spec.search.seed, spec.search.samples) == (7, 30)
    assert expand(spec) == [] and count(spec) == 30


def test_conditional_params_nest_and_keep_file_order() -> None:
    text = MINIMAL + "[params]\nlr = [1, 2]\n[params.opt.sgd]\nmomentum = [0.9, 0.99]\n"
    text += "[params.opt.sgd.sched.cosine]\nwarmup = [0, 100]\n[params.opt.sgd.sched.step]\n"
    text += "[params.opt.adam]\n"
    spec = parse_sweep(text)
    assert spec.params == {
        "lr": [1, 2],
        "opt": {
            "sgd": {"momentum": [0.9, 0.99], "sched": {"cosine": {"warmup": [0, 100]}, "step": {}}},
            "adam": {},
        },
    }
    assert grid_count(spec.params) == 2 * (2 * (2 + 1) + 1) == len(expand(spec))


def test_same_name_in_different_branches_is_fine() -> None:
    text = MINIMAL + "[params.opt.sgd]\nlr = [1]\n[params.opt.adam]\nlr = [2, 3]\n"
    assert expand(parse_sweep(text)) == [
        {"opt": "sgd", "lr": 1},
        {"opt": "adam", "lr": 2},
        {"opt": "adam", "lr": 3},
    ]


def test_inline_table_conditional_and_list_values() -> None:
    text = MINIMAL + '[params]\nlayers = [[64, 64], [128]]\nopt = { sgd = {}, "adam w" = {} }\n'
    spec = parse_sweep(text)
    assert expand(spec) == [
        {"layers": [64, 64], "opt": "sgd"},
        {"layers": [64, 64], "opt": "adam w"},
        {"layers": [128], "opt": "sgd"},
        {"layers": [128], "opt": "adam w"},
    ]


# ---------------------------------------------------------------- placeholders


def test_placeholders_helper() -> None:
    assert placeholders("python t.py --lr={lr} --d={model.depth}") == {"lr", "model.depth"}
    assert placeholders(["a", "{{not}}", "{{{x}}}"]) == {"x"}
    assert placeholders("no braces") == set()
    for bad in ["{", "}", "{0}", "{x!r}", "{x:.3f}", "{}", "a{b{c}"]:
        with pytest.raises(ValueError):
            placeholders(bad)


def test_fill_placeholders_and_format_value() -> None:
    argv = fill_placeholders(
        ["t", "--lr={lr}", "{{x}}", "{flag}", "{dims}"], {"lr": 0.1, "flag": True, "dims": [1, 2]}
    )
    assert argv == ["t", "--lr=0.1", "{x}", "true", "[1, 2]"]
    assert format_value("a b") == "a b" and format_value(3) == "3"
    assert format_value(["é"]) == '["é"]'

    from clusterd.runner.command import render_value

    for value in ["a b", 3, 0.1, True, ["é", 1.5], 1e-05]:
        assert format_value(value) == render_value(value)
    with pytest.raises(KeyError):
        fill_placeholders(["{nope}"], {})


def test_placeholder_names_a_param_every_trial_has() -> None:
    text = 'name = "x"\ncommand = "t --lr={lr} --o={opt} --c={common} --w={wd}"\n'
    text += "[params]\nlr = [1, 2]\n[params.opt.sgd]\ncommon = 1\n[params.opt.adam]\ncommon = [2]\n"
    text += '[search]\nmethod = "random"\nsamples = 3\n[search.space]\nwd = { uniform = [0, 1] }\n'
    spec = parse_sweep(text)
    assert placeholders(spec.command) == {"lr", "opt", "common", "wd"}


def test_escaped_braces_are_not_placeholders() -> None:
    spec = parse_sweep('name = "x"\ncommand = ["bash", "-c", "echo ${{HOME}}"]\n')
    assert placeholders(spec.command) == set()


# ---------------------------------------------------------------- round trips


def test_to_dict_from_dict_round_trip_of_the_design_example() -> None:
    spec = parse_sweep(DESIGN_EXAMPLE, "sweep.toml")
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@settings(max_examples=150, deadline=None)
@given(tree=params_trees())
def test_params_toml_round_trip(tree: dict[str, Any]) -> None:
    spec = parse_sweep(with_params(tree))
    assert same(spec.params, tree)
    assert list(spec.params) == list(tree)  # file order is kept
    again = SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and same(again.params, tree)


@settings(max_examples=100, deadline=None)
@given(
    tree=params_trees(max_depth=1),
    space=st.dictionaries(
        st.sampled_from(["s_a", "s_b", "s_c"]),
        st.one_of(
            st.tuples(st.just("uniform"), st.floats(-1e6, 1e6), st.floats(1e-3, 1e6)),
            st.tuples(st.just("loguniform"), st.floats(1e-9, 1e3), st.floats(1e-3, 1e6)),
            st.tuples(st.just("randint"), st.integers(-1000, 1000), st.integers(1, 1000)),
            st.tuples(st.just("choice"), st.lists(axis_values, min_size=1, max_size=4)),
        ),
        max_size=3,
    ),
    seed=st.integers(0, 2**32),
)
def test_spec_dict_round_trip_with_search(
    tree: dict[str, Any], space: dict[str, tuple[Any, ...]], seed: int
) -> None:
    lines = []
    for name, (kind, *args) in space.items():
        bounds = args[0] if kind == "choice" else [args[0], args[0] + args[1]]
        lines.append(f"{name} = {{ {kind} = {toml_value(bounds)} }}\n")
    extra = f'[search]\nmethod = "random"\nsamples = 3\nseed = {seed}\n[search.space]\n'
    try:
        spec = parse_sweep(with_params(tree, extra + "".join(lines)))
    except SpecError as exc:  # float rounding can make low == high: that must be the reason
        assert "expected low < high" in str(exc)
        return
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# ---------------------------------------------------------------- garbage in, SpecError out

KNOWN_KEYS = [
    "name",
    "command",
    "driver",
    "max_concurrent",
    "output_dir",
    "metric",
    "params",
    "search",
    "resources",
    "resume",
    "retry",
    "early_stopping",
    "code",
    "gpu",
    "env",
    "drivers",
    "mode",
    "method",
    "samples",
    "seed",
    "space",
    "uniform",
    "loguniform",
    "randint",
    "choice",
    "cpus",
    "gpus",
    "memory",
    "time",
    "pack",
    "partition",
    "exit_code",
    "signal",
    "signal_lead",
    "rule",
    "min_steps",
    "interval",
    "idle_warning",
    "vars",
    "setup",
    "snapshot",
    "options",
    "lr",
]
toml_leaves = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["grid", "random", "tpe", "min", "16G", "04:00", "USR1", "{lr}", "git", "30m"]),
    st.dates(),
    st.times(),
    st.datetimes(),
)
toml_docs = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=6)),
    st.recursive(
        toml_leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=6)),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=20,
    ),
    max_size=8,
)


def _parse_or_spec_error(text: str) -> None:
    try:
        parse_sweep(text, "g.toml")
    except SpecError as exc:
        assert str(exc).startswith("g.toml: ")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=toml_docs, base=st.booleans())
def test_random_documents_raise_only_spec_error(doc: dict[str, Any], base: bool) -> None:
    if base:
        doc = {"name": "x", "command": "python t.py", **doc}
    _parse_or_spec_error(toml_doc(doc))


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(),
        st.text(alphabet="[]{}=\".,\n #'abclr0123456789-_:etfs"),
        st.lists(st.sampled_from(DESIGN_EXAMPLE.splitlines())).map("\n".join),
    )
)
def test_random_text_raises_only_spec_error(text: str) -> None:
    _parse_or_spec_error(text)


def test_deep_nesting_is_a_spec_error() -> None:
    _parse_or_spec_error("a = " + "[" * 100_000)
    deep = MINIMAL + "[params." + ".".join(f"k{i}" for i in range(40)) + "]\n"
    with pytest.raises(SpecError, match="nested at most 16 deep"):
        parse_sweep(deep)


def test_spec_is_frozen() -> None:
    spec = parse_sweep(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "y"  # type: ignore[misc]
