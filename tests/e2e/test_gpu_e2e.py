"""GPU sampling and the idle-GPU watch end to end, on the NVML stand-in (issue #17).

Real parts: a daemon process, the local driver starting real runners and trials, the
runner's sampler calling nvidia-ml-py, which loads the stand-in ``libnvidia-ml.so.1``
through the dynamic loader (``LD_LIBRARY_PATH`` in the daemon's environment), and the
local driver discovering the GPUs with the stand-in ``nvidia-smi`` on ``PATH``. The GPUs
are recorded real ones (tests/standins/nvml/fixtures, SOURCES.md): an RTX 3080 and a
Tesla T4, each made idle or busy by the test through the stand-in's state file.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterd.cli.system import gpu_idle_line
from tests.conftest import Daemon, wait_for
from tests.standins.nvml.standin import NvmlStandIn, fixture, nvml, nvml_lib

__all__ = ["nvml", "nvml_lib"]  # the stand-in's pytest fixtures, used below

pytest.importorskip("pynvml")

#: a trial that holds its GPU until the test creates ``release`` next to it
TRIAL = """\
import os, sys, time
release = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release")
while not os.path.exists(release):
    time.sleep(0.05)
"""


def gpu(name: str, util: int) -> dict[str, Any]:
    """A recorded GPU at ``util`` %, the trial's processes using 512 MiB of it."""
    return fixture(name) | {"util": util, "own_mem": 512, "foreign": False}


@pytest.fixture
def gpu_daemon(nvml: NvmlStandIn, short_home: Path) -> Iterator[Daemon]:
    """A daemon whose local driver sees the stand-in's two GPUs (and whose runners
    load the stand-in NVML): GPU 0 an idle RTX 3080, GPU 1 a busy Tesla T4."""
    nvml.write([gpu("rtx-3080", 0), gpu("tesla-t4", 65)])
    d = Daemon(short_home)
    d.env.update(nvml.env)
    d.start()
    yield d
    d.cancel_everything()
    d.stop()


def sweep(tmp_path: Path, name: str, trials: int, gpu_table: str) -> Path:
    work = tmp_path / name
    work.mkdir()
    (work / "trial.py").write_text(TRIAL)
    path = work / "sweep.toml"
    body = f"""\
        name = "{name}"
        command = ["{sys.executable}", "trial.py"]
        max_concurrent = {trials}
        [params]
        x = {list(range(trials))}
        [resources]
        gpus = 1
        [early_stopping]
        grace_period = 0
        [gpu]
        interval = 0.5
        """
    path.write_text(textwrap.dedent(body) + textwrap.dedent(gpu_table))
    return path


def flagged(daemon: Daemon, name: str) -> dict[int, float]:
    return {
        t["index"]: t["gpu_idle_since"]
        for t in daemon.trials(name)
        if t.get("gpu_idle_since") is not None
    }


def gpu_of(daemon: Daemon, trial: str) -> int | None:
    """The NVML index of the GPU the trial's samples come from (None before any)."""
    listed = daemon.ctl_json("show", trial).get("gpu_list") or []
    return listed[0]["gpu"] if listed else None


def gpus_of(daemon: Daemon, name: str, trials: int) -> dict[int, int] | None:
    """Each trial's GPU, once every trial has samples."""
    found = {i: gpu_of(daemon, f"{name}/{i}") for i in range(trials)}
    return {i: g for i, g in found.items() if g is not None} if None not in found.values() else None


def test_samples_show_and_the_idle_warning_fires_only_for_the_idle_trial(
    gpu_daemon: Daemon, nvml: NvmlStandIn, tmp_path: Path
) -> None:
    d = gpu_daemon
    path = sweep(tmp_path, "gpu-watch", 2, 'idle_warning = "3s"\n')
    d.ctl("submit", str(path))

    # both trials run, one on each GPU, and their samples reach the database
    gpus = wait_for(lambda: gpus_of(d, "gpu-watch", 2), 60, "GPU samples of both trials")
    assert sorted(gpus.values()) == [0, 1], gpus
    idle = next(i for i, g in gpus.items() if g == 0)  # on the RTX 3080 at 0 %
    busy = 1 - idle

    shown = d.ctl_json("show", f"gpu-watch/{idle}")
    assert shown["gpu_list"][0]["util_mean"] == 0
    assert shown["gpu_list"][0]["mem_peak_mib"] == 9184  # recorded RTX 3080 memory in use
    text = d.ctl("show", f"gpu-watch/{busy}").stdout
    assert "util mean 65 % (peak 65 %)" in text, text  # the T4 as the test set it
    ranked = d.ctl("gpus", "gpu-watch").stdout
    assert f"gpu-watch/{idle}" in ranked and f"gpu-watch/{busy}" in ranked, ranked

    # after 3 s of idle samples the idle trial is flagged; the busy one never is
    since = wait_for(lambda: flagged(d, "gpu-watch"), 30, "the idle-GPU warning")
    assert list(since) == [idle]
    log = d.ctl_json("show", f"gpu-watch/{idle}")["transitions"]
    assert log[-1]["reason"] == "GPU idle for 3s (util < 5 %)" and log[-1]["to"] == "running"
    assert "!gpu-idle" in d.ctl("trials", "gpu-watch").stdout
    assert "!gpu-idle: its GPUs have been idle for" in d.ctl("show", f"gpu-watch/{idle}").stdout
    assert "1 running trial(s) with idle GPUs" in d.ctl("sweeps").stdout
    status = d.clusterd("status", "--json").stdout
    assert f'"gpu-watch/{idle}"' in status
    expected = f"gpu idle  1 trial with idle GPUs: gpu-watch/{idle}"
    assert gpu_idle_line({"gpu_idle": [f"gpu-watch/{idle}"]}) == expected
    assert expected in d.clusterd("status").stdout
    busy_log = d.ctl_json("show", f"gpu-watch/{busy}")["transitions"]
    assert not any("GPU idle" in (x["reason"] or "") for x in busy_log)

    # the idle GPU gets busy: the flag clears, with a log entry
    nvml.set_util(0, 80)
    wait_for(lambda: not flagged(d, "gpu-watch"), 30, "the idle flag to clear")
    log = d.ctl_json("show", f"gpu-watch/{idle}")["transitions"]
    assert log[-1]["reason"] == "GPU busy again"
    assert flagged(d, "gpu-watch") == {}

    (path.parent / "release").touch()
    trials = d.wait_sweep_done("gpu-watch", timeout=60)
    assert {t["state"] for t in trials} == {"completed"}, trials


def test_idle_action_stop_ends_the_idle_trial_stopped_with_the_reason(
    gpu_daemon: Daemon, nvml: NvmlStandIn, tmp_path: Path
) -> None:
    d = gpu_daemon
    nvml.write([gpu("rtx-3080", 0), gpu("tesla-t4", 0)])  # whichever it gets: idle
    path = sweep(tmp_path, "gpu-stop", 1, 'idle_warning = "2s"\nidle_action = "stop"\n')
    d.ctl("submit", str(path))
    (trial,) = d.wait_sweep_done("gpu-stop", timeout=60)
    assert trial["state"] == "stopped", trial
    show = d.ctl_json("show", "gpu-stop/0")
    assert show["stop_decision"]["rule"] == "gpu-idle"
    assert show["stop_decision"]["reason"] == "GPU idle for 2s (util < 5 %)"
    text = d.ctl("show", "gpu-stop/0").stdout
    assert "stopped by gpu-idle" in text and "GPU idle for 2s (util < 5 %)" in text, text
    reasons = [x["reason"] for x in show["transitions"]]
    assert "GPU idle for 2s (util < 5 %); stopping the trial" in reasons
