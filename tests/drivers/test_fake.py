"""FakeDriver: the in-memory scheduler that daemon tests and plugin authors rely on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers import JobRef, JobRequest
from clusterd.errors import DriverError, SpecError
from clusterd.spec.model import Resources, SweepSpec
from clusterd.testing.fake_driver import FakeDriver


@pytest.fixture(autouse=True)
def clean_fake() -> Iterator[None]:
    FakeDriver.reset()
    yield
    FakeDriver.reset()


def request(tmp_path: Path, token: str, **options: Any) -> JobRequest:
    attempt_dir = tmp_path / token
    attempt_dir.mkdir()
    return JobRequest(
        token=token,
        sweep="s",
        trial_index=0,
        attempt=1,
        attempt_dir=str(attempt_dir),
        argv=("never-run",),
        resources=Resources(),
        options=options,
    )


def phases(driver: FakeDriver, refs: list[JobRef]) -> list[str]:
    statuses = driver.poll(refs)
    return [statuses[ref.token].phase for ref in refs]


def test_jobs_walk_queued_running_gone_and_leave_a_status(tmp_path: Path) -> None:
    driver = FakeDriver({"steps_queued": 2, "steps_running": 1, "exit_code": 3})
    job = request(tmp_path, "t1")
    ids = driver.submit([job])
    ref = JobRef("t1", ids["t1"], job.attempt_dir)
    seen = [phases(driver, [ref])[0] for _ in range(5)]
    assert seen == ["queued", "queued", "running", "gone", "gone"]
    status = json.loads((tmp_path / "t1" / "status.json").read_text())
    assert status["exit_code"] == 3 and status["signal"] is None
    assert FakeDriver.submitted == ["t1"] and FakeDriver.submit_calls == 1


def test_sweep_options_override_driver_options(tmp_path: Path) -> None:
    driver = FakeDriver({"steps_queued": 5})
    job = request(tmp_path, "t1", steps_queued=0, steps_running=0)
    ids = driver.submit([job])
    assert phases(driver, [JobRef("t1", ids["t1"], job.attempt_dir)]) == ["gone"]


def test_exit_code_none_writes_no_status(tmp_path: Path) -> None:
    driver = FakeDriver({"steps_queued": 0, "exit_code": None})
    job = request(tmp_path, "t1")
    ref = JobRef("t1", driver.submit([job])["t1"], job.attempt_dir)
    assert phases(driver, [ref]) + phases(driver, [ref]) == ["running", "gone"]
    assert not (tmp_path / "t1" / "status.json").exists()


def test_cancel_is_recorded_and_ends_the_job(tmp_path: Path) -> None:
    driver = FakeDriver({"steps_queued": 0, "steps_running": 10})
    jobs = [request(tmp_path, "run"), request(tmp_path, "wait", steps_queued=10)]
    ids = driver.submit(jobs)
    refs = [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]
    assert phases(driver, refs) == ["running", "queued"]
    driver.cancel(refs)
    statuses = driver.poll(refs)
    assert statuses["run"].reason == "cancelled"
    assert statuses["wait"].reason == "cancelled before it started"
    assert FakeDriver.cancelled == ["run", "wait"] and FakeDriver.cancel_calls == 1
    assert json.loads((tmp_path / "run" / "status.json").read_text())["signal"] == "TERM"
    assert not (tmp_path / "wait" / "status.json").exists()


def test_scheduler_outlives_the_driver_instance(tmp_path: Path) -> None:
    """A new instance is a restarted daemon: find() and poll() still know the jobs."""
    job = request(tmp_path, "t1")
    ids = FakeDriver().submit([job])
    again = FakeDriver()
    assert again.find([JobRef("t1", None, job.attempt_dir)]) == ids
    assert again.submit([job]) == ids  # same token: not submitted twice
    assert FakeDriver.submitted == ["t1"]


def test_unknown_token_is_gone(tmp_path: Path) -> None:
    status = FakeDriver().poll([JobRef("nope", "fake-99", str(tmp_path))])["nope"]
    assert status.phase == "gone" and status.reason == "unknown to the fake scheduler"


def test_fail_submit_raises_driver_error(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="fail_submit"):
        FakeDriver({"fail_submit": True}).submit([request(tmp_path, "t1")])
    assert FakeDriver.submitted == []


def test_unknown_or_mistyped_options_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="valid options: exit_code, fail_submit, steps_"):
        FakeDriver({"steps": 1})
    with pytest.raises(DriverError, match="'steps_queued' must be int"):
        FakeDriver({"steps_queued": True})
    spec = SweepSpec(
        name="s",
        command=("x",),
        source="sweep.toml",
        output_dir=str(tmp_path),
        driver="fake",
        driver_options={"fake": {"step": 1}},
    )
    with pytest.raises(SpecError, match=r"sweep.toml: drivers.fake: .*unknown option 'step'"):
        FakeDriver().validate(spec)


def test_describe_cluster_lists_live_jobs(tmp_path: Path) -> None:
    driver = FakeDriver()
    driver.submit([request(tmp_path, "t1")])
    info = driver.describe_cluster()
    assert info.driver == "fake" and [job["token"] for job in info.queue] == ["t1"]
