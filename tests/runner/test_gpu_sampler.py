"""The GPU sampler through the real runner and the real nvidia-ml-py code path.

The runner (``python -m clusterd.runner``, and ``python -I -S`` as drivers start it)
loads the NVML stand-in (tests/standins/nvml: built with gcc, serving values recorded
from real GPUs) through ``LD_LIBRARY_PATH``, exactly as it would load the driver's
``libnvidia-ml.so.1``. No real GPU was available when these were written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from clusterd.node.events import GpuEvent, parse_chunk
from clusterd.runner import SCRIPT
from clusterd.runner.gpu_select import BATCH_MARKERS
from clusterd.testing.waiting import wait_for
from tests.standins.nvml.standin import NvmlStandIn, fixture

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 0.05

#: the trial: waits until events.jsonl has ``want`` gpu lines (or, with want 0, until
#: the test creates ``release`` in the attempt dir), then exits with ``code``
TRIAL = textwrap.dedent(
    """
    import os, subprocess, sys, time
    want, code, children = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    kids = [subprocess.Popen(["sleep", "60"]) for _ in range(children)]
    events = os.environ["CLUSTERD_EVENTS"]
    release = os.path.join(os.environ["CLUSTERD_ATTEMPT_DIR"], "release")
    deadline = time.monotonic() + 30
    def done():
        if want == 0:
            return os.path.exists(release)
        with open(events) as fh:
            return sum('"type": "gpu"' in line for line in fh) >= want
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    for kid in kids:
        kid.kill()
        kid.wait()
    sys.exit(code if done() else 99)
    """
)


class Attempt:
    """One attempt dir with a launch.json, run by the real runner."""

    def __init__(self, tmp_path: Path, nvml: NvmlStandIn, env: dict[str, str], args: list[str]):
        self.dir = tmp_path / "runs" / "1" / "attempt-1"
        self.dir.mkdir(parents=True)
        launch = {
            "version": 1,
            "sweep": "gpu",
            "trial_index": 1,
            "trial_id": "gpu/1",
            "attempt": 1,
            "trial_dir": str(self.dir.parent),
            "attempt_dir": str(self.dir),
            "command": [sys.executable, "-c", TRIAL, *args],
            "params": {},
            "cwd": str(tmp_path),
            "gpu_interval": INTERVAL,
            "kill_grace": 5,
        }
        self.launch = self.dir / "launch.json"
        self.launch.write_text(json.dumps(launch))
        base = {k: v for k, v in os.environ.items() if k not in BATCH_MARKERS}
        base.pop("CUDA_VISIBLE_DEVICES", None)
        self.env = base | nvml.env | {"PYTHONPATH": str(REPO)} | env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, isolated: bool = False) -> Attempt:
        argv = (
            [sys.executable, "-I", "-S", SCRIPT]
            if isolated
            else [sys.executable, "-m", "clusterd.runner"]
        )
        self.proc = subprocess.Popen([*argv, str(self.launch)], env=self.env)
        return self

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=60)

    def log(self) -> str:
        path = self.dir / "runner.log"
        return path.read_text() if path.exists() else ""

    def samples(self) -> list[GpuEvent]:
        path = self.dir / "events.jsonl"
        if not path.exists():
            return []
        result = parse_chunk(path.read_bytes(), 0)
        assert result.errors == []
        return [e for e in result.events if isinstance(e, GpuEvent)]

    def status(self) -> dict[str, Any]:
        return json.loads((self.dir / "status.json").read_text())


def run(
    tmp_path: Path, nvml: NvmlStandIn, args: list[str], isolated: bool = False, **env: str
) -> Attempt:
    attempt = Attempt(tmp_path, nvml, env, args).start(isolated)
    attempt.wait()
    return attempt


def sampling_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "GPU sampling" in line]


# -- samples ----------------------------------------------------------------------------


@pytest.mark.parametrize("isolated", [False, True], ids=["-m", "-I -S"])
def test_samples_carry_the_recorded_readings(
    tmp_path: Path, nvml: NvmlStandIn, isolated: bool
) -> None:
    gpu = fixture("rtx-3080") | {"own_mem": 512}
    nvml.write([gpu])
    attempt = run(tmp_path, nvml, ["3", "0", "0"], isolated, CUDA_VISIBLE_DEVICES="0")
    assert attempt.status()["exit_code"] == 0
    samples = attempt.samples()
    assert len(samples) >= 3
    assert samples[0].gpus == [
        {
            "index": 0,
            "uuid": "GPU-19d6d965-2acc-f646-00f8-4c76979aabb4",
            "util": 65,
            "mem_used": 9184,
            "mem_total": 10240,
            "power_w": 142.33,
            "temp_c": 27,
            "own_procs": 1,  # the trial's python
            "own_mem": 512,
        }
    ]
    assert all(s.t is not None for s in samples)
    assert len(sampling_lines(attempt.log())) == 1


def test_own_memory_counts_only_the_trials_processes(tmp_path: Path, nvml: NvmlStandIn) -> None:
    t4 = fixture("tesla-t4") | {"own_mem": 300}  # plus the recorded foreign python (1005 MiB)
    nvml.write([fixture("rtx-3080"), t4])
    env = {"CUDA_VISIBLE_DEVICES": "GPU-d37e67a5"}  # a UUID prefix, as HTCondor gives
    attempt = Attempt(tmp_path, nvml, env, ["0", "0", "2"]).start()

    def full() -> bool:
        return any(s.gpus[0]["own_procs"] == 3 for s in attempt.samples())

    wait_for(full, 20, "a sample with the trial and its two children")
    (attempt.dir / "release").touch()
    assert attempt.wait() == 0
    for sample in attempt.samples():
        (gpu,) = sample.gpus
        assert gpu["index"] == 1  # only the trial's GPU
        assert gpu["mem_used"] == 1032  # the whole GPU, the neighbour's 1005 MiB included
        assert 0 <= gpu["own_procs"] <= 3  # the trial and its children while they run
        assert gpu["own_mem"] == 300 * gpu["own_procs"]  # never the neighbour's


def test_a_gpu_switched_to_idle_mid_run_is_sampled_idle(tmp_path: Path, nvml: NvmlStandIn) -> None:
    nvml.write([fixture("rtx-3080")])
    attempt = Attempt(tmp_path, nvml, {"CUDA_VISIBLE_DEVICES": "0"}, ["0", "0", "0"]).start()
    wait_for(lambda: attempt.samples(), 20, "a first sample")
    nvml.set_util(0, 0)
    wait_for(lambda: attempt.samples()[-1].gpus[0]["util"] == 0, 20, "an idle sample")
    (attempt.dir / "release").touch()
    assert attempt.wait() == 0
    utils = [s.gpus[0]["util"] for s in attempt.samples()]
    assert utils[0] == 65 and utils[-1] == 0
    assert set(utils) == {65, 0}


def test_mig_devices_report_the_parent_index_and_null_util(
    tmp_path: Path, nvml: NvmlStandIn
) -> None:
    nvml.write([fixture("rtx-3080"), fixture("a100-sxm4-80gb-mig")])
    parent = fixture("a100-sxm4-80gb-mig")["uuid"]
    attempt = run(tmp_path, nvml, ["1", "0", "0"], CUDA_VISIBLE_DEVICES=f"MIG-{parent}/4/0")
    gpus = attempt.samples()[0].gpus
    assert len(gpus) == 1
    assert gpus[0]["index"] == 1
    assert gpus[0]["uuid"].startswith("MIG-")
    assert (gpus[0]["util"], gpus[0]["power_w"], gpus[0]["temp_c"]) == (None, None, None)
    assert (gpus[0]["mem_used"], gpus[0]["mem_total"]) == (12, 19968)
    assert "no util reading (Not Supported)" in attempt.log()
    # the same device by its MIG-<uuid>
    again = run(tmp_path / "b", nvml, ["1", "0", "0"], CUDA_VISIBLE_DEVICES=gpus[0]["uuid"])
    assert again.samples()[0].gpus[0]["uuid"] == gpus[0]["uuid"]


def test_a_workstation_samples_every_gpu(tmp_path: Path, nvml: NvmlStandIn) -> None:
    nvml.write([fixture("rtx-3080"), fixture("tesla-t4")])
    attempt = run(tmp_path, nvml, ["1", "0", "0"])
    assert [g["index"] for g in attempt.samples()[0].gpus] == [0, 1]


# -- no samples, one line, the trial unharmed ----------------------------------------------


def no_samples(tmp_path: Path, nvml: NvmlStandIn, **env: str) -> Attempt:
    """A trial that exits 7 once the sampler has said why it does not sample."""
    attempt = Attempt(tmp_path, nvml, env, ["0", "7", "0"]).start()
    wait_for(lambda: sampling_lines(attempt.log()), 20, "the sampler's line in runner.log")
    (attempt.dir / "release").touch()
    assert attempt.wait() == 7
    assert attempt.status()["exit_code"] == 7
    assert attempt.samples() == []
    assert len(sampling_lines(attempt.log())) == 1
    return attempt


def test_nvml_failing_at_start(tmp_path: Path, nvml: NvmlStandIn) -> None:
    nvml.set_mode("fail")
    attempt = no_samples(tmp_path, nvml, CUDA_VISIBLE_DEVICES="0")
    assert "GPU sampling off: NVML unavailable (Driver Not Loaded)" in attempt.log()


def test_zero_devices(tmp_path: Path, nvml: NvmlStandIn) -> None:
    nvml.set_mode("zero")
    attempt = no_samples(tmp_path, nvml)
    assert "GPU sampling off: no GPU to sample" in attempt.log()


def test_no_library(tmp_path: Path, nvml: NvmlStandIn) -> None:
    attempt = no_samples(tmp_path, nvml, LD_LIBRARY_PATH=str(tmp_path))
    assert "GPU sampling off: NVML unavailable (NVML Shared Library Not Found)" in attempt.log()


def test_no_pynvml(tmp_path: Path, nvml: NvmlStandIn) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text("raise ImportError('No module named pynvml')\n")
    attempt = no_samples(tmp_path, nvml, PYTHONPATH=f"{fake}:{REPO}")
    assert "GPU sampling off: nvidia-ml-py (pynvml) is not installed" in attempt.log()


def test_an_unknown_id_form_samples_nothing(tmp_path: Path, nvml: NvmlStandIn) -> None:
    attempt = no_samples(tmp_path, nvml, CUDA_VISIBLE_DEVICES="nvidia0")
    assert "'nvidia0' is not a GPU index" in attempt.log()


def test_an_id_nvml_does_not_have(tmp_path: Path, nvml: NvmlStandIn) -> None:
    attempt = no_samples(tmp_path, nvml, CUDA_VISIBLE_DEVICES="5")
    assert "GPU 5 of CUDA_VISIBLE_DEVICES='5' is not among NVML's 1 GPU(s)" in attempt.log()


def test_nvml_failing_mid_run_stops_sampling_not_the_trial(
    tmp_path: Path, nvml: NvmlStandIn
) -> None:
    attempt = Attempt(tmp_path, nvml, {"CUDA_VISIBLE_DEVICES": "0"}, ["0", "5", "0"]).start()
    wait_for(lambda: attempt.samples(), 20, "a first sample")
    nvml.set_mode("fail")
    wait_for(lambda: "GPU sampling stopped" in attempt.log(), 20, "the sampler to stop")
    count = len(attempt.samples())
    nvml.set_mode("recorded")  # it stays stopped: one clear line, not a flapping sampler
    (attempt.dir / "release").touch()
    assert attempt.wait() == 5
    assert attempt.status()["exit_code"] == 5
    assert len(attempt.samples()) == count
    stopped = [line for line in attempt.log().splitlines() if "GPU sampling stopped" in line]
    assert len(stopped) == 1
    assert "Unknown Error" in stopped[0]
