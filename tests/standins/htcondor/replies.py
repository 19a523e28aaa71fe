"""What the HTCondor commands print, in the formats recorded from HTCondor
(``tests/drivers/fixtures/htcondor/``, sources in ``SOURCES.md`` there).

Only the values change; the words, spacing and layout are the recorded ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import classad2

__all__ = [
    "FIXTURES",
    "json_ads",
    "rm_missing",
    "rm_reply",
    "submit",
    "submit_terse",
    "version",
]

FIXTURES = Path(__file__).resolve().parents[2] / "drivers" / "fixtures" / "htcondor"


def submit_terse(cluster: int, last_proc: int) -> str:
    """``condor_submit -terse``: the first and last job id."""
    return f"{cluster}.0 - {cluster}.{last_proc}"


def submit(cluster: int, count: int) -> str:
    """``condor_submit`` without ``-terse``."""
    return f"Submitting job(s){'.' * count}\n{count} job(s) submitted to cluster {cluster}.\n"


def json_ads(ads: Iterable[dict[str, Any]]) -> str:
    """``condor_q -json`` / ``condor_history -json``: each ad printed by the ClassAd
    library's own JSON unparser, framed as ``CondorClassAdListWriter`` frames a listing
    (``[``, ads separated by a ``,`` line, ``]``; nothing at all for no ads)."""
    rendered = [classad2.ClassAd(values).printJson() for values in ads]
    if not rendered:
        return ""
    return "[\n" + "\n,\n".join(rendered) + "\n]\n"


def rm_reply(verb: str, job_id: str) -> str:
    """``condor_rm``/``condor_release``/``condor_hold`` for one job that was acted on."""
    done = {"rm": "marked for removal", "release": "released", "hold": "held"}[verb]
    return f"Job {job_id} {done}\n"


def rm_missing(job_id: str) -> str:
    """The same commands for an id the schedule does not hold (on stderr)."""
    return f"Job {job_id} not found\n"


def version() -> str:
    """``condor_version``: the recorded text if present, else the wheel's version."""
    path = FIXTURES / "condor_version.txt"
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.startswith("$")]
        if lines:
            return "\n".join(lines) + "\n"
    import htcondor2

    return f"{htcondor2.version()}\n{htcondor2.platform()}\n"
