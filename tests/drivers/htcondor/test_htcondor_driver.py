"""``HTCondorDriver`` without an HTCondor: commands answered with recorded output (a
counting ``Replay``), and a real event-log file the test appends HTCondor's own records to
(``htc_helpers``: the recorded fixture's records with their job ids swapped).

What a user would notice: one condor_submit per batch; statuses that follow the log with
no condor_q at all; a held job showing its reason, released or removed per the rule;
an evicted job ending its attempt as REQUEUED (the daemon resumes it); cancel as one
condor_rm; after a restart the log is read again from its start.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterd.daemon.outcome import Ending, decide
from clusterd.drivers.base import JobRef, JobRequest, JobStatus
from clusterd.drivers.htcondor import HTCondorDriver
from clusterd.drivers.htcondor.submit import HTCONDOR_SCRIPT
from clusterd.errors import DriverError, SpecError, UnsupportedResource
from clusterd.spec.model import Resources, ResumePolicy, RetryPolicy, SweepSpec
from tests.drivers.htcondor.htc_helpers import (
    Replay,
    aborted_rec,
    evicted_rec,
    execute_rec,
    fixture,
    held_rec,
    make_job,
    released_rec,
    shadow_rec,
    signal_rec,
    submit_rec,
    terminated_rec,
)


class Pool:
    """The submitted cluster's event log (``<output_dir>/.htcondor/events.log``) and the
    answers of the condor commands."""

    def __init__(self, tmp_path: Path, cluster: int = 23) -> None:
        self.tmp_path = tmp_path
        self.cluster = cluster
        self.submitted: list[str] = []  # submit descriptions given to condor_submit
        self.replay = Replay(
            condor_submit=self._submit,
            condor_q=fixture("condor_q-empty.txt"),
            condor_history=fixture("condor_q-empty.txt"),
            condor_rm=lambda argv: "".join(f"Job {i} marked for removal\n" for i in argv[1:]),
            condor_release=lambda argv: "".join(f"Job {i} released\n" for i in argv[1:]),
        )
        self.driver = HTCondorDriver(run=self.replay)

    def _submit(self, argv: list[str]) -> str:
        assert argv[:2] == ["condor_submit", "-terse"]
        text = Path(argv[2]).read_text()
        self.submitted.append(text)
        n = text.split("from (\n", 1)[1].count("\n") - 1
        return f"{self.cluster}.0 - {self.cluster}.{n - 1}\n"

    @property
    def log(self) -> Path:
        return self.tmp_path / "runs" / ".htcondor" / "events.log"

    def append(self, *texts: str) -> None:
        with self.log.open("a") as fh:
            fh.write("".join(texts))

    def jobs(self, n: int, **changes: object) -> list[JobRequest]:
        return [make_job(self.tmp_path, i, **changes) for i in range(n)]

    def submit(self, jobs: list[JobRequest]) -> list[JobRef]:
        ids = self.driver.submit(jobs)
        return [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]


@pytest.fixture
def pool(tmp_path: Path) -> Pool:
    return Pool(tmp_path)


def phases(statuses: Mapping[str, JobStatus], refs: list[JobRef]) -> list[str]:
    return [statuses[ref.token].phase for ref in refs]


def test_a_batch_is_one_condor_submit_and_its_jobs_are_cluster_procs(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(5))
    assert pool.replay.count("condor_submit") == 1
    assert [ref.job_id for ref in refs] == [f"23.{i}" for i in range(5)]
    text = pool.submitted[0]
    assert f"log = {pool.log}\n" in text
    assert all(f"{ref.token} {i}\n" in text for i, ref in enumerate(refs))
    record = json.loads((Path(refs[0].attempt_dir) / "job.json").read_text())
    assert (record["job_id"], record["state"], record["batch"]) == (
        "23.0",
        "submitted",
        record["batch"],
    )
    assert record["batch"] in text  # batch_name: what find looks jobs up by


def test_statuses_follow_the_log_without_any_condor_q(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(3))
    pool.append(*(submit_rec(23, i) for i in range(3)))
    assert phases(pool.driver.poll(refs), refs) == ["queued"] * 3
    pool.append(execute_rec(23, 0), execute_rec(23, 1))
    statuses = pool.driver.poll(refs)
    assert phases(statuses, refs) == ["running", "running", "queued"]
    assert statuses[refs[0].token].host == "test02"
    pool.append(terminated_rec(23, 0, 0), signal_rec(23, 1))
    statuses = pool.driver.poll(refs)
    assert phases(statuses, refs) == ["gone", "gone", "queued"]
    assert statuses[refs[0].token].reason == "exited with return value 0"
    assert statuses[refs[1].token].reason == "killed by signal 11"
    for _ in range(5):
        pool.driver.poll(refs)
    assert pool.replay.count("condor_q") == 0 and pool.replay.count("condor_history") == 0


def test_a_job_without_events_is_queued_then_reconciled_with_condor_q(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(2))
    statuses = pool.driver.poll(refs)
    assert statuses[refs[0].token].reason == "submitted; no event in the log yet"
    assert pool.replay.count("condor_q") == 0
    pool.driver.reconcile_after = 0.0  # as if two minutes passed without an event
    pool.replay.answers["condor_q"] = fixture("condor_q-json.json")  # 23.0 idle, 23.1 running
    statuses = pool.driver.poll(refs)
    assert phases(statuses, refs) == ["queued", "running"]
    assert pool.replay.count("condor_q") == 1  # one call for every such job
    assert pool.replay.count("condor_history") == 0  # all were in the queue


def test_a_job_not_materialized_yet_waits_while_its_cluster_runs(pool: Pool) -> None:
    """max_materialize: the schedd makes a cluster's later jobs as earlier ones leave, and
    condor_q knows nothing of them before; they wait queued, not "gone", while a job of
    their cluster is in the log and has not ended. Once none is left, condor_q decides."""
    refs = pool.submit(pool.jobs(3, options={"max_materialize": 2}))
    pool.append(submit_rec(23, 0), submit_rec(23, 1), execute_rec(23, 0))
    pool.driver.reconcile_after = 0.0  # long after the submission
    statuses = pool.driver.poll(refs)
    assert phases(statuses, refs) == ["running", "queued", "queued"]
    assert statuses[refs[2].token].reason == "not materialized yet (max_materialize)"
    assert pool.replay.count("condor_q") == 0
    pool.append(terminated_rec(23, 0, 0), aborted_rec(23, 1))
    statuses = pool.driver.poll(refs)  # none of the cluster is left: ask condor_q
    assert pool.replay.count("condor_q") == 1
    assert statuses[refs[2].token].phase == "gone"


def test_a_garbled_condor_q_is_a_failed_poll_only_when_the_log_said_nothing(
    pool: Pool,
) -> None:
    refs = pool.submit(pool.jobs(2))
    pool.log.mkdir()  # unreadable: every job needs condor_q
    pool.replay.answers["condor_q"] = '[\n{ "ClusterId": 23, "ProcId"'  # cut short
    with pytest.raises(DriverError, match="condor_q"):
        pool.driver.poll(refs)
    pool.log.rmdir()
    pool.append(submit_rec(23, 0), execute_rec(23, 0), terminated_rec(23, 0, 0))
    pool.driver.reconcile_after = 0.0  # 23.1 has no event: it needs condor_q
    statuses = pool.driver.poll(refs)
    assert phases(statuses, refs) == ["gone", "unknown"]  # what the log says is kept


def test_an_unreadable_log_falls_back_to_condor_q_and_condor_history(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(10))
    pool.log.mkdir()  # cannot be read as a file
    pool.replay.answers["condor_q"] = fixture("condor_q-json.json")  # 23.0 .. 23.5
    pool.replay.answers["condor_history"] = fixture("condor_history-json.json")  # 23.6 .. 23.9
    statuses = pool.driver.poll(refs)
    assert (pool.replay.count("condor_q"), pool.replay.count("condor_history")) == (1, 1)
    assert phases(statuses, refs[6:]) == ["gone"] * 4
    assert statuses[refs[7].token].reason == "exited with return value 3"
    assert statuses[refs[8].token].reason == "killed by signal 9"
    assert statuses[refs[9].token].scheduler_state.startswith("CANCELLED")
    held = statuses[refs[2].token]  # 23.2: held with code 47 -> removed, TIMEOUT
    assert held.phase == "gone" and held.scheduler_state.startswith("TIMEOUT")
    assert "exceeded allowed execute duration" in held.reason
    user_held = statuses[refs[3].token]  # 23.3: the user's condor_hold: left alone
    assert user_held.phase == "queued" and "via condor_hold" in user_held.reason
    rm = [call for call in pool.replay.calls if call[0] == "condor_rm"]
    assert rm == [["condor_rm", "23.2"]]


def test_a_held_job_shows_its_reason_and_a_transient_hold_is_released(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(1))
    reason = "Transfer input files failure at execution point slot1@node1: file not found"
    pool.append(submit_rec(23, 0), held_rec(23, 0, reason, code=13))
    status = pool.driver.poll(refs)[refs[0].token]
    assert status.phase == "queued"
    assert status.reason == f"held: {reason} (code 13, subcode 0); released (1 of 3)"
    assert pool.replay.calls[-1] == ["condor_release", "23.0"]
    pool.driver.poll(refs)  # HTCondor has not logged the release yet: no second one
    assert pool.replay.count("condor_release") == 1
    for n in (2, 3):
        pool.append(released_rec(23, 0), held_rec(23, 0, reason, code=13))
        assert pool.driver.poll(refs)[refs[0].token].reason.endswith(f"released ({n} of 3)")
    pool.append(released_rec(23, 0), held_rec(23, 0, reason, code=13))
    status = pool.driver.poll(refs)[refs[0].token]  # a fourth hold: removed, attempt failed
    assert status.phase == "gone" and status.scheduler_state.startswith("HELD")
    assert pool.replay.calls[-1] == ["condor_rm", "23.0"]
    assert pool.replay.count("condor_release") == 3


def test_a_memory_hold_removes_the_job_and_fails_the_attempt_with_its_reason(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(1))
    reason = "Job has gone over cgroup memory limit of 2048 megabytes."
    pool.append(submit_rec(23, 0), execute_rec(23, 0), held_rec(23, 0, reason, code=34))
    status = pool.driver.poll(refs)[refs[0].token]
    assert (status.phase, pool.replay.calls[-1]) == ("gone", ["condor_rm", "23.0"])
    assert status.reason == f"held: {reason} (code 34, subcode 0); removed"
    verdict = decide(Ending(status=None, scheduler_reason=status.scheduler_state),
                     ResumePolicy(), RetryPolicy(), 0, 0)  # fmt: skip
    assert verdict.trial_state == "failed" and reason in verdict.reason


def test_the_time_limit_hold_is_a_timeout(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(1))
    pool.append(submit_rec(23, 0), execute_rec(23, 0), held_rec(23, 0))  # code 47
    status = pool.driver.poll(refs)[refs[0].token]
    ending = Ending(status={"exit_code": None, "signal": 15}, checkpointed=True,
                    scheduler_reason=status.scheduler_state)  # fmt: skip
    verdict = decide(ending, ResumePolicy(), RetryPolicy(), 0, 0)
    assert verdict.outcome == "timeout" and verdict.resume  # resumed from its checkpoint


def test_an_evicted_job_is_removed_and_its_attempt_resumes(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(2))
    (Path(refs[0].attempt_dir) / HTCONDOR_SCRIPT.started_file).write_text("23_0\n")
    pool.append(submit_rec(23, 0), submit_rec(23, 1), execute_rec(23, 0), execute_rec(23, 1))
    pool.driver.poll(refs)
    pool.append(evicted_rec(23, 0))
    statuses = pool.driver.poll(refs)
    evicted = statuses[refs[0].token]
    assert (evicted.phase, evicted.scheduler_state) == ("gone", "REQUEUED")
    assert statuses[refs[1].token].phase == "running"
    assert pool.replay.calls[-1] == ["condor_rm", "23.0"]
    verdict = decide(Ending(status={"exit_code": None, "signal": 15},
                            scheduler_reason=evicted.scheduler_state),
                     ResumePolicy(), RetryPolicy(), 0, 0)  # fmt: skip
    assert verdict.resume and verdict.trial_state == "pending"
    pool.append(aborted_rec(23, 0))  # our condor_rm, as the log records it
    assert pool.driver.poll(refs[:1])[refs[0].token].scheduler_state == "REQUEUED"


def test_a_shadow_exception_before_the_runner_started_is_a_failure(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(1))
    pool.append(submit_rec(23, 0), execute_rec(23, 0), shadow_rec(23, 0))
    status = pool.driver.poll(refs)[refs[0].token]
    assert status.phase == "gone" and status.scheduler_state.startswith("SHADOW_EXCEPTION")
    assert "executable file not found" in status.reason


def test_a_job_removed_by_someone_else_is_cancelled_outside_clusterd(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(1))
    pool.append(submit_rec(23, 0), aborted_rec(23, 0))
    status = pool.driver.poll(refs)[refs[0].token]
    assert status.scheduler_state == "CANCELLED (via condor_rm (by user testuser))"
    verdict = decide(Ending(status=None, scheduler_reason=status.scheduler_state),
                     ResumePolicy(), RetryPolicy(), 0, 0)  # fmt: skip
    assert verdict.outcome == "cancelled"


def test_cancel_is_one_condor_rm_and_unknown_ids_are_no_error(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(4))
    pool.replay.answers["condor_rm"] = (1, "Job 23.0 marked for removal\n", "Job 23.1 not found\n")
    pool.driver.cancel(refs)
    assert [c for c in pool.replay.calls if c[0] == "condor_rm"] == [
        ["condor_rm", "23.0", "23.1", "23.2", "23.3"]
    ]
    pool.replay.answers["condor_rm"] = (1, "", "Permission denied to remove job 23.0\n")
    with pytest.raises(DriverError, match="Permission denied"):
        pool.driver.cancel(refs[:1])


def test_after_a_restart_the_log_is_read_again_from_its_start(pool: Pool) -> None:
    refs = pool.submit(pool.jobs(2))
    pool.append(submit_rec(23, 0), submit_rec(23, 1), execute_rec(23, 0))
    pool.append(terminated_rec(23, 0, 0), execute_rec(23, 1))
    fresh = HTCondorDriver(run=pool.replay)  # a new daemon: no offsets, no tracks
    statuses = fresh.poll(refs)
    assert phases(statuses, refs) == ["gone", "running"]
    assert pool.replay.count("condor_q") == 0


def test_find_after_a_crash_between_submit_and_commit_uses_the_batch_name(pool: Pool) -> None:
    jobs = pool.jobs(3)
    pool.submit(jobs)
    batch = json.loads((Path(jobs[0].attempt_dir) / "job.json").read_text())["batch"]
    for job in jobs:  # the crash came before the ids were recorded
        path = Path(job.attempt_dir) / "job.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "job_id": None, "state": "submitting"}))
    listing = fixture("condor_q-json.json").replace('"clusterd-demo"', f'"{batch}"')
    pool.replay.answers["condor_q"] = listing.replace('"ClusterId": 23', '"ClusterId": 41')
    found = pool.driver.find([JobRef(job.token, None, job.attempt_dir) for job in jobs])
    assert found == {job.token: f"41.{i}" for i, job in enumerate(jobs)}
    q = next(call for call in pool.replay.calls if call[0] == "condor_q")
    assert q[1:4] == ["-json", "-constraint", "ClusterdToken =!= undefined"]
    assert pool.replay.count("condor_submit") == 1  # nothing submitted twice


def test_a_site_wrapper_such_as_condor_submit_bid_submits(pool: Pool) -> None:
    jobs = pool.jobs(2, options={"submit_command": ["condor_submit_bid", "25"]})
    seen: list[list[str]] = []
    pool.replay.answers["condor_submit_bid"] = lambda argv: seen.append(argv) or "23.0 - 23.1\n"
    assert sorted(pool.driver.submit(jobs).values()) == ["23.0", "23.1"]
    assert seen[0][:3] == ["condor_submit_bid", "25", "-terse"]


def test_a_refused_submission_says_why_and_leaves_no_record(pool: Pool) -> None:
    jobs = pool.jobs(2)
    pool.replay.answers["condor_submit"] = (1, "", fixture("condor_submit-error.txt"))
    with pytest.raises(DriverError, match="does not accept standard universe"):
        pool.driver.submit(jobs)
    assert not (Path(jobs[0].attempt_dir) / "job.json").exists()


def test_missing_condor_tools_say_what_to_do(tmp_path: Path) -> None:
    def missing(argv: list[str]) -> None:
        raise FileNotFoundError(argv[0])

    driver = HTCondorDriver(run=Replay(condor_submit=missing))
    with pytest.raises(DriverError, match="condor_submit not found: run clusterd on a HTCondor"):
        driver.submit([make_job(tmp_path, 0)])


def sweep(**changes: object) -> SweepSpec:
    fields: dict[str, object] = {
        "name": "sw",
        "command": ("python", "train.py"),
        "source": "sweep.toml",
        "output_dir": "/tmp/runs/sw",
        "driver": "htcondor",
    }
    fields.update(changes)
    return SweepSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"requirements": "Memory > 1\nqueue 5"}, "option 'requirements' must be"),
        ({"extra": ["log = /tmp/x"]}, "option 'extra' must be"),
        ({"universe": "grid"}, "option 'universe' must be"),
        ({"accounting_group": "a b"}, "option 'accounting_group' must be"),
        ({"partition": "gpu"}, "unknown option 'partition'"),
    ],
)
def test_validate_refuses_bad_options_naming_them(table: dict[str, object], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        HTCondorDriver().validate(sweep(driver_options={"htcondor": table}))


def test_validate_refuses_what_htcondor_has_no_word_for() -> None:
    with pytest.raises(UnsupportedResource, match="no partitions"):
        HTCondorDriver().validate(sweep(resources=Resources(partition="gpu")))
    with pytest.raises(UnsupportedResource, match="needs container_image"):
        HTCondorDriver().validate(sweep(driver_options={"htcondor": {"universe": "container"}}))


def test_the_driver_is_registered_through_its_plugin_module() -> None:
    from clusterd.drivers.htcondor import CLUSTERD_API, clusterd_register_drivers

    added: list[type] = []

    class Registry:
        def add(self, cls: type) -> None:
            added.append(cls)

    clusterd_register_drivers(Registry())  # type: ignore[arg-type]
    assert added == [HTCondorDriver] and CLUSTERD_API.startswith(">=1")


EVENTS = [submit_rec, execute_rec, evicted_rec, shadow_rec, held_rec, released_rec]
EVENTS += [terminated_rec, signal_rec, aborted_rec]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(EVENTS), max_size=8), st.lists(st.booleans(), max_size=8))
def test_any_sequence_of_events_gives_a_status_and_never_crashes(
    tmp_path_factory: pytest.TempPathFactory,
    sequence: list[object],
    polls: list[bool],
) -> None:
    pool = Pool(tmp_path_factory.mktemp("pool"))
    refs = pool.submit(pool.jobs(1))
    pool.log.touch()
    for n, make in enumerate(sequence):
        pool.append(make(23, 0))  # type: ignore[operator]
        if n < len(polls) and polls[n]:
            status = pool.driver.poll(refs)[refs[0].token]
            assert status.phase in ("queued", "running", "gone") and status.job_id == "23.0"
    status = pool.driver.poll(refs)[refs[0].token]
    assert status.phase in ("queued", "running", "gone")
    assert pool.replay.count("condor_q") == 0
