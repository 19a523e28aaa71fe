"""The daemon on the real local Slurm: a sweep checkpoints, exits for resume, and completes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

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


def test_an_attempts_runtime_on_slurm_is_the_runners(
    slurm: None, daemon: Daemon, tmp_path: Path
) -> None:
    """Slurm is polled, so the first poll that sees a job RUNNING comes after it started
    (it once showed "ran 0s" for a 28.6 s attempt): the times shown are the runner's own."""
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(4)\n")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        f'name = "times"\ncommand = ["{sys.executable}", "sleep.py"]\ndriver = "slurm"\n'
        '[params]\nx = [1]\n[resources]\ncpus = 1\nmemory = "100M"\n'
        "[drivers.slurm]\npoll_interval = 1\n"
    )
    daemon.ctl("submit", str(sweep))
    trials = daemon.wait_sweep_done("times", timeout=120)
    assert trials[0]["state"] == "completed", trials
    attempt = daemon.ctl_json("show", "times/0")["attempt_list"][0]
    status = json.loads((Path(attempt["dir"]) / "status.json").read_text())
    assert attempt["started_at"] == pytest.approx(status["started_at"], abs=0.01)
    assert attempt["ended_at"] == pytest.approx(status["ended_at"], abs=0.01)
    assert attempt["runtime"] == pytest.approx(status["ended_at"] - status["started_at"], abs=0.02)
    assert attempt["runtime"] >= 4.0


def test_script_failures_never_exclude_the_only_node(
    slurm: None, daemon: Daemon, tmp_path: Path
) -> None:
    """A script's own bugs (exit 1) say nothing about the host: on a one-node Slurm every
    retry still runs there, instead of `--exclude`-ing the only node and leaving sbatch
    failing ("Requested node configuration is not available") for good."""
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        f'name = "buggy"\ncommand = ["{sys.executable}", "-c", "raise SystemExit(1)"]\n'
        'driver = "slurm"\n[params]\nx = [1]\n[resources]\ncpus = 1\nmemory = "100M"\n'
        "[retry]\nmax_failures = 3\nexclude_host_after = 2\n"
        "[drivers.slurm]\npoll_interval = 1\n"
    )
    daemon.ctl("submit", str(sweep))
    trials = daemon.wait_sweep_done("buggy", timeout=180)
    assert [(t["state"], t["attempts"]) for t in trials] == [("failed", 4)], trials
    attempts = daemon.ctl_json("show", "buggy/0")["attempt_list"]
    assert [a["exit_code"] for a in attempts] == [1, 1, 1, 1]
    assert len({a["host"] for a in attempts}) == 1, attempts
    view = {s["name"]: s for s in daemon.ctl_json("sweeps")}["buggy"]
    assert view["excluded_hosts"] == {} and view["stuck"] is None, view


def test_a_sweep_sbatch_refuses_backs_off_alone(
    slurm: None, daemon: Daemon, tmp_path: Path
) -> None:
    """sbatch refusing one sweep's jobs marks that sweep (with the reason) and backs it off;
    another Slurm sweep runs to the end and polls go on."""
    common = '[params]\nx = [1, 2]\n[resources]\ncpus = 1\nmemory = "100M"\n'
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'name = "refused"\ncommand = ["{sys.executable}", "-c", "pass"]\ndriver = "slurm"\n'
        + common
        + '[drivers.slurm]\npoll_interval = 1\nconstraint = "no-such-feature"\n'
    )
    good = tmp_path / "good.toml"
    good.write_text(
        f'name = "fine"\ncommand = ["{sys.executable}", "-c", "pass"]\ndriver = "slurm"\n'
        + common
        + "[drivers.slurm]\npoll_interval = 1\n"
    )
    daemon.ctl("submit", str(bad))
    daemon.ctl("submit", str(good))
    trials = daemon.wait_sweep_done("fine", timeout=180)
    assert [t["state"] for t in trials] == ["completed", "completed"], trials
    view = {s["name"]: s for s in daemon.ctl_json("sweeps")}["refused"]
    assert view["stuck"] is not None, view
    assert "sbatch" in view["stuck"]["reason"], view["stuck"]
    status = daemon.clusterd("status").stdout
    assert "refused: cannot launch trials" in status, status
    assert "driver    slurm: last poll" in status, status
