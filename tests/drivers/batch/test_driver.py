"""BatchDriver with a toy backend, as a newcomer would write one: only its hooks are its own.

The toy scheduler lives in memory behind a ``CommandRunner`` ("tsub" submits, "tq" lists,
"tdel" cancels), so that submit, cancel, find and the write-ahead records are exercised
as any backend gets them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers.base import JobRef, JobRequest, JobStatus
from clusterd.drivers.batch import BatchDriver, ScriptDialect, Task, batch_options
from clusterd.errors import DriverError
from clusterd.spec.model import Resources
from tests.drivers.batch.helpers import request


class ToyScheduler:
    """Arrays by id; ``refuse``/``hang`` make the next tsub fail definitely/ambiguously."""

    def __init__(self) -> None:
        self.arrays: dict[str, tuple[str, int]] = {}  # id -> (name, tasks)
        self.calls: list[list[str]] = []
        self.refuse = ""
        self.lose_answer = False

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        out, rc, err = "", 0, ""
        if argv[0] == "tsub":
            if self.refuse:
                rc, err = 1, self.refuse
            else:
                array_id = str(100 + len(self.arrays))
                self.arrays[array_id] = (argv[1], int(argv[2]))
                out = f"{array_id}\n"
                if self.lose_answer:
                    rc, err = 1, "tsub: error: socket timed out"
        elif argv[0] == "tq":
            out = "".join(f"{i} {name}\n" for i, (name, _n) in self.arrays.items())
        elif argv[0] == "tdel":
            for job_id in argv[1:]:
                self.arrays.pop(job_id.split(".")[0], None)
        return subprocess.CompletedProcess(argv, rc, out, err)

    def count(self, command: str) -> int:
        return sum(1 for call in self.calls if call[0] == command)


@dataclass(frozen=True)
class ToySettings:
    cpus: int | None
    queue: str | None


class ToyDriver(BatchDriver[ToySettings]):
    name = "toy"
    dialect = ScriptDialect("Toy", "TOY_TASK", "TOY_JOB", None, "toy_job_id", "toy.out")
    option_specs = (*batch_options("Toy"),)

    def array_key(self, job: JobRequest) -> ToySettings:
        return ToySettings(job.resources.cpus, self.job_options(job).get("queue"))

    def submit_script(
        self, settings: ToySettings, batch: str, tasks: list[Task], state_dir: Path, script: Path
    ) -> str:
        assert script.read_text().startswith("#!/bin/bash")
        return self.submit_command(["tsub", batch, str(len(tasks))], tasks).strip()

    def task_job_id(self, array_id: str, index: int) -> str:
        return f"{array_id}.{index}"

    def queue_arrays(self) -> dict[str, str]:
        lines = self.commands.output(["tq"]).splitlines()
        return {line.split()[1]: line.split()[0] for line in lines}

    def cancel_ids(self, job_ids: Sequence[str]) -> None:
        self.commands.output(["tdel", *job_ids])

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        return {}


def toy(**options: Any) -> tuple[ToyDriver, ToyScheduler]:
    scheduler = ToyScheduler()
    return ToyDriver(options, run=scheduler), scheduler


def test_alike_attempts_go_out_as_arrays_chunked_to_the_maximum(tmp_path: Path) -> None:
    driver, scheduler = toy(max_array_size=2)
    jobs = [request(tmp_path, i) for i in range(3)]
    jobs.append(request(tmp_path, 3, resources=Resources(cpus=4)))
    ids = driver.submit(jobs)
    assert [call[2] for call in scheduler.calls] == ["2", "1", "1"]
    assert ids == {
        jobs[0].token: "100.0",
        jobs[1].token: "100.1",
        jobs[2].token: "101.0",
        jobs[3].token: "102.0",
    }
    script = (tmp_path / "runs" / ".toy" / f"{scheduler.arrays['100'][0]}.sh").read_text()
    assert 'case "${TOY_TASK:-}" in' in script


def test_a_definite_refusal_leaves_no_record(tmp_path: Path) -> None:
    driver, scheduler = toy()
    job = request(tmp_path, 0)
    scheduler.refuse = "tsub: error: queue closed"
    with pytest.raises(DriverError, match="tsub failed: tsub: error: queue closed"):
        driver.submit([job])
    assert not (Path(job.attempt_dir) / "job.json").exists()


def test_a_lost_answer_is_adopted_instead_of_submitted_twice(tmp_path: Path) -> None:
    driver, scheduler = toy()
    job = request(tmp_path, 0)
    scheduler.lose_answer = True
    with pytest.raises(DriverError, match="socket timed out"):
        driver.submit([job])
    scheduler.lose_answer = False
    assert driver.submit([job]) == {job.token: "100.0"}
    assert scheduler.count("tsub") == 1 and scheduler.count("tq") == 1


def test_find_after_a_crash_between_submit_and_commit(tmp_path: Path) -> None:
    driver, _scheduler = toy()
    jobs = [request(tmp_path, i) for i in range(2)]
    ids = driver.submit(jobs)
    for job in jobs:  # the daemon died before it stored the ids, and so did the record
        path = Path(job.attempt_dir) / "job.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "job_id": None}))
    lost = [JobRef(job.token, None, job.attempt_dir) for job in jobs]
    assert driver.find(lost) == ids


def test_cancel_is_one_command_and_packed_slots_wait_for_their_siblings(tmp_path: Path) -> None:
    driver, scheduler = toy()
    packed = [request(tmp_path, i, resources=Resources(cpus=1, pack=2)) for i in range(2)]
    single = request(tmp_path, 5, resources=Resources(cpus=2))
    ids = driver.submit([*packed, single])
    refs = {job.token: JobRef(job.token, ids[job.token], job.attempt_dir) for job in packed}
    driver.cancel([refs[packed[0].token], JobRef(single.token, ids[single.token], "/x")])
    assert scheduler.calls[-1] == ["tdel", ids[single.token]]
    driver.cancel([refs[packed[1].token]])
    assert scheduler.calls[-1] == ["tdel", "100.0"]


def test_driver_wide_options_are_defaults_and_checked(tmp_path: Path, monkeypatch: Any) -> None:
    with pytest.raises(DriverError, match="toy driver options: unknown option 'queue'"):
        toy(queue="long")  # not declared by this toy
    monkeypatch.setenv("CLUSTERD_TOY_TIMEOUT", "3")
    driver, _ = toy()
    assert driver.commands.timeout == 3
    driver, _ = toy(poll_interval=5)
    driver.submit([request(tmp_path, 0, options={"poll_interval": 2})])
    assert driver.poll_interval == 2 and ToyDriver.poll_interval == 30.0
