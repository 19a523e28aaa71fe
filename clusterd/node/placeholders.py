"""``{name}`` placeholders in a command, with str.format's escaping (``{{``, ``}}``).

One tokenizer serves both sides: the sweep parser (:func:`placeholders`, strict: a lone
brace or a field that is not a param name is an error, so a typo fails at submit) and
the runner (:func:`substitute`, lenient: what it does not know it leaves as written,
since it must never refuse a command the daemon accepted).
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = ["PARAM_NAME_RE", "names_in", "placeholders", "render_value", "substitute"]

#: what a param may be called (and so what a placeholder may name)
PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
#: ``{{``, ``}}``, a ``{field}`` (group 1), or a lone brace (no group)
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def render_value(value: Any) -> str:
    """A parameter on the command line: strings verbatim, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def names_in(part: str) -> set[str]:
    """The fields of ``{field}`` tokens in one argument, whatever they hold."""
    return {m.group(1) for m in _TOKEN.finditer(part) if m.group(1) is not None}


def placeholders(command: str | Iterable[str]) -> set[str]:
    """The ``{name}`` placeholders of a command (the sweep parser's check).

    Raises ValueError on a lone brace or a field that is not a plain param name
    (no ``{0}``, ``{x!r}``, ``{x:.3f}``): the runner substitutes names, nothing more.
    """
    args = [command] if isinstance(command, str) else list(command)
    found: set[str] = set()
    for arg in args:
        for match in _TOKEN.finditer(arg):
            token, field = match.group(0), match.group(1)
            if token in ("{{", "}}"):
                continue
            if field is None:
                raise ValueError(f"a lone {token!r} in {arg!r} (write {{{{ or }}}} for a brace)")
            if not PARAM_NAME_RE.fullmatch(field):
                raise ValueError(
                    f"{token} in {arg!r}, which is not a param name "
                    "(write {{ or }} for a literal brace)"
                )
            found.add(field)
    return found


def substitute(
    part: str,
    params: Mapping[str, Any],
    render: Callable[[Any], str] = render_value,
    *,
    strict: bool = False,
) -> str:
    """``{name}`` by ``render(params[name])``, ``{{``/``}}`` by one brace.

    Lenient (the runner): a field that names no param and a lone brace stay as written.
    ``strict``: a lone brace or a field that is not a param name is a ValueError, a
    param name missing from ``params`` a KeyError.
    """

    def one(match: re.Match[str]) -> str:
        token, field = match.group(0), match.group(1)
        if token in ("{{", "}}"):
            return token[0]
        if strict:
            if field is None or not PARAM_NAME_RE.fullmatch(field):
                raise ValueError(f"invalid placeholder {token!r}")
            return render(params[field])
        if field is not None and field in params:
            return render(params[field])
        return token

    return _TOKEN.sub(one, part)
