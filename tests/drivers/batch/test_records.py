"""job.json write-ahead records: written before the submission, found again by token."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.batch import records
from clusterd.drivers.batch.slots import cancel_slots, split_slot, with_slot
from tests.drivers.batch.helpers import request


def task_id(array_id: str, index: int) -> str:
    return f"{array_id}[{index}]"  # PBS spells array tasks so


class Lookup:
    """A scheduler that lists ``queue`` and remembers ``history``; counts its queries."""

    def __init__(self, queue: dict[str, str] | None = None, history: dict[str, str] | None = None):
        self.queue, self.history = queue or {}, history or {}
        self.asked: list[Any] = []

    def queue_arrays(self) -> dict[str, str]:
        self.asked.append("queue")
        return self.queue

    def history_arrays(self, names: Sequence[str], since: float) -> dict[str, str]:
        self.asked.append(("history", list(names), since))
        return self.history

    def task_job_id(self, array_id: str, index: int) -> str:
        return task_id(array_id, index)


def record(path: Path) -> dict[str, Any]:
    return json.loads((path / "job.json").read_text())


def ref(job: JobRequest, job_id: str | None = None) -> JobRef:
    return JobRef(job.token, job_id, job.attempt_dir)


def test_records_are_written_ahead_then_confirmed(tmp_path: Path) -> None:
    jobs = [request(tmp_path, i) for i in range(3)]
    tasks = [[jobs[0], jobs[1]], [jobs[2]]]
    records.record_tasks(tasks, "pbs", "cd.sw.0001", None, task_id)
    first = record(Path(jobs[1].attempt_dir))
    assert (first["state"], first["job_id"], first["batch"], first["task"]) == (
        "submitting",
        None,
        "cd.sw.0001",
        0,
    )
    ids = records.record_tasks(tasks, "pbs", "cd.sw.0001", "88", task_id)
    assert ids == {jobs[0].token: "88[0]/0", jobs[1].token: "88[0]/1", jobs[2].token: "88[1]"}
    confirmed = record(Path(jobs[1].attempt_dir))
    assert (confirmed["state"], confirmed["job_id"], confirmed["slot"]) == ("submitted", "88[0]", 1)
    assert confirmed["siblings"] == [[j.token, j.attempt_dir] for j in jobs[:2]]
    assert "slot" not in record(Path(jobs[2].attempt_dir))


def test_find_asks_nobody_when_job_json_has_the_id(tmp_path: Path) -> None:
    job = request(tmp_path, 0)
    records.record_tasks([[job]], "pbs", "cd.sw.0002", "9", task_id)
    lookup = Lookup()
    assert records.find_jobs([ref(job)], lookup) == {job.token: "9[0]"}
    assert lookup.asked == []


def test_find_by_batch_name_in_the_queue_then_in_the_history(tmp_path: Path) -> None:
    queued, left = request(tmp_path, 0), request(tmp_path, 1)
    records.record_tasks([[queued]], "pbs", "cd.sw.q", None, task_id)
    records.record_tasks([[], [left]], "pbs", "cd.sw.h", None, task_id)
    lookup = Lookup(queue={"cd.sw.q": "5"}, history={"cd.sw.h": "4"})
    found = records.find_jobs([ref(queued), ref(left)], lookup)
    assert found == {queued.token: "5[0]", left.token: "4[1]"}
    assert lookup.asked[0] == "queue" and lookup.asked[1][:2] == ("history", ["cd.sw.h"])
    assert lookup.asked[1][2] > 0  # since: when the record was written


def test_attempts_without_a_record_are_looked_for_nowhere(tmp_path: Path) -> None:
    job = request(tmp_path, 0)
    lookup = Lookup()
    assert records.find_jobs([ref(job)], lookup) == {}
    assert records.adopt_leftovers([job], lookup) == {}
    assert lookup.asked == []


def test_a_record_of_another_token_is_ignored(tmp_path: Path) -> None:
    job = request(tmp_path, 0)
    records.record_tasks([[job]], "pbs", "cd.sw.0003", "9", task_id)
    other = JobRef("someone-else", None, job.attempt_dir)
    assert records.find_jobs([other], Lookup(queue={"cd.sw.0003": "9"})) == {}


def test_a_refused_submission_is_forgotten(tmp_path: Path) -> None:
    job = request(tmp_path, 0)
    records.record_tasks([[job]], "pbs", "cd.sw.0004", None, task_id)
    assert records.has_batch(ref(job))
    records.forget([job])
    assert not records.has_batch(ref(job))
    assert records.adopt_leftovers([job], Lookup(queue={"cd.sw.0004": "1"})) == {}


def test_slot_ids_round_trip() -> None:
    assert split_slot(with_slot("7[3]", 2)) == ("7[3]", 2)
    assert split_slot(with_slot("7[3]", None)) == ("7[3]", None)


def test_a_packed_job_is_cancelled_once_no_slot_is_left(tmp_path: Path) -> None:
    jobs = [request(tmp_path, i) for i in range(2)]
    records.record_tasks([jobs], "pbs", "cd.sw.0005", "3", task_id)
    assert not cancel_slots([ref(jobs[0])])
    assert (Path(jobs[0].attempt_dir) / "CANCEL").exists()
    assert cancel_slots([ref(jobs[1])])
