"""Scheduler drivers: the contract every driver implements (``clusterd.drivers.base``).

Importing this package loads no driver and no plugin machinery: the daemon builds the
plugin manager (``clusterd.plugins``) once at start-up, and driver modules (``local``,
``slurm``, ...) are imported by it through the ``clusterd`` entry-point group, like any
third-party plugin. Plugins import ``hookimpl`` and ``DriverRegistry`` from
``clusterd.plugins``.
"""

from clusterd.drivers.base import ClusterInfo, Driver, JobRef, JobRequest, JobStatus

__all__ = ["ClusterInfo", "Driver", "JobRef", "JobRequest", "JobStatus"]
