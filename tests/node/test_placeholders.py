"""Placeholders: the sweep's check and the runner's fill are one implementation and agree."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.node.placeholders import placeholders, render_value
from clusterd.runner.command import build_argv
from clusterd.spec.parse import fill_placeholders

NAMES = st.sampled_from(["lr", "depth", "opt.name", "b-2", "_x"])
VALUES = st.one_of(
    st.text(max_size=5), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()
)
#: pieces of a command argument: text with braces, escapes, placeholders of known names
PIECES = st.one_of(
    st.text(alphabet="ab -={}", max_size=4),
    st.just("{{"),
    st.just("}}"),
    NAMES.map(lambda name: "{" + name + "}"),
)
ARGS = st.lists(PIECES, max_size=5).map("".join)
COMMANDS = st.lists(ARGS, min_size=1, max_size=4)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@given(COMMANDS, st.dictionaries(NAMES, VALUES))
def test_the_runner_fills_what_the_spec_accepts_as_the_spec_does(
    command: list[str], params: dict[str, Any]
) -> None:
    try:
        names = placeholders(command)
    except ValueError:
        return  # refused at submit: never reaches a runner
    if not names <= params.keys():
        return  # refused at submit too (a placeholder no trial has)
    filled = fill_placeholders(command, params)
    if names:
        assert build_argv(command, params) == filled
    else:  # no placeholder: the runner appends every param
        appended = [f"--{k}={render_value(v)}" for k, v in params.items()]
        assert build_argv(command, params) == filled + appended


@given(st.lists(st.text(max_size=8), min_size=1, max_size=3), st.dictionaries(NAMES, VALUES))
def test_escaped_text_round_trips(literal: list[str], params: dict[str, Any]) -> None:
    command = [_escape(part) for part in literal]
    assert placeholders(command) == set()
    assert fill_placeholders(command, params) == literal
    assert build_argv(command, params)[: len(literal)] == literal


@pytest.mark.parametrize(
    ("command", "problem"),
    [(["{lr"], "lone"), (["lr}"], "lone"), (["{0}"], "not a param name"), (["{x!r}"], "not a")],
)
def test_the_spec_side_refuses_what_the_runner_would_leave_alone(
    command: list[str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        placeholders(command)
    assert build_argv(command, {"lr": 1}) == [*command, "--lr=1"]


def test_a_missing_param_is_a_key_error_for_the_spec_and_kept_by_the_runner() -> None:
    with pytest.raises(KeyError):
        fill_placeholders(["--lr={lr}"], {})
    assert build_argv(["--lr={lr}", "--d={depth}"], {"depth": 3}) == ["--lr={lr}", "--d=3"]
