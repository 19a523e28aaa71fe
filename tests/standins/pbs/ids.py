"""PBS job ids <-> the engine's (cluster, index).

An array is one engine cluster: ``12[].server`` is the array, ``12[7].server`` its subjob 7
(PBS Pro and Torque spell them alike). A plain job (no ``-J``/``-t``) is a cluster of one
task, index 0, shown as ``12.server``. The server part may be left out or shortened to
its first label, as real commands accept (``qdel 12[]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.standins.pbs.site import Site

__all__ = ["JobId", "format_id", "parse_id"]

_ID = re.compile(r"(?P<seq>\d+)(?:\[(?P<index>\d*)\])?(?:\.(?P<server>[A-Za-z0-9.-]+))?")


@dataclass(frozen=True)
class JobId:
    """A parsed id: ``index`` None with ``array`` True is the whole array (``12[]``)."""

    cluster: int
    index: int | None
    array: bool


def format_id(site: Site, cluster: int, index: int | None = None, *, array: bool) -> str:
    """``12.server``, ``12[].server`` (index None) or ``12[7].server``."""
    if not array:
        return f"{cluster}.{site.server}"
    return f"{cluster}[{'' if index is None else index}].{site.server}"


def parse_id(site: Site, text: str) -> JobId | None:
    """The id, or None where it is not one of this server's (``qdel`` says "Unknown")."""
    match = _ID.fullmatch(text.strip())
    if match is None:
        return None
    server = match["server"]
    if server and server not in (site.server, site.server.split(".")[0]):
        return None
    index = match["index"]
    if index is None:
        return JobId(int(match["seq"]), None, False)
    return JobId(int(match["seq"]), int(index) if index else None, True)


def well_formed(text: str) -> bool:
    """Whether ``text`` looks like a job id at all ("illegally formed job identifier")."""
    return _ID.fullmatch(text.strip()) is not None
