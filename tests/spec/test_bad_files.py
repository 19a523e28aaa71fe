"""Broken sweep files: each must fail with exactly the message a user should see."""

from __future__ import annotations

import pytest

from clusterd.errors import SpecError
from clusterd.spec import parse_sweep

HEAD = 'name = "x"\ncommand = "python t.py"\n'
METRIC = '[metric]\nname = "val_loss"\n'

# (id, file text, the exact message)
CASES: list[tuple[str, str, str]] = [
    (
        "missing-name",
        'command = "python t.py"\n',
        'sweep.toml: name: required key missing (a name like "lr-depth")',
    ),
    (
        "missing-command",
        'name = "x"\n',
        'sweep.toml: command: required key missing (a command like "python train.py")',
    ),
    (
        "bad-name",
        'name = "lr depth"\ncommand = "python t.py"\n',
        'sweep.toml: name: expected a name of 1-64 letters, digits, ".", "_" or "-" like '
        '"lr-depth", got string "lr depth"',
    ),
    (
        "toml-syntax",
        HEAD + "lr = = 3\n",
        "sweep.toml: line 3, column 6: invalid TOML: Invalid value",
    ),
    (
        "toml-unclosed-array",
        HEAD + "[params]\nlr = [1, 2",
        "sweep.toml: line 4, column 11: invalid TOML: Unclosed array",
    ),
    (
        "driver-string-and-table",
        HEAD + 'driver = "slurm"\n[driver.slurm]\naccount = "ml"\n',
        "sweep.toml: line 4, column 14: invalid TOML: Cannot overwrite a value "
        "(driver is already a string; put driver options under [drivers.slurm])",
    ),
    (
        "driver-table",
        HEAD + '[driver.slurm]\naccount = "ml"\n',
        'sweep.toml: driver: expected a driver name like "slurm", got table '
        "(driver options go under [drivers.slurm])",
    ),
    (
        "params-table-with-values",
        HEAD + "[params.lr]\nlow = 0.1\nhigh = [1]\n",
        "sweep.toml: params.lr: expected a list or a scalar, got table",
    ),
    (
        "params-empty-axis",
        HEAD + "[params]\nlr = []\n",
        "sweep.toml: params.lr: expected a non-empty list of values (a grid axis), got empty list",
    ),
    (
        "params-date",
        HEAD + "[params]\nstart = 2024-01-01\n",
        "sweep.toml: params.start: expected a list or a scalar, got date",
    ),
    (
        "params-nan",
        HEAD + "[params]\nlr = nan\n",
        "sweep.toml: params.lr: expected a list or a scalar, got float nan",
    ),
    (
        "params-axis-of-tables",
        HEAD + "[params]\nlr = [{ a = 1 }]\n",
        "sweep.toml: params.lr[0]: expected a scalar or a list of scalars, got table",
    ),
    (
        "params-list-too-deep",
        HEAD + "[params]\nx = [[1], [[2]]]\n",
        "sweep.toml: params.x[1][0]: expected a scalar, got list",
    ),
    (
        "params-bad-name",
        HEAD + "[params]\n1lr = 3\n",
        'sweep.toml: params.1lr: expected a param name like "lr" or "model.depth", got "1lr"',
    ),
    (
        "params-empty-conditional",
        HEAD + "[params.optimizer]\n",
        "sweep.toml: params.optimizer: expected a list, a scalar or branch tables like "
        "[params.optimizer.<choice>], got empty table",
    ),
    (
        "params-branch-clashes-with-outer",
        HEAD + "[params]\nlr = [0.1]\n[params.opt.sgd]\nlr = [0.2]\n",
        "sweep.toml: params.opt.sgd.lr: expected a param name not already set in the same "
        'trial, got "lr" (also params.lr)',
    ),
    (
        "params-sibling-conditionals-clash",
        HEAD + "[params.opt.sgd]\nwd = [1]\n[params.sched.cos]\nwd = [2]\n",
        "sweep.toml: params.sched.cos.wd: expected a param name not already set in the same "
        'trial, got "wd" (also params.opt.sgd.wd)',
    ),
    (
        "params-branch-redefines-its-choice",
        HEAD + "[params.opt.sgd]\nopt = 1\n",
        "sweep.toml: params.opt.sgd.opt: expected a param name not already set in the same "
        'trial, got "opt" (also params.opt)',
    ),
    (
        "unknown-top-level-key",
        HEAD + "[serach]\nmethod = 'grid'\n",
        "sweep.toml: serach: unknown key, did you mean 'search'?",
    ),
    (
        "unknown-resource-key",
        HEAD + "[resources]\ngpu = 1\n",
        "sweep.toml: resources.gpu: unknown key, did you mean 'gpus'?",
    ),
    (
        "unknown-key-no-suggestion",
        HEAD + "[retry]\nzzz = 1\n",
        "sweep.toml: retry.zzz: unknown key, expected one of: max_failures, exclude_host_after",
    ),
    (
        "metric-not-a-table",
        HEAD + 'metric = "val_loss"\n',
        'sweep.toml: metric: expected a table (name = "val_loss", mode = "min"), '
        'got string "val_loss"',
    ),
    (
        "metric-name-missing",
        HEAD + '[metric]\nmode = "max"\n',
        'sweep.toml: metric.name: required key missing (a metric name like "val_loss")',
    ),
    (
        "metric-bad-mode",
        HEAD + METRIC + 'mode = "minimize"\n',
        'sweep.toml: metric.mode: expected "min" or "max", got string "minimize"',
    ),
    (
        "max-concurrent-zero",
        HEAD + "max_concurrent = 0\n",
        "sweep.toml: max_concurrent: expected an integer >= 1, got integer 0",
    ),
    (
        "max-concurrent-string",
        HEAD + 'max_concurrent = "4"\n',
        'sweep.toml: max_concurrent: expected an integer >= 1, got string "4"',
    ),
    (
        "command-empty",
        'name = "x"\ncommand = "  "\n',
        'sweep.toml: command: expected a command like "python train.py", got string "  "',
    ),
    (
        "command-unclosed-quote",
        'name = "x"\ncommand = "python \'t.py"\n',
        "sweep.toml: command: expected a shell-like command line, got No closing quotation",
    ),
    (
        "command-list-with-number",
        'name = "x"\ncommand = ["python", "t.py", 3]\n',
        "sweep.toml: command[2]: expected a string, got integer 3",
    ),
    (
        "placeholder-unknown",
        'name = "x"\ncommand = "python t.py --lr={lrr}"\n[params]\nlr = [1]\n',
        "sweep.toml: command: expected placeholders naming params, got {lrr} (did you mean {lr}?)",
    ),
    (
        "placeholder-conditional-only",
        'name = "x"\ncommand = "python t.py --m={momentum}"\n'
        "[params.opt.sgd]\nmomentum = [0.9]\n[params.opt.adam]\n",
        "sweep.toml: command: expected placeholders that every trial has, got {momentum}, "
        "set only by some branches (params.opt.sgd.momentum)",
    ),
    (
        "placeholder-lone-brace",
        'name = "x"\ncommand = ["bash", "-c", "f() { true; }"]\n',
        "sweep.toml: command: expected {name} placeholders naming params, got { true; } in "
        "'f() { true; }', which is not a param name (write {{ or }} for a literal brace)",
    ),
    (
        "memory-unit",
        HEAD + '[resources]\nmemory = "16X"\n',
        'sweep.toml: resources.memory: expected a size like "16G", "512M" or an integer of MB, '
        'got string "16X"',
    ),
    (
        "time-format",
        HEAD + '[resources]\ntime = "4h"\n',
        'sweep.toml: resources.time: expected a time limit like "04:00:00", "1-12:00:00", '
        '"30:00" or an integer of minutes, got string "4h"',
    ),
    (
        "time-minutes-out-of-range",
        HEAD + '[resources]\ntime = "1:75:00"\n',
        'sweep.toml: resources.time: expected a time limit like "04:00:00", "1-12:00:00", '
        '"30:00" or an integer of minutes, got string "1:75:00"',
    ),
    (
        "gpus-negative",
        HEAD + "[resources]\ngpus = -1\n",
        "sweep.toml: resources.gpus: expected an integer >= 0, got integer -1",
    ),
    (
        "cpus-boolean",
        HEAD + "[resources]\ncpus = true\n",
        "sweep.toml: resources.cpus: expected an integer >= 1, got boolean true",
    ),
    (
        "resume-exit-code-zero",
        HEAD + "[resume]\nexit_code = 0\n",
        "sweep.toml: resume.exit_code: expected an integer from 1 to 255, got integer 0",
    ),
    (
        "resume-signal",
        HEAD + '[resume]\nsignal = "HUP"\n',
        'sweep.toml: resume.signal: expected one of "USR1", "USR2", "TERM", "INT" or "none", '
        'got string "HUP"',
    ),
    (
        "resume-signal-lead-beyond-time",
        HEAD + '[resources]\ntime = "05:00"\n[resume]\nsignal_lead = 300\n',
        "sweep.toml: resume.signal_lead: expected fewer seconds than resources.time (300 s), "
        "got integer 300",
    ),
    (
        "search-random-without-samples",
        HEAD + '[search]\nmethod = "random"\n',
        'sweep.toml: search.samples: required key missing (a trial count like 50 for "random")',
    ),
    (
        "search-grid-with-samples",
        HEAD + "[search]\nsamples = 50\n",
        'sweep.toml: search.samples: expected no samples with method "grid" (it runs the whole '
        'grid; set method = "random" to sample), got integer 50',
    ),
    (
        "search-grid-with-space",
        HEAD + "[search.space]\nwd = { uniform = [0, 1] }\n",
        'sweep.toml: search.space: expected no [search.space] with method "grid" '
        '(set method = "random" to sample), got 1 distribution(s)',
    ),
    (
        "search-method-name",
        HEAD + '[search]\nmethod = "Random Search"\n',
        'sweep.toml: search.method: expected a search method like "grid", "random" or "tpe", '
        'got string "Random Search"',
    ),
    (
        "space-loguniform-zero",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nlr = { loguniform = [0.0, 0.1] }\n",
        "sweep.toml: search.space.lr.loguniform: expected 0 < low < high, got [0.0, 0.1]",
    ),
    (
        "space-uniform-reversed",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nwd = { uniform = [0.5, 0.1] }\n",
        "sweep.toml: search.space.wd.uniform: expected low < high, got [0.5, 0.1]",
    ),
    (
        "space-randint-floats",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nwidth = { randint = [64.0, 512] }\n",
        "sweep.toml: search.space.width.randint: expected [low, high] with two integers "
        "(both inclusive), got [64.0, 512]",
    ),
    (
        "space-three-bounds",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nwd = { uniform = [0, 1, 2] }\n",
        "sweep.toml: search.space.wd.uniform: expected [low, high] with two numbers, got list of 3",
    ),
    (
        "space-empty-choice",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n[search.space]\nact = { choice = [] }\n',
        "sweep.toml: search.space.act.choice: expected a non-empty list of values, got empty list",
    ),
    (
        "space-unknown-kind",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nwd = { normal = [0, 1] }\n",
        "sweep.toml: search.space.wd.normal: unknown key, "
        "expected one of: uniform, loguniform, randint, choice",
    ),
    (
        "space-misspelled-kind",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nwd = { unifrom = [0, 1] }\n",
        "sweep.toml: search.space.wd.unifrom: unknown key, did you mean 'uniform'?",
    ),
    (
        "space-not-a-table",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n[search.space]\nwd = [0, 1]\n',
        "sweep.toml: search.space.wd: expected a table like { uniform = [0.0, 1.0] }, got list",
    ),
    (
        "space-two-kinds",
        HEAD + '[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nwd = { uniform = [0, 1], choice = [1] }\n",
        "sweep.toml: search.space.wd: expected exactly one of uniform, loguniform, randint, "
        "choice, got 2 (uniform, choice)",
    ),
    (
        "space-name-is-a-param",
        HEAD + '[params]\nlr = [0.1]\n[search]\nmethod = "random"\nsamples = 5\n'
        "[search.space]\nlr = { loguniform = [1e-5, 1e-1] }\n",
        'sweep.toml: search.space.lr: expected a name not already in [params], got "lr" '
        "(also params.lr)",
    ),
    (
        "samples-too-many",
        HEAD + '[search]\nmethod = "random"\nsamples = 100_000_000_000\n',
        "sweep.toml: search.samples: expected an integer from 1 to 10000000, "
        "got integer 100000000000",
    ),
    (
        "early-stopping-without-metric",
        HEAD + '[early_stopping]\nrule = "median"\n',
        'sweep.toml: early_stopping.rule: expected a [metric] table (rule "median" compares '
        "trials by a metric), got none",
    ),
    (
        "adaptive-search-without-metric",
        HEAD + '[search]\nmethod = "tpe"\nsamples = 20\n',
        'sweep.toml: search.method: expected a [metric] table (method "tpe" optimises a '
        "metric), got none",
    ),
    (
        "early-stopping-misspelled-option",
        HEAD + METRIC + '[early_stopping]\nrule = "median"\nmin_trails = 3\n',
        "sweep.toml: early_stopping.min_trails: unknown key, did you mean 'min_trials'?",
    ),
    (
        "early-stopping-reduction-factor",
        HEAD + METRIC + '[early_stopping]\nrule = "asha"\nreduction_factor = 1\n',
        "sweep.toml: early_stopping.reduction_factor: expected an integer >= 2, got integer 1",
    ),
    (
        "early-stopping-rule-case",
        HEAD + METRIC + '[early_stopping]\nrule = "Median"\n',
        'sweep.toml: early_stopping.rule: expected a rule like "median", "asha", "hyperband" '
        'or "none", got string "Median"',
    ),
    (
        "code-snapshot",
        HEAD + '[code]\nsnapshot = "hg"\n',
        'sweep.toml: code.snapshot: expected "git" or "none", got string "hg"',
    ),
    (
        "gpu-interval-zero",
        HEAD + "[gpu]\ninterval = 0\n",
        "sweep.toml: gpu.interval: expected a number > 0, got integer 0",
    ),
    (
        "gpu-idle-warning",
        HEAD + '[gpu]\nidle_warning = "30 minutes"\n',
        'sweep.toml: gpu.idle_warning: expected a duration like "30m", "2h", "90s" or a number '
        'of seconds, got string "30 minutes"',
    ),
    (
        "env-var-list",
        HEAD + "[env]\nvars = { PATHS = [1, 2] }\n",
        "sweep.toml: env.vars.PATHS: expected a string, number or boolean, got list",
    ),
    (
        "env-var-name",
        HEAD + '[env.vars]\n"MY-VAR" = "1"\n',
        'sweep.toml: env.vars.MY-VAR: expected a variable name like "OMP_NUM_THREADS", '
        'got "MY-VAR"',
    ),
    (
        "drivers-not-a-table",
        HEAD + '[drivers]\nslurm = "ml"\n',
        'sweep.toml: drivers.slurm: expected a table (account = "ml"), got string "ml"',
    ),
    (
        "drivers-option-date",
        HEAD + "[drivers.slurm]\nbegin = 2024-01-01T10:00:00\n",
        "sweep.toml: drivers.slurm.begin: expected a string, number, boolean, list or table, "
        "got date-time",
    ),
    (
        "params-quoted-name",
        HEAD + '[params]\n"learning rate" = 3\n',
        'sweep.toml: params."learning rate": expected a param name like "lr" or "model.depth", '
        'got "learning rate"',
    ),
    (
        "toml-huge-integer",
        HEAD + "max_concurrent = " + "9" * 5000 + "\n",
        "sweep.toml: invalid TOML: an integer literal is too long",
    ),
    (
        "integer-beyond-64-bits",
        HEAD + "[search]\nseed = 18446744073709551616\n",
        "sweep.toml: search.seed: expected an integer >= 0 that fits in 64 bits, "
        "got integer 18446744073709551616",
    ),
    (
        "output-dir-number",
        HEAD + "output_dir = 3\n",
        'sweep.toml: output_dir: expected a directory like "runs/lr-depth", got integer 3',
    ),
]


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_message(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_sweep(text, "sweep.toml")
    assert str(info.value) == message
    assert info.value.code == "invalid_spec"
