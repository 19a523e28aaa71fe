"""``PbsDriver`` over its commands answered with recorded PBS output (``Replay``).

What a user would notice: one ``qsub`` per array and one ``qstat`` per poll whatever the
number of jobs; held jobs shown with the server's reason; a job PBS reran ends its
attempt instead of running it twice; ids the server forgot are no error; the dialect
read once. The end-to-end tests against stateful stand-in commands are elsewhere
(``test_pbs_e2e.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.batch import records
from clusterd.drivers.pbs import PbsDriver
from clusterd.drivers.pbs.driver import DEFAULT_MAX_ARRAY_SIZE
from clusterd.errors import DriverError
from clusterd.node import names
from clusterd.plugins import build_plugin_manager, load_drivers
from clusterd.spec.model import Resources
from tests.drivers.pbs.pbs_helpers import Replay, make_job, recorded

SERVER = "725ccdf1a5fb"
ARRAY = f"1234[].{SERVER}"
PLAIN = f"1235.{SERVER}"
COMPOSED = recorded("pbspro/qstat-f-F-json.json")
SERVER_ATTRS = recorded("pbspro/qstat-Bf-F-json.json")


def pbspro(**answers: object) -> Replay:
    return Replay(
        {
            "qstat --version": recorded("pbspro/qstat-version.txt"),
            "qstat -B": SERVER_ATTRS,
            "qstat -f": COMPOSED,
            "qsub": f"{ARRAY}\n",
            **answers,  # type: ignore[dict-item]
        }
    )


def torque(**answers: object) -> Replay:
    return Replay(
        {
            "qstat --version": recorded("torque/qstat-version.txt"),
            "qstat -x": recorded("torque/qstat-x.xml"),
            "qsub": recorded("torque/qsub-array.txt"),
            **answers,  # type: ignore[dict-item]
        }
    )


def ref(job: JobRequest, job_id: str | None) -> JobRef:
    return JobRef(job.token, job_id, job.attempt_dir)


def job_file(job: JobRequest) -> dict:
    return json.loads((Path(job.attempt_dir) / names.JOB).read_text())


# --------------------------------------------------------------------------- dialect


def test_the_dialect_is_read_once(tmp_path: Path) -> None:
    run = pbspro()
    driver = PbsDriver(run=run)
    driver.submit([make_job(tmp_path, 0), make_job(tmp_path, 1)])
    driver.submit([make_job(tmp_path, 2), make_job(tmp_path, 3)])
    driver.poll([ref(make_job(tmp_path, 0), f"1234[0].{SERVER}")])
    assert [call for call in run.calls if call[:2] == ["qstat", "--version"]] == [
        ["qstat", "--version"]
    ]
    assert driver.flavor() == "pbspro"


def test_the_flavor_option_skips_detection(tmp_path: Path) -> None:
    run = torque(**{"qstat --version": RuntimeError("must not be asked")})
    driver = PbsDriver({"flavor": "torque"}, run=run)
    driver.submit([make_job(tmp_path, 0), make_job(tmp_path, 1)])
    (qsub,) = run.of("qsub")
    assert qsub[qsub.index("-t") + 1] == "0-1"
    assert "nodes=1:ppn=1" in qsub


def test_an_unknown_qstat_is_a_clear_error(tmp_path: Path) -> None:
    driver = PbsDriver(run=Replay({"qstat --version": "qstat (GNU) 1.0\n"}))
    with pytest.raises(DriverError, match="neither PBS Pro nor Torque"):
        driver.submit([make_job(tmp_path, 0)])


# --------------------------------------------------------------------------- submit


def test_one_qsub_per_array(tmp_path: Path) -> None:
    run = pbspro()
    jobs = [make_job(tmp_path, i, resources=Resources(cpus=2, time_seconds=600)) for i in range(3)]
    ids = PbsDriver(run=run).submit(jobs)
    assert ids == {job.token: f"1234[{i}].{SERVER}" for i, job in enumerate(jobs)}
    (qsub,) = run.of("qsub")
    assert qsub[:5] == ["qsub", "-r", "y", "-J", "0-2"]
    assert "select=1:ncpus=2" in qsub and "walltime=00:11:00" in qsub
    batch = qsub[qsub.index("-N") + 1]
    assert qsub[qsub.index("-v") + 1] == f"CLUSTERD_BATCH={batch}"
    assert job_file(jobs[2])["job_id"] == f"1234[2].{SERVER}"
    script = Path(qsub[-1]).read_text()
    assert 'case "${PBS_ARRAY_INDEX:-}" in' in script


def test_one_task_is_a_plain_job(tmp_path: Path) -> None:
    run = pbspro(qsub=recorded("pbspro/qsub-single.txt"))
    job = make_job(tmp_path, 0)
    ids = PbsDriver(run=run).submit([job])
    plain = "6631289.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
    assert ids == {job.token: plain}
    (qsub,) = run.of("qsub")
    assert "-J" not in qsub


def test_arrays_split_at_the_servers_max_array_size(tmp_path: Path) -> None:
    answers = iter([f"{ARRAY}\n", f"{PLAIN}\n"])
    small = SERVER_ATTRS.replace('"max_array_size": 10000', '"max_array_size": 2')
    run = pbspro(**{"qstat -B": small, "qsub": lambda argv: next(answers)})
    jobs = [make_job(tmp_path, i) for i in range(3)]
    ids = PbsDriver(run=run).submit(jobs)
    first, second = run.of("qsub")
    assert first[3:5] == ["-J", "0-1"]
    assert "-J" not in second  # the third task alone: a plain job
    assert sorted(ids.values()) == sorted([f"1234[0].{SERVER}", f"1234[1].{SERVER}", PLAIN])


def test_without_server_attributes_the_default_cap_holds(tmp_path: Path) -> None:
    run = pbspro(**{"qstat -B": (1, "", "qstat: cannot connect to server s (errno=111)\n")})
    assert PbsDriver(run=run).scheduler_max_tasks() == DEFAULT_MAX_ARRAY_SIZE


def test_a_refused_submission_leaves_nothing_to_find(tmp_path: Path) -> None:
    run = pbspro(qsub=(2, "", recorded("pbspro/qsub-J-0-0.stderr.txt")))
    jobs = [make_job(tmp_path, 0), make_job(tmp_path, 1)]
    with pytest.raises(DriverError, match="qsub failed: qsub: illegal -J value"):
        PbsDriver(run=run).submit(jobs)
    assert not (Path(jobs[0].attempt_dir) / names.JOB).exists()


# --------------------------------------------------------------------------- poll


def composed_refs(tmp_path: Path) -> list[JobRef]:
    """Four subjobs of array 1234 and the plain held job 1235, as the composed capture."""
    jobs = [make_job(tmp_path, i) for i in range(5)]
    ids = [f"1234[{i}].{SERVER}" for i in range(4)] + [PLAIN]
    return [ref(job, job_id) for job, job_id in zip(jobs, ids, strict=True)]


def test_one_qstat_per_poll_names_the_arrays(tmp_path: Path) -> None:
    run = pbspro()
    driver = PbsDriver({"flavor": "pbspro"}, run=run)
    refs = composed_refs(tmp_path)
    statuses = driver.poll(refs)
    assert run.of("qstat") == [["qstat", "-f", "-F", "json", "-x", "-t", ARRAY, PLAIN]]
    phases = [statuses[r.token].phase for r in refs]
    assert phases == ["gone", "gone", "running", "queued", "queued"]
    held = statuses[refs[4].token]
    assert held.reason == "held: Job held by pbsuser on Tue Oct 11 08:14:02 2022"
    assert statuses[refs[3].token].reason == "Not Running: Insufficient amount of resource: ncpus"
    assert statuses[refs[1].token].reason == "X (Exit_status 1)"
    assert statuses[refs[2].token].host == SERVER


def test_ids_the_server_forgot_are_gone_not_an_error(tmp_path: Path) -> None:
    forgotten = f"1236.{SERVER}"
    stderr = f"qstat: Unknown Job Id {forgotten}\n"
    run = pbspro(**{"qstat -f": (153, COMPOSED, stderr)})
    refs = [*composed_refs(tmp_path), ref(make_job(tmp_path, 9), forgotten)]
    statuses = PbsDriver({"flavor": "pbspro"}, run=run).poll(refs)
    assert statuses[refs[-1].token].phase == "gone"
    assert "not in qstat any more" in (statuses[refs[-1].token].reason or "")
    assert statuses[refs[2].token].phase == "running"


def test_a_damaged_job_id_is_not_sent_to_qstat(tmp_path: Path) -> None:
    run = pbspro()
    refs = [*composed_refs(tmp_path), ref(make_job(tmp_path, 8), "garbage id")]
    statuses = PbsDriver({"flavor": "pbspro"}, run=run).poll(refs)
    assert statuses[refs[-1].token].reason == "not a PBS job id: 'garbage id'"
    assert run.of("qstat") == [["qstat", "-f", "-F", "json", "-x", "-t", ARRAY, PLAIN]]


def test_a_failing_qstat_is_a_driver_error(tmp_path: Path) -> None:
    run = pbspro(**{"qstat -f": (2, "", "qstat: cannot connect to server s (errno=111)\n")})
    with pytest.raises(DriverError, match="qstat failed: qstat: cannot connect"):
        PbsDriver({"flavor": "pbspro"}, run=run).poll(composed_refs(tmp_path))


def test_torque_poll_matches_subjobs_on_another_server(tmp_path: Path) -> None:
    run = torque()
    driver = PbsDriver(run=run)
    job = make_job(tmp_path, 19)
    job_id = driver.task_job_id("673175[].superserver.stanford.edu", 19)
    statuses = driver.poll([ref(job, job_id)])
    assert run.of("qstat")[-1] == ["qstat", "-x", "-t", "673175[].superserver.stanford.edu"]
    assert statuses[job.token].phase == "gone"
    assert statuses[job.token].job_id == "673175[19].superserver.stanford.edu"


def test_a_rerun_job_ends_its_attempt(tmp_path: Path) -> None:
    """Subjob 3 is queued, but its attempt started already: PBS reran it (node failure).
    The attempt ends ``requeued`` and the subjob is deleted, so it cannot run twice."""
    run = pbspro(qdel="")
    refs = composed_refs(tmp_path)
    (Path(refs[3].attempt_dir) / "pbs_job_id").write_text(f"{ARRAY}_3\n")
    statuses = PbsDriver({"flavor": "pbspro"}, run=run).poll(refs)
    status = statuses[refs[3].token]
    assert (status.phase, status.scheduler_state) == ("gone", "REQUEUED")
    assert (Path(refs[3].attempt_dir) / names.REQUEUED).exists()
    assert run.of("qdel") == [["qdel", f"1234[3].{SERVER}"]]
    assert statuses[refs[4].token].phase == "queued"  # held, never started: left alone


# --------------------------------------------------------------------------- cancel, find


def test_one_qdel_and_forgotten_ids_are_no_error(tmp_path: Path) -> None:
    run = pbspro(qdel=(35, "", recorded("pbspro/qdel-unknown.stderr.txt")))
    driver = PbsDriver({"flavor": "pbspro"}, run=run)
    refs = composed_refs(tmp_path)
    driver.cancel(refs)
    assert run.of("qdel") == [["qdel", *sorted(r.job_id or "" for r in refs)]]


def test_a_refused_qdel_is_a_driver_error(tmp_path: Path) -> None:
    run = pbspro(qdel=(159, "", f"qdel: Unauthorized Request  {PLAIN}\n"))
    with pytest.raises(DriverError, match="qdel failed: qdel: Unauthorized Request"):
        PbsDriver({"flavor": "pbspro"}, run=run).cancel(composed_refs(tmp_path))


def test_find_after_a_crash_by_batch_name(tmp_path: Path) -> None:
    """The daemon died between qsub and recording the id: job.json names the batch, and
    one qstat of every job finds the array by ``CLUSTERD_BATCH``."""
    jobs = [make_job(tmp_path, i) for i in range(4)]
    driver = PbsDriver({"flavor": "pbspro"}, run=(run := pbspro()))
    records.record_tasks([[j] for j in jobs], "pbs", "cd.sw.3f2a9c01", None, driver.task_job_id)
    found = driver.find([ref(job, None) for job in jobs])
    assert found == {job.token: f"1234[{i}].{SERVER}" for i, job in enumerate(jobs)}
    assert run.of("qstat") == [["qstat", "-f", "-F", "json", "-x", "-t"]]


def test_task_ids_of_arrays_and_plain_jobs() -> None:
    driver = PbsDriver({"flavor": "pbspro"}, run=pbspro())
    assert driver.task_job_id(ARRAY, 7) == f"1234[7].{SERVER}"
    assert driver.task_job_id(PLAIN, 0) == PLAIN
    with pytest.raises(DriverError, match="no array"):
        driver.task_job_id(PLAIN, 1)


def test_registered_as_a_plugin() -> None:
    drivers = load_drivers(build_plugin_manager(["clusterd.drivers.pbs"], entry_points=False))
    assert drivers.get("pbs") is PbsDriver
