"""Properties of the squeue/sacct/scontrol parsers: whatever Slurm prints in the fixed
formats comes back field for field, and a line that does not fit fails the poll.

The strategies draw what slurm-wlm 22.05.8 prints (the recorded fixtures show each
kind): array task ids, states with and without "by <uid>", reasons with spaces
("job requeued in held state"), empty node lists, job names holding ``|``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.drivers.base import JobRef
from clusterd.drivers.slurm import (
    QUEUED_STATES,
    RUNNING_STATES,
    SlurmDriver,
    job_status,
    parse_sacct,
    parse_scontrol_config,
    parse_squeue,
)
from clusterd.errors import DriverError
from tests.drivers.test_slurm_parse import Replay

ENDED = ("COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "OUT_OF_MEMORY")
states = st.one_of(
    st.sampled_from(sorted(QUEUED_STATES | RUNNING_STATES) + list(ENDED)),
    st.integers(0, 65535).map(lambda uid: f"CANCELLED by {uid}"),
)
reasons = st.sampled_from(
    ["None", "Priority", "Resources", "BeginTime", "job requeued in held state", "NodeDown"]
)
nodes = st.sampled_from(["", "vm", "node[01-04]", "gpu7"])
names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@st.composite
def queue(draw: st.DrawFn) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(job id, state, reason, nodes, name)`` with distinct array task ids."""
    tasks = draw(st.sets(st.tuples(st.integers(1, 10**7), st.integers(0, 10**6)), max_size=30))
    return [
        (f"{job}_{task}", draw(states), draw(reasons), draw(nodes), draw(names))
        for job, task in sorted(tasks)
    ]


def squeue_line(job_id: str, state: str, reason: str, node: str, name: str) -> str:
    array, task = job_id.split("_")
    return f"{job_id}|{array}|{task}|{state}|{reason}|{node}|{name}"


@given(rows=queue())
def test_squeue_lines_come_back_field_for_field(rows: list[tuple[str, ...]]) -> None:
    text = "".join(squeue_line(*row) + "\n" for row in rows)
    jobs = parse_squeue(text)
    assert sorted(jobs) == sorted(row[0] for row in rows)
    for job_id, state, reason, node, name in rows:
        job = jobs[job_id]
        assert (job.state, job.name) == (state, name)
        assert job.reason == (None if reason == "None" else reason)
        assert job.nodes == (node or None)
        assert job.task_id == int(job_id.split("_")[1])


@given(rows=queue(), code=st.integers(0, 255), signal=st.integers(0, 64))
def test_sacct_lines_come_back_field_for_field(
    rows: list[tuple[str, ...]], code: int, signal: int
) -> None:
    text = "".join(
        f"{job_id}|{state}|{code}:{signal}|{reason}|{node or 'None assigned'}|{name}\n"
        for job_id, state, reason, node, name in rows
    )
    jobs = parse_sacct(text)
    for job_id, state, _reason, node, name in rows:
        job = jobs[job_id]
        assert (job.state, job.name, job.nodes) == (state, name, node or None)
        assert job.exit_code == f"{code}:{signal}"


@given(rows=queue())
def test_every_state_maps_to_one_phase(rows: list[tuple[str, ...]]) -> None:
    for job in parse_squeue("".join(squeue_line(*row) + "\n" for row in rows)).values():
        status = job_status(job)
        if job.base_state in QUEUED_STATES:
            assert status.phase == "queued"
        elif job.base_state in RUNNING_STATES:
            assert status.phase == "running" and status.host == job.nodes
        else:
            assert status.phase == "gone" and status.scheduler_state == job.state


@given(rows=queue(), cut=st.integers(1, 6))
def test_a_line_cut_short_fails_the_poll_instead_of_losing_a_job(
    rows: list[tuple[str, ...]], cut: int
) -> None:
    """A job missing from squeue's answer would look finished: a short line is an error."""
    if not rows:
        return
    lines = [squeue_line(*row) for row in rows]
    lines[-1] = "|".join(lines[-1].split("|")[:cut])
    with pytest.raises(DriverError, match="cannot read squeue line"):
        parse_squeue("\n".join(lines))
    refs = [JobRef(f"t{i}", row[0], "/nonexistent") for i, row in enumerate(rows)]
    with pytest.raises(DriverError):
        SlurmDriver(run=Replay(squeue="\n".join(lines))).poll(refs)


keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(str.strip)


@given(config=st.dictionaries(keys, values, max_size=20))
def test_scontrol_config_comes_back_key_for_key(config: dict[str, str]) -> None:
    header = "Configuration data as of 2026-11-24T18:29:01\n"
    text = header + "".join(f"{key:<23} = {value}\n" for key, value in config.items())
    text += "\nCgroup Support Configuration:\n"
    assert parse_scontrol_config(text) == config
