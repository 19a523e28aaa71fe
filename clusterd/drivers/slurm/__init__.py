"""The Slurm driver: attempts as job-array tasks, polled in bulk (``driver.py``).

``parse.py`` reads what Slurm's commands print, ``argv.py`` builds what ``sbatch`` is
given, ``limits.py`` knows the user's submit limits, ``cluster.py`` shapes ``clusterctl
cluster``; what every batch scheduler shares lives in ``clusterd/drivers/batch/``.
Registered through the ``clusterd`` entry point ``slurm = "clusterd.drivers.slurm"``.
"""

from __future__ import annotations

from clusterd.drivers.slurm.argv import (
    ArraySettings,
    build_sbatch_argv,
    format_slurm_time,
    render_batch_script,
)
from clusterd.drivers.slurm.driver import SlurmDriver
from clusterd.drivers.slurm.limits import Association, QosLimit, SubmitBudget, SubmitLimits
from clusterd.drivers.slurm.parse import (
    QUEUED_STATES,
    RUNNING_STATES,
    SlurmJob,
    expand_job_ids,
    job_status,
    parse_gres_gpus,
    parse_node_names,
    parse_sacct,
    parse_sacctmgr_assoc,
    parse_sacctmgr_qos,
    parse_sbatch_parsable,
    parse_scontrol_config,
    parse_sinfo,
    parse_squeue,
    parse_usage,
)
from clusterd.plugins import DriverRegistry, hookimpl

__all__ = [
    "CLUSTERD_API",
    "QUEUED_STATES",
    "RUNNING_STATES",
    "ArraySettings",
    "Association",
    "QosLimit",
    "SlurmDriver",
    "SlurmJob",
    "SubmitBudget",
    "SubmitLimits",
    "build_sbatch_argv",
    "clusterd_register_drivers",
    "expand_job_ids",
    "format_slurm_time",
    "job_status",
    "parse_gres_gpus",
    "parse_node_names",
    "parse_sacct",
    "parse_sacctmgr_assoc",
    "parse_sacctmgr_qos",
    "parse_sbatch_parsable",
    "parse_scontrol_config",
    "parse_sinfo",
    "parse_squeue",
    "parse_usage",
    "render_batch_script",
]


#: the plugin API versions this driver supports (clusterd.plugins.API_VERSION)
CLUSTERD_API = ">=1,<2"


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``SlurmDriver`` (listed in pyproject's ``clusterd`` entry points)."""
    registry.add(SlurmDriver)
