"""A converted sweep as sweep.toml text, and the ``Conversion`` every converter returns.

The TOML is written here (no writer library is needed for this small subset): top-level
scalars first, then tables in a fixed order, keys quoted where TOML needs it
(``"fn_args.x" = [1, 2]`` is one param named ``fn_args.x``, not a nested table). The
text is checked by reading it back with :mod:`tomllib` before it is returned.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Conversion", "to_toml"]

_BARE_RE = re.compile(r"[A-Za-z0-9_-]+")

#: top-level tables in the order a person reads a sweep file
_ORDER = (
    "metric",
    "search",
    "params",
    "resources",
    "env",
    "code",
    "gpu",
    "resume",
    "retry",
    "early_stopping",
    "limits",
    "drivers",
)


@dataclass
class Conversion:
    """What a converter made of a foreign config.

    ``mapped``: (source key, what it became); ``refused``: (source key, why it has no
    equivalent) -- every key of the source is in one of the two lists."""

    kind: str  # "cluster_utils" | "json_grid"
    spec_dict: dict[str, Any]
    mapped: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    #: params the conversion added that the original tool's runs did not have
    #: (``_restart``, ``_zipN``): the trials get them too
    helper_params: list[str] = field(default_factory=list)

    @property
    def toml(self) -> str:
        header = f"# converted by `clusterctl convert` from {self.source} ({self.kind})\n"
        return header + to_toml(self.spec_dict)

    def report(self) -> str:
        """The mapping and the refusals, one per line (what ``convert`` prints on stderr)."""
        lines = [f"{self.source}: converted from a {self.kind.replace('_', ' ')} config"]
        lines += [f"  mapped   {key} -> {what}" for key, what in self.mapped]
        lines += [f"  refused  {key}: {why}" for key, why in self.refused]
        return "\n".join(lines)


def key(name: str) -> str:
    return name if _BARE_RE.fullmatch(name) else json.dumps(name)


def value(v: Any) -> str:
    """A TOML value: strings as JSON (a subset of TOML basic strings), inline arrays and
    tables."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"a TOML file cannot hold {v!r}")
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _dotted(prefix: list[str], table: Mapping[str, Any], out: list[str]) -> None:
    """A table's entries as dotted keys under the current header, in order: ``[params]``
    keeps its key order this way (the order of its axes is the order of the trials)."""
    for k, v in table.items():
        path = [*prefix, k]
        if _is_table(v) and v:
            _dotted(path, v, out)
        else:
            out.append(".".join(key(p) for p in path) + " = " + value(v))


def _table(path: list[str], table: Mapping[str, Any], out: list[str]) -> None:
    """``[path]`` with its scalars, then its sub-tables (each as its own header);
    ``[params]`` with dotted keys (see ``_dotted``)."""
    if path == ["params"]:
        out.append("")
        out.append("[params]")
        _dotted([], table, out)
        return
    scalars = [(k, v) for k, v in table.items() if not _is_table(v)]
    tables = [(k, v) for k, v in table.items() if _is_table(v)]
    if path and (scalars or not tables):
        out.append("")
        out.append("[" + ".".join(key(p) for p in path) + "]")
    for k, v in scalars:
        out.append(f"{key(k)} = {value(v)}")
    for k, v in tables:
        _table([*path, k], v, out)


def to_toml(spec: Mapping[str, Any]) -> str:
    """TOML text whose ``tomllib.loads`` equals ``spec`` (checked)."""
    out: list[str] = []
    for k, v in spec.items():
        if not _is_table(v):
            out.append(f"{key(k)} = {value(v)}")
    names = [k for k in _ORDER if k in spec] + [
        k for k in spec if _is_table(spec[k]) and k not in _ORDER
    ]
    for name in names:
        if _is_table(spec[name]):
            _table([name], spec[name], out)
    text = "\n".join(out) + "\n"
    if tomllib.loads(text) != _plain(spec):
        raise AssertionError("the TOML writer lost something: please report this as a bug")
    return text


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v
