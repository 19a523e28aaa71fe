"""The hosts each sweep's new attempts avoid (``[retry] exclude_host_after``).

Which failures count against a host is ``hostfail.py``'s rule and ``Store.failing_hosts``
counts them; this module decides, per sweep, what is excluded from its next launches:
never every eligible host (the last one stays, or nothing could ever run), each newly
excluded host reported once. The scheduler passes the result to its drivers as
``JobRequest.exclude_hosts``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clusterd.daemon.driverset import DriverSet
from clusterd.drivers.base import Driver
from clusterd.spec.model import SweepSpec

__all__ = ["BadHosts", "keep_one_eligible"]

log = logging.getLogger("clusterd.scheduler")


class BadHosts:
    """The hosts to exclude, by sweep id, as of each sweep's last launch."""

    def __init__(self, drivers: DriverSet) -> None:
        self.drivers = drivers
        self._by_sweep: dict[int, dict[str, int]] = {}

    def of(self, sweep_id: int) -> dict[str, int]:
        """The sweep's excluded hosts and their failure counts."""
        return dict(self._by_sweep.get(sweep_id, {}))

    async def exclude(
        self, sweep: Any, spec: SweepSpec, driver: Driver, hosts: dict[str, int]
    ) -> None:
        """Note the hosts to exclude, never all the eligible ones (the driver lists those
        where it can tell): the last eligible host stays, or nothing could ever run."""
        if hosts:
            options = self.drivers.options(sweep.driver, spec)
            try:
                eligible = await asyncio.to_thread(driver.eligible_hosts, spec.resources, options)
            except Exception as exc:
                log.warning("sweep %s: cannot list eligible hosts: %s", sweep.name, exc)
                eligible = None
            hosts = keep_one_eligible(sweep.name, hosts, eligible)
        self._note(sweep, hosts)

    def _note(self, sweep: Any, hosts: dict[str, int]) -> None:
        """Remember (and report once) the hosts this sweep's new attempts must avoid."""
        known = self._by_sweep.setdefault(sweep.id, {})
        for host in [h for h in known if h not in hosts]:
            del known[host]
        for host, failures in hosts.items():
            if host not in known:
                log.warning(
                    "sweep %s: excluding host %s after %d failed attempts there",
                    sweep.name,
                    host,
                    failures,
                )
        known.update(hosts)


def keep_one_eligible(
    sweep_name: str, hosts: dict[str, int], eligible: set[str] | None
) -> dict[str, int]:
    """``hosts`` to exclude, minus the one with the fewest failures when they would cover
    every eligible host (host names match node names in full or by their first label)."""
    if not eligible or not hosts:
        return hosts

    def node(host: str) -> str | None:
        if host in eligible:
            return host
        short = host.split(".", 1)[0]
        return short if short in eligible else None

    covered = {node(h) for h in hosts} - {None}
    if covered != eligible:
        return hosts
    keep = min((h for h in hosts if node(h) is not None), key=lambda h: (hosts[h], h))
    log.warning(
        "sweep %s: not excluding host %s after %d failures: it is the last eligible one",
        sweep_name,
        keep,
        hosts[keep],
    )
    return {h: n for h, n in hosts.items() if h != keep}
