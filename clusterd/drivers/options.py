"""Driver options, declared once per driver: name, what a value must be, default, help.

A driver lists its options as ``Driver.option_specs``; that one declaration is what
``Driver.validate`` checks a sweep's ``[drivers.<name>]`` table against, what the
constructor checks the driver's own options against (the per-user config file's
``[drivers.<name>]`` table), what ``clusterctl drivers --options NAME`` prints and what
the docs list. An option with ``sweep=False`` belongs to the driver as a whole (the
local driver's ``cpus``, Slurm's ``command_timeout``): a sweep may not set it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterd.errors import DriverError

__all__ = [
    "Option",
    "check_options",
    "gpu_id_list",
    "non_empty_string",
    "option_problem",
    "option_rows",
    "positive_int",
    "positive_number",
    "seconds",
    "string_list",
    "string_or_list",
]


def non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def string_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def string_or_list(value: Any) -> bool:
    return non_empty_string(value) or string_list(value)


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def seconds(value: Any) -> bool:
    """A number of seconds >= 0."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def gpu_id_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    )


@dataclass(frozen=True)
class Option:
    """One option of a driver."""

    name: str
    #: what a value must be, as an error message finishes "option 'x' must be ..."
    must: str
    #: accepts a value (the kinds above, or the driver's own)
    check: Callable[[Any], bool]
    #: what it does, one line (``clusterctl drivers --options`` and docs/plugins.md)
    help: str = ""
    #: what applies when nobody sets it (None: the scheduler's own default)
    default: Any = None
    #: settable in a sweep's ``[drivers.<name>]`` table; False: driver-wide only
    sweep: bool = True


def option_problem(
    specs: Sequence[Option], values: Mapping[str, Any], *, sweep: bool
) -> str | None:
    """What is wrong with ``values`` (an unknown key, listing the valid ones, or a value of
    the wrong kind), or None. ``sweep``: judge a sweep's table (driver-wide keys refused)."""
    valid = {spec.name: spec for spec in specs if spec.sweep or not sweep}
    for key, value in values.items():
        spec = valid.get(key)
        if spec is None:
            names = ", ".join(sorted(valid)) or "none"
            where = " in a sweep" if sweep and any(s.name == key for s in specs) else ""
            return f"unknown option {key!r}{where}; valid options: {names}"
        if not spec.check(value):
            return f"option {key!r} must be {spec.must}, got {value!r}"
    return None


def check_options(
    specs: Sequence[Option], values: Mapping[str, Any], where: str, *, sweep: bool
) -> None:
    """``option_problem`` as a ``DriverError`` that says ``where`` the values came from."""
    problem = option_problem(specs, values, sweep=sweep)
    if problem is not None:
        raise DriverError(f"{where}: {problem}")


def option_rows(specs: Sequence[Option]) -> list[dict[str, Any]]:
    """The options as plain rows (the ``drivers`` op, ``clusterctl drivers --options``)."""
    return [
        {
            "name": spec.name,
            "must": spec.must,
            "default": spec.default,
            "help": spec.help,
            "sweep": spec.sweep,
        }
        for spec in specs
    ]
