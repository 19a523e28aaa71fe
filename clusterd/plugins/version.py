"""Semantic versions and the version ranges plugins state (``CLUSTERD_API = ">=1,<2"``).

A small parser of our own: ``packaging`` is not a dependency of clusterd, and a plugin's
statement needs only comparisons. A range is clauses separated by commas, all of which
must hold; a clause is an operator (``>=``, ``>``, ``<=``, ``<``, ``==``, ``!=``) and a
version of one to three dot-separated numbers, missing parts being 0 (``<2`` is
``<2.0.0``). Spaces are ignored.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Version", "VersionRange", "parse_range", "parse_version"]

Version = tuple[int, int, int]

_OPERATORS: dict[str, Callable[[Version, Version], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_VERSION = re.compile(r"(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)){0,2}")
_CLAUSE = re.compile(r"(>=|<=|==|!=|>|<)(.*)")


def parse_version(text: str) -> Version:
    """``"1.2"`` -> ``(1, 2, 0)``; ``ValueError`` saying what a version looks like."""
    text = text.strip()
    if not _VERSION.fullmatch(text):
        raise ValueError(f"{text!r} is not a version like 1, 1.2 or 1.2.3")
    major, minor, patch = ([int(part) for part in text.split(".")] + [0, 0])[:3]
    return major, minor, patch


@dataclass(frozen=True)
class VersionRange:
    """Clauses that must all hold; ``str()`` gives the normalised text back."""

    clauses: tuple[tuple[str, Version], ...]

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, tuple):
            return False
        return all(_OPERATORS[op](version, bound) for op, bound in self.clauses)

    def __str__(self) -> str:
        return ",".join(f"{op}{'.'.join(map(str, bound))}" for op, bound in self.clauses)


def parse_range(text: str) -> VersionRange:
    """Parse ``">=1,<2"``; ``ValueError`` naming the clause that is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not a version range like '>=1,<2'")
    clauses = []
    for raw in text.replace(" ", "").split(","):
        match = _CLAUSE.fullmatch(raw)
        if match is None:
            raise ValueError(
                f"{raw!r} in {text!r} is not a clause like '>=1.2' "
                "(operators: >=, >, <=, <, ==, !=)"
            )
        clauses.append((match.group(1), parse_version(match.group(2))))
    return VersionRange(tuple(clauses))
