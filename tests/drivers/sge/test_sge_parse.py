"""The SGE parsers on real Grid Engine output (recorded, see fixtures/sge/SOURCES.md), and
with hypothesis: whatever qstat/qacct print, the parsers answer or raise DriverError."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.drivers.sge.parse import (
    SgeJob,
    accounting_status,
    arrays_by_name,
    expand_tasks,
    job_status,
    parse_error_reasons,
    parse_qacct,
    parse_qstat_xml,
    parse_qsub_terse,
)
from clusterd.errors import DriverError
from tests.drivers.sge.conftest import FIXTURES


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --------------------------------------------------------------------------- qsub -terse


def test_qsub_terse_gives_the_job_number() -> None:
    assert parse_qsub_terse(fixture("qsub_terse_array.txt")) == "2"  # "2.1-4:1"
    assert parse_qsub_terse(fixture("qsub_terse_single.txt")) == "3"
    assert parse_qsub_terse("5.1-4:1\n") == "5"


@pytest.mark.parametrize(
    "text", ["", 'Your job 5 ("x") has been submitted', "5.1-4", "abc", "5\n6"]
)
def test_qsub_terse_refuses_what_is_not_a_job_id(text: str) -> None:
    with pytest.raises(DriverError, match="not a job id"):
        parse_qsub_terse(text)


# --------------------------------------------------------------------------- qstat -xml


def test_qstat_lists_running_tasks_one_by_one_and_pending_tasks_as_ranges() -> None:
    jobs = parse_qstat_xml(fixture("qstat_xml_mixed.xml"))
    states = {job_id: job.state for job_id, job in jobs.items()}
    assert states == {
        "2.1": "r",
        "2.2": "r",
        "2.3": "qw",  # <tasks>3,4</tasks>
        "2.4": "qw",
        "3": "r",  # no tasks: the job number alone
        "5": "Eqw",
        "4.1": "hqw",  # <tasks>1-3:1</tasks>
        "4.2": "hqw",
        "4.3": "hqw",
    }
    assert jobs["2.1"].host == "vm" and jobs["2.1"].queue == "all.q@vm"
    assert jobs["2.3"].host is None
    assert arrays_by_name(jobs) == {
        "cd.rec.array": "2",
        "cd.rec.single": "3",
        "cd.rec.held": "4",
        "cd.rec.error": "5",
    }


def test_states_map_to_phases_as_a_user_would_expect() -> None:
    phases = {
        job_id: (status.phase, status.reason)
        for job_id, status in (
            (job_id, job_status(job))
            for name in (
                "qstat_xml_mixed.xml",
                "qstat_xml_suspended.xml",
                "qstat_xml_rerun.xml",
                "qstat_xml_deleting.xml",
            )
            for job_id, job in parse_qstat_xml(fixture(name)).items()
        )
    }
    assert phases["2.1"] == ("running", None)
    assert phases["2.3"] == ("queued", None)
    assert phases["4.1"] == ("queued", "held")
    assert phases["5"] == ("gone", "Eqw: error state")
    assert phases["6"] == ("queued", "rescheduled")  # Rq after qmod -rj


@pytest.mark.parametrize(
    ("state", "phase", "reason"),
    [
        ("qw", "queued", None),
        ("hqw", "queued", "held"),
        ("Rq", "queued", "rescheduled"),
        ("r", "running", None),
        ("t", "running", None),
        ("Rr", "running", None),
        ("s", "running", "suspended"),
        ("rs", "running", "suspended"),
        ("S", "running", "suspended by its queue"),
        ("T", "running", "suspended by a threshold"),
        ("dr", "running", "deleted, ending"),
        ("dt", "running", "deleted, ending"),
        ("dqw", "gone", "dqw: deleted"),
        ("Eqw", "gone", "Eqw: error state"),
    ],
)
def test_every_state_letter(state: str, phase: str, reason: str | None) -> None:
    status = job_status(SgeJob("7.1", state, "cd.x", "all.q@n1" if "r" in state else None))
    assert (status.phase, status.reason, status.scheduler_state) == (phase, reason, state)


def test_suspended_and_deleting_recorded_states() -> None:
    suspended = parse_qstat_xml(fixture("qstat_xml_suspended.xml"))
    assert suspended["3"].state == "s"
    assert job_status(suspended["3"]).phase == "running"
    deleting = parse_qstat_xml(fixture("qstat_xml_deleting.xml"))
    assert deleting["3"].state == "dr"


def test_an_empty_queue_is_no_jobs() -> None:
    assert parse_qstat_xml(fixture("qstat_xml_empty.xml")) == {}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<html><body>502 Bad Gateway</body></html>\n\x00\x01",
        "error: commlib error: got select error (Connection refused)",
        fixture("qstat_xml_mixed.xml")[:-40],  # cut short
        "<queue_info></queue_info>",
        fixture("qstat_xml_mixed.xml").replace("<state>r</state>", "<state>RUN</state>"),
        fixture("qstat_xml_mixed.xml").replace("<tasks>3,4</tasks>", "<tasks>3-x</tasks>"),
        fixture("qstat_xml_mixed.xml").replace("<JB_job_number>2<", "<JB_job_number>two<"),
    ],
)
def test_garbage_from_qstat_is_a_driver_error(text: str) -> None:
    with pytest.raises(DriverError):
        parse_qstat_xml(text)


def test_task_ranges() -> None:
    assert expand_tasks("3,4") == [3, 4]
    assert expand_tasks("1-3:1") == [1, 2, 3]
    assert expand_tasks("1-9:4,12") == [1, 5, 9, 12]
    with pytest.raises(DriverError, match="too many"):
        expand_tasks("1-2000000:1")
    with pytest.raises(DriverError, match="empty"):
        expand_tasks("5-3:1")


@given(
    st.lists(
        st.tuples(st.integers(1, 10**6), st.integers(0, 50), st.integers(1, 7)),
        min_size=1,
        max_size=5,
    )
)
def test_task_ranges_expand_to_what_they_name(parts: list[tuple[int, int, int]]) -> None:
    spec = ",".join(f"{first}-{first + span}:{step}" for first, span, step in parts)
    expected = [t for first, span, step in parts for t in range(first, first + span + 1, step)]
    assert expand_tasks(spec) == expected


_STATES = st.sampled_from(["qw", "hqw", "r", "t", "Rr", "Rq", "s", "S", "T", "dr", "Eqw"])


@given(
    st.lists(
        st.tuples(
            st.integers(1, 10**7),
            _STATES,
            st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), max_size=30),
            st.one_of(st.none(), st.lists(st.integers(1, 10**5), min_size=1, max_size=4)),
        ),
        max_size=8,
        unique_by=lambda row: row[0],  # qstat lists a job's tasks of one state together
    )
)
def test_qstat_xml_round_trip(rows: list[tuple[int, str, str, list[int] | None]]) -> None:
    """Whatever jobs qstat lists, in its own XML, the parser lists the same."""
    root = ET.Element("job_info")
    queue_info, job_info = ET.SubElement(root, "queue_info"), ET.SubElement(root, "job_info")
    expected = {}
    for number, state, name, tasks in rows:
        parent = queue_info if "r" in state else job_info
        element = ET.SubElement(parent, "job_list", state="running")
        for tag, value in (("JB_job_number", str(number)), ("JB_name", name), ("state", state)):
            ET.SubElement(element, tag).text = value
        ET.SubElement(element, "queue_name").text = "all.q@n1" if "r" in state else ""
        if tasks:
            ET.SubElement(element, "tasks").text = ",".join(map(str, tasks))
        for job_id in [f"{number}.{t}" for t in tasks] if tasks else [str(number)]:
            expected[job_id] = (state, name.strip())
    jobs = parse_qstat_xml(ET.tostring(root, encoding="unicode"))
    assert {job_id: (job.state, job.name) for job_id, job in jobs.items()} == expected


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_qstat_xml_on_any_text_answers_or_raises_driver_error(text: str) -> None:
    try:
        jobs = parse_qstat_xml(text)
    except DriverError:
        return
    assert isinstance(jobs, dict)


# --------------------------------------------------------------------------- qacct


def test_qacct_of_an_array_has_one_record_per_task() -> None:
    records = parse_qacct(fixture("qacct_array.txt"))
    assert sorted(records) == ["2.1", "2.2", "2.3", "2.4"]
    assert all(r.failed == "0" and r.exit_status == "0" for r in records.values())
    assert {r.name for r in records.values()} == {"cd.rec.array"}
    assert parse_qacct(fixture("qacct_by_name.txt")).keys() == records.keys()
    status = accounting_status(records["2.1"])
    assert (status.phase, status.reason, status.host) == ("gone", None, "vm")


def test_qacct_says_why_a_job_was_killed() -> None:
    deleted = parse_qacct(fixture("qacct_deleted.txt"))["3"]  # taskid undefined
    status = accounting_status(deleted)
    assert status.reason == "failed 100 : assumedly after job; exit status 137 (Killed)"
    assert status.scheduler_state == status.reason  # what the daemon shows
    killed = accounting_status(parse_qacct(fixture("qacct_h_rt_killed.txt"))["9"])
    assert killed.reason is not None and "qmaster enforced h_rt" in killed.reason


def test_qacct_garbage_is_a_driver_error() -> None:
    with pytest.raises(DriverError):
        parse_qacct("<html>502</html>")
    with pytest.raises(DriverError):
        parse_qacct(fixture("qacct_array.txt").replace("jobnumber    2", "jobnumber    x", 1))
    assert parse_qacct("") == {}


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_qacct_on_any_text_answers_or_raises_driver_error(text: str) -> None:
    try:
        records = parse_qacct(text)
    except DriverError:
        return
    assert isinstance(records, dict)


# --------------------------------------------------------------------------- qstat -j


def test_the_error_reason_of_an_eqw_job() -> None:
    reasons = parse_error_reasons(fixture("qstat_j_error.txt"))
    assert reasons == {
        "5": 'can\'t open output file "/nonexistent/dir/out": No such file or directory'
    }
