"""Scheduler drivers: the interface, the plugin hook and the registry.

Importing this package loads no driver and no entry point (only pluggy): the
daemon calls ``load_drivers(build_plugin_manager())`` once at start-up. Driver
modules (``local``, ``fake``, ``slurm``, ...) are imported by pluggy through the
``clusterd`` entry-point group, like any third-party plugin.
"""

from clusterd.drivers.base import ClusterInfo, Driver, JobRef, JobRequest, JobStatus
from clusterd.drivers.hookspecs import hookimpl
from clusterd.drivers.registry import DriverRegistry, build_plugin_manager, load_drivers

__all__ = [
    "ClusterInfo",
    "Driver",
    "DriverRegistry",
    "JobRef",
    "JobRequest",
    "JobStatus",
    "build_plugin_manager",
    "hookimpl",
    "load_drivers",
]
