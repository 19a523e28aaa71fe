"""The local driver's state as a user reads it: ``clusterctl cluster`` (the machine, its
GPUs, every job) and why a queued job waits."""

from __future__ import annotations

from typing import Any

from clusterd.drivers.base import ClusterInfo
from clusterd.drivers.local.capacity import Capacity, plural
from clusterd.drivers.local.gpus import GpuInfo
from clusterd.drivers.local.jobs import Queued, Running, Unsettled
from clusterd.drivers.local.procs import queued_job_id

__all__ = ["describe", "queue_reason"]


def describe(
    driver: str,
    host: str,
    cap: Capacity,
    running: dict[str, Running],
    queue: dict[str, Queued],
    unsettled: dict[str, Unsettled],
) -> ClusterInfo:
    """The machine as one node: capacity in use, each GPU's users, every job."""
    info = {str(g.index): g for g in cap.gpus.info}
    gpus = [_gpu(gpu, tokens, info.get(gpu)) for gpu, tokens in cap.gpu_users().items()]
    jobs = [_running(r) for r in running.values()]
    jobs += [_queued(q) for q in queue.values()]
    jobs += [
        {"token": token, "state": "unknown", "pid": u.pid, "reason": u.why}
        for token, u in unsettled.items()
    ]
    node = {
        "host": host,
        "cpus": cap.cpus_total,
        "cpus_free": max(0, cap.cpus_total - cap.cpus_used),
        "gpus": len(cap.gpus.ids),
        "gpus_free": len(cap.free_gpus()),
        "running": len(running),
        "queued": len(queue),
    }
    return ClusterInfo(driver=driver, nodes=[node], gpus=gpus, queue=jobs, notes=[cap.gpus.source])


def queue_reason(queue: dict[str, Queued], token: str) -> str:
    """What a queued job waits for, and how many jobs are ahead of it (FIFO)."""
    position = list(queue).index(token)
    queued = queue[token]
    need = f"{queued.cpus} CPU{plural(queued.cpus)}"
    if queued.gpus:
        need += f" and {queued.gpus} GPU{plural(queued.gpus)}"
    return f"waiting for {need}; {position} job{plural(position)} ahead in the local queue"


def _running(running: Running) -> dict[str, Any]:
    return {
        "token": running.token,
        "job_id": running.job_id,
        "state": "running",
        "pid": running.pid,
        "cpus": running.cpus,
        "gpus": list(running.gpu_ids),
        "started_at": running.started_at,
    }


def _queued(queued: Queued) -> dict[str, Any]:
    return {
        "token": queued.request.token,
        "job_id": queued_job_id(queued.request.token),
        "state": "queued",
        "cpus": queued.cpus,
        "gpus": queued.gpus,
        "submitted_at": queued.submitted_at,
    }


def _gpu(gpu: str, tokens: list[str], info: GpuInfo | None) -> dict[str, Any]:
    described: dict[str, Any] = {"id": gpu, "busy": bool(tokens), "jobs": tokens}
    if info is not None:
        described.update(index=info.index, uuid=info.uuid, name=info.name)
        described["memory_mb"] = info.memory_mb
    return described
