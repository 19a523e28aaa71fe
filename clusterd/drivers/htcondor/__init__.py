"""The HTCondor driver: a batch of attempts as one cluster, tracked by its event log.

``driver.py`` is the driver, ``submit.py`` writes the submit description, ``eventlog.py``
reads the user job event log incrementally, ``parse.py`` reads what ``condor_submit``,
``condor_q`` and ``condor_history`` print. Only HTCondor's command-line tools are needed
on the login node (the ``htcondor`` Python wheel is not). Registered through the
``clusterd`` entry point ``htcondor = "clusterd.drivers.htcondor"`` (or
``CLUSTERD_PLUGINS=clusterd.drivers.htcondor``). See docs/htcondor.md.
"""

from __future__ import annotations

from clusterd.drivers.htcondor.driver import (
    MAX_RELEASES,
    TRANSIENT_HOLD_CODES,
    USER_HOLD_CODES,
    HTCondorDriver,
)
from clusterd.drivers.htcondor.eventlog import Event, JobTrack, LogReader, parse_records
from clusterd.drivers.htcondor.parse import JobAd, parse_ads, parse_submit_terse
from clusterd.drivers.htcondor.submit import (
    HTCONDOR_OPTIONS,
    SubmitSettings,
    extra_problem,
    render_submit,
)
from clusterd.plugins import DriverRegistry, hookimpl

__all__ = [
    "CLUSTERD_API",
    "HTCONDOR_OPTIONS",
    "MAX_RELEASES",
    "TRANSIENT_HOLD_CODES",
    "USER_HOLD_CODES",
    "Event",
    "HTCondorDriver",
    "JobAd",
    "JobTrack",
    "LogReader",
    "SubmitSettings",
    "clusterd_register_drivers",
    "extra_problem",
    "parse_ads",
    "parse_records",
    "parse_submit_terse",
    "render_submit",
]

#: the plugin API versions this driver supports (clusterd.plugins.API_VERSION)
CLUSTERD_API = ">=1,<2"


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``HTCondorDriver`` (pyproject's ``clusterd`` entry point names this module)."""
    registry.add(HTCondorDriver)
