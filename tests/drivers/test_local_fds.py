"""LocalDriver out of file descriptors: a job that may have started is never started again.

Issue #13 item 2: with the daemon out of descriptors, the fork succeeded, then
``pidfd_open`` or ``/proc/<pid>/stat`` failed with EMFILE; the launch was taken for
"could not start", its job.json removed and the attempt resubmitted (two or three
"starting" lines in one attempt's log). Here the descriptors really run out (a
lowered RLIMIT_NOFILE, every slot but one taken), and the fork server's answer
really goes missing; each job must run exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers import JobRef, JobRequest
from clusterd.drivers.local import LocalDriver, read_proc_stat
from clusterd.drivers.local.forkserver import ForkServerClient
from clusterd.spec.model import Resources
from tests.conftest import wait_for

PY = sys.executable

# Appends one line to argv[2] when it starts, then blocks until argv[1] (a FIFO) is written.
STARTS_ONCE = (
    "import sys\n"
    "with open(sys.argv[2], 'a') as f:\n"
    "    f.write('started\\n')\n"
    "open(sys.argv[1]).read()\n"
)


FIFOS: list[Path] = []  # every job's FIFO, written at teardown so no job outlives a test


@pytest.fixture
def make_driver() -> Iterator[Callable[[], LocalDriver]]:
    made: list[LocalDriver] = []

    def make() -> LocalDriver:
        driver = LocalDriver({"cpus": 4, "gpus": []})
        made.append(driver)
        return driver

    yield make
    for fifo in FIFOS:  # a job a failed test left waiting: let it end
        with contextlib.suppress(OSError):
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
    FIFOS.clear()
    for driver in made:
        pids = [j["pid"] for j in driver.describe_cluster().queue if j.get("pid")]
        driver.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, 9)


def blocking_job(root: Path, name: str) -> tuple[JobRequest, Path, Path]:
    """A job that records each start in ``starts`` and runs until its FIFO is written."""
    attempt = root / name / "attempt-1"
    attempt.mkdir(parents=True)
    fifo, starts = root / f"{name}.fifo", root / f"{name}.starts"
    os.mkfifo(fifo)
    FIFOS.append(fifo)
    job = JobRequest(
        token=name,
        sweep="s",
        trial_index=0,
        attempt=1,
        attempt_dir=str(attempt),
        argv=(PY, "-c", STARTS_ONCE, str(fifo), str(starts)),
        resources=Resources(cpus=1),
    )
    return job, fifo, starts


def release(fifo: Path) -> None:
    with open(fifo, "w") as f:
        f.write("go")


@contextlib.contextmanager
def descriptors_exhausted(free: int) -> Iterator[None]:
    """Lower this process's soft RLIMIT_NOFILE and take every slot but ``free``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(n) for n in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, hard))
    taken: list[int] = []
    try:
        while True:
            try:
                taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        for _ in range(free):
            os.close(taken.pop())
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_fork_then_emfile_is_started_not_resubmitted(
    tmp_path: Path, make_driver: Callable[[], LocalDriver]
) -> None:
    """One descriptor left: job.json is written and the fork server forks, then the pidfd
    takes the last slot and reading /proc/<pid>/stat fails with EMFILE. The launch is
    "started, state unknown": the job keeps its job.json, is found on the next poll once
    descriptors are back, and a resubmission of the same token starts nothing."""
    driver = make_driver()
    warm, warm_fifo, _ = blocking_job(tmp_path, "warm")  # fork server and watcher exist
    driver.submit([warm])
    job, fifo, starts = blocking_job(tmp_path, "job")

    with descriptors_exhausted(free=1):
        ids = driver.submit([job])  # the old driver raised "could not start any job"

    assert set(ids) == {job.token}
    record = json.loads((Path(job.attempt_dir) / "job.json").read_text())
    assert record["state"] in ("starting", "running")
    wait_for(lambda: starts.exists() and starts.read_text(), 15, "the job to start")

    ref = JobRef(job.token, ids[job.token], job.attempt_dir)
    status = driver.poll([ref])[job.token]
    assert status.phase == "running", status
    assert driver.submit([job])[job.token] == status.job_id  # the scheduler asks again
    release(fifo)
    running = JobRef(job.token, status.job_id, job.attempt_dir)
    wait_for(lambda: driver.poll([running])[job.token].phase == "gone", 15, "the job's end")
    assert starts.read_text() == "started\n"
    release(warm_fifo)


def test_recovery_out_of_descriptors_says_unknown_not_gone(
    tmp_path: Path, make_driver: Callable[[], LocalDriver]
) -> None:
    """A restarted daemon's driver polls a running job while out of descriptors: it cannot
    look, so the job is "queued, state unknown" (never "gone", which would end the
    attempt and retry it while it runs); with descriptors back it is adopted."""
    job, fifo, starts = blocking_job(tmp_path, "job")
    job_id = make_driver().submit([job])[job.token]
    wait_for(lambda: starts.exists() and starts.read_text(), 15, "the job to start")
    ref = JobRef(job.token, job_id, job.attempt_dir)

    fresh = make_driver()
    fresh.describe_cluster()  # capacity probed before the descriptors run out
    with descriptors_exhausted(free=0):
        status = fresh.poll([ref])[job.token]
    assert status.phase == "queued" and "unknown" in (status.reason or ""), status

    status = fresh.poll([ref])[job.token]
    assert status.phase == "running", status
    release(fifo)
    wait_for(lambda: fresh.poll([ref])[job.token].phase == "gone", 15, "the job's end")
    assert starts.read_text() == "started\n"


def test_fork_server_that_forks_but_does_not_answer(
    tmp_path: Path, make_driver: Callable[[], LocalDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork server forks the job and its answer is lost: the spawn is claimed (by the
    server), so the driver neither starts it with Popen nor lets it be resubmitted; the
    next poll finds the job by the server's forked.pid marker."""
    real_spawn = ForkServerClient.spawn

    def forks_then_fails(self: ForkServerClient, *args: Any, **kwargs: Any) -> int:
        real_spawn(self, *args, **kwargs)
        raise OSError("the fork server is not answering")

    monkeypatch.setattr(ForkServerClient, "spawn", forks_then_fails)
    driver = make_driver()
    job, fifo, starts = blocking_job(tmp_path, "job")
    ids = driver.submit([job])  # the old driver raised, removed job.json: resubmitted
    wait_for(lambda: starts.exists() and starts.read_text(), 15, "the job to start")
    monkeypatch.setattr(ForkServerClient, "spawn", real_spawn)

    assert ids[job.token] == f"queued:{job.token}"  # started, state unknown
    again = driver.submit([job])[job.token]  # as the scheduler's resubmission: found instead
    status = driver.poll([JobRef(job.token, ids[job.token], job.attempt_dir)])[job.token]
    assert status.phase == "running" and status.job_id == again, status
    pid = int((status.job_id or "0:").split(":")[0])
    assert (stat := read_proc_stat(pid)) is not None and stat.session == pid
    release(fifo)
    ref = JobRef(job.token, status.job_id, job.attempt_dir)
    wait_for(lambda: driver.poll([ref])[job.token].phase == "gone", 15, "the job's end")
    assert starts.read_text() == "started\n"
