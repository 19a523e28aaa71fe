"""``qsub``'s command line and ``#PBS`` directives, parsed as the real ``qsub`` does.

Options are read with ``getopt`` and the real option strings (OpenPBS
``src/cmds/qsub_sup.c``, Torque ``src/cmds/qsub_functions.c``); the script's ``#PBS``
lines (before its first command) are read too, and the command line wins over them, as
in PBS. Values are checked where real PBS checks them, with its words: an ``-J`` range
must be ``X-Y[:Z][%N]`` with X < Y (``src/lib/Libutil/range.c``: ``-J 0-0`` is refused),
``walltime`` must be ``[[HH:]MM:]SS``.
"""

from __future__ import annotations

import getopt
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.standins.pbs.site import Site

__all__ = ["QsubError", "QsubOptions", "parse_qsub", "parse_range", "seconds"]

PRO_GETOPT = "a:A:c:C:e:fhIj:J:k:l:m:M:N:o:p:q:r:R:S:u:v:VW:XzP:"
TORQUE_GETOPT = "a:A:b:c:C:d:D:e:EfF:hi:Ij:J:k:K:l:L:m:M:nN:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz"

#: OpenPBS src/cmds/qsub_sup.c
PRO_USAGE = (
    "usage: qsub [-a date_time] [-A account_string] [-c interval]\n"
    "\t[-C directive_prefix] [-e path] [-f ] [-h ] [-I [-X]] [-j oe|eo] [-J X-Y[:Z]]\n"
    "\t[-k keep] [-l resource_list] [-m mail_options] [-M user_list]\n"
    "\t[-N jobname] [-o path] [-p priority] [-P project] [-q queue] [-r y|n]\n"
    "\t[-R o|e|oe] [-S path] [-u user_list] [-W otherattributes=value...]\n"
    "\t[-v variable_list] [-V ] [-z] [script | -- command [arg1 ...]]\n"
    "       qsub --version\n"
)
#: Torque src/cmds/qsub_functions.c (print_qsub_usage_exit)
TORQUE_USAGE = (
    "usage: qsub [-a date_time] [-A account_string] [-b secs]\n"
    "    [-c [ none | { enabled | periodic | shutdown |\n"
    "    depth=<int> | dir=<path> | interval=<minutes>}... ]\n"
    "    [-C directive_prefix] [-d path] [-D path]\n"
    "    [-e path] [-h] [-I] [-j oe|eo|n] [-k {oe}] [-K <kill delay seconds>] \n"
    "    [-l resource_list] [-m n|{abe}] [-M user_list] [-N jobname] [-o path] \n"
    "    [-p priority] [-P proxy_user [-J <jobid]] [-q queue] [-r y|n] \n"
    "    [-S path] [-t number_to_submit] [-T type]  [-u user_list] [-w] path\n"
    "    [-W additional_attributes] [-v variable_list] [-V ] [-x] [-X] [-z] [script]\n"
)

_WALLTIME = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+)(?:\.\d+)?")


class QsubError(Exception):
    """What qsub prints on stderr (with the usage where real qsub prints it) and its exit."""

    def __init__(self, message: str, status: int = 2, usage: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.usage = usage


@dataclass
class QsubOptions:
    """One submission, as the options and directives asked for it."""

    script: str | None = None
    name: str | None = None
    output: str | None = None
    error: str | None = None
    join: str = "n"
    variables: list[str] = field(default_factory=list)  # the -v items, in order
    export_all: bool = False
    resources: dict[str, str] = field(default_factory=dict)
    queue: str | None = None
    account: str | None = None
    hold: bool = False
    array: str | None = None  # the range as given (without %throttle)
    throttle: int | None = None
    indices: list[int] = field(default_factory=list)
    rerunable: str = "y"
    workdir: str | None = None  # Torque's -d / -w
    extra: dict[str, str] = field(default_factory=dict)  # -W name=value
    submit_args: list[str] = field(default_factory=list)


def seconds(walltime: str) -> int:
    """``[[HH:]MM:]SS`` -> seconds; ValueError if it is not one."""
    match = _WALLTIME.fullmatch(walltime.strip())
    if match is None:
        raise ValueError(walltime)
    hours, minutes, secs = (int(x) if x else 0 for x in match.groups())
    return hours * 3600 + minutes * 60 + secs


def parse_range(text: str, *, torque: bool) -> list[int]:
    """Array indices of ``X-Y[:Z]`` (PBS Pro: X < Y required) or Torque's ``1,3,5-7``;
    ValueError if malformed."""
    if not torque:
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*(?::\s*(\d+))?\s*", text)
        if match is None:
            raise ValueError(text)
        start, end = int(match[1]), int(match[2])
        step = int(match[3]) if match[3] else 1
        if start >= end or step < 1:
            raise ValueError(text)
        return list(range(start, end + 1, step))
    indices: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(text)
        start = int(match[1])
        end = int(match[2]) if match[2] else start
        if end < start:
            raise ValueError(text)
        indices += range(start, end + 1)
    if not indices or len(set(indices)) != len(indices):
        raise ValueError(text)
    return indices


def parse_qsub(
    site: Site, argv: list[str], read_script: Callable[[str], str] | None = None
) -> QsubOptions:
    """Parse ``argv`` (then the script's ``#PBS`` lines, which the command line overrides).

    ``read_script(path) -> text`` gives the script's text (None: no directives read)."""
    if "--" in argv:
        raise QsubError("qsub: -- command is not supported by this stand-in", 2)
    opts = QsubOptions(submit_args=list(argv))
    rest = _apply(site, opts, argv, set())
    if len(rest) > 1:
        raise QsubError("", 2, usage=True)
    opts.script = rest[0] if rest else None
    if site.pro and opts.array is not None and opts.rerunable == "n":
        # OpenPBS qsub.c NO_RERUN_ARRAY (two spaces as there), then the usage
        raise QsubError("qsub:  cannot submit non-rerunable Array Job", usage=True)
    if read_script is not None and opts.script is not None:
        given = {arg[1] for arg in argv if arg.startswith("-") and len(arg) > 1}
        for line in _directives(read_script(opts.script)):
            _apply(site, opts, line, given)
    return opts


def _directives(text: str) -> list[list[str]]:
    """The ``#PBS`` lines before the script's first command, split as a shell would."""
    found = []
    for line in text.splitlines()[1:] if text.startswith("#!") else text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#PBS"):
            found.append(shlex.split(stripped[4:], comments=False))
        elif stripped and not stripped.startswith("#"):
            break
    return found


def _apply(site: Site, opts: QsubOptions, argv: list[str], skip: set[str]) -> list[str]:
    """Apply the options of ``argv`` (those not in ``skip``: the command line's, when
    reading directives); the operands left."""
    optstring = PRO_GETOPT if site.pro else TORQUE_GETOPT
    try:
        pairs, rest = getopt.gnu_getopt(argv, optstring)
    except getopt.GetoptError as exc:
        if "requires argument" in exc.msg:
            message = f"qsub: option requires an argument -- '{exc.opt}'"
            raise QsubError(message, usage=True) from None
        raise QsubError(f"qsub: invalid option -- '{exc.opt}'", usage=True) from None
    for flag, value in pairs:
        letter = flag[1]
        if letter == "l" and skip:  # a directive's resources merge under the command line's
            before = dict(opts.resources)
            _one(site, opts, letter, value)
            opts.resources.update(before)
        elif letter == "v" and skip:  # and its variables under the command line's
            opts.variables = [*_split_vars(value), *opts.variables]
        elif letter not in skip:
            _one(site, opts, letter, value)
    return rest


def _one(site: Site, opts: QsubOptions, letter: str, value: str) -> None:
    """One option, checked as real qsub checks it."""
    if letter == "N":
        opts.name = value
    elif letter == "o":
        opts.output = value
    elif letter == "e":
        opts.error = value
    elif letter == "j":
        if value not in ("oe", "eo", "n"):
            raise QsubError("qsub: illegal -j value", usage=True)
        opts.join = value
    elif letter == "v":
        opts.variables += [item for item in _split_vars(value) if item]
    elif letter == "V":
        opts.export_all = True
    elif letter == "l":
        _resources(site, opts, value)
    elif letter == "q":
        opts.queue = value
    elif letter == "A":
        opts.account = value
    elif letter == "h":
        opts.hold = True
    elif letter == "r":
        if value not in ("y", "n"):
            raise QsubError("qsub: illegal -r value", usage=True)
        opts.rerunable = value
    elif letter == "W":
        key, sep, val = value.partition("=")
        if not sep:
            raise QsubError("qsub: illegal -W value", usage=True)
        opts.extra[key.strip()] = val
    elif letter in ("J", "t") and (letter == "J") == site.pro:
        _array(site, opts, letter, value)
    elif letter in ("d", "w") and not site.pro:
        opts.workdir = value
    elif letter in ("I", "X"):
        raise QsubError("qsub: interactive jobs are not supported by this stand-in", 2)
    # the rest (-a -c -k -m -M -p -S -u -z ...) is accepted and has no effect here


def _array(site: Site, opts: QsubOptions, letter: str, value: str) -> None:
    spec, _, throttle = value.partition("%")
    try:
        indices = parse_range(spec, torque=not site.pro)
        limit = int(throttle) if throttle else None
        if limit is not None and limit < 1:
            raise ValueError(throttle)
    except ValueError:
        # OpenPBS: "qsub: illegal -J value" then the usage (qsub.c); Torque alike for -t
        raise QsubError(f"qsub: illegal -{letter} value", usage=True) from None
    opts.array, opts.throttle, opts.indices = spec, limit, indices


def _resources(site: Site, opts: QsubOptions, value: str) -> None:
    """``-l a=b,c=d`` (a ``select``/``nodes`` spec keeps its ``:`` parts)."""
    for item in _split_commas(value):
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not key or not val:
            raise QsubError("qsub: illegal -l value", usage=True)
        if key == "walltime":
            try:
                seconds(val)
            except ValueError:
                raise QsubError("qsub: illegal -l value", usage=True) from None
        opts.resources[key] = val


def _split_commas(value: str) -> list[str]:
    return [part for part in value.split(",") if part.strip()]


def _split_vars(value: str) -> list[str]:
    """``-v A=1,B="x,y",C``: commas inside quotes belong to the value (PBS's rule)."""
    items, current, quote = [], "", ""
    for char in value:
        if quote:
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in "\"'":
            quote = char
        elif char == ",":
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item.strip() for item in items]
