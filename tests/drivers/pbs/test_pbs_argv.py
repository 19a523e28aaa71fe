"""What ``qsub`` is given, per dialect, pinned by golden files; and the script, run for real.

The golden files in ``tests/drivers/fixtures/pbs/golden/`` are what docs/pbs.md shows:
regenerate them with ``CLUSTERD_UPDATE_GOLDEN=1 pytest tests/drivers/pbs/test_pbs_argv.py``
(and read the diff). The scripts run here under bash with the variables a PBS mom sets
(``PBS_ARRAY_INDEX``/``PBS_ARRAY_ID``, Torque's ``PBS_ARRAYID``/``PBS_JOBID``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers.base import JobRequest
from clusterd.drivers.pbs import PbsDriver
from clusterd.drivers.pbs.argv import (
    ArraySettings,
    build_qsub_argv,
    format_walltime,
    render_batch_script,
)
from clusterd.errors import DriverError
from clusterd.node import names
from clusterd.spec.model import Resources
from tests.drivers.pbs.pbs_helpers import GOLDEN, make_job

UPDATE = bool(os.environ.get("CLUSTERD_UPDATE_GOLDEN"))
STATE = "/abs/runs/lr depth/.pbs"
BATCH = "cd.lr-depth.0123abcd"
SCRIPT = f"{STATE}/{BATCH}.sh"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed: CLUSTERD_UPDATE_GOLDEN=1 to accept"


def golden_jobs() -> list[JobRequest]:
    """Requests with awkward values: spaces, quotes, a ``$``, a newline, an env var."""
    base = "/abs/runs/lr depth"
    return [
        JobRequest(
            token="cd-lr-depth-0-1-aaaaaa",
            sweep="lr-depth",
            trial_index=0,
            attempt=1,
            attempt_dir=f"{base}/0/attempt-1",
            argv=("/usr/bin/python3", "-m", "clusterd.runner", f"{base}/0/attempt-1/launch.json"),
            resources=Resources(cpus=2, gpus=1, memory_mb=4096, time_seconds=3600),
        ),
        JobRequest(
            token="cd-lr-depth-7-2-bbbbbb",
            sweep="lr-depth",
            trial_index=7,
            attempt=2,
            attempt_dir=f"{base}/7/attempt-2",
            argv=("python3", "-c", 'print("it\'s $HOME; `id`")\nprint(1)', "--x=a b"),
            resources=Resources(cpus=2, gpus=1, memory_mb=4096, time_seconds=3600),
            env={"OMP_NUM_THREADS": "4", "ODD": "$(rm -rf /) 'q'"},
        ),
    ]


#: the submissions docs/pbs.md shows, per dialect
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "array of 2, 2 CPUs, 1 GPU, 4 GB, 1 h": ({}, 2),
    "one task (a plain job)": ({}, 1),
    "queue, account, throttle, select, extra": (
        {
            "queue": "workq",
            "account": "proj42",
            "throttle": 8,
            "select": "model=a100",
            "extra": ["-W", "umask=022"],
        },
        100,
    ),
    "packed 4 to a task": ({"pack": 4}, 25),
}


@pytest.mark.parametrize("flavor", ["pbspro", "torque"])
def test_qsub_argv_matches_golden_file(flavor: str) -> None:
    job = golden_jobs()[0]
    out: dict[str, list[str]] = {}
    for what, (changes, tasks) in CASES.items():
        settings = ArraySettings.of(job, flavor, {})  # type: ignore[arg-type]
        fields = {k: (tuple(v) if k == "extra" else v) for k, v in changes.items()}
        settings = ArraySettings(**{**settings.__dict__, **fields})
        out[what] = build_qsub_argv(settings, BATCH, tasks, STATE, SCRIPT)
    golden(f"{flavor}-qsub-argv.json", json.dumps(out, indent=2) + "\n")


@pytest.mark.parametrize("flavor", ["pbspro", "torque"])
def test_batch_script_matches_golden_file(flavor: str) -> None:
    script = render_batch_script(flavor, BATCH, golden_jobs(), STATE)  # type: ignore[arg-type]
    golden(f"{flavor}-batch-script.sh", script)
    subprocess.run(["bash", "-n", str(GOLDEN / f"{flavor}-batch-script.sh")], check=True)


def test_walltime_lies_a_margin_beyond_the_limit() -> None:
    """The runner ends the attempt at the limit (TERM, then KILL after its grace): PBS's own
    kill at the walltime must come later, so that status.json is written."""
    argv = build_qsub_argv(ArraySettings("sw", time_seconds=3600), "b", 2, "/s", "/s/b.sh")
    assert argv[argv.index("walltime=01:01:00") - 1] == "-l"
    assert format_walltime(100 * 3600) == "100:00:00"
    assert format_walltime(0) == "00:00:01"


def test_resources_per_dialect() -> None:
    pro = ArraySettings("sw", "pbspro", cpus=2, gpus=1, memory_mb=512, pack=2)
    assert "select=1:ncpus=4:ngpus=2:mem=1024mb" in build_qsub_argv(pro, "b", 1, "/s", "/s/b")
    torque = ArraySettings("sw", "torque", cpus=None, gpus=2, memory_mb=512)
    argv = build_qsub_argv(torque, "b", 3, "/s", "/s/b")
    assert argv[argv.index("-t") + 1] == "0-2"
    assert "nodes=1:ppn=1:gpus=2" in argv and "mem=512mb" in argv
    assert "-J" not in argv


# --------------------------------------------------------------------------- the script, run


def run_task(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(
        ["bash", str(script)], env=full, capture_output=True, text=True, timeout=30
    )


ECHO = ("python3", "-c", "import os, sys; print(sys.argv[1:], os.environ['PBS_JOBID'])")


@pytest.mark.parametrize(
    ("flavor", "task_env"),
    [
        ("pbspro", {"PBS_ARRAY_INDEX": "1", "PBS_ARRAY_ID": "77[].s", "PBS_JOBID": "77[1].s"}),
        ("torque", {"PBS_ARRAYID": "1", "PBS_JOBID": "77[1].h"}),
    ],
)
def test_a_task_runs_its_attempt_once(tmp_path: Path, flavor: str, task_env: dict) -> None:
    """Task 1 runs attempt 1 in its dir; run again (a PBS rerun), it runs nothing and
    marks the attempt ``requeued``."""
    jobs = [make_job(tmp_path, i, argv=(*ECHO, f"a {i}")) for i in range(2)]
    state = tmp_path / ".pbs"
    state.mkdir()
    script = state / "b.sh"
    script.write_text(render_batch_script(flavor, "cd.sw.b", jobs, str(state)))  # type: ignore[arg-type]
    done = run_task(script, task_env)
    assert done.returncode == 0, done.stderr
    adir = Path(jobs[1].attempt_dir)
    assert "['a 1']" in (adir / "pbs.out").read_text()
    assert (adir / "pbs_job_id").exists()
    assert not (Path(jobs[0].attempt_dir) / "pbs_job_id").exists()
    again = run_task(script, task_env)
    assert again.returncode == 0
    assert (adir / names.REQUEUED).exists()
    assert (adir / "pbs.out").read_text().count("['a 1']") == 1


@pytest.mark.parametrize("flavor", ["pbspro", "torque"])
def test_a_plain_job_runs_task_zero(tmp_path: Path, flavor: str) -> None:
    """One task is submitted without -J/-t, so PBS sets no index: the script's is 0."""
    job = make_job(tmp_path, 0, argv=(*ECHO, "solo"))
    state = tmp_path / ".pbs"
    state.mkdir()
    script = state / "b.sh"
    script.write_text(render_batch_script(flavor, "cd.sw.b", [job], str(state)))  # type: ignore[arg-type]
    done = run_task(script, {"PBS_JOBID": "78.s"})
    assert done.returncode == 0, done.stderr
    assert "['solo'] 78.s" in (Path(job.attempt_dir) / "pbs.out").read_text()


@pytest.mark.parametrize("flavor", ["pbspro", "torque"])
def test_packed_tasks_run_every_slot(tmp_path: Path, flavor: str) -> None:
    """Two attempts packed in one subjob: both run, each in its own dir."""
    jobs = [make_job(tmp_path, i, argv=(*ECHO, f"slot {i}")) for i in range(2)]
    state = tmp_path / ".pbs"
    state.mkdir()
    script = state / "b.sh"
    script.write_text(render_batch_script(flavor, "cd.sw.b", jobs, str(state), pack=2))  # type: ignore[arg-type]
    index = "PBS_ARRAY_INDEX" if flavor == "pbspro" else "PBS_ARRAYID"
    done = run_task(script, {index: "0", "PBS_JOBID": "79[0].s", "PBS_ARRAY_ID": "79[].s"})
    assert done.returncode == 0, done.stderr
    for i, job in enumerate(jobs):
        assert f"['slot {i}']" in (Path(job.attempt_dir) / "pbs.out").read_text()


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"flavor": "slurm"}, "flavor"),
        ({"select": "ncpus=2 mem=1gb"}, "select"),
        ({"select": "a=1+b=2"}, "select"),
        ({"extra": "-W x"}, "extra"),
        ({"throttle": 0}, "throttle"),
        ({"queue": ""}, "queue"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict, what: str) -> None:
    with pytest.raises(DriverError, match=f"option '{what}' must be"):
        PbsDriver(options)


# --------------------------------------------------------------------------- docs


def test_docs_show_the_golden_files_and_every_option() -> None:
    """docs/pbs.md shows exactly what the driver produces, and documents every option."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "pbs.md").read_text()
    assert (GOLDEN / "pbspro-batch-script.sh").read_text() in docs
    for flavor in ("pbspro", "torque"):
        for argv in json.loads((GOLDEN / f"{flavor}-qsub-argv.json").read_text()).values():
            assert shlex.join(argv) in docs, f"docs/pbs.md lacks: {shlex.join(argv)}"
    section = docs.split("## `[drivers.pbs]` options", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert rows == {option.name for option in PbsDriver.option_specs}
