"""LocalDriver against real processes: capacity, exit notification, cancel, restart, GPUs.

Every wait has a deadline and watches a condition (a file, /proc, a poll result,
an Event); no test sleeps for a fixed time. Jobs that must stay alive block on a
FIFO until the test writes to it, so their lifetime is decided by the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.drivers import JobRef, JobRequest, JobStatus
from clusterd.drivers.local import (
    LocalDriver,
    discover_gpus,
    parse_job_id,
    parse_nvidia_smi,
    parse_proc_stat,
    read_proc_stat,
)
from clusterd.drivers.local.procs import format_job_id
from clusterd.errors import DriverError, SpecError, UnsupportedResource
from clusterd.spec.model import Resources, SweepSpec

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]

# A job that blocks until someone writes to (and closes) the FIFO given as argv[1],
# after writing its CUDA_VISIBLE_DEVICES to argv[2] if given.
BLOCK = (  # the .gpus file appears whole (renamed into place): a reader never sees it empty
    "import os, sys\n"
    "if len(sys.argv) > 2:\n"
    "    open(sys.argv[2] + '.tmp', 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\n"
    "    os.replace(sys.argv[2] + '.tmp', sys.argv[2])\n"
    "open(sys.argv[1]).read()\n"
)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "it") -> Any:
    """Re-check ``predicate`` until truthy (backing off to 20 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return value


def session_alive(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a job's whole process tree)."""
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    return [pid for pid in pids if (st := read_proc_stat(pid)) and st.session == sid and st.alive]


class Jobs:
    """Builds attempt directories and requests in one test's tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def request(
        self, argv: list[str], cpus: int | None = None, gpus: int = 0, **options: Any
    ) -> JobRequest:
        self.count += 1
        token = f"tok-{self.count}"
        attempt_dir = self.root / token / "attempt-1"
        attempt_dir.mkdir(parents=True)
        return JobRequest(
            token=token,
            sweep="s",
            trial_index=self.count,
            attempt=1,
            attempt_dir=str(attempt_dir),
            argv=tuple(argv),
            resources=Resources(cpus=cpus, gpus=gpus),
            options=options,
        )

    def blocking(self, cpus: int | None = None, gpus: int = 0) -> tuple[JobRequest, Path]:
        """A job that runs until ``release(fifo)``; also records its CUDA_VISIBLE_DEVICES."""
        fifo = self.root / f"fifo-{self.count + 1}"
        os.mkfifo(fifo)
        job = self.request([PY, "-c", BLOCK, str(fifo), str(fifo) + ".gpus"], cpus, gpus)
        return job, fifo


def release(fifo: Path) -> None:
    """Let a BLOCK job finish (opening the FIFO waits for the job to open its end)."""
    with open(fifo, "w") as f:
        f.write("go")


def ref(job: JobRequest, job_id: str | None) -> JobRef:
    return JobRef(job.token, job_id, job.attempt_dir)


def phase_of(driver: LocalDriver, job_ref: JobRef) -> str:
    return driver.poll([job_ref])[job_ref.token].phase


@pytest.fixture
def jobs(tmp_path: Path) -> Jobs:
    return Jobs(tmp_path)


@pytest.fixture
def drivers() -> Iterator[Callable[..., LocalDriver]]:
    """Make drivers; afterwards close them and kill whatever their jobs left running."""
    made: list[LocalDriver] = []

    def make(**options: Any) -> LocalDriver:
        """No GPU unless asked (``gpus=None``: discover them as the daemon would)."""
        options = {"gpus": [], **options}
        driver = LocalDriver({key: value for key, value in options.items() if value is not None})
        made.append(driver)
        return driver

    yield make
    for driver in made:
        pids = [job["pid"] for job in driver.describe_cluster().queue if "pid" in job]
        driver.close()
        for pid in pids:
            for member in session_alive(pid):
                os.kill(member, 9)


class Wakeups:
    """A wakeup callback that records when it was called."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = threading.Event()

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.event.set()

    def wait(self, timeout: float = 15.0) -> float:
        assert self.event.wait(timeout), f"no wakeup within {timeout} s"
        self.event.clear()
        return self.times[-1]


# --------------------------------------------------------------------------- capacity


def test_capacity_bounds_how_many_jobs_run_at_once(jobs: Jobs, drivers: Any) -> None:
    """5 one-CPU jobs on a 2-CPU driver: 2 start at once, the rest wait their turn."""
    driver = drivers(cpus=2)
    script = (
        "import sys, time\n"
        "start = time.monotonic(); time.sleep(0.2)\n"
        "open(sys.argv[1], 'w').write(f'{start} {time.monotonic()}')\n"
    )
    batch = [jobs.request([PY, "-c", script, str(jobs.root / f"span-{i}")], 1) for i in range(5)]
    ids = driver.submit(batch)
    assert [parse_job_id(ids[job.token]) is not None for job in batch] == [True] * 2 + [False] * 3
    assert [ids[job.token] for job in batch[2:]] == [f"queued:{job.token}" for job in batch[2:]]
    most_running = 0

    def all_gone() -> bool:
        nonlocal most_running
        statuses = driver.poll([ref(job, ids[job.token]) for job in batch])
        most_running = max(most_running, sum(s.phase == "running" for s in statuses.values()))
        return all(s.phase == "gone" for s in statuses.values())

    wait_for(all_gone, 30, "all five jobs to finish")
    assert most_running <= 2
    spans = [tuple(map(float, (jobs.root / f"span-{i}").read_text().split())) for i in range(5)]
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap == 2, spans
    assert driver.describe_cluster().nodes[0]["cpus_free"] == 2


def test_queued_job_starts_when_capacity_frees(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    wakeups = Wakeups()
    driver.set_wakeup(wakeups)
    (first, fifo), second = jobs.blocking(), jobs.request([PY, "-c", "pass"])
    ids = driver.submit([first, second])
    second_ref = ref(second, ids[second.token])
    status = driver.poll([second_ref])[second.token]
    assert status.phase == "queued" and status.reason is not None
    assert "waiting for 1 CPU; 0 jobs ahead" in status.reason
    release(fifo)
    wait_for(lambda: phase_of(driver, second_ref) == "gone", what="the queued job to run")
    job_file = json.loads((Path(second.attempt_dir) / "job.json").read_text())
    assert job_file["state"] == "running" and parse_job_id(job_file["job_id"])


# --------------------------------------------------------------------------- notification


def test_wakeup_follows_an_exit_within_100_ms(jobs: Jobs, drivers: Any) -> None:
    """The job writes its last monotonic time then exits at once (os._exit, no cleanup);
    the wakeup callback must follow within 100 ms. CLOCK_MONOTONIC is system-wide."""
    driver = drivers(cpus=1)
    wakeups = Wakeups()
    driver.set_wakeup(wakeups)
    script = (
        "import os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
        "os.write(fd, repr(time.monotonic()).encode()); os._exit(0)\n"
    )
    latencies = []
    for i in range(5):
        stamp = jobs.root / f"exit-{i}"
        driver.submit([jobs.request([PY, "-c", script, str(stamp)])])
        woke = wakeups.wait()
        latencies.append(woke - float(stamp.read_text()))
    print(f"exit -> wakeup latencies (ms): {[round(x * 1000, 2) for x in latencies]}")
    assert max(latencies) < 0.1, latencies


def test_poll_reports_gone_after_wakeup(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    wakeups = Wakeups()
    driver.set_wakeup(wakeups)
    job, fifo = jobs.blocking()
    job_ref = ref(job, driver.submit([job])[job.token])
    status = driver.poll([job_ref])[job.token]
    assert status.phase == "running" and status.host
    release(fifo)
    wakeups.wait()
    assert driver.poll([job_ref])[job.token] == JobStatus("gone", job_ref.job_id)


# --------------------------------------------------------------------------- cancel


def test_cancel_running_job_leaves_no_process(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    ready = jobs.root / "ready"
    job = jobs.request(["sh", "-c", f"sleep 60 & sleep 60 & echo ok > {ready}; wait"])
    job_ref = ref(job, driver.submit([job])[job.token])
    pid, _ = parse_job_id(job_ref.job_id) or (0, 0)
    wait_for(ready.exists, what="the shell to start its children")
    assert len(session_alive(pid)) == 3
    driver.cancel([job_ref])
    wait_for(lambda: not session_alive(pid), what="the job's session to die")
    wait_for(lambda: phase_of(driver, job_ref) == "gone", what="poll to say gone")


def test_cancel_kills_the_session_when_sigterm_is_ignored(jobs: Jobs, drivers: Any) -> None:
    """A runner that ignores SIGTERM, with a child in another process group of its
    session, is SIGKILLed with that child once kill_timeout has passed."""
    driver = drivers(cpus=1)
    child_file = jobs.root / "child"
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '60'], process_group=0)\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
        "os.write(fd, str(child.pid).encode()); os.close(fd)\n"
        "time.sleep(60)\n"
    )
    job = jobs.request([PY, "-c", script, str(child_file)], kill_timeout=0.2)
    job_ref = ref(job, driver.submit([job])[job.token])
    pid, _ = parse_job_id(job_ref.job_id) or (0, 0)
    child = int(wait_for(lambda: child_file.exists() and child_file.read_text(), what="child"))
    assert (read_proc_stat(child) or pytest.fail("no child")).session == pid
    driver.cancel([job_ref])
    wait_for(lambda: not session_alive(pid), what="SIGKILL of the whole session")
    wait_for(lambda: phase_of(driver, job_ref) == "gone", what="poll to say gone")


def test_cancel_queued_job_never_starts_it(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    (first, fifo), second = jobs.blocking(), jobs.request([PY, "-c", "pass"])
    ids = driver.submit([first, second])
    driver.cancel([ref(second, ids[second.token])])
    status = driver.poll([ref(second, ids[second.token])])[second.token]
    assert status.phase == "gone" and status.reason == "cancelled before it started"
    release(fifo)
    wait_for(lambda: phase_of(driver, ref(first, ids[first.token])) == "gone", what="exit")
    assert json.loads((Path(second.attempt_dir) / "job.json").read_text())["state"] == "cancelled"
    assert not (Path(second.attempt_dir) / "driver.log").exists()


# --------------------------------------------------------------------------- identity


def test_unknown_or_recycled_job_ids_are_gone(jobs: Jobs, drivers: Any) -> None:
    driver = drivers()
    me = read_proc_stat(os.getpid())
    assert me is not None
    empty = jobs.request(["true"])
    refs = [
        JobRef("recycled", f"{os.getpid()}:{me.starttime + 1}", empty.attempt_dir),
        JobRef("no-such-pid", "4194999:12345", empty.attempt_dir),
        ref(empty, None),
    ]
    statuses = driver.poll(refs)
    assert {token: s.phase for token, s in statuses.items()} == dict.fromkeys(
        ["recycled", "no-such-pid", empty.token], "gone"
    )
    assert statuses[empty.token].reason == "the local driver has no job.json for it"
    assert driver.describe_cluster().queue == []


def test_find_recovers_job_ids_from_job_json(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    (first, fifo), second = jobs.blocking(), jobs.request([PY, "-c", "pass"])
    ids = driver.submit([first, second])
    lost = [ref(first, None), ref(second, None), ref(jobs.request(["true"]), None)]
    assert LocalDriver({"gpus": []}).find(lost) == ids
    release(fifo)


def test_submit_twice_starts_once(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=2)
    job, fifo = jobs.blocking()
    first = driver.submit([job])
    assert driver.submit([job]) == first
    assert drivers(cpus=2).submit([job]) == first  # a new driver adopts instead
    assert len(driver.describe_cluster().queue) == 1
    release(fifo)


def test_spawn_failure_is_reported_and_leaves_nothing(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    job = jobs.request(["/nonexistent/clusterd-runner"])
    with pytest.raises(DriverError, match="could not start any job"):
        driver.submit([job])
    assert not (Path(job.attempt_dir) / "job.json").exists()  # offered again later
    assert driver.describe_cluster().nodes[0]["cpus_free"] == 1


# --------------------------------------------------------------------------- restart

DEAD_DAEMON = """
import json, sys
from clusterd.drivers.base import JobRequest
from clusterd.drivers.local import LocalDriver
from clusterd.spec.model import Resources
requests = [JobRequest(**spec, resources=Resources(cpus=1)) for spec in json.loads(sys.argv[1])]
print(json.dumps(LocalDriver({"cpus": 1, "gpus": []}).submit(requests)))
"""


def test_restarted_daemon_adopts_running_job_and_requeues_waiting_one(
    jobs: Jobs, drivers: Any
) -> None:
    """A daemon process submits a running and a queued job, then dies. A new driver
    adopts the first (not its child: pidfd still reports the exit), re-queues the
    second from job.json, and runs it exactly once when the first exits."""
    (first, fifo), second = jobs.blocking(), jobs.request([])
    runs = jobs.root / "runs"
    second = JobRequest(**{**second.__dict__, "argv": ("sh", "-c", f"echo ran >> {runs}")})
    specs = [
        {k: list(v) if k == "argv" else v for k, v in job.__dict__.items() if k != "resources"}
        for job in (first, second)
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    dead = subprocess.run(
        [PY, "-c", DEAD_DAEMON, json.dumps(specs)], env=env, capture_output=True, text=True
    )
    assert dead.returncode == 0, dead.stderr
    ids = json.loads(dead.stdout)
    assert ids[second.token] == f"queued:{second.token}"

    driver = drivers(cpus=1)
    wakeups = Wakeups()
    driver.set_wakeup(wakeups)
    refs = [ref(first, ids[first.token]), ref(second, ids[second.token])]
    assert [s.phase for s in driver.poll(refs).values()] == ["running", "queued"]
    assert driver.describe_cluster().nodes[0]["cpus_free"] == 0
    release(fifo)
    wakeups.wait()
    wait_for(lambda: [s.phase for s in driver.poll(refs).values()] == ["gone", "gone"], what="end")
    assert runs.read_text() == "ran\n"


def test_job_caught_starting_by_a_crash_is_found_by_its_token(jobs: Jobs, drivers: Any) -> None:
    """job.json still says "starting" (the daemon died between fork and recording the
    pid): the next driver finds the session leader carrying the token and adopts it;
    with no such process but its spawn claimed (it was forked, and ended without a
    trace) the job is gone, never started a second time."""
    job, fifo = jobs.blocking()
    pid, _ = parse_job_id(drivers(cpus=1).submit([job])[job.token]) or (0, 0)
    job_file = Path(job.attempt_dir) / "job.json"
    crashed = json.loads(job_file.read_text()) | {"state": "starting", "job_id": "queued:x"}
    job_file.write_text(json.dumps(crashed))

    status = drivers(cpus=1).poll([ref(job, None)])[job.token]
    assert status.phase == "running" and (parse_job_id(status.job_id) or (0,))[0] == pid
    release(fifo)

    never, _ = jobs.blocking()
    Path(never.attempt_dir, "job.json").write_text(json.dumps({**crashed, "token": never.token}))
    Path(never.attempt_dir, f".spawn-{crashed['spawn']}").touch()  # as the fork server does
    status = drivers(cpus=1).poll([ref(never, None)])[never.token]
    assert status.phase == "gone" and "was starting" in (status.reason or "")


def test_job_caught_starting_before_its_spawn_is_queued_again(
    jobs: Jobs, drivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """job.json says "starting" but nothing claimed its spawn (the daemon died before the
    fork): the next driver wins the claim and starts the job, once."""

    class Crash(BaseException):
        pass

    def crash(*args: Any) -> None:
        raise Crash

    job, fifo = jobs.blocking()
    with monkeypatch.context() as patch:
        patch.setattr(LocalDriver, "_fork", crash)
        with pytest.raises(Crash):
            drivers(cpus=1).submit([job])
    assert json.loads((Path(job.attempt_dir) / "job.json").read_text())["state"] == "starting"

    driver = drivers(cpus=1)
    status = driver.poll([ref(job, None)])[job.token]
    assert status.phase == "running", status
    # the old spawn is claimed by the recovery, the new one by its fork: two claims
    assert len(list(Path(job.attempt_dir).glob(".spawn-*"))) == 2
    release(fifo)
    wait_for(lambda: phase_of(driver, ref(job, status.job_id)) == "gone", what="the exit")
    assert (Path(job.attempt_dir) / "driver.log").read_text() == ""
    assert not running_with(str(fifo)), "a second copy of the job is waiting on its FIFO"


def running_with(arg: str) -> list[int]:
    """Live processes with ``arg`` on their command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        stat = read_proc_stat(int(pid))
        if arg.encode() in argv and stat is not None and stat.alive:
            found.append(int(pid))
    return found


def test_close_leaves_jobs_running(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    job, fifo = jobs.blocking()
    pid, starttime = parse_job_id(driver.submit([job])[job.token]) or (0, 0)
    driver.close()
    stat = read_proc_stat(pid)
    assert stat is not None and stat.alive and stat.starttime == starttime
    release(fifo)


# --------------------------------------------------------------------------- GPUs

# Recorded on a real machine (NVIDIA-SMI 580.159.04, driver 580.159.04, CUDA 13.0) with
#   nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits
RECORDED_H100 = "0, GPU-238c044a-cdf3-f246-da57-3491c96634ab, NVIDIA H100 80GB HBM3, 81559\n"


def test_parse_recorded_nvidia_smi_output() -> None:
    (gpu,) = parse_nvidia_smi(RECORDED_H100)
    assert (gpu.index, gpu.name, gpu.memory_mb) == (0, "NVIDIA H100 80GB HBM3", 81559)
    assert gpu.uuid == "GPU-238c044a-cdf3-f246-da57-3491c96634ab"


def test_parse_nvidia_smi_edge_cases() -> None:
    # synthetic, in the recorded format: two GPUs, a blank line, memory not available
    text = RECORDED_H100 + "\n1, GPU-00000000-0000-0000-0000-000000000001, Some GPU, [N/A]\n"
    assert [(g.index, g.memory_mb) for g in parse_nvidia_smi(text)] == [(0, 81559), (1, None)]
    assert parse_nvidia_smi("") == []
    with pytest.raises(DriverError, match="cannot read nvidia-smi output line 'oops'"):
        parse_nvidia_smi("oops\n")


def test_discover_gpus_precedence() -> None:
    def smi() -> tuple[str | None, str]:
        return RECORDED_H100, ""

    assert discover_gpus([2, 3], {"CUDA_VISIBLE_DEVICES": "0"}, smi).ids == ("2", "3")
    from_env = discover_gpus(None, {"CUDA_VISIBLE_DEVICES": "1, 0"}, smi)
    assert from_env.ids == ("1", "0") and not from_env.pci_order
    assert discover_gpus(None, {"CUDA_VISIBLE_DEVICES": ""}, smi).ids == ()
    found = discover_gpus(None, {}, smi)
    assert found.ids == ("0",) and found.pci_order and found.source == "nvidia-smi found 1 GPU"
    missing = discover_gpus(None, {}, lambda: (None, "nvidia-smi not found"))
    assert missing.ids == () and missing.source == "nvidia-smi not found"


def sweep(tmp_path: Path, **fields: Any) -> SweepSpec:
    return SweepSpec(
        name="s", command=("x",), source="sweep.toml", output_dir=str(tmp_path), **fields
    )


def test_validate_refuses_gpus_when_none_are_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here: no GPU
    driver = LocalDriver()
    with pytest.raises(UnsupportedResource) as err:
        driver.validate(sweep(tmp_path, resources=Resources(gpus=1)))
    assert str(err.value) == (
        "sweep.toml: sweep asks for 1 GPU per trial but this machine has none visible "
        "(nvidia-smi not found); use a scheduler driver or set resources.gpus = 0"
    )
    driver.validate(sweep(tmp_path, resources=Resources(gpus=0)))


def test_validate_checks_cpus_and_options(tmp_path: Path) -> None:
    driver = LocalDriver({"cpus": 2, "gpus": ["0"]})
    with pytest.raises(UnsupportedResource, match=r"only 1 visible .*resources\.gpus = 1"):
        driver.validate(sweep(tmp_path, resources=Resources(gpus=2)))
    with pytest.raises(UnsupportedResource, match=r"asks for 4 CPUs .* may use 2"):
        driver.validate(sweep(tmp_path, resources=Resources(cpus=4)))
    with pytest.raises(SpecError, match="unknown option 'cpu'; valid options: kill_timeout"):
        driver.validate(sweep(tmp_path, driver_options={"local": {"cpu": 1}}))
    with pytest.raises(DriverError, match="unknown option 'gpu'"):
        LocalDriver({"gpu": [0]})


def test_options_are_declared_once_and_checked_where_they_apply(tmp_path: Path) -> None:
    """The driver's own options (cpus, gpus) are refused in a sweep; a value of the wrong
    kind is refused naming the option and what it must be, in a sweep and driver-wide."""
    assert [(o.name, o.sweep) for o in LocalDriver.option_specs] == [
        ("cpus", False),
        ("gpus", False),
        ("kill_timeout", True),
    ]
    driver = LocalDriver({"cpus": 1, "gpus": [], "kill_timeout": 0})
    driver.validate(sweep(tmp_path, driver_options={"local": {"kill_timeout": 2.5}}))
    with pytest.raises(SpecError, match="unknown option 'cpus' in a sweep"):
        driver.validate(sweep(tmp_path, driver_options={"local": {"cpus": 1}}))
    with pytest.raises(SpecError, match="'kill_timeout' must be seconds >= 0, got -1"):
        driver.validate(sweep(tmp_path, driver_options={"local": {"kill_timeout": -1}}))
    with pytest.raises(DriverError, match=r"driver 'local' options: .*'cpus' must be a positive"):
        LocalDriver({"cpus": 0})
    with pytest.raises(DriverError, match="'gpus' must be a list of GPU ids, got '0,1'"):
        LocalDriver({"gpus": "0,1"})


def test_gpus_are_assigned_exclusively_and_freed(jobs: Jobs, drivers: Any) -> None:
    """Two GPUs, three 1-GPU jobs: two run on distinct GPUs, the third gets the GPU
    the first one frees. A CPU job queued behind them waits (FIFO, no backfill) and
    sees no GPU at all."""
    driver = drivers(cpus=4, gpus=[0, 1])
    batch = [jobs.blocking(gpus=1) for _ in range(3)] + [jobs.blocking(gpus=0)]
    ids = driver.submit([job for job, _ in batch])
    refs = [ref(job, ids[job.token]) for job, _ in batch]
    phases = [s.phase for s in driver.poll(refs).values()]
    assert phases == ["running", "running", "queued", "queued"]
    seen = [gpus_seen_by(fifo) for _, fifo in batch[:2]]
    assert sorted(seen) == ["0", "1"]
    assert [g["busy"] for g in driver.describe_cluster().gpus] == [True, True]
    release(batch[0][1])
    assert gpus_seen_by(batch[2][1]) == seen[0]
    assert gpus_seen_by(batch[3][1]) == ""
    for _, fifo in batch[1:]:
        release(fifo)
    wait_for(lambda: all(s.phase == "gone" for s in driver.poll(refs).values()), what="end")
    assert [g["busy"] for g in driver.describe_cluster().gpus] == [False, False]


def gpus_seen_by(fifo: Path) -> str:
    """The CUDA_VISIBLE_DEVICES a BLOCK job wrote, once it has started."""
    path = Path(f"{fifo}.gpus")
    wait_for(path.exists, what=f"{path.name} to be written")
    return path.read_text()


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs nvidia-smi and a GPU")
def test_real_gpu_is_discovered_and_assigned(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch, drivers: Any
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    driver = drivers(cpus=2, gpus=None)
    gpus = driver.describe_cluster().gpus
    assert gpus and all(gpu["name"] and gpu["uuid"].startswith("GPU-") for gpu in gpus)
    env_file = jobs.root / "env"
    script = (
        "import json, os, sys\n"
        "keys = ('CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER')\n"
        "open(sys.argv[1], 'w').write(json.dumps({k: os.environ.get(k) for k in keys}))\n"
    )
    job = jobs.request([PY, "-c", script, str(env_file)], gpus=1)
    job_ref = ref(job, driver.submit([job])[job.token])
    wait_for(lambda: phase_of(driver, job_ref) == "gone", what="the GPU job to finish")
    seen = json.loads(env_file.read_text())
    assert seen == {"CUDA_VISIBLE_DEVICES": gpus[0]["id"], "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_submit_refuses_jobs_that_can_never_fit(jobs: Jobs, drivers: Any) -> None:
    driver = drivers(cpus=1)
    job = jobs.request(["true"], gpus=1)
    with pytest.raises(UnsupportedResource, match="asks for 1 GPU per trial"):
        driver.submit([job])
    assert not (Path(job.attempt_dir) / "job.json").exists()


# --------------------------------------------------------------------------- /proc


def test_parse_proc_stat_survives_odd_command_names() -> None:
    rest = " ".join(str(n) for n in range(4, 53))  # fields 4..52; field 22 is "22"
    stat = parse_proc_stat(f"4242 (a) b (c)) S {rest}")
    assert stat.state == "S" and stat.session == 6 and stat.starttime == 22
    assert parse_job_id("4242:22") == (4242, 22)
    assert parse_job_id("queued:tok-1") is None and parse_job_id(None) is None


@given(
    comm=st.text(alphabet=st.characters(blacklist_characters="\n\0"), max_size=15),
    state=st.sampled_from("RSDZTX"),
    session=st.integers(0, 2**22),
    starttime=st.integers(0, 2**63),
)
def test_parse_proc_stat_reads_any_command_name(
    comm: str, state: str, session: int, starttime: int
) -> None:
    fields = [state, "1", "2", str(session), *map(str, range(7, 22)), str(starttime), "0", "0"]
    stat = parse_proc_stat(f"4242 ({comm}) {' '.join(fields)}")
    assert (stat.state, stat.session, stat.starttime) == (state, session, starttime)


@given(pid=st.integers(1, 2**22), starttime=st.integers(0, 2**63), junk=st.text(max_size=30))
def test_job_ids_round_trip_and_garbage_is_no_job_id(pid: int, starttime: int, junk: str) -> None:
    assert parse_job_id(format_job_id(pid, starttime)) == (pid, starttime)
    parsed = parse_job_id(junk)  # garbage (a damaged job.json) never raises
    assert parsed is None or format_job_id(*parsed).split(":") == [
        str(int(part)) for part in junk.split(":")
    ]
    assert parse_job_id(f"queued:{junk}") is None


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"GPU-[0-9a-f-]{1,36}", fullmatch=True),
            st.lists(st.from_regex(r"[A-Za-z0-9.-]{1,8}", fullmatch=True), min_size=1).map(" ".join)
            | st.just("NVIDIA H100 80GB HBM3, rev 2"),  # a comma inside the name
            st.none() | st.integers(0, 2**20),
        ),
        max_size=8,
    )
)
def test_nvidia_smi_output_round_trips(gpus: list[tuple[str, str, int | None]]) -> None:
    text = "".join(
        f"{i}, {uuid}, {name}, {'[N/A]' if memory is None else memory}\n"
        for i, (uuid, name, memory) in enumerate(gpus)
    )
    parsed = parse_nvidia_smi(text)
    expected = [(i, uuid, name, memory) for i, (uuid, name, memory) in enumerate(gpus)]
    assert [(g.index, g.uuid, g.name, g.memory_mb) for g in parsed] == expected
