"""The real daemon on the stand-in HTCondor (``tests/standins/htcondor``), end to end.

The quickstart completes with its resume; a held job shows its hold reason as the
pending reason and then goes as the driver's held rule says; an evicted job resumes in a
new attempt; a daemon SIGKILLed between submit and commit submits nothing twice; polls
in steady state ask ``condor_q`` nothing. The daemon is instrumented by the conformance
kit (``clusterd.testing.harness.Kit``): its driver calls and the status commands each poll
ran are logged; the stand-ins count every command they answer. One daemon and pool serve
the tests that need nothing of their own (each its own sweep, jobs and release file);
the quickstart and the crash count every call, so they get theirs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clusterd.testing.commands import GARBAGE
from clusterd.testing.harness import Kit, SchedulerSetup
from clusterd.testing.sweeps import runs_of
from clusterd.testing.waiting import wait_for
from tests.conftest import REPO
from tests.standins.engine import Job
from tests.standins.htcondor.fixture import CondorStandIns, condor_standins

DRIVER = "htcondor"
PLUGINS = ("clusterd.drivers.htcondor",)
STATUS = ("condor_q", "condor_history")
RESOURCES = {"cpus": 1, "memory": "100M"}
#: hold reasons as HTCondor writes them: condor_hold's (code 1, fixtures/htcondor/
#: event-log.txt) and the startd's memory policy (code 34, JobOutOfResources)
USER_HOLD = "via condor_hold (by user testuser)"
MEMORY_HOLD = "Error from slot1_1@vm: memory usage exceeded request_memory"
#: a shadow exception's message as the manual shows one (fixtures/htcondor/event-log.txt)
SHADOW_MESSAGE = "Error from slot1_2@bat: FATAL:    executable file not found in $PATH"


@contextmanager
def _standins(directory: Path) -> Iterator[CondorStandIns]:
    """Stand-ins on this process's PATH too (the tests run ``condor_release``)."""
    with condor_standins(directory) as standins, pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", standins.env["PATH"])
        patch.setenv("CLUSTERD_STANDIN_DIR", standins.env["CLUSTERD_STANDIN_DIR"])
        yield standins


@contextmanager
def _kit(condor: CondorStandIns, work: Path) -> Iterator[Kit]:
    setup = SchedulerSetup(sweep_options={"poll_interval": 0.25}, env=condor.env)
    kit = Kit(DRIVER, setup, STATUS, PLUGINS, work)
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kit, CondorStandIns]]:
    """One stand-in pool and one running daemon for the tests that need nothing of their
    own (each has its own sweep, jobs and release file): a daemon start and stop less
    per test."""
    base = tmp_path_factory.mktemp("htcondor-e2e")
    with _standins(base / "condor") as condor, _kit(condor, base / "work") as kit:
        kit.start()
        yield kit, condor


@pytest.fixture
def condor(shared: tuple[Kit, CondorStandIns]) -> CondorStandIns:
    return shared[1]


@pytest.fixture
def kit(shared: tuple[Kit, CondorStandIns]) -> Iterator[Kit]:
    yield shared[0]
    shared[0].daemon.cancel_everything()  # a failed test leaves no job to the next


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[Kit, CondorStandIns]]:
    """A pool and daemon of the test's own, for tests that count every call or crash
    the daemon."""
    with _standins(tmp_path / "condor") as condor, _kit(condor, tmp_path / "work") as kit:
        yield kit, condor


def waiting(kit: Kit, sweep: str) -> dict[str, Any]:
    return {"release": str(kit.work / f"release-{sweep}"), "seconds": 120}


def the_job(condor: CondorStandIns, sweep: str) -> Job:
    (job,) = [j for j in condor.jobs() if f".{sweep}." in j.name]
    return job


def running_jobs(condor: CondorStandIns, sweep: str, count: int) -> list[Job] | None:
    jobs = [j for j in condor.jobs() if j.state == "running" and f".{sweep}." in j.name]
    return jobs if len(jobs) >= count else None


def test_quickstart_completes_with_its_resume(own: tuple[Kit, CondorStandIns]) -> None:
    kit, condor = own
    example = kit.work / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", example)
    sweep = (example / "sweep.toml").read_text()
    sweep = sweep.replace('driver = "local"', f'driver = "{DRIVER}"')
    command = f'command = ["{sys.executable}", "train.py"]'
    sweep = sweep.replace('command = "python3 train.py"', command)
    sweep = sweep.replace("lr = [0.1, 0.01, 0.001]", "lr = [0.1, 0.01]")
    sweep = sweep.replace("max_concurrent = 2", "max_concurrent = 4")
    sweep += (
        f'\n[resources]\ncpus = 1\nmemory = "200M"\n\n[drivers.{DRIVER}]\npoll_interval = 0.25\n'
    )
    (example / "sweep.toml").write_text(sweep)
    kit.start()
    kit.submit(example / "sweep.toml")
    trials = kit.daemon.wait_sweep_done("quickstart", 60)
    assert [(t["state"], t["attempts"], t["resumes"]) for t in trials] == [("completed", 2, 1)] * 4
    show = kit.daemon.ctl_json("show", "quickstart/0")
    assert show["metrics"]["val_loss"]["step"] == 19
    # 8 attempts, in as many condor_submit calls as the daemon made submit batches
    assert len(condor.calls("condor_submit")) == len(kit.events().submits) <= 8
    assert all(len(jobs) == 1 for jobs in condor.by_token().values())
    assert len(condor.by_token()) == 8


def test_a_crash_between_submit_and_commit_submits_each_attempt_once(
    own: tuple[Kit, CondorStandIns],
) -> None:
    kit, condor = own
    kit.start(crash_after_submit=True)
    kit.submit(kit.sweep("crash", "ok", 3, resources=RESOURCES))
    wait_for(lambda: kit.crash_marker.exists() and not kit.daemon.running(), 60, "the kill")
    kit.daemon.start()
    trials = kit.daemon.wait_sweep_done("crash", 60)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 3
    assert sorted(runs_of(kit.work, "crash")) == [(1, 1), (2, 1), (3, 1)]
    assert len(condor.calls("condor_submit")) == 1  # one cluster for the 3 attempts
    tokens = condor.by_token()
    assert len(tokens) == 3 and all(len(jobs) == 1 for jobs in tokens.values()), tokens
    assert not kit.events().submitted_twice()


def test_steady_state_polls_ask_condor_q_nothing(kit: Kit, condor: CondorStandIns) -> None:
    params = waiting(kit, "steady")
    kit.submit(kit.sweep("steady", "wait", 3, resources=RESOURCES, params=params))
    wait_for(lambda: running_jobs(condor, "steady", 3), 60, "3 jobs to run")
    wait_for(lambda: all(t["state"] == "running" for t in kit.daemon.trials("steady")), 60,
             "the daemon to see them run")  # fmt: skip
    queries = len(condor.calls("condor_q")) + len(condor.calls("condor_history"))
    before = len(kit.events().polls)
    wait_for(lambda: len([p for p in kit.events().polls[before:] if p.outcome == "ok"]) >= 4,
             30, "4 more polls")  # fmt: skip
    steady = [p for p in kit.events().polls[before:] if p.outcome == "ok"]
    assert all(p.jobs == 3 and p.commands == [] for p in steady), steady
    assert len(condor.calls("condor_q")) + len(condor.calls("condor_history")) == queries
    Path(params["release"]).touch()
    trials = kit.daemon.wait_sweep_done("steady", 60)
    assert [t["state"] for t in trials] == ["completed"] * 3


def shows(kit: Kit, sweep: str, text: str) -> str | None:
    """``clusterctl trials`` output once it shows ``text``."""
    out = kit.daemon.ctl("trials", sweep).stdout
    return out if text in out else None


def test_a_users_hold_shows_its_reason_and_waits_for_condor_release(
    kit: Kit, condor: CondorStandIns
) -> None:
    """Held rule, codes 1 and 15: the user's hold is theirs to release, and the pending
    reason says so; once released the job runs its attempt, once."""
    params = waiting(kit, "held")
    condor.engine.set_auto(hold_next=USER_HOLD)  # the next cluster's jobs are held, code 1
    kit.submit(kit.sweep("held", "wait", 1, resources=RESOURCES, params=params))
    shown = wait_for(lambda: shows(kit, "held", USER_HOLD), 30, "the reason in clusterctl trials")
    assert "condor_release" in shown, shown
    assert f"{USER_HOLD} (code 1, subcode 0)" in kit.daemon.ctl("show", "held/0").stdout
    polls = len(kit.events().polls)
    wait_for(lambda: len(kit.events().polls) >= polls + 2, 30, "two more polls")
    job = the_job(condor, "held")
    assert job.state == "held"  # left alone: the user's to release
    subprocess.run(["condor_release", f"{job.cluster}.{job.index}"], check=True, timeout=30)
    wait_for(lambda: runs_of(kit.work, "held") == [(1, 1)], 30, "the released job to run")
    Path(params["release"]).touch()
    (trial,) = kit.daemon.wait_sweep_done("held", 60)
    assert (trial["state"], trial["attempts"]) == ("completed", 1), trial
    assert condor.engine.job(job.cluster, job.index).state == "completed"


def test_a_job_held_while_it_ran_shows_the_hold_and_resumes_once_released(
    kit: Kit, condor: CondorStandIns
) -> None:
    """A user's hold of a running job: HTCondor kills the runner, so the job is no longer
    running; ``clusterctl show`` gives the hold as the attempt's reason and ``clusterctl
    trials`` as the trial's note. Released, the job does not run its attempt again: a new
    attempt resumes the trial."""
    params = waiting(kit, "uheld")
    kit.submit(kit.sweep("uheld", "wait", 1, resources=RESOURCES, params=params))
    (job,) = wait_for(lambda: running_jobs(condor, "uheld", 1), 60, "the job to run")
    wait_for(lambda: runs_of(kit.work, "uheld") == [(1, 1)], 30, "the trial to run")
    condor.engine.hold(job.cluster, job.index, USER_HOLD, 1)
    shown = wait_for(lambda: _shows(kit, "uheld/0", USER_HOLD), 30, "the hold in show")
    assert "condor_release it to go on" in shown, shown
    table = kit.daemon.ctl("trials", "uheld").stdout
    assert USER_HOLD in table and "running" in table, table
    subprocess.run(["condor_release", f"{job.cluster}.{job.index}"], check=True, timeout=30)
    wait_for(lambda: len(kit.daemon.attempts("uheld", 0)) == 2, 30, "a second attempt")
    Path(params["release"]).touch()
    (trial,) = kit.daemon.wait_sweep_done("uheld", 60)
    assert (trial["state"], trial["attempts"], trial["resumes"]) == ("completed", 2, 1), trial
    assert runs_of(kit.work, "uheld") == [(1, 1), (1, 2)]  # attempt 1 ran once


def _shows(kit: Kit, trial: str, text: str) -> str | None:
    out = kit.daemon.ctl("show", trial).stdout
    return out if text in out else None


def test_a_policy_hold_ends_the_attempt_with_its_reason(kit: Kit, condor: CondorStandIns) -> None:
    """Held rule, any other code (34, memory): the job is removed and the attempt ends
    with HTCondor's hold reason, shown first as the pending reason."""
    params = waiting(kit, "oom")
    sweep = kit.sweep("oom", "wait", 1, resources=RESOURCES, params=params,
                      tables={"retry": {"max_failures": 0}})  # fmt: skip
    kit.submit(sweep)
    (job,) = wait_for(lambda: running_jobs(condor, "oom", 1), 60, "the job to run")
    wait_for(lambda: runs_of(kit.work, "oom") == [(1, 1)], 30, "the trial to run")
    condor.engine.hold(job.cluster, job.index, MEMORY_HOLD, 34)
    (trial,) = kit.daemon.wait_sweep_done("oom", 60)
    (attempt,) = kit.daemon.attempts("oom", 0)
    assert trial["state"] == "failed", trial
    assert condor.engine.job(job.cluster, job.index).state == "removed"
    # HTCondor vacates a held job with SIGTERM: the runner's word and the hold's reason
    assert "killed by signal TERM" in attempt["reason"], attempt
    assert f"{MEMORY_HOLD} (code 34, subcode 0)" in attempt["reason"], attempt
    assert MEMORY_HOLD in kit.daemon.ctl("show", "oom/0").stdout


@pytest.mark.parametrize("shadow_exception", [None, SHADOW_MESSAGE], ids=["evicted", "shadow"])
def test_an_evicted_job_resumes_in_a_new_attempt(
    kit: Kit, condor: CondorStandIns, shadow_exception: str | None
) -> None:
    """Evicted (004) or ended by a shadow exception (007) while its runner ran: the job
    goes back to idle in HTCondor; the attempt resumes in a new one, as on preemption."""
    name = "evicted" if shadow_exception is None else "shadow"
    params = waiting(kit, name)
    kit.submit(kit.sweep(name, "wait", 1, resources=RESOURCES, params=params))
    (job,) = wait_for(lambda: running_jobs(condor, name, 1), 60, "the job to run")
    # the trial's own code runs (an eviction before the runner is up is another story)
    wait_for(lambda: runs_of(kit.work, name) == [(1, 1)], 30, "the trial to run")
    condor.evict(job, shadow_exception)
    wait_for(lambda: len(kit.daemon.attempts(name, 0)) == 2, 30, "a second attempt")
    Path(params["release"]).touch()
    (trial,) = kit.daemon.wait_sweep_done(name, 60)
    assert (trial["state"], trial["attempts"]) == ("completed", 2), trial
    assert trial["resumes"] == 1, trial
    first, second = kit.daemon.attempts(name, 0)
    assert "REQUEUED" in (first["reason"] or "") and "resuming" in first["reason"], first
    assert first["job_id"] != second["job_id"]
    # the evicted job never ran attempt 1 again (its requirements: NumJobStarts == 0),
    # and the driver removed it
    assert runs_of(kit.work, name) == [(1, 1), (1, 2)]
    assert condor.engine.job(job.cluster, job.index).state == "removed"


def test_garbage_in_the_event_log_leaves_the_daemon_up(kit: Kit, condor: CondorStandIns) -> None:
    """Bytes that are no event, and a record cut short (its line ended), appended to the
    log between the stand-in's real records: the daemon stays up, keeps the trials, and
    reads the records after them."""
    params = waiting(kit, "garbage")
    kit.submit(kit.sweep("garbage", "wait", 2, resources=RESOURCES, params=params))
    wait_for(lambda: runs_of(kit.work, "garbage"), 30, "a trial to run")
    (log,) = [p for p in kit.work.rglob("events.log") if "garbage" in p.parts]
    with open(log, "ab") as fh:
        # ... and a record cut off mid-line (no newline): the next record joins its line
        fh.write(GARBAGE.encode() + b"\x00\xff\n...\n005 (001.000.000) 2026-")
    polls = len(kit.events().polls)
    wait_for(lambda: len(kit.events().polls) >= polls + 2, 30, "two polls of the garbage")
    assert kit.daemon.running(), kit.daemon.log_tail()
    assert {t["state"] for t in kit.daemon.trials("garbage")} <= {"queued", "running"}
    Path(params["release"]).touch()
    trials = kit.daemon.wait_sweep_done("garbage", 60)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 2, trials
