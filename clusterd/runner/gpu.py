"""GPU sampling: a ``{"type": "gpu", ...}`` line in events.jsonl every ``interval`` s.

Per GPU of this attempt (:mod:`clusterd.runner.gpu_select` decides which), one entry:
``index`` (NVML index; a MIG device's parent's), ``uuid``, ``util`` (%), ``mem_used`` /
``mem_total`` (MiB), ``power_w``, ``temp_c``, and the attempt's own compute processes on
it, ``own_procs`` and their memory ``own_mem`` (MiB; :mod:`clusterd.runner.gpu_procs`
tells the attempt's from the neighbours'). A reading NVML does not support (util on a
MIG device, power on many boards) is ``null``; the line is appended to events.jsonl,
the durable path the daemon already ingests (docs/gpu.md).

The sampler never fails the trial: without pynvml, without a driver or GPU, when NVML
stops answering mid-run, it writes one line in runner.log and stops. pynvml is imported
in the sampler's thread only: the runner starts without site-packages (``-S``).
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
    from collections.abc import Callable, Mapping
    from typing import Any

    from clusterd.runner.gpu_procs import Ownership
    from clusterd.runner.gpu_select import DeviceId, Selection

__all__ = ["GpuSampler", "Target", "resolve", "start_sampler"]

MIB = 1 << 20
#: NVML errors that mean "this reading is not available here": the field is null.
#: Any other error (driver gone, GPU lost, unknown) stops the sampler.
SOFT_ERRORS = frozenset(
    {
        2,  # INVALID_ARGUMENT (some readings on MIG device handles)
        3,  # NOT_SUPPORTED
        4,  # NO_PERMISSION
        6,  # NOT_FOUND
        7,  # INSUFFICIENT_SIZE
        10,  # TIMEOUT
        13,  # FUNCTION_NOT_FOUND (an older driver without the call)
        21,  # NO_DATA
        27,  # NOT_READY
    }
)
#: the readings of one entry; a sample where all of them failed on every GPU stops it
READINGS = ("util", "mem_used", "mem_total", "power_w", "temp_c", "own_procs")


def start_sampler(
    dir_fd: int,
    interval: float,
    log: Callable[[str], None],
    *,
    environ: Mapping[str, str] | None = None,
    carries: Callable[[int], bool] | None = None,
) -> GpuSampler | None:
    """A running sampler, or None where there is nothing to sample (said in runner.log).

    ``environ``: the command's environment (default: the runner's), where the driver's
    GPU variables are; ``carries(pid)``: the containment's test for processes of the
    attempt that left the runner's process tree (optional)."""
    if interval <= 0:
        return None
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES") == "":  # the common "no GPU" case: no thread
        log("GPU sampling off: CUDA_VISIBLE_DEVICES names no GPU")
        return None
    sampler = GpuSampler(dir_fd, interval, log, environ=env, carries=carries)
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


class NvmlDown(Exception):
    """NVML answered with an error that is not about one reading: stop sampling."""


class Target:
    """One GPU (or MIG device) to sample: its NVML handle, reported index and uuid."""

    __slots__ = ("handle", "index", "uuid")

    def __init__(self, index: int, uuid: str | None, handle: Any) -> None:
        self.index = index
        self.uuid = uuid
        self.handle = handle

    def label(self) -> str:
        return f"GPU {self.index}" + (f" ({self.uuid})" if self.uuid else "")


class GpuSampler:
    """Appends a gpu events line every ``interval`` s from a daemon thread."""

    def __init__(
        self,
        dir_fd: int,
        interval: float,
        log: Callable[[str], None],
        selection: Selection | None = None,
        ownership: Ownership | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        carries: Callable[[int], bool] | None = None,
    ) -> None:
        """``selection``/``ownership`` default to those of ``environ`` and this process,
        worked out in the sampler's thread (their imports cost the runner ~6 ms)."""
        self._dir_fd = dir_fd
        self._interval = interval
        self._log = log
        self._environ = environ
        self._carries = carries
        self._selection = selection
        self._ownership = ownership
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._missing: set[tuple[int, str]] = set()  # (id of the target, reading) logged
        self.samples = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        if self._selection is None:
            from clusterd.runner.gpu_select import select_gpus

            environ = os.environ if self._environ is None else self._environ
            self._selection = select_gpus(environ)
        if self._ownership is None:
            from clusterd.runner.gpu_procs import Ownership

            self._ownership = Ownership(os.getpid(), self._carries)
        if self._selection.mode in ("none", "unknown"):
            self._log(f"GPU sampling off: {self._selection.why}")
            return
        try:
            nvml = _import_pynvml()
        except ImportError:
            self._log("GPU sampling off: nvidia-ml-py (pynvml) is not installed")
            return
        try:
            nvml.nvmlInit()
        except Exception as exc:  # no libnvidia-ml.so.1, no driver
            self._log(f"GPU sampling off: NVML unavailable ({_why(exc)})")
            return
        try:
            self._sample_all(nvml)
        finally:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()

    def _sample_all(self, nvml: Any) -> None:
        assert self._selection is not None
        try:
            targets = resolve(nvml, self._selection, self._log)
        except Exception as exc:
            self._log(f"GPU sampling off: NVML failed while finding the GPUs ({_why(exc)})")
            return
        if not targets:
            self._log(f"GPU sampling off: no GPU to sample ({self._selection.source})")
            return
        shown = ", ".join(t.label() for t in targets)
        self._log(f"GPU sampling every {self._interval:g}s: {shown} [{self._selection.source}]")
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(names.EVENTS, flags, dir_fd=self._dir_fd)  # created by the runner
        try:
            self._loop(nvml, targets, fd)
        finally:
            os.close(fd)

    def _loop(self, nvml: Any, targets: list[Target], fd: int) -> None:
        while not self._stop.wait(self._interval):
            try:
                line = self.sample_line(nvml, targets)
            except NvmlDown as exc:
                self._log(f"GPU sampling stopped: {exc}; the trial goes on")
                return
            except Exception as exc:  # a bug here must not pass in silence
                self._log(f"GPU sampling stopped: {_why(exc)}; the trial goes on")
                return
            os.write(fd, line.encode())

    def sample_line(self, nvml: Any, targets: list[Target]) -> str:
        """One events line (with its newline) for ``targets``; raises NvmlDown."""
        gpus = [self._entry(nvml, target) for target in targets]
        if all(gpu[key] is None for gpu in gpus for key in READINGS):
            raise NvmlDown("no NVML reading succeeded on any GPU")
        self.samples += 1
        return json.dumps({"type": "gpu", "t": time.time(), "gpus": gpus}) + "\n"

    def _entry(self, nvml: Any, target: Target) -> dict[str, Any]:
        handle = target.handle
        util = self._read(nvml, "nvmlDeviceGetUtilizationRates", target, "util", handle)
        mem = self._read(nvml, "nvmlDeviceGetMemoryInfo", target, "memory", handle)
        power = self._read(nvml, "nvmlDeviceGetPowerUsage", target, "power", handle)
        temp = self._read(nvml, "nvmlDeviceGetTemperature", target, "temperature", handle, 0)
        procs = self._read(
            nvml, "nvmlDeviceGetComputeRunningProcesses", target, "processes", handle
        )
        own_procs = own_mem = None
        if procs is not None:
            owns = self._ownership.owns if self._ownership is not None else _nobody
            own = [p for p in procs if owns(int(p.pid))]
            own_procs = len(own)
            used = [p.usedGpuMemory for p in own]
            own_mem = None if None in used else sum(int(u) for u in used) // MIB
        entry: dict[str, Any] = {"index": target.index}
        if target.uuid:
            entry["uuid"] = target.uuid
        entry["util"] = None if util is None else int(util.gpu)
        entry["mem_used"] = None if mem is None else int(mem.used) // MIB
        entry["mem_total"] = None if mem is None else int(mem.total) // MIB
        entry["power_w"] = None if power is None else round(int(power) / 1000, 3)
        entry["temp_c"] = None if temp is None else int(temp)
        entry["own_procs"] = own_procs
        entry["own_mem"] = own_mem
        return entry

    def _read(self, nvml: Any, call: str, target: Target, what: str, *args: Any) -> Any:
        """``nvml.<call>(*args)``; None when NVML does not give that reading (said once
        per GPU and reading)."""
        try:
            return getattr(nvml, call)(*args)
        except Exception as exc:
            if _code(exc) not in SOFT_ERRORS:
                raise NvmlDown(f"{call} on {target.label()}: {_why(exc)}") from None
            key = (id(target), what)
            if key not in self._missing:
                self._missing.add(key)
                self._log(f"{target.label()}: no {what} reading ({_why(exc)}); reported as null")
            return None


def _nobody(pid: int) -> bool:
    return False


def _code(exc: BaseException) -> int | None:
    """The NVML return code of a pynvml error (``NVMLError.value``), else None."""
    name = type(exc).__name__
    if name == "NVMLLibraryMismatchError" or isinstance(exc, AttributeError):
        return 13  # the library, or an older pynvml, lacks that function

    value = getattr(exc, "value", None)
    return value if name.startswith("NVMLError") and isinstance(value, int) else None


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(text, bytes):  # pragma: no cover - older pynvml
        text = text.decode(errors="replace")
    return text if type(exc).__name__.startswith("NVMLError") else f"{type(exc).__name__}: {text}"


# -- finding the attempt's GPUs in NVML --------------------------------------------------


def resolve(nvml: Any, selection: Selection, log: Callable[[str], None]) -> list[Target]:
    """The NVML devices of ``selection``; an id NVML does not have is logged and skipped."""
    count = int(nvml.nvmlDeviceGetCount())
    if selection.mode == "all":
        return [_by_index(nvml, i) for i in range(count)]
    found: list[Target] = []
    seen: set[tuple[int, str | None]] = set()
    for device in selection.ids:
        try:
            targets = _find(nvml, device, count)
        except Exception as exc:
            if _code(exc) not in SOFT_ERRORS:
                raise
            targets = []
        if not targets:
            log(f"GPU {_shown(device)} of {selection.source} is not among NVML's {count} GPU(s)")
        for target in targets:
            key = (target.index, target.uuid)
            if key not in seen:
                seen.add(key)
                found.append(target)
    return found


def _shown(device: DeviceId) -> str:
    if device.kind == "mig_legacy":
        return f"MIG-{device.value}/{device.gi}/{device.ci}"
    return f"minor number {device.value}" if device.kind == "minor" else str(device.value)


def _find(nvml: Any, device: DeviceId, count: int) -> list[Target]:
    kind, value = device.kind, device.value
    if kind == "index":
        return [_by_index(nvml, int(value))] if int(value) < count else []
    if kind == "minor":
        return [
            _by_index(nvml, i)
            for i in range(count)
            if nvml.nvmlDeviceGetMinorNumber(nvml.nvmlDeviceGetHandleByIndex(i)) == value
        ]
    if kind == "uuid":
        index = _uuid_index(nvml, str(value), count)
        return [] if index is None else [_by_index(nvml, index)]
    if kind == "mig":
        handle = nvml.nvmlDeviceGetHandleByUUID(str(value))
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        return [Target(int(nvml.nvmlDeviceGetIndex(parent)), str(value), handle)]
    if kind == "mig_legacy":
        index = _uuid_index(nvml, str(value), count)
        if index is None:
            return []
        parent = nvml.nvmlDeviceGetHandleByIndex(index)
        for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent))):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
            except Exception as exc:
                if _code(exc) in SOFT_ERRORS:
                    continue
                raise
            gi = nvml.nvmlDeviceGetGpuInstanceId(handle)
            if gi == device.gi and nvml.nvmlDeviceGetComputeInstanceId(handle) == device.ci:
                return [Target(index, _text(nvml.nvmlDeviceGetUUID(handle)), handle)]
        return []
    return []


def _by_index(nvml: Any, index: int) -> Target:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    try:
        uuid: str | None = _text(nvml.nvmlDeviceGetUUID(handle))
    except Exception as exc:
        if _code(exc) not in SOFT_ERRORS:
            raise
        uuid = None
    return Target(index, uuid, handle)


def _uuid_index(nvml: Any, uuid: str, count: int) -> int | None:
    """The index of the GPU whose UUID is ``uuid`` or starts with it (CUDA accepts a
    unique prefix; HTCondor hands out ``GPU-`` and 8 hex digits)."""
    wanted = uuid.lower()
    matches = []
    for i in range(count):
        own = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))).lower()
        if own == wanted:
            return i
        if own.startswith(wanted):
            matches.append(i)
    return matches[0] if len(matches) == 1 else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
