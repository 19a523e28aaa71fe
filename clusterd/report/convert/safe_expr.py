"""``"{…}"`` expressions of cluster_utils configs, evaluated without ``eval``.

cluster_utils (through ``smart_settings``) formats every string value as a Python
f-string in the namespace of the params and then ``eval``\\ s the result: any code in
a config file runs. clusterd never evaluates code. A string's ``{...}`` fields are
parsed with :mod:`ast` and walked against a whitelist; anything outside it is refused
with the construct's name (``call to 'open'``, ``attribute access '__class__'``...).

The accepted subset (docs/convert.md):

- numbers, strings, ``True``/``False``/``None``, lists and tuples of those;
- references to params: ``lr``, ``fn_args.x`` (a dotted name is one param),
  ``pairs[0]`` (an integer index into a list value), and ``$USER``-style environment
  variables (cluster_utils' ``{$USER}``);
- ``+ - * / // % **`` on numbers, ``+`` on strings and lists, unary ``-``/``+``;
- comparisons (``< <= > >= == !=``), as in cluster_utils' own constrained-grid example;
- ``range(...)`` with 1-3 integer arguments, and ``list(...)`` of a range or a list.

Sizes are bounded (exponents, ``range`` lengths, string and list sizes), so a config
cannot make the converter hang or eat memory.

A string is a *template*: literal text with ``{expr}`` fields (``{{``/``}}`` escape
braces). A template that is one field alone gives the field's value with its type
(``"{list(range(1, 4))}"`` is ``[1, 2, 3]``); otherwise the fields' text is spliced in and
the result read back as a Python literal where it is one (``"{a}e-3"`` with ``a = 1``
is ``0.001``), as cluster_utils does -- with :func:`ast.literal_eval`, not ``eval``.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "Template",
    "UnsafeExpression",
    "evaluate",
    "has_fields",
    "parse_template",
    "references",
    "render",
]

MAX_RANGE = 100_000  # elements a range(...) may have
MAX_POWER = 64  # |exponent| of **
MAX_TEXT = 64 * 1024  # characters of a string result, and elements of a list result
MAX_EXPR = 2_000  # characters of one {field}

_ENV_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_ENV_PREFIX = "__env__"


class UnsafeExpression(ValueError):
    """An expression outside the subset, or one that fails; ``construct`` names what."""

    def __init__(self, construct: str, expression: str) -> None:
        super().__init__(f"{construct} in {{{expression}}}")
        self.construct = construct
        self.expression = expression


@dataclass(frozen=True)
class Field:
    source: str  # the text between the braces
    tree: ast.expr


@dataclass(frozen=True)
class Template:
    """A string split into literal text and fields: ``parts`` alternate str / Field."""

    text: str
    parts: tuple[str | Field, ...]

    @property
    def single(self) -> Field | None:
        """The field, when the string is exactly one ``{field}``."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Field):
            return self.parts[0]
        return None


def has_fields(text: str) -> bool:
    """Whether a string holds any ``{field}`` (``{{`` escapes do not count)."""
    return "{" in text.replace("{{", "")


def parse_template(text: str) -> Template:
    """Split and check a template; UnsafeExpression names the first refused construct."""
    parts: list[str | Field] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif ch == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif ch == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise UnsafeExpression("an unclosed '{'", text[i + 1 :])
            if literal:
                parts.append("".join(literal))
                literal = []
            source = text[i + 1 : end]
            parts.append(Field(source, _parse(source)))
            i = end + 1
        elif ch == "}":
            raise UnsafeExpression("a lone '}'", text)
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def _parse(source: str) -> ast.expr:
    if len(source) > MAX_EXPR:
        raise UnsafeExpression(f"an expression longer than {MAX_EXPR} characters", source[:40])
    if not source.strip():
        raise UnsafeExpression("an empty field", source)
    code = _ENV_RE.sub(lambda m: _ENV_PREFIX + m.group(1), source)
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        raise UnsafeExpression("invalid syntax", source) from None
    _check(tree.body, source)
    return tree.body


# ---------------------------------------------------------------- the whitelist

_BINOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS = ("range", "list")


def _describe(node: ast.AST) -> str:
    """What a refused node is, in words a user recognises."""
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        return f"call to {name!r}" if name else "a call"
    if isinstance(node, ast.Attribute):
        return f"attribute access {node.attr!r}"
    if isinstance(node, ast.BinOp | ast.AugAssign):
        return f"operator {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return f"unary operator {type(node.op).__name__}"
    if isinstance(node, ast.Compare):
        return f"comparison {type(node.ops[0]).__name__}"
    if isinstance(node, ast.Constant):
        return f"constant of type {type(node.value).__name__}"
    names = {
        ast.Lambda: "lambda",
        ast.IfExp: "conditional expression",
        ast.BoolOp: "and/or",
        ast.Dict: "dict literal",
        ast.Set: "set literal",
        ast.ListComp: "list comprehension",
        ast.GeneratorExp: "generator expression",
        ast.DictComp: "dict comprehension",
        ast.SetComp: "set comprehension",
        ast.JoinedStr: "f-string",
        ast.NamedExpr: "assignment expression ':='",
        ast.Starred: "starred expression",
        ast.Slice: "slice",
        ast.Await: "await",
        ast.Yield: "yield",
    }
    return names.get(type(node), type(node).__name__)


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _check(node: ast.AST, source: str) -> None:
    """Refuse any node outside the subset (before anything is evaluated)."""

    def refuse(bad: ast.AST) -> NoReturn:
        raise UnsafeExpression(_describe(bad), source)

    if isinstance(node, ast.Constant):
        if node.value is not None and not isinstance(node.value, int | float | str | bool):
            refuse(node)
    elif isinstance(node, ast.Name | ast.Attribute):
        name = _dotted(node)
        if name is None and isinstance(node, ast.Attribute):
            _check(node.value, source)  # name the innermost offence: ``open(...)``.read
        if name is None:
            refuse(node)
        parts = name.removeprefix(_ENV_PREFIX).split(".")
        if any(part.startswith("__") for part in parts):
            if isinstance(node, ast.Attribute):
                refuse(node)
            raise UnsafeExpression(f"name {name!r} (names starting with '__' are refused)", source)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            refuse(node)
        _check(node.left, source)
        _check(node.right, source)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            refuse(node)
        _check(node.operand, source)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise UnsafeExpression(f"comparison {type(op).__name__}", source)
        for sub in (node.left, *node.comparators):
            _check(sub, source)
    elif isinstance(node, ast.List | ast.Tuple):
        for sub in node.elts:
            _check(sub, source)
    elif isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Slice):
            refuse(node.slice)
        _check(node.value, source)
        _check(node.slice, source)
    elif isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name is None:
            _check(node.func, source)
        if name not in _FUNCTIONS or node.keywords:
            refuse(node)
        for arg in node.args:
            _check(arg, source)
    else:
        refuse(node)


# ---------------------------------------------------------------- evaluation


def references(template: Template) -> set[str]:
    """The param names a template reads (dotted names whole; environment vars left out)."""
    names: set[str] = set()
    for part in template.parts:
        if isinstance(part, Field):
            for node in ast.walk(part.tree):
                if isinstance(node, ast.Name | ast.Attribute):
                    name = _dotted(node)
                    if name and not name.startswith(_ENV_PREFIX) and name not in _FUNCTIONS:
                        names.add(name)
    return _outermost(names)


def _outermost(names: set[str]) -> set[str]:
    """``a.b.c`` walks also visit ``a.b`` and ``a``: keep only the longest chains."""
    return {n for n in names if not any(o.startswith(n + ".") for o in names)}


Lookup = Callable[[str], Any]


def render(template: Template, lookup: Lookup, env: Mapping[str, str]) -> Any:
    """A template's value: one field's typed value, or the spliced text read back as a
    literal where it is one. ``lookup(name)`` gives a param's value (KeyError if none)."""
    single = template.single
    if single is not None:
        return evaluate(single, lookup, env)
    if not any(isinstance(p, Field) for p in template.parts):
        return template.text.replace("{{", "{").replace("}}", "}")
    text = "".join(
        p if isinstance(p, str) else _as_text(evaluate(p, lookup, env)) for p in template.parts
    )
    if len(text) > MAX_TEXT:
        raise UnsafeExpression(f"a result longer than {MAX_TEXT} characters", template.text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, int | float | str | bool | list) else text


def _as_text(value: Any) -> str:
    return str(value)


def evaluate(field: Field, lookup: Lookup, env: Mapping[str, str]) -> Any:
    """One field's value (the tree was checked by ``parse_template``)."""
    return _Evaluator(field.source, lookup, env).run(field.tree)


class _Evaluator:
    def __init__(self, source: str, lookup: Lookup, env: Mapping[str, str]) -> None:
        self.source = source
        self.lookup = lookup
        self.env = env

    def fail(self, what: str) -> UnsafeExpression:
        return UnsafeExpression(what, self.source)

    def run(self, node: ast.AST) -> Any:
        try:
            value = self.eval(node)
        except UnsafeExpression:
            raise
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise self.fail(f"an error ({type(exc).__name__}: {exc})") from None
        if isinstance(value, range):
            value = list(value)
        if isinstance(value, tuple):
            value = list(value)
        return value

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute):
            return self.name(_dotted(node) or "")
        if isinstance(node, ast.UnaryOp):
            operand = self.number(self.eval(node.operand), type(node.op).__name__)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            left = self.eval(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self.eval(comparator)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.List | ast.Tuple):
            return [self.plain(self.eval(e)) for e in node.elts]
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(_describe(node))  # unreachable after _check

    def name(self, name: str) -> Any:
        if name.startswith(_ENV_PREFIX):
            var = name.removeprefix(_ENV_PREFIX)
            if var not in self.env:
                raise self.fail(f"environment variable ${var}, which is not set")
            return self.env[var]
        try:
            return self.lookup(name)
        except KeyError:
            raise self.fail(f"a reference to {name!r}, which is no param") from None

    @staticmethod
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, range | tuple) else value

    def number(self, value: Any, what: str) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"operator {what} on {type(value).__name__}")
        return value

    def binop(self, node: ast.BinOp) -> Any:
        symbol, fn = _BINOPS[type(node.op)]
        left, right = self.plain(self.eval(node.left)), self.plain(self.eval(node.right))
        if symbol == "+" and isinstance(left, str) and isinstance(right, str):
            return self.sized(left + right)
        if symbol == "+" and isinstance(left, list) and isinstance(right, list):
            return self.sized(left + right)
        a, b = self.number(left, symbol), self.number(right, symbol)
        if symbol == "**":
            if abs(b) > MAX_POWER:
                raise self.fail(f"an exponent larger than {MAX_POWER}")
            if isinstance(a, int) and isinstance(b, int) and abs(a).bit_length() * abs(b) > 4096:
                raise self.fail("a power too large")
        result = fn(a, b)
        if isinstance(result, complex):
            raise self.fail("a complex result")
        if isinstance(result, float) and not math.isfinite(result):
            raise self.fail("a result that is not a finite number")
        return result

    def sized(self, value: Any) -> Any:
        if len(value) > MAX_TEXT:
            raise self.fail(f"a result longer than {MAX_TEXT}")
        return value

    def subscript(self, node: ast.Subscript) -> Any:
        value = self.plain(self.eval(node.value))
        index = self.eval(node.slice)
        if not isinstance(value, list | str) or isinstance(index, bool):
            raise self.fail(f"indexing a {type(value).__name__}")
        if not isinstance(index, int):
            raise self.fail(f"an index of type {type(index).__name__}")
        if not -len(value) <= index < len(value):
            raise self.fail(f"index {index} out of range")
        return value[index]

    def call(self, node: ast.Call) -> Any:
        name = _dotted(node.func)
        args = [self.eval(a) for a in node.args]
        if name == "list":
            if len(args) != 1 or not isinstance(args[0], range | list):
                raise self.fail("list(...) of anything but one range or list")
            return list(args[0])
        if not 1 <= len(args) <= 3 or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in args
        ):
            raise self.fail("range(...) with anything but 1 to 3 integers")
        if len(args) == 3 and args[2] == 0:
            raise self.fail("range(...) with step 0")
        result = range(*args)
        if len(result) > MAX_RANGE:
            raise self.fail(f"a range of more than {MAX_RANGE:,} values")
        return result
