"""The local backend: ``LocalDriver`` runs attempts as processes on this machine, with its
own queue.

The machine is the scheduler: a job starts when its CPUs (``resources.cpus``,
default 1) fit in the free CPUs and its GPUs in the free GPUs; otherwise it
waits in a FIFO queue. A job that does not fit blocks the ones behind it (no
backfill), so a 4-GPU trial is never starved by a stream of 1-GPU ones.

Exits are noticed, not polled for: a watcher thread blocks on the pidfds of
running jobs (plus a self-pipe to add new ones and to wake it for kill
deadlines). On an exit it reaps, frees capacity, starts what now fits and calls
the daemon's wakeup callback -- typically within a millisecond.

Nothing is lost across a daemon restart, and nothing runs twice:

* a job id is ``"<pid>:<starttime>"`` (field 22 of ``/proc/<pid>/stat``), so a
  recycled pid never passes for our job; a queued job's id is ``"queued:<token>"``;
* every job runs in its own session (``start_new_session``), so it survives the
  daemon, and ``close()`` never kills it;
* ``<attempt_dir>/job.json`` records the job's state (queued -> starting ->
  running, or cancelled/failed) with the request itself, written by
  temp-file-and-rename before each transition. A restarted daemon's driver adopts
  running jobs (pidfds work for processes that are not our children), puts queued
  ones back in its queue, and for a job caught "starting" looks for the process
  (the fork server's ``forked.pid``, or the session leader carrying
  ``CLUSTERD_JOB_TOKEN=<token>`` in ``/proc``). Found: adopted. Not found: the
  driver claims the spawn id recorded with "starting" (``forkserver.claim_spawn``,
  the same ``O_EXCL`` file the spawner creates before forking). If the claim is
  ours, the job never started and now never will from the old request: it is
  queued again. If the spawner's, it did start, and ended without a trace.

A launch is "could not start" only when it certainly did not start. Once the
fork may have happened (the fork server got the request, or Popen returned), any
failure -- typically EMFILE from ``pidfd_open`` or ``/proc/<pid>/stat`` when the
daemon is out of descriptors -- leaves job.json "starting" and the job *unsettled*:
each poll reports it queued ("state unknown") and tries the recovery above again,
until it is adopted or known gone. Likewise, a recovery that cannot look (out of
descriptors or memory) says "unknown" and looks again; it never concludes "gone".

Linux only (pidfd_open needs kernel >= 5.3).

The package, one job per module: ``driver`` (the Driver contract and the queue),
``recovery`` (adopting, re-queueing or ending jobs the driver did not start),
``jobs`` (its records of a job, in memory and in job.json), ``procs`` (/proc,
sessions, job ids), ``capacity`` (CPU and GPU accounting), ``gpus`` (GPU discovery),
``watcher`` (the exit watcher thread), ``describe`` (``clusterctl cluster``) and
``forkserver`` (the pre-started process that forks jobs; stdlib only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clusterd.drivers.local.driver import LocalDriver
from clusterd.drivers.local.gpus import GpuInfo, GpuSlots, discover_gpus, parse_nvidia_smi
from clusterd.drivers.local.procs import parse_job_id, parse_proc_stat, read_proc_stat
from clusterd.plugins import hookimpl

if TYPE_CHECKING:
    from clusterd.plugins import DriverRegistry

__all__ = [
    "CLUSTERD_API",
    "GpuInfo",
    "GpuSlots",
    "LocalDriver",
    "clusterd_register_drivers",
    "discover_gpus",
    "parse_job_id",
    "parse_nvidia_smi",
    "parse_proc_stat",
    "read_proc_stat",
]


#: the plugin API versions this driver supports (clusterd.plugins.API_VERSION)
CLUSTERD_API = ">=1,<2"


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``LocalDriver`` (listed in pyproject's ``clusterd`` entry points)."""
    registry.add(LocalDriver)
