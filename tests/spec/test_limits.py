"""Caps with clear errors (issue #13 item 6): trials per sweep, one value's size, the
size of a sweep file, and the retry/resume budgets. Each refusal is a SpecError naming
the file, the key and what was expected, and comes before anything is built."""

from __future__ import annotations

import math
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.errors import SpecError
from clusterd.spec import expand, load_sweep, parse_sweep
from clusterd.spec.expand import count
from clusterd.spec.parse import MAX_FILE_BYTES, MAX_VALUE_BYTES

from .test_parse import MINIMAL


def grid(sizes: list[int], limits: str = "") -> str:
    """A sweep whose grid has one axis per size; ``limits`` goes in as a [limits] body."""
    axes = "\n".join(f"a{i} = [{', '.join(map(str, range(n)))}]" for i, n in enumerate(sizes))
    extra = f"[limits]\n{limits}\n" if limits else ""
    return MINIMAL + extra + "[params]\n" + axes + "\n"


def test_a_ten_million_trial_grid_is_refused_at_once() -> None:
    spec = parse_sweep(grid([10] * 7), "big.toml")  # 10,000,000 trials
    assert count(spec) == 10_000_000
    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        expand(spec)
    assert time.perf_counter() - started < 0.05
    message = str(info.value)
    assert message.startswith("big.toml: params: expected at most 100,000 trials")
    assert "got 10,000,000" in message and "[limits] max_trials" in message


def test_a_million_trial_grid_is_never_built() -> None:
    spec = parse_sweep(grid([10] * 6))
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="got 1,000,000"):
            expand(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # bytes: nothing was expanded (1 M trials took 1.2 GB)


def test_max_trials_can_be_raised_and_lowered_in_the_file() -> None:
    with pytest.raises(SpecError, match="at most 100,000 trials"):  # the default
        expand(parse_sweep(grid([10, 10, 10, 10, 11])))
    raised = parse_sweep(grid([100, 1001], "max_trials = 200000"))
    assert len(expand(raised)) == 100_100
    with pytest.raises(SpecError, match="at most 12 trials"):
        expand(parse_sweep(grid([13], "max_trials = 12")))
    assert len(expand(parse_sweep(grid([12], "max_trials = 12")))) == 12


def test_samples_over_the_cap_are_refused() -> None:
    text = MINIMAL + '[limits]\nmax_trials = 50\n[search]\nmethod = "random"\nsamples = 51\n'
    text += "[search.space]\nlr = { uniform = [0.0, 1.0] }\n"
    with pytest.raises(SpecError, match=r"search\.samples: expected at most 50 trials"):
        expand(parse_sweep(text))
    assert len(expand(parse_sweep(text.replace("samples = 51", "samples = 50")))) == 50


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4), cap=st.integers(1, 2000))
def test_expand_refuses_exactly_the_grids_over_the_cap(sizes: list[int], cap: int) -> None:
    spec = parse_sweep(grid(sizes, f"max_trials = {cap}"))
    planned = math.prod(sizes)
    if planned > cap:
        with pytest.raises(SpecError, match=f"at most {cap:,} trials"):
            expand(spec)
    else:
        assert len(expand(spec)) == planned


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("max_trials = 0", "limits.max_trials: expected an integer from 1 to 10000000"),
        ("max_trials = 100000000", "limits.max_trials: expected an integer from 1 to 10000000"),
        ('max_trials = "many"', "limits.max_trials: expected an integer"),
        ("max_trial = 5", "limits.max_trial: unknown key, did you mean 'max_trials'?"),
    ],
)
def test_bad_limits_are_named(body: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        parse_sweep(grid([2], body))


BIG = "x" * (MAX_VALUE_BYTES + 1)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        (f'note = "{BIG}"', "params.note"),  # a fixed value
        (f'note = ["a", "{BIG}"]', r"params.note\[1\]"),  # one value of an axis
        (f'note = [["a", "{BIG}"]]', r"params.note\[0\]"),  # a list value
        ("note = [" + ", ".join(["1234567890"] * 7000) + "]", None),  # many small: fine
    ],
)
def test_a_parameter_value_over_64_kib_is_refused(params: str, key: str | None) -> None:
    text = MINIMAL + "[params]\n" + params + "\n"
    if key is None:
        assert count(parse_sweep(text)) == 7000
        return
    with pytest.raises(SpecError, match=f"{key}: expected a value of at most 64 KiB"):
        parse_sweep(text)


def test_a_choice_over_64_kib_is_refused() -> None:
    text = MINIMAL + '[search]\nmethod = "random"\nsamples = 2\n[search.space]\n'
    text += f'note = {{ choice = ["a", "{BIG}"] }}\n'
    with pytest.raises(SpecError, match=r"search\.space\.note\.choice\[1\]: expected a value"):
        parse_sweep(text)


def test_a_value_of_exactly_64_kib_is_accepted() -> None:
    exact = "é" * (MAX_VALUE_BYTES // 2)  # 2 bytes each in UTF-8
    spec = parse_sweep(MINIMAL + f'[params]\nnote = "{exact}"\n')
    assert expand(spec)[0]["note"] == exact


def test_a_52_mb_parameter_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(MINIMAL + '[params]\nnote = "' + "x" * 52_000_000 + '"\n')
    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    assert time.perf_counter() - started < 0.5
    assert f"expected a sweep file of at most {MAX_FILE_BYTES // 2**20} MiB, got 50 MiB" in str(
        info.value
    )
    with pytest.raises(SpecError, match="at most 16 MiB"):  # text handed over directly
        parse_sweep(path.read_text())


@pytest.mark.parametrize("key", ["retry.max_failures", "resume.max_resumes"])
def test_retry_and_resume_budgets_are_bounded(key: str) -> None:
    table, name = key.split(".")
    text = MINIMAL + f"[{table}]\n{name} = 1000000\n"
    with pytest.raises(SpecError, match=f"{key}: expected an integer from 0 to 1000, got"):
        parse_sweep(text)
    assert parse_sweep(text.replace("1000000", "1000")) is not None
