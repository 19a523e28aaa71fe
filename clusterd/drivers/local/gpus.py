"""The GPUs the local driver hands out: the ``gpus`` option, CUDA_VISIBLE_DEVICES, or
what nvidia-smi lists (queried once, when the driver first needs its capacity)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from clusterd.errors import DriverError

__all__ = [
    "GpuInfo",
    "GpuSlots",
    "discover_gpus",
    "parse_nvidia_smi",
    "query_nvidia_smi",
]

NVIDIA_SMI = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
)
NVIDIA_SMI_TIMEOUT = 10.0


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi --query-gpu=index,uuid,name,memory.total`` reports it."""

    index: int
    uuid: str
    name: str
    memory_mb: int | None  # None when nvidia-smi prints "[N/A]"


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Parse ``--format=csv,noheader,nounits`` output; a malformed line is a DriverError."""
    gpus = []
    for line in text.splitlines():
        if line.strip():
            gpus.append(_parse_gpu_line(line))
    return gpus


def _parse_gpu_line(line: str) -> GpuInfo:
    parts = [part.strip() for part in line.split(",")]
    try:
        if len(parts) < 4:
            raise ValueError("expected 4 fields")
        memory = None if parts[-1].startswith("[") else int(parts[-1])
        return GpuInfo(int(parts[0]), parts[1], ", ".join(parts[2:-1]), memory)
    except ValueError as exc:
        raise DriverError(
            f"cannot read nvidia-smi output line {line!r} ({exc}); expected "
            f"'index, uuid, name, memory.total'"
        ) from None


@dataclass(frozen=True)
class GpuSlots:
    """The GPUs this driver hands out, and where that list came from (for messages)."""

    ids: tuple[str, ...]  # what goes into CUDA_VISIBLE_DEVICES
    source: str  # e.g. "nvidia-smi found 2 GPUs", "CUDA_VISIBLE_DEVICES=0,1"
    info: tuple[GpuInfo, ...] = ()
    pci_order: bool = False  # ids are nvidia-smi indices: children need CUDA_DEVICE_ORDER


def query_nvidia_smi(timeout: float = NVIDIA_SMI_TIMEOUT) -> tuple[str | None, str]:
    """Run nvidia-smi; ``(output, "")`` or ``(None, why there is no output)``."""
    try:
        done = subprocess.run(
            NVIDIA_SMI, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        return None, "nvidia-smi not found"
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {timeout:g} s"
    except OSError as exc:
        return None, f"nvidia-smi could not run: {exc}"
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        return None, f"nvidia-smi failed: {first[0] if first else f'exit {done.returncode}'}"
    return done.stdout, ""


def discover_gpus(
    option: Sequence[int | str] | None,
    environ: Mapping[str, str],
    query: Callable[[], tuple[str | None, str]] = query_nvidia_smi,
) -> GpuSlots:
    """The GPUs to hand out: the ``gpus`` option, else the daemon's CUDA_VISIBLE_DEVICES,
    else whatever nvidia-smi lists (a missing nvidia-smi means no GPUs)."""
    if option is not None:
        ids = tuple(str(gpu) for gpu in option)
        return GpuSlots(ids, f"driver option gpus = {list(option)!r}")
    if "CUDA_VISIBLE_DEVICES" in environ:
        raw = environ["CUDA_VISIBLE_DEVICES"]
        ids = tuple(part.strip() for part in raw.split(",") if part.strip())
        return GpuSlots(ids, f"CUDA_VISIBLE_DEVICES={raw!r} in the daemon's environment")
    output, why = query()
    if output is None:
        return GpuSlots((), why)
    info = tuple(parse_nvidia_smi(output))
    count = len(info)
    found = f"{count} GPU{'' if count == 1 else 's'}" if info else "no GPU"
    return GpuSlots(tuple(str(g.index) for g in info), f"nvidia-smi found {found}", info, True)
