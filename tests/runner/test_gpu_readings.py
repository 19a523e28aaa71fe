"""One sample's entry from NVML answers: missing readings are null, a dead NVML stops it.

A small Python fake of the pynvml calls stands in here for the cases the C stand-in does
not produce (an unknown process memory, one reading failing with a hard error); the
real code path is in test_gpu_sampler.py.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from clusterd.runner.gpu import GpuSampler, NvmlDown, Target
from clusterd.runner.gpu_procs import Ownership
from clusterd.runner.gpu_select import Selection


class NVMLError(Exception):  # pynvml's errors carry the NVML return code in .value
    def __init__(self, value: int) -> None:
        super().__init__(f"code {value}")
        self.value = value


class FakeNvml:
    def __init__(self, **fail: int) -> None:
        self.fail = fail
        self.procs: list[Any] = []

    def _call(self, name: str, result: Any) -> Any:
        if name in self.fail:
            raise NVMLError(self.fail[name])
        return result

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        return self._call("util", SimpleNamespace(gpu=40))

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        return self._call("mem", SimpleNamespace(used=2 << 20, total=8 << 20))

    def nvmlDeviceGetPowerUsage(self, h: Any) -> Any:
        return self._call("power", 70500)

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> Any:
        return self._call("temp", 51)

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> Any:
        return self._call("procs", self.procs)


def sampler(lines: list[str]) -> GpuSampler:
    owns_me = Ownership(os.getppid())  # this test process is a descendant of its parent
    return GpuSampler(-1, 1.0, lines.append, Selection("all"), owns_me)


def entry(nvml: FakeNvml, lines: list[str]) -> dict[str, Any]:
    import json

    line = sampler(lines).sample_line(nvml, [Target(3, "GPU-1", object())])
    (gpu,) = json.loads(line)["gpus"]
    return dict(gpu)


def test_all_readings() -> None:
    nvml = FakeNvml()
    nvml.procs = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=5 << 20)]
    nvml.procs.append(SimpleNamespace(pid=1, usedGpuMemory=100 << 20))  # init: not ours
    assert entry(nvml, []) == {
        "index": 3,
        "uuid": "GPU-1",
        "util": 40,
        "mem_used": 2,
        "mem_total": 8,
        "power_w": 70.5,
        "temp_c": 51,
        "own_procs": 1,
        "own_mem": 5,
    }


@pytest.mark.parametrize("code", [3, 4, 13, 21])
def test_a_reading_not_given_is_null_and_said_once(code: int) -> None:
    lines: list[str] = []
    gpu = entry(FakeNvml(power=code), lines)
    assert gpu["power_w"] is None and gpu["util"] == 40
    assert len(lines) == 1 and "no power reading" in lines[0]


def test_unknown_process_memory_is_null_not_zero() -> None:
    nvml = FakeNvml()
    nvml.procs = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=None)]
    gpu = entry(nvml, [])
    assert (gpu["own_procs"], gpu["own_mem"]) == (1, None)


@pytest.mark.parametrize("code", [1, 9, 15, 999])
def test_a_hard_error_stops_the_sampler(code: int) -> None:
    with pytest.raises(NvmlDown, match="nvmlDeviceGetMemoryInfo on GPU 3"):
        entry(FakeNvml(mem=code), [])


def test_no_reading_at_all_stops_the_sampler() -> None:
    nvml = FakeNvml(util=3, mem=3, power=3, temp=3, procs=3)
    with pytest.raises(NvmlDown, match="no NVML reading succeeded"):
        entry(nvml, [])
