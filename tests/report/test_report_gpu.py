"""The report's GPU section from real GPU samples: a daemon whose runners sample the NVML
stand-in (tests/standins/nvml: recorded RTX 3080 and Tesla T4, one idle, one at 65 %)
through nvidia-ml-py, two trials holding one GPU each until released."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, wait_for
from tests.standins.nvml.standin import NvmlStandIn, fixture, nvml, nvml_lib

__all__ = ["nvml", "nvml_lib"]  # the stand-in's pytest fixtures, used below

pytest.importorskip("pynvml")
pytest.importorskip("matplotlib")

TRIAL = """\
import os, time
from clusterd import trial

release = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release")
step = 0
while not os.path.exists(release):
    trial.report(step, loss=1.0 / (step + 1) + trial.params()["x"])
    step += 1
    time.sleep(0.1)
"""

SWEEP = """\
name = "gpurep"
command = ["{py}", "trial.py"]
max_concurrent = 2
[metric]
name = "loss"
mode = "min"
[params]
x = [0, 1]
[resources]
gpus = 1
[gpu]
interval = 0.5
"""


def gpu(name: str, util: int) -> dict[str, Any]:
    return fixture(name) | {"util": util, "own_mem": 512, "foreign": False}


@pytest.fixture
def gpu_daemon(nvml: NvmlStandIn, short_home: Path) -> Iterator[Daemon]:
    nvml.write([gpu("rtx-3080", 0), gpu("tesla-t4", 65)])
    d = Daemon(short_home)
    d.env.update(nvml.env)
    d.start()
    yield d
    d.cancel_everything()
    d.stop()


def _samples(d: Daemon) -> bool:
    rows = d.ctl_json("gpus", "gpurep")
    return len(rows) == 2 and all((r.get("samples") or 0) >= 3 for r in rows)


def test_gpu_section_from_sampled_trials(gpu_daemon: Daemon, tmp_path: Path) -> None:
    d = gpu_daemon
    (tmp_path / "trial.py").write_text(TRIAL)
    (tmp_path / "sweep.toml").write_text(textwrap.dedent(SWEEP).replace("{py}", sys.executable))
    d.ctl("submit", str(tmp_path / "sweep.toml"))
    wait_for(lambda: _samples(d), 60, "three GPU samples of both trials")
    (tmp_path / "release").touch()
    d.wait_sweep_done("gpurep", timeout=60)

    out = tmp_path / "r.html"
    d.ctl("report", "gpurep", "-o", str(out))
    text = out.read_text()
    section = text[text.index("<section id='gpu'>") :]
    assert "no GPU samples" not in text
    assert "<td>trials with GPU samples</td><td>2</td>" in section
    assert "wasted GPU-hours" in section and "<th>wasted GPU-h</th>" in section
    assert section.count("src='data:image/png;base64,") == 1  # the utilisation histogram
    # ranked as the daemon ranks them: the idle RTX 3080's trial wasted the most
    rows = re.findall(r"<tr><td>(gpurep/\d)</td><td>completed</td><td class='n'>1</td>"
                      r"<td class='n'>(\d+) %</td>", section)  # fmt: skip
    assert [util for _, util in rows] == ["0", "65"], rows
    summary = text[: text.index("<section id='best'>")]
    assert re.search(r"<td>GPU-hours</td><td>[0-9.e-]+</td>", summary)
