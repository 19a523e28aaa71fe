"""``resources.pack`` without a Slurm: the packed batch script run by bash, and the driver's
bookkeeping (job ids with slots, poll, cancel, find) on replayed commands.

The packed script is pinned by ``fixtures/slurm/golden_packed_script.sh``; regenerate it
with ``CLUSTERD_UPDATE_GOLDEN=1 pytest tests/drivers/test_slurm_pack.py``. Its runs here
are real bash processes given the variables slurmd would set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.batch.slots import split_slot
from clusterd.drivers.slurm import SlurmDriver, render_batch_script
from clusterd.spec.model import Resources
from tests.drivers.test_slurm_parse import CONFIG, FIXTURES, Replay, make_job, recorded

GOLDEN = FIXTURES / "golden_packed_script.sh"


def packed_jobs(tmp_path: Path, n: int, argv: tuple[str, ...], gpus: int = 0) -> list[JobRequest]:
    res = Resources(cpus=1, gpus=gpus, memory_mb=100, pack=2)
    return [make_job(tmp_path, i, argv=argv, resources=res) for i in range(n)]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def start_task(script: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """The batch shell of array task 0, as slurmd would start it."""
    path = tmp_path / "packed.sh"
    path.write_text(script)
    environ = {
        "PATH": os.environ["PATH"],
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_ARRAY_JOB_ID": "77",
        **env,
    }
    return subprocess.Popen(
        ["bash", str(path)], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> int:
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode


#: writes what it got (env, signals) to out.json in its attempt dir (its cwd); exits with
#: argv[1] unless a signal came: then 3 for USR1, 143 for TERM. ``ready`` says it runs.
TRIAL = (
    "import json, os, signal, sys, time\n"
    "got = []\n"
    "def on(sig, frame):\n"
    "    got.append(signal.Signals(sig).name[3:])\n"
    "signal.signal(signal.SIGUSR1, on)\n"
    "signal.signal(signal.SIGTERM, on)\n"
    "open('ready', 'w').close()\n"
    "deadline = time.time() + float(sys.argv[2])\n"
    "while not got and time.time() < deadline and not os.path.exists('GO'):\n"
    "    time.sleep(0.02)\n"
    "keys = ('CUDA_VISIBLE_DEVICES', 'CLUSTERD_JOB_TOKEN')\n"
    "env = {k: os.environ.get(k) for k in keys}\n"
    "json.dump({'env': env, 'signals': got}, open('out.tmp', 'w'))\n"
    "os.replace('out.tmp', 'out.json')\n"  # whole when it appears: tests await it
    "sys.exit({'USR1': 3, 'TERM': 143}.get(got[0], 9) if got else int(sys.argv[1]))\n"
)


def trial_argv(code: int, seconds: float = 0) -> tuple[str, ...]:
    return (sys.executable, "-c", TRIAL, str(code), str(seconds))


def out(job: JobRequest) -> dict[str, Any]:
    return json.loads((Path(job.attempt_dir) / "out.json").read_text())


# --------------------------------------------------------------------------- the script


def test_packed_script_matches_golden_file(tmp_path: Path) -> None:
    base = "/scratch/u/runs/lr-depth"
    jobs = [
        JobRequest(
            token=f"cd-lr-depth-{i}-1-ab12c{i}",
            sweep="lr-depth",
            trial_index=i,
            attempt=1,
            attempt_dir=f"{base}/{i}/attempt-1",
            argv=("/usr/bin/python3", "-I", "-S", "/opt/clusterd/runner.py", f"{base}/{i}/l.json"),
            resources=Resources(cpus=2, gpus=1, pack=2),
            env={"OMP_NUM_THREADS": "2"} if i == 1 else {},
        )
        for i in range(4)
    ]
    script = render_batch_script("cd.lr-depth.0123abcd", jobs, pack=2)
    if os.environ.get("CLUSTERD_UPDATE_GOLDEN"):
        GOLDEN.write_text(script)
    assert script == GOLDEN.read_text(), "packed script changed: CLUSTERD_UPDATE_GOLDEN=1 to accept"
    subprocess.run(["bash", "-n", str(GOLDEN)], check=True)


def test_each_slot_runs_its_own_attempt_with_its_gpu_share(tmp_path: Path) -> None:
    jobs = packed_jobs(tmp_path, 2, trial_argv(0), gpus=2)
    jobs[1] = make_job(tmp_path, 1, argv=trial_argv(5), resources=jobs[0].resources)
    proc = start_task(
        render_batch_script("cd.sw.x", jobs, 2), tmp_path, CUDA_VISIBLE_DEVICES="4,5,6,7"
    )
    assert finish(proc) == 5  # the first non-zero status of its runners
    assert out(jobs[0])["env"] == {
        "CUDA_VISIBLE_DEVICES": "4,5",
        "CLUSTERD_JOB_TOKEN": jobs[0].token,
    }
    assert out(jobs[1])["env"] == {
        "CUDA_VISIBLE_DEVICES": "6,7",
        "CLUSTERD_JOB_TOKEN": jobs[1].token,
    }
    for slot, job in enumerate(jobs):
        assert (Path(job.attempt_dir) / "slurm_job_id").read_text() == f"77_0/{slot}\n"


def test_without_cuda_visible_devices_slots_get_consecutive_indices(tmp_path: Path) -> None:
    jobs = packed_jobs(tmp_path, 2, trial_argv(0), gpus=1)
    assert finish(start_task(render_batch_script("cd.sw.x", jobs, 2), tmp_path)) == 0
    assert [out(job)["env"]["CUDA_VISIBLE_DEVICES"] for job in jobs] == ["0", "1"]


def test_gpu_less_slots_get_no_cuda_visible_devices(tmp_path: Path) -> None:
    jobs = packed_jobs(tmp_path, 2, trial_argv(0))
    assert finish(start_task(render_batch_script("cd.sw.x", jobs, 2), tmp_path)) == 0
    assert [out(job)["env"]["CUDA_VISIBLE_DEVICES"] for job in jobs] == [None, None]


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=["USR1", "TERM"])
def test_the_batch_shell_forwards_signals_to_every_runner(tmp_path: Path, sig: int) -> None:
    """``--signal=B:USR1@lead`` reaches only the batch shell: it must pass it on at once
    (not after its 2 s sleep), to every slot."""
    jobs = packed_jobs(tmp_path, 2, trial_argv(0, 30))
    proc = start_task(render_batch_script("cd.sw.x", jobs, 2), tmp_path)
    wait_for(lambda: all((Path(j.attempt_dir) / "ready").exists() for j in jobs), 10, "slots")
    sent = time.monotonic()
    proc.send_signal(sig)
    assert finish(proc) == (3 if sig == signal.SIGUSR1 else 143)
    assert time.monotonic() - sent < 1.5
    assert [out(job)["signals"] for job in jobs] == [[signal.Signals(sig).name[3:]]] * 2


def test_a_cancel_file_stops_one_slot_and_spares_the_other(tmp_path: Path) -> None:
    jobs = packed_jobs(tmp_path, 2, trial_argv(0, 30))
    proc = start_task(render_batch_script("cd.sw.x", jobs, 2), tmp_path)
    wait_for(lambda: all((Path(j.attempt_dir) / "ready").exists() for j in jobs), 10, "slots")
    (Path(jobs[1].attempt_dir) / "CANCEL").write_text("now\n")
    wait_for(lambda: (Path(jobs[1].attempt_dir) / "out.json").exists(), 5, "slot 1 to stop")
    assert out(jobs[1])["signals"] == ["TERM"]
    assert proc.poll() is None and not (Path(jobs[0].attempt_dir) / "out.json").exists()
    (Path(jobs[0].attempt_dir) / "GO").touch()
    assert finish(proc) == 143  # slot 1's status; slot 0 exited 0
    assert out(jobs[0])["signals"] == []


def test_a_slot_cancelled_before_the_start_never_runs(tmp_path: Path) -> None:
    jobs = packed_jobs(tmp_path, 2, trial_argv(0))
    (Path(jobs[0].attempt_dir) / "CANCEL").touch()
    assert finish(start_task(render_batch_script("cd.sw.x", jobs, 2), tmp_path)) == 0
    assert not (Path(jobs[0].attempt_dir) / "slurm_job_id").exists()
    assert out(jobs[1])["signals"] == []


# --------------------------------------------------------------------------- the driver


def test_submit_packs_attempts_and_sends_the_remainder_as_its_own_array(tmp_path: Path) -> None:
    ids = iter(range(100, 200))
    replay = Replay(scontrol=CONFIG, sbatch=lambda argv: f"{next(ids)}\n")
    res = Resources(cpus=2, gpus=1, memory_mb=1000, pack=2)
    jobs = [make_job(tmp_path, i, resources=res) for i in range(5)]
    accepted = SlurmDriver(run=replay).submit(jobs)
    full, rest = (call for call in replay.calls if call[0] == "sbatch")
    for call, array, cpus, gpus, mem in [(full, "0-1", 4, 2, 2000), (rest, "0-0", 2, 1, 1000)]:
        assert f"--array={array}" in call and f"--cpus-per-task={cpus}" in call
        assert f"--gres=gpu:{gpus}" in call and f"--mem={mem}M" in call
    assert [accepted[job.token] for job in jobs] == [
        "100_0/0",
        "100_0/1",
        "100_1/0",
        "100_1/1",
        "101_0",
    ]
    record = json.loads((Path(jobs[3].attempt_dir) / "job.json").read_text())
    assert (record["job_id"], record["task"], record["slot"]) == ("100_1", 1, 1)
    assert record["siblings"] == [[j.token, j.attempt_dir] for j in jobs[2:4]]
    assert "slot" not in json.loads((Path(jobs[4].attempt_dir) / "job.json").read_text())


def test_packed_attempts_without_cpus_ask_for_one_cpu_each(tmp_path: Path) -> None:
    replay = Replay(scontrol=CONFIG, sbatch="7\n")
    jobs = [make_job(tmp_path, i, resources=Resources(pack=3)) for i in range(3)]
    SlurmDriver(run=replay).submit(jobs)
    assert "--cpus-per-task=3" in replay.calls[-1]


def test_split_slot() -> None:
    assert split_slot("57_0/1") == ("57_0", 1)
    assert split_slot("57_0") == ("57_0", None)
    assert split_slot("57") == ("57", None)


def test_poll_maps_each_slot_to_its_shared_job(tmp_path: Path) -> None:
    """43_2 runs (slot 0's runner is done, slot 1's is not); 43_4 waits, slot 1 cancelled."""
    dirs = {name: tmp_path / name for name in ("done", "runs", "waits", "cancelled")}
    for path in dirs.values():
        path.mkdir()
    (dirs["done"] / "status.json").write_text('{"exit_code": 0}')
    (dirs["cancelled"] / "CANCEL").touch()
    refs = [
        JobRef("done", "43_2/0", str(dirs["done"])),
        JobRef("runs", "43_2/1", str(dirs["runs"])),
        JobRef("waits", "43_4/0", str(dirs["waits"])),
        JobRef("cancelled", "43_4/1", str(dirs["cancelled"])),
    ]
    replay = Replay(squeue=recorded("squeue_pending_running.txt"))
    statuses = SlurmDriver(run=replay).poll(refs)
    assert {t: (s.phase, s.job_id) for t, s in statuses.items()} == {
        "done": ("gone", "43_2/0"),
        "runs": ("running", "43_2/1"),
        "waits": ("queued", "43_4/0"),
        "cancelled": ("gone", "43_4/1"),
    }
    assert statuses["runs"].host == "vm"
    assert replay.count("sacct") == 0


def test_a_slot_cancelled_before_it_started_is_gone_while_its_job_runs(tmp_path: Path) -> None:
    """Its runner never starts (the batch shell saw CANCEL), so it never writes
    status.json: waiting for the job to end would keep the trial cancelling for hours."""
    skipped, started = tmp_path / "skipped", tmp_path / "started"
    for adir in (skipped, started):
        adir.mkdir()
        (adir / "CANCEL").touch()
    (started / "slurm_job_id").write_text("43_2/1\n")  # running: it gets SIGTERM instead
    refs = [JobRef("skipped", "43_2/0", str(skipped)), JobRef("started", "43_2/1", str(started))]
    statuses = SlurmDriver(run=Replay(squeue=recorded("squeue_pending_running.txt"))).poll(refs)
    assert statuses["skipped"].phase == "gone" and statuses["started"].phase == "running"


def test_poll_of_ended_packed_jobs_shares_the_jobs_final_state(tmp_path: Path) -> None:
    replay = Replay(squeue=recorded("squeue_final.txt"), sacct=recorded("sacct_final.txt"))
    ids = ["43_1/0", "43_1/1", "43_5/0", "43_5/1"]
    refs = [JobRef(f"t{i}", job_id, str(tmp_path)) for i, job_id in enumerate(ids)]
    statuses = SlurmDriver(run=replay).poll(refs)
    (sacct,) = [call for call in replay.calls if call[0] == "sacct"]
    assert sacct[-1] == "--jobs=43_5"  # who cancelled it; 43_1's FAILED needs no sacct
    assert [(s.job_id, s.reason) for s in statuses.values()] == [
        ("43_1/0", "FAILED (NonZeroExitCode)"),
        ("43_1/1", "FAILED (NonZeroExitCode)"),
        ("43_5/0", "CANCELLED by 0"),
        ("43_5/1", "CANCELLED by 0"),
    ]


def submitted_pack(tmp_path: Path, n: int = 2) -> tuple[list[JobRequest], list[JobRef]]:
    jobs = packed_jobs(tmp_path, n, ("true",))
    ids = SlurmDriver(run=Replay(scontrol=CONFIG, sbatch="9\n")).submit(jobs)
    return jobs, [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]


def test_cancelling_one_slot_leaves_the_job_to_the_others(tmp_path: Path) -> None:
    jobs, refs = submitted_pack(tmp_path)
    replay = Replay()
    driver = SlurmDriver(run=replay)
    driver.cancel(refs[:1])
    assert replay.calls == [] and (Path(jobs[0].attempt_dir) / "CANCEL").exists()
    driver.cancel(refs[1:])  # now no slot is left to run: the job goes
    assert replay.calls == [["scancel", "9_0"]]


def test_cancelling_every_slot_at_once_is_one_scancel(tmp_path: Path) -> None:
    _jobs, refs = submitted_pack(tmp_path, 4)
    replay = Replay()
    SlurmDriver(run=replay).cancel(refs)
    assert replay.calls == [["scancel", "9_0", "9_1"]]


def test_a_finished_sibling_counts_as_settled(tmp_path: Path) -> None:
    jobs, refs = submitted_pack(tmp_path)
    (Path(jobs[0].attempt_dir) / "status.json").write_text('{"exit_code": 0}')
    replay = Replay()
    SlurmDriver(run=replay).cancel(refs[1:])
    assert replay.calls == [["scancel", "9_0"]]


def test_find_gives_slots_back(tmp_path: Path) -> None:
    """From job.json; and after a crash before the job id was written, by array name."""
    jobs, refs = submitted_pack(tmp_path)
    lost = [JobRef(ref.token, None, ref.attempt_dir) for ref in refs]
    assert SlurmDriver(run=Replay()).find(lost) == {ref.token: ref.job_id for ref in refs}
    for job in jobs:
        path = Path(job.attempt_dir) / "job.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "job_id": None}))
    batch = json.loads((Path(jobs[0].attempt_dir) / "job.json").read_text())["batch"]
    replay = Replay(squeue=f"31_0|31|0|PENDING|Priority||{batch}\n")
    assert SlurmDriver(run=replay).find(lost) == {refs[0].token: "31_0/0", refs[1].token: "31_0/1"}
