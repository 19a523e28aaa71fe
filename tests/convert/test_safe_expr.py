"""The ``"{…}"`` evaluator: the whitelisted subset computes what Python would, everything
else is refused by name, and no input does anything but return a value or refuse."""

from __future__ import annotations

import math
import operator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.report.convert.safe_expr import (
    UnsafeExpression,
    parse_template,
    references,
    render,
)

ENV = {"USER": "alice"}


def value(text: str, params: dict[str, Any] | None = None) -> Any:
    params = params or {}
    return render(parse_template(text), params.__getitem__, ENV)


numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}


@settings(max_examples=300, deadline=None)
@given(a=numbers, b=numbers, op=st.sampled_from(sorted(OPS)))
def test_arithmetic_on_param_references_is_pythons(a: Any, b: Any, op: str) -> None:
    """``{x <op> y}`` over two params gives what the operator gives (or a refusal that
    names the error, never an exception of another kind)."""
    try:
        expected = OPS[op](a, b)
    except ZeroDivisionError:
        with pytest.raises(UnsafeExpression, match="ZeroDivisionError"):
            value(f"{{x {op} y}}", {"x": a, "y": b})
        return
    if isinstance(expected, float) and not math.isfinite(expected):  # 1 / 1e-311
        with pytest.raises(UnsafeExpression, match="not a finite number"):
            value(f"{{x {op} y}}", {"x": a, "y": b})
        return
    got = value(f"{{x {op} y}}", {"x": a, "y": b})
    assert got == expected
    assert type(got) is type(expected)


@settings(max_examples=200, deadline=None)
@given(a=st.integers(-50, 50), b=st.integers(-8, 8), c=st.integers(1, 9))
def test_precedence_unary_minus_and_powers(a: int, b: int, c: int) -> None:
    assert value(f"{{-x + {c} * y}}", {"x": a, "y": b}) == -a + c * b
    if b >= 0:
        assert value(f"{{x ** {b} % {c}}}", {"x": a}) == a**b % c


@settings(max_examples=200, deadline=None)
@given(start=st.integers(-100, 100), stop=st.integers(-100, 100), step=st.integers(1, 7))
def test_range_and_list(start: int, stop: int, step: int) -> None:
    assert value(f"{{list(range({start}, {stop}, {step}))}}") == list(range(start, stop, step))
    assert value(f"{{range({start}, {stop}, -{step})}}") == list(range(start, stop, -step))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_renders_or_is_refused(text: str) -> None:
    """Arbitrary templates: a value, or UnsafeExpression -- nothing else escapes."""
    try:
        value(text, {"a": 1, "b": [1, 2]})
    except UnsafeExpression as exc:
        assert exc.construct


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(
        st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[a-z][a-z0-9_]{0,6}){0,2}", fullmatch=True),
        min_size=1,
        max_size=4,
    )
)
def test_references_are_the_dotted_names(names: list[str]) -> None:
    names = [n for n in names if n.split(".")[0] not in ("range", "list")]
    if not names:
        return
    text = "{" + " + ".join(names) + "}"
    longest = {n for n in names if not any(o.startswith(n + ".") for o in names)}
    assert references(parse_template(text)) == longest


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("{open('x')}", "call to 'open'"),
        ("{__import__('os')}", "call to '__import__'"),
        ("{().__class__.__bases__}", "attribute access"),
        ("{a.__dict__}", "attribute access '__dict__'"),
        ("{[i for i in b]}", "list comprehension"),
        ("{dict(a=1)}", "call to 'dict'"),
        ("{ {1: 2} }", "invalid syntax"),  # a field ends at its first '}', as in cluster_utils
        ("{lambda: 0}", "lambda"),
        ("{a if a else b}", "conditional expression"),
        ("{a and b}", "and/or"),
        ("{not a}", "unary operator Not"),
        ("{a @ b}", "operator MatMult"),
        ("{a << 2}", "operator LShift"),
        ("{b[0:1]}", "slice"),
        ("{a in b}", "comparison In"),
        ("{f'x'}", "f-string"),
        ("{(x := 1)}", "assignment expression"),
        ("{range(a, step=2)}", "call to 'range'"),
        ("{a", "unclosed"),
        ("}", "lone '}'"),
        ("{}", "empty field"),
        ("{1 +}", "invalid syntax"),
        ("{2 ** 100}", "exponent larger than 64"),
        ("{list(range(10 ** 6))}", "range of more than"),
        ("{b[5]}", "index 5 out of range"),
        ("{'a' * 3}", "operator * on str"),
        ("{$NOPE}", "environment variable $NOPE"),
        ("{missing}", "'missing', which is no param"),
    ],
)
def test_refused_constructs_are_named(text: str, construct: str) -> None:
    with pytest.raises(UnsafeExpression) as err:
        value(text, {"a": 1, "b": [1, 2]})
    assert construct in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{a}", 1),
        ("{b}", [1, 2]),
        ("{b[0]}", 1),
        ("{b[-1] * 2.5}", 5.0),
        ("{a / 3}", 1 / 3),
        ("{a < 0.2}", False),
        ("{0 < a <= 2}", True),
        ("{list(range(1,4))}", [1, 2, 3]),
        ("{[a, 2] + b}", [1, 2, 1, 2]),
        ("{'x' + 'y'}", "xy"),
        ("{a}e-3", 0.001),  # the spliced text read back as a literal, as cluster_utils does
        ("run-{a}", "run-1"),
        ("/work/{$USER}/tmp", "/work/alice/tmp"),
        ("{{not a field}}", "{not a field}"),
        ("plain", "plain"),
    ],
)
def test_the_subset_evaluates(text: str, expected: Any) -> None:
    got = value(text, {"a": 1, "b": [1, 2]})
    assert got == expected and type(got) is type(expected)
