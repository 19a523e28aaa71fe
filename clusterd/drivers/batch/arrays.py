"""Attempts into job arrays: group alike ones, pack N to a task, chunk, fit a budget.

One ``submit`` call hands a driver many attempts. Those that ask the scheduler for the
same things (resources, account, ...: the driver's *settings key*) go out together as
one array; ``resources.pack = N`` puts N attempts in one array task; an array holds at
most the scheduler's maximum of tasks; and where the user may only have so many jobs
queued, a ``Budget`` says how many tasks still fit. All pure: no scheduler is asked.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Protocol, TypeVar

from clusterd.drivers.base import JobRequest

__all__ = [
    "MAX_TASKS_PER_ARRAY",
    "Budget",
    "Task",
    "chunk_tasks",
    "fit_budget",
    "group_alike",
    "pack_tasks",
    "plan_arrays",
]

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)

#: attempts that run in one array task (``pack`` of them; one without packing)
Task = list[JobRequest]

#: tasks per array whatever the scheduler allows: ~225 bytes of script per task keeps the
#: script well under the usual size caps (Slurm's max_script_size is 4 MB by default)
MAX_TASKS_PER_ARRAY = 10_000


def group_alike(jobs: Sequence[JobRequest], key: Callable[[JobRequest], K]) -> dict[K, Task]:
    """Attempts by settings key, in the order they came (each group's, and the groups')."""
    groups: dict[K, Task] = {}
    for job in jobs:
        groups.setdefault(key(job), []).append(job)
    return groups


def pack_tasks(group: Sequence[JobRequest], pack: int) -> list[Task]:
    """``pack`` attempts to a task, in order; the last task may hold fewer."""
    pack = max(1, pack)
    return [list(group[i : i + pack]) for i in range(0, len(group), pack)]


def chunk_tasks(tasks: Sequence[Task], size: int) -> list[list[Task]]:
    """Arrays of at most ``size`` tasks, every task of an array the same length.

    Every task of an array asks the scheduler for the same resources, so a last,
    partly filled task goes out as an array of its own.
    """
    size = max(1, size)
    if not tasks:
        return []
    full = [task for task in tasks if len(task) == len(tasks[0])]
    arrays: list[list[Task]] = []
    for same in (full, list(tasks[len(full) :])):
        arrays += [list(same[start : start + size]) for start in range(0, len(same), size)]
    return arrays


def plan_arrays(
    jobs: Sequence[JobRequest],
    key: Callable[[JobRequest], K],
    max_tasks: Callable[[JobRequest], int],
) -> Iterator[tuple[K, list[Task]]]:
    """``(settings key, tasks)`` per array to submit: groups of alike attempts (all keyed
    before the first array goes out), packed ``resources.pack`` to a task, chunked to
    ``max_tasks(first attempt of the group)``."""
    for settings, group in group_alike(jobs, key).items():
        tasks = pack_tasks(group, group[0].resources.pack)
        for array in chunk_tasks(tasks, max_tasks(group[0])):
            yield settings, array


class Budget(Protocol[K_contra]):
    """Room under the scheduler's submit limits, spent as arrays go out.

    A backend without such limits has none (``BatchDriver.submit_budget`` returns None).
    Slurm's is ``clusterd.drivers.slurm.limits.SubmitBudget``.
    """

    def room(self, settings: K_contra) -> tuple[int | None, str]:
        """``(jobs that still fit, or None for no limit; the tightest limit in words)``."""
        ...

    def spend(self, settings: K_contra, jobs: int) -> None:
        """Count ``jobs`` more jobs (array tasks) of these settings as submitted."""
        ...


def fit_budget(
    budget: Budget[K] | None, settings: K, tasks: list[Task], held: list[str]
) -> list[Task]:
    """The leading tasks that fit the budget (spending it); appends what stays behind, in
    words, to ``held``. Each task counts one job, as schedulers count array tasks."""
    if budget is None:
        return tasks
    room, why = budget.room(settings)
    if room is None or room >= len(tasks):
        budget.spend(settings, len(tasks))
        return tasks
    budget.spend(settings, room)
    left = sum(len(task) for task in tasks[room:])
    held.append(f"{left} attempt(s) of sweep {tasks[0][0].sweep} held back by {why}")
    return tasks[:room]
