"""Host exclusion counts only the host's failures and never removes the last eligible node."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, insert, select
from sqlalchemy.pool import StaticPool

from clusterd.daemon import models
from clusterd.daemon.hostfail import host_failure_clause, is_host_failure
from clusterd.daemon.scheduler import crash_delay, keep_one_eligible
from clusterd.daemon.store import A
from clusterd.drivers.slurm import SlurmDriver
from clusterd.spec.model import Resources

OUTCOMES = st.sampled_from(["failed", "lost", "timeout", "completed", "cancelled", None])
SIGNALS = st.sampled_from([None, "KILL", "SIGKILL", "TERM", "SEGV", "ABRT", "BUS", "usr1"])
REASONS = st.sampled_from(
    [
        None,
        "exit code 1",
        "job vanished",
        "job ended by the scheduler (PREEMPTED); resuming (1)",
        "job ended (NODE_FAIL) without status",
        "killed by signal TERM; the scheduler says: HELD (The job exceeded its memory; code 34)",
    ]
)


def test_script_failures_never_count_against_the_host() -> None:
    assert not is_host_failure("failed", 1, None, "exit code 1")
    assert not is_host_failure("failed", None, "SEGV", "killed by signal SEGV")
    assert not is_host_failure("timeout", None, "TERM", "time limit reached")
    assert is_host_failure("failed", None, "KILL", "killed by signal KILL")
    assert is_host_failure("lost", None, None, "job vanished without writing status.json")
    assert not is_host_failure("lost", None, None, "job ended by the scheduler (PREEMPTED)")
    # an HTCondor policy hold kills the job with TERM: the host did nothing wrong
    held = "killed by signal TERM; the scheduler says: HELD (memory use exceeded; code 34)"
    assert not is_host_failure("failed", None, "TERM", held)


#: an in-memory database with the schema (foreign keys off: attempts without trials)
MEMORY = create_engine("sqlite://", poolclass=StaticPool)
models.Base.metadata.create_all(MEMORY)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(OUTCOMES, st.sampled_from([None, 0, 1, 5]), SIGNALS, REASONS),
        min_size=1,
        max_size=12,
    )
)
def test_the_sql_rule_agrees_with_the_python_rule(rows: list[tuple[Any, ...]]) -> None:
    with MEMORY.begin() as conn:
        conn.execute(delete(A))
        conn.execute(
            insert(A),
            [
                {
                    "trial_id": 1,
                    "number": i + 1,
                    "token": f"t{i}",
                    "state": "ended",
                    "outcome": o,
                    "exit_code": c,
                    "signal": sig,
                    "reason": r,
                    "events_offset": 0,
                    "cancel_requested": False,
                }
                for i, (o, c, sig, r) in enumerate(rows)
            ],
        )
        got = set(conn.execute(select(A.c.number).where(host_failure_clause(A))).scalars())
    assert got == {i + 1 for i, row in enumerate(rows) if is_host_failure(*row)}


def test_the_last_eligible_node_is_never_excluded() -> None:
    assert keep_one_eligible("s", {"n1": 3}, {"n1"}) == {}
    assert keep_one_eligible("s", {"n1": 3, "n2": 5}, {"n1", "n2"}) == {"n2": 5}
    assert keep_one_eligible("s", {"n1.cluster": 4}, {"n1", "n2"}) == {"n1.cluster": 4}
    assert keep_one_eligible("s", {"n1": 4}, None) == {"n1": 4}  # the driver cannot tell


def test_crash_delay_grows_and_is_capped() -> None:
    assert [crash_delay(n) for n in range(5)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert crash_delay(40) == 300.0


@pytest.mark.skipif(shutil.which("sinfo") is None, reason="no Slurm here (.ci/slurm-setup.sh)")
def test_slurm_lists_the_nodes_of_the_partition() -> None:
    nodes = SlurmDriver().eligible_hosts(Resources(), {})
    assert nodes, "the one-node Slurm has a default partition with a node"
    # the only node with three script failures and three host failures: still eligible
    assert keep_one_eligible("s", {n: 3 for n in nodes}, nodes) != {n: 3 for n in nodes}
