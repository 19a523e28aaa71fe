"""The daemon on the real local Slurm: a sweep checkpoints, exits for resume, and completes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.conftest import REPO, Daemon


def quickstart_on_slurm(tmp_path: Path, extra: str = "") -> Path:
    """The quickstart sweep (4 trials here), driven by Slurm, polled every second."""
    example = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", example)
    sweep = (example / "sweep.toml").read_text()
    sweep = sweep.replace('driver = "local"', 'driver = "slurm"')
    sweep = sweep.replace(
        'command = "python3 train.py"', f'command = ["{sys.executable}", "train.py"]'
    )
    sweep = sweep.replace("lr = [0.1, 0.01, 0.001]", "lr = [0.1, 0.01]")
    sweep += f'\n[resources]\ncpus = 1\nmemory = "200M"\n{extra}'
    sweep += "\n[drivers.slurm]\npoll_interval = 1\n"
    (example / "sweep.toml").write_text(sweep)
    return example / "sweep.toml"


def test_quickstart_runs_to_the_end_on_slurm(slurm: None, daemon: Daemon, tmp_path: Path) -> None:
    daemon.ctl("submit", str(quickstart_on_slurm(tmp_path)))
    trials = daemon.wait_sweep_done("quickstart", timeout=240)
    assert [(t["state"], t["attempts"], t["resumes"]) for t in trials] == [("completed", 2, 1)] * 4
    show = daemon.ctl_json("show", "quickstart/0")
    job_ids = [a["job_id"] for a in show["attempt_list"]]
    assert all(j and "_" in j for j in job_ids), job_ids  # array task ids, e.g. "57_0"
    assert show["attempt_list"][0]["host"]
    assert show["metrics"]["val_loss"]["step"] == 19
    status = daemon.clusterd("status").stdout
    assert "driver    slurm: last poll" in status


def test_quickstart_packed_two_to_a_job(slurm: None, daemon: Daemon, tmp_path: Path) -> None:
    """pack = 2: trials share jobs, yet each resumes and completes on its own."""
    sweep = quickstart_on_slurm(tmp_path, "pack = 2\n")
    text = sweep.read_text().replace("max_concurrent = 2", "max_concurrent = 4")
    sweep.write_text(text)
    daemon.ctl("submit", str(sweep))
    trials = daemon.wait_sweep_done("quickstart", timeout=240)
    assert [(t["state"], t["attempts"], t["resumes"]) for t in trials] == [("completed", 2, 1)] * 4
    first = [daemon.ctl_json("show", f"quickstart/{i}")["attempt_list"][0] for i in range(4)]
    job_ids = [attempt["job_id"] for attempt in first]
    assert sorted(j.split("/")[1] for j in job_ids) == ["0", "0", "1", "1"], job_ids
    assert len({j.split("/")[0] for j in job_ids}) == 2  # 4 trials, 2 jobs
