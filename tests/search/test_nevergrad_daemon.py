"""method = "nevergrad" in a real daemon: a SIGKILL in the middle of the search, a restart,
and the sweep still ends with every sample proposed once, inside the space."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Daemon, wait_for

pytest.importorskip("nevergrad")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_nevergrad_sweep_survives_a_daemon_kill(daemon: Daemon, tmp_path: Path) -> None:
    example = tmp_path / "early-stopping"
    shutil.copytree(REPO / "examples" / "early-stopping", example)
    text = (example / "cem.toml").read_text()
    text = text.replace('"python3 train.py"', json.dumps(f"{sys.executable} train.py"))
    text = text.replace('name = "early-stopping-cem"', 'name = "ng"')
    text = text.replace('method = "cem"', 'method = "nevergrad"')
    text = text.replace("samples = 24", "samples = 10")
    text = text.replace("population = 8\nelite_fraction = 0.25", 'optimizer = "TwoPointsDE"')
    path = example / "nevergrad.toml"
    path.write_text(text)
    daemon.ctl("submit", str(path))
    wait_for(lambda: len(daemon.trials("ng")) >= 5, 120, "five proposals")
    os.kill(daemon.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(daemon.pid), 10, "daemon to die")
    daemon.start()
    trials = daemon.wait_sweep_done("ng", timeout=240)
    assert [t["index"] for t in trials] == list(range(10))
    assert {t["state"] for t in trials} == {"completed"}
    for t in trials:
        p = t["params"]
        assert 1e-5 <= p["lr"] <= 1e-1 and not math.isnan(p["lr"])
        assert p["width"] in (32, 64, 128, 256, 512) and p["steps"] == 12
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) > 5
