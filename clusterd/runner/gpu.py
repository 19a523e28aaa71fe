"""GPU sampling: ``{"type": "gpu", ...}`` lines in events.jsonl while the command runs.

pynvml is optional and imported lazily in the sampler's thread: without it, or without
a GPU, the sampler quietly does nothing (one line in runner.log).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

from clusterd.node import names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from clusterd.runner.log import RunnerLog

__all__ = ["GpuSampler", "start_sampler"]


def start_sampler(dir_fd: int, interval: float, log: RunnerLog) -> GpuSampler | None:
    """A running sampler, or None where there is nothing to sample."""
    if interval <= 0 or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None  # an empty CUDA_VISIBLE_DEVICES: the driver gave this trial no GPU
    sampler = GpuSampler(dir_fd, interval, log)
    sampler.start()
    return sampler


def _import_pynvml() -> Any:
    """pynvml, from site-packages even when the runner was started with ``-S``.

    Drivers start the runner with ``python -I -S`` to save the ~20 ms that
    site-packages processing costs per trial; only GPU sampling needs site-packages.
    """
    try:
        import pynvml
    except ImportError:
        if not sys.flags.no_site:
            raise
        import site

        site.main()
        import pynvml
    return pynvml


class GpuSampler:
    """Appends a gpu events line every ``interval`` s from a daemon thread."""

    def __init__(self, dir_fd: int, interval: float, log: RunnerLog) -> None:
        self._dir_fd = dir_fd
        self._interval = interval
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        try:
            pynvml = _import_pynvml()
            pynvml.nvmlInit()
            handles = _gpu_handles(pynvml)
        except Exception as exc:  # no pynvml, no driver, no GPU: nothing to sample
            self._log(f"GPU sampling off: {type(exc).__name__}: {exc}")
            return
        self._log(f"GPU sampling every {self._interval:g}s: {len(handles)} GPU(s)")
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(names.EVENTS, flags, dir_fd=self._dir_fd)  # created by the runner
        try:
            self._loop(pynvml, handles, fd)
        finally:
            os.close(fd)
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()

    def _loop(self, nvml: Any, handles: list[tuple[int, Any]], fd: int) -> None:
        while not self._stop.wait(self._interval):
            try:
                gpus = [_sample(nvml, index, handle) for index, handle in handles]
            except Exception as exc:
                self._log(f"GPU sampling stopped: {type(exc).__name__}: {exc}")
                return
            line = json.dumps({"type": "gpu", "t": time.time(), "gpus": gpus}) + "\n"
            os.write(fd, line.encode())


def _gpu_handles(nvml: Any) -> list[tuple[int, Any]]:
    """The GPUs of this job: those in CUDA_VISIBLE_DEVICES when it names them, else all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = nvml.nvmlDeviceGetCount()
    everything = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    if visible is None:
        return everything
    chosen = []
    for item in (part.strip() for part in visible.split(",") if part.strip()):
        try:
            if item.isdigit():
                chosen.append((int(item), nvml.nvmlDeviceGetHandleByIndex(int(item))))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(item)
                chosen.append((int(nvml.nvmlDeviceGetIndex(handle)), handle))
        except Exception:
            return everything  # MIG ids and the like: report the whole node instead
    return chosen


def _sample(nvml: Any, index: int, handle: Any) -> dict[str, int]:
    util = nvml.nvmlDeviceGetUtilizationRates(handle)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    mib = 1 << 20
    return {
        "index": index,
        "util": int(util.gpu),
        "mem_used": int(mem.used) // mib,
        "mem_total": int(mem.total) // mib,
    }
