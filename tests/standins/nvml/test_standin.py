"""The NVML stand-in answers as the real library and nvidia-smi do, from the recordings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from clusterd.drivers.local.gpus import discover_gpus, parse_nvidia_smi, query_nvidia_smi
from tests.standins.nvml.standin import NvmlStandIn, fixture

PROBE = textwrap.dedent(
    """
    import json, pynvml
    pynvml.nvmlInit()
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
        out.append({
            "name": pynvml.nvmlDeviceGetName(h),
            "uuid": pynvml.nvmlDeviceGetUUID(h),
            "total": pynvml.nvmlDeviceGetMemoryInfo(h).total >> 20,
            "procs": sorted((p.pid, p.usedGpuMemory >> 20) for p in procs),
        })
    print(json.dumps(out))
    """
)


def probe(nvml: NvmlStandIn) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=os.environ | nvml.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(done.stdout)


def test_pynvml_reads_the_recorded_gpus(nvml: NvmlStandIn) -> None:
    nvml.write([fixture("rtx-3080"), fixture("tesla-t4")])
    (rtx, t4) = probe(nvml)
    assert (rtx["name"], rtx["uuid"], rtx["total"]) == (
        "NVIDIA GeForce RTX 3080",
        "GPU-19d6d965-2acc-f646-00f8-4c76979aabb4",
        10240,
    )
    assert rtx["procs"] == []
    # the recorded neighbour's compute process (its Xorg is a graphics process)
    assert t4["procs"] == [[5762, 1005]]


def test_processes_of_the_caller_are_reported_on_request(nvml: NvmlStandIn) -> None:
    nvml.write([fixture("rtx-3080") | {"own_mem": 64}])
    (rtx,) = probe(nvml)
    assert rtx["procs"] == []  # the probe has no children: nothing of its own


def test_nvidia_smi_answers_the_local_drivers_query(nvml: NvmlStandIn) -> None:
    nvml.write([fixture("rtx-3080"), fixture("a100-sxm4-80gb-mig")])
    env = os.environ | nvml.env
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    gpus = parse_nvidia_smi(done.stdout)
    assert [(g.index, g.uuid, g.name, g.memory_mb) for g in gpus] == [
        (0, "GPU-19d6d965-2acc-f646-00f8-4c76979aabb4", "NVIDIA GeForce RTX 3080", 10240),
        (1, "GPU-513536b6-7d19-9063-b049-1e69664bb298", "NVIDIA A100-SXM4-80GB", 81920),
    ]


def test_the_local_driver_discovers_them(
    nvml: NvmlStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml.write([fixture("rtx-3080"), fixture("tesla-t4")])
    monkeypatch.setenv("PATH", nvml.env["PATH"])
    monkeypatch.setenv("CLUSTERD_NVML_STATE", str(nvml.state))
    slots = discover_gpus(None, {})
    assert slots.ids == ("0", "1")
    assert slots.source == "nvidia-smi found 2 GPUs"
    nvml.set_mode("zero")
    assert query_nvidia_smi() == (None, "nvidia-smi failed: No devices were found")
    nvml.set_mode("fail")
    output, why = query_nvidia_smi()
    assert output is None
    assert why.startswith("nvidia-smi failed: NVIDIA-SMI has failed because it couldn't")
