"""The Grid Engine driver (Son of Grid Engine, Univa/Altair GE, Open Cluster Scheduler):
attempts as job-array tasks, polled in bulk (``driver.py``).

``parse.py`` reads what Grid Engine's commands print, ``argv.py`` builds what ``qsub``
is given; what every batch scheduler shares lives in ``clusterd/drivers/batch/``.
Registered through the ``clusterd`` entry point ``sge = "clusterd.drivers.sge"``.
"""

from __future__ import annotations

from clusterd.drivers.sge.argv import (
    SGE_OPTIONS,
    SGE_SCRIPT,
    SgeSettings,
    build_qsub_argv,
    format_sge_time,
    render_batch_script,
)
from clusterd.drivers.sge.driver import SgeDriver
from clusterd.drivers.sge.parse import (
    SgeAccounting,
    SgeJob,
    accounting_status,
    expand_tasks,
    job_status,
    parse_error_reasons,
    parse_qacct,
    parse_qstat_xml,
    parse_qsub_terse,
)
from clusterd.plugins import DriverRegistry, hookimpl

__all__ = [
    "CLUSTERD_API",
    "SGE_OPTIONS",
    "SGE_SCRIPT",
    "SgeAccounting",
    "SgeDriver",
    "SgeJob",
    "SgeSettings",
    "accounting_status",
    "build_qsub_argv",
    "clusterd_register_drivers",
    "expand_tasks",
    "format_sge_time",
    "job_status",
    "parse_error_reasons",
    "parse_qacct",
    "parse_qstat_xml",
    "parse_qsub_terse",
    "render_batch_script",
]


#: the plugin API versions this driver supports (clusterd.plugins.API_VERSION)
CLUSTERD_API = ">=1,<2"


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``SgeDriver`` (listed in pyproject's ``clusterd`` entry points)."""
    registry.add(SgeDriver)
