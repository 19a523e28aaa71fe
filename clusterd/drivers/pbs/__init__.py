"""The PBS driver (PBS Pro / OpenPBS and Torque): attempts as job-array subjobs.

``parse.py`` reads what ``qstat``/``qsub`` print in both dialects, ``argv.py`` builds
what ``qsub`` is given, ``driver.py`` is ``PbsDriver``; what every batch scheduler
shares lives in ``clusterd/drivers/batch/``. docs/pbs.md shows the exact script and
command lines. Registered through the ``clusterd`` entry point
``pbs = "clusterd.drivers.pbs"`` (or ``CLUSTERD_PLUGINS=clusterd.drivers.pbs``).
"""

from __future__ import annotations

from clusterd.drivers.pbs.argv import (
    PBS_OPTIONS,
    PBS_PRO_SCRIPT,
    TORQUE_SCRIPT,
    ArraySettings,
    build_qsub_argv,
    format_walltime,
    render_batch_script,
)
from clusterd.drivers.pbs.driver import PbsDriver
from clusterd.drivers.pbs.parse import (
    PbsJob,
    PbsOutputError,
    job_status,
    parse_qstat_json,
    parse_qstat_xml,
    parse_qsub,
    parse_version,
)
from clusterd.plugins import DriverRegistry, hookimpl

__all__ = [
    "CLUSTERD_API",
    "PBS_OPTIONS",
    "PBS_PRO_SCRIPT",
    "TORQUE_SCRIPT",
    "ArraySettings",
    "PbsDriver",
    "PbsJob",
    "PbsOutputError",
    "build_qsub_argv",
    "clusterd_register_drivers",
    "format_walltime",
    "job_status",
    "parse_qstat_json",
    "parse_qstat_xml",
    "parse_qsub",
    "parse_version",
    "render_batch_script",
]

#: the plugin API versions this driver supports (clusterd.plugins.API_VERSION)
CLUSTERD_API = ">=1,<2"


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``PbsDriver`` (entry point ``pbs = "clusterd.drivers.pbs"``)."""
    registry.add(PbsDriver)
