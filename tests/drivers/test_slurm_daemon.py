"""The daemon on the real local Slurm: a sweep checkpoints, exits for resume, and completes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.conftest import REPO, Daemon


def test_quickstart_runs_to_the_end_on_slurm(slurm: None, daemon: Daemon, tmp_path: Path) -> None:
    example = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", example)
    sweep = (example / "sweep.toml").read_text()
    sweep = sweep.replace('driver = "local"', 'driver = "slurm"')
    sweep = sweep.replace(
        'command = "python3 train.py"', f'command = ["{sys.executable}", "train.py"]'
    )
    sweep = sweep.replace("lr = [0.1, 0.01, 0.001]", "lr = [0.1, 0.01]")
    sweep += '\n[resources]\ncpus = 1\nmemory = "200M"\n\n[drivers.slurm]\npoll_interval = 1\n'
    (example / "sweep.toml").write_text(sweep)
    daemon.ctl("submit", str(example / "sweep.toml"))
    trials = daemon.wait_sweep_done("quickstart", timeout=240)
    assert [(t["state"], t["attempts"], t["resumes"]) for t in trials] == [("completed", 2, 1)] * 4
    show = daemon.ctl_json("show", "quickstart/0")
    job_ids = [a["job_id"] for a in show["attempt_list"]]
    assert all(j and "_" in j for j in job_ids), job_ids  # array task ids, e.g. "57_0"
    assert show["attempt_list"][0]["host"]
    assert show["metrics"]["val_loss"]["step"] == 19
    status = daemon.clusterd("status").stdout
    assert "driver    slurm: last poll" in status
