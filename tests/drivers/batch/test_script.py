"""The batch script in another scheduler's names: tasks counted from 1, directives on top,
no requeue guard -- run by bash as the scheduler would run it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from clusterd.drivers.batch.script import ScriptDialect, render_script
from tests.drivers.batch.helpers import request

SGE = ScriptDialect(
    scheduler="Grid Engine",
    task_var="SGE_TASK_ID",
    job_var="JOB_ID",
    restart_var=None,
    started_file="sge_job_id",
    output_file="sge.out",
    first_task=1,
)


def run(script: str, tmp_path: Path, task: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "task.sh"
    path.write_text(script)
    environ = {"PATH": os.environ["PATH"], "SGE_TASK_ID": task, "JOB_ID": "31", **env}
    return subprocess.run(
        ["bash", str(path)], env=environ, capture_output=True, text=True, timeout=30
    )


def test_another_dialect_runs_its_tasks(tmp_path: Path) -> None:
    jobs = [request(tmp_path, i, argv=("sh", "-c", f"echo ran {i}")) for i in range(2)]
    script = render_script(SGE, "cd.sw.x", jobs, directives=["#$ -cwd", "#$ -t 1-2"])
    assert script.splitlines()[:3] == ["#!/bin/bash", "#$ -cwd", "#$ -t 1-2"]
    assert "clusterd's Grid Engine driver" in script and "RESTART" not in script
    assert run(script, tmp_path, "2").returncode == 0
    adir = Path(jobs[1].attempt_dir)
    assert (adir / "sge.out").read_text() == "ran 1\n"
    assert (adir / "sge_job_id").read_text() == "31_2\n"
    assert not (Path(jobs[0].attempt_dir) / "sge.out").exists()
    unknown = run(script, tmp_path, "0")
    assert unknown.returncode == 97 and "array task 0 is not in this script" in unknown.stderr


def test_packed_tasks_in_another_dialect(tmp_path: Path) -> None:
    jobs = [request(tmp_path, i, argv=("sh", "-c", "echo $CLUSTERD_JOB_TOKEN")) for i in range(2)]
    done = run(render_script(SGE, "cd.sw.p", jobs, pack=2), tmp_path, "1")
    assert done.returncode == 0, done.stderr
    for slot, job in enumerate(jobs):
        adir = Path(job.attempt_dir)
        assert (adir / "sge.out").read_text() == f"{job.token}\n"
        assert (adir / "sge_job_id").read_text() == f"31_1/{slot}\n"
