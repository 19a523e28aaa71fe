"""The version-range parser a plugin's ``CLUSTERD_API`` goes through."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.plugins import API_VERSION
from clusterd.plugins.version import parse_range, parse_version

numbers = st.integers(min_value=0, max_value=10_000)
versions = st.tuples(numbers, numbers, numbers)
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
OPS |= {"==": operator.eq, "!=": operator.ne}
clauses = st.tuples(st.sampled_from(sorted(OPS)), versions)


def spell(version: tuple[int, int, int], parts: int) -> str:
    return ".".join(str(n) for n in version[:parts])


@given(versions, st.integers(min_value=1, max_value=3))
def test_a_short_version_means_zeros_after_it(version: tuple[int, int, int], parts: int) -> None:
    expected = (*version[:parts], 0, 0, 0)[:3]
    assert parse_version(spell(version, parts)) == expected


@given(st.lists(clauses, min_size=1, max_size=4), versions, st.booleans())
def test_a_range_holds_exactly_when_every_clause_does(
    stated: list[tuple[str, tuple[int, int, int]]], version: tuple[int, int, int], spaces: bool
) -> None:
    sep = " , " if spaces else ","
    text = sep.join(f"{op}{' ' if spaces else ''}{spell(v, 3)}" for op, v in stated)
    supported = parse_range(text)
    assert (version in supported) == all(OPS[op](version, bound) for op, bound in stated)
    assert parse_range(str(supported)) == supported  # str() gives parseable text back


@given(st.text(max_size=12))
def test_garbage_is_a_value_error_never_a_crash(text: str) -> None:
    try:
        parse_range(text)
    except ValueError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    "text", ["", "1", ">=1,", "=>1", ">=1.2.3.4", ">=01", ">=1.x", "~=1.0", ">= one"]
)
def test_what_is_no_range_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"version range|clause like|version like"):
        parse_range(text)


def test_this_clusterd_is_inside_the_range_built_ins_state() -> None:
    assert parse_version(API_VERSION) in parse_range(">=1,<2")
    assert parse_version(API_VERSION) not in parse_range(">=2")
