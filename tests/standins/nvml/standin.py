"""The NVML stand-in for tests: build ``libnvidia-ml.so.1`` with gcc, write its state file.

The library (``nvml_standin.c``) is loaded by the real nvidia-ml-py through the dynamic
loader: a process started with ``LD_LIBRARY_PATH=<lib_dir>`` gets it from
``CDLL("libnvidia-ml.so.1")``. It serves what the state file named by
``CLUSTERD_NVML_STATE`` says, re-read on every call, so a test can switch a GPU between
busy and idle, or make NVML fail, while a trial runs. The values come from recorded real
``nvidia-smi`` output (``fixtures/*.json``, see ``SOURCES.md``). ``nvidia-smi`` in
:attr:`NvmlStandIn.bin_dir` prints the same GPUs the way the local driver's discovery
reads them. Usage: README.md next to this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "FIXTURES",
    "NvmlStandIn",
    "build_nvml",
    "fixture",
    "gpu_line",
    "nvml",
    "nvml_lib",
]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "nvml_standin.c"
SMI = HERE / "nvidia-smi"
FIXTURES = HERE / "fixtures"
#: the variable naming the state file (read by the library and the nvidia-smi stand-in)
STATE_ENV = "CLUSTERD_NVML_STATE"
MODES = ("recorded", "zero", "fail")


def build_nvml(out_dir: Path, cc: str = "gcc") -> Path:
    """Compile the stand-in into ``out_dir/libnvidia-ml.so.1``; returns ``out_dir``."""
    compiler = shutil.which(cc)
    if compiler is None:
        pytest.skip(f"{cc} is needed to build the NVML stand-in")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "libnvidia-ml.so.1"
    cmd = [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(target), str(SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the NVML stand-in failed:\n{done.stderr}")
    return out_dir


def fixture(name: str) -> dict[str, Any]:
    """A recorded GPU (``fixtures/<name>.json``)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def _word(value: Any) -> str:
    if value is None:
        return "na"
    return str(value).replace(" ", "%20")


def gpu_line(index: int, gpu: Mapping[str, Any]) -> list[str]:
    """The state-file lines of one GPU (and its MIG devices) from a fixture-shaped dict.

    Keys besides the fixture's: ``own_mem`` (MiB each process of the caller's tree uses
    on it; 0 = none of them is on it), ``foreign`` (False: leave out the recorded
    compute process that is not the trial's)."""
    power = gpu.get("power_w")
    fields = {
        "index": index,
        "uuid": gpu["uuid"],
        "name": gpu.get("name", "stand-in"),
        "minor": gpu.get("minor", index),
        "util": gpu.get("util"),
        "mem_used": gpu.get("mem_used"),
        "mem_total": gpu.get("mem_total"),
        "power_mw": None if power is None else round(power * 1000),
        "temp": gpu.get("temp_c"),
        "own_mem": gpu.get("own_mem", 0),
    }
    compute = [p for p in gpu.get("processes", ()) if p.get("type") == "C"]
    if compute and gpu.get("foreign", True):
        fields["foreign_pid"] = compute[0]["pid"]
        fields["foreign_mem"] = compute[0]["used_mib"]
    lines = ["gpu " + " ".join(f"{k}={_word(v)}" for k, v in fields.items())]
    for mig in gpu.get("mig", ()):
        mig_uuid = mig.get("uuid") or _mig_uuid(gpu["uuid"], mig["slot"])
        mig_fields = {
            "parent": index,
            "slot": mig["slot"],
            "uuid": mig_uuid,
            "gi": mig["gi"],
            "ci": mig["ci"],
            "mem_used": mig.get("mem_used"),
            "mem_total": mig.get("mem_total"),
            "own_mem": mig.get("own_mem", 0),
        }
        lines.append("mig " + " ".join(f"{k}={_word(v)}" for k, v in mig_fields.items()))
    return lines


def _mig_uuid(parent: str, slot: int) -> str:
    """A MIG-<uuid> for a MIG device (nvidia-smi -q -x v12 records none): the parent's
    UUID with its last group changed, so it is well-formed and distinct."""
    head, _, tail = parent.removeprefix("GPU-").rpartition("-")
    return f"MIG-{head}-{slot:04x}{tail[4:]}"


class NvmlStandIn:
    """A built library, its state file and a ``bin`` dir with the stand-in nvidia-smi."""

    def __init__(self, lib_dir: Path, work: Path) -> None:
        self.lib_dir = lib_dir
        self.state = work / "nvml-state"
        self.bin_dir = work / "nvml-bin"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        smi = self.bin_dir / "nvidia-smi"
        if not smi.exists():
            smi.symlink_to(SMI)
        self.gpus: list[dict[str, Any]] = []
        self.mode = "recorded"
        self.write([fixture("rtx-3080")])

    @property
    def env(self) -> dict[str, str]:
        """What to add to a process's environment (at its start) for it to use the stand-in."""
        ld = os.environ.get("LD_LIBRARY_PATH")
        path = os.environ.get("PATH", "/usr/bin:/bin")
        return {
            "LD_LIBRARY_PATH": str(self.lib_dir) + (f":{ld}" if ld else ""),
            STATE_ENV: str(self.state),
            "PATH": f"{self.bin_dir}:{path}",
        }

    def write(
        self, gpus: Sequence[Mapping[str, Any]] | None = None, mode: str | None = None
    ) -> None:
        """Replace the state (atomically: the library reads it on every call)."""
        if gpus is not None:
            self.gpus = [dict(g) for g in gpus]
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"mode {mode!r}: expected one of {MODES}")
            self.mode = mode
        lines = [f"mode={self.mode}"]
        for index, gpu in enumerate(self.gpus):
            lines += gpu_line(index, gpu)
        tmp = self.state.with_name(self.state.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.state)

    def set_util(self, index: int, util: int | None) -> None:
        """GPU ``index`` busy (e.g. 65) or idle (0) from the next NVML call on."""
        self.gpus[index]["util"] = util
        self.write()

    def set_mode(self, mode: str) -> None:
        """``"recorded"``, ``"zero"`` (no devices) or ``"fail"`` (every call fails)."""
        self.write(mode=mode)


@pytest.fixture(scope="session")
def nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in library, built once per test session."""
    return build_nvml(tmp_path_factory.mktemp("nvml-lib"))


@pytest.fixture
def nvml(nvml_lib: Path, tmp_path: Path) -> Iterator[NvmlStandIn]:
    """A fresh state (one busy RTX 3080 as recorded) for this test."""
    yield NvmlStandIn(nvml_lib, tmp_path)
