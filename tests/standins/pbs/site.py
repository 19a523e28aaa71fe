"""Which PBS a stand-in root plays: the dialect, the server's name, its array cap.

Every frontend (``qsub``, ``qstat``, ``qdel``, ``qrls``) reads ``<root>/pbs.json``, written
once by ``write_site`` (the ``pbs_standin`` fixture does it); ``$CLUSTERD_STANDIN_PBS_FLAVOR``
overrides the dialect, for a quick look by hand. Job ids carry the server's name
(``12[3].pbs-server``), so both dialects get one, Torque's with dots in it as site names
usually have (``12[3].torque.head.example``): the driver must not cut ids at the first dot.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["FLAVORS", "FLAVOR_ENV", "Site", "read_site", "write_site"]

FLAVORS = ("pbspro", "torque")
FLAVOR_ENV = "CLUSTERD_STANDIN_PBS_FLAVOR"
SITE_FILE = "pbs.json"

#: the servers' default names and queues, per dialect
_SERVERS = {"pbspro": "pbs-server", "torque": "torque.head.example"}
_QUEUES = {"pbspro": "workq", "torque": "batch"}


@dataclass(frozen=True)
class Site:
    """One stand-in PBS server."""

    flavor: str
    server: str
    queue: str
    #: PBS Pro's ``max_array_size`` (default 10000); Torque's ``max_job_array_size``
    max_array_size: int = 10_000

    @property
    def pro(self) -> bool:
        return self.flavor == "pbspro"


def write_site(
    root: str | Path,
    flavor: str,
    *,
    server: str | None = None,
    max_array_size: int = 10_000,
) -> Site:
    """Make ``root`` play ``flavor`` ("pbspro" or "torque")."""
    if flavor not in FLAVORS:
        raise ValueError(f"PBS flavor {flavor!r}: expected one of {', '.join(FLAVORS)}")
    site = Site(flavor, server or _SERVERS[flavor], _QUEUES[flavor], max_array_size)
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / SITE_FILE).write_text(json.dumps(asdict(site)))
    return site


def read_site(root: str | Path) -> Site:
    """The site of ``root`` (PBS Pro with the defaults where none was written)."""
    path = Path(root) / SITE_FILE
    data = json.loads(path.read_text()) if path.exists() else {"flavor": "pbspro"}
    flavor = os.environ.get(FLAVOR_ENV) or data.get("flavor", "pbspro")
    if flavor not in FLAVORS:
        raise ValueError(f"{FLAVOR_ENV}={flavor!r}: expected one of {', '.join(FLAVORS)}")
    return Site(
        flavor,
        str(data.get("server") or _SERVERS[flavor]),
        str(data.get("queue") or _QUEUES[flavor]),
        int(data.get("max_array_size") or 10_000),
    )
