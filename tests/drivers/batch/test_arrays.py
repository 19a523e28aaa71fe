"""Grouping, packing, chunking and the submit budget: every attempt goes out exactly once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clusterd.drivers.base import JobRequest
from clusterd.drivers.batch.arrays import (
    Task,
    chunk_tasks,
    fit_budget,
    group_alike,
    pack_tasks,
    plan_arrays,
)
from clusterd.spec.model import Resources
from tests.drivers.batch.helpers import request

#: (settings group, pack) per attempt
attempts = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4)), max_size=60)


def jobs_of(drawn: list[tuple[int, int]]) -> list[JobRequest]:
    return [
        request("/nonexistent", i, resources=Resources(cpus=1 + group, pack=pack))
        for i, (group, pack) in enumerate(drawn)
    ]


def key(job: JobRequest) -> tuple[int | None, int]:
    return (job.resources.cpus, job.resources.pack)


def flat(tasks: list[Task]) -> list[JobRequest]:
    return [job for task in tasks for job in task]


@given(drawn=attempts, size=st.integers(1, 7))
def test_every_attempt_lands_in_exactly_one_task_of_an_alike_array(
    drawn: list[tuple[int, int]], size: int
) -> None:
    jobs = jobs_of(drawn)
    planned = list(plan_arrays(jobs, key, lambda job: size))
    tokens = [job.token for _settings, tasks in planned for job in flat(tasks)]
    assert sorted(tokens) == sorted(job.token for job in jobs)
    assert len(tokens) == len(set(tokens))
    for settings, tasks in planned:
        assert 1 <= len(tasks) <= size
        assert {key(job) for job in flat(tasks)} == {settings}
        assert len({len(task) for task in tasks}) == 1  # one resource request per array
        assert all(1 <= len(task) <= settings[1] for task in tasks)


@given(drawn=attempts, size=st.integers(1, 7))
def test_packing_and_chunking_keep_the_order(drawn: list[tuple[int, int]], size: int) -> None:
    jobs = jobs_of(drawn)
    for settings, group in group_alike(jobs, key).items():
        assert group == [job for job in jobs if key(job) == settings]
        tasks = pack_tasks(group, settings[1])
        assert flat(tasks) == group
        assert all(len(task) == settings[1] for task in tasks[:-1])
        assert [job for array in chunk_tasks(tasks, size) for job in flat(array)] == group


def test_a_partly_filled_last_task_is_an_array_of_its_own() -> None:
    group = [request("/x", i) for i in range(5)]
    arrays = chunk_tasks(pack_tasks(group, 2), 10)
    assert [[len(task) for task in array] for array in arrays] == [[2, 2], [1]]


class Room:
    """A budget with one limit for everything."""

    def __init__(self, left: int | None) -> None:
        self.left = left
        self.spent = 0

    def room(self, settings: object) -> tuple[int | None, str]:
        return (None if self.left is None else self.left - self.spent, "MaxJobs (test)")

    def spend(self, settings: object, jobs: int) -> None:
        self.spent += jobs


@given(
    arrays=st.lists(st.integers(1, 6), max_size=8),
    left=st.one_of(st.none(), st.integers(0, 20)),
    pack=st.integers(1, 3),
)
def test_the_budget_is_never_exceeded(arrays: list[int], left: int | None, pack: int) -> None:
    budget, sent = Room(left), 0
    held: list[str] = []
    for index, tasks in enumerate(arrays):
        chunk = [
            [request("/x", index * 100 + i * 10 + s) for s in range(pack)] for i in range(tasks)
        ]
        fits = fit_budget(budget, "settings", chunk, held)
        assert fits == chunk[: len(fits)]  # the leading tasks
        sent += len(fits)
    assert sent == budget.spent
    if left is None:
        assert sent == sum(arrays) and not held
    else:
        assert sent == min(left, sum(arrays))
        assert bool(held) == (sum(arrays) > left)


def test_what_the_budget_holds_back_is_said_in_attempts() -> None:
    held: list[str] = []
    tasks = [[request("/x", 2 * i), request("/x", 2 * i + 1)] for i in range(3)]
    assert fit_budget(Room(1), "s", tasks, held) == tasks[:1]
    assert held == ["4 attempt(s) of sweep sw held back by MaxJobs (test)"]
    assert fit_budget(None, "s", tasks, held) == tasks
