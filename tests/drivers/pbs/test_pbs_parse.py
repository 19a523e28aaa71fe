"""Reading PBS output: recorded ``qstat``/``qsub`` output of real servers, both dialects.

Fixtures: ``tests/drivers/fixtures/pbs/`` (PBS Pro 2022.1.7 at ALCF Aurora, 19.0.0 at
MetaCentrum and in buildtest's container, Torque captures from fyrd and BatchEuphoria;
``SOURCES.md`` says where each comes from, and which one is composed). hypothesis
checks that nothing -- random text, truncated captures, odd JSON values -- makes a
reader raise anything but ``PbsOutputError``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.drivers.pbs import parse
from clusterd.drivers.pbs.parse import (
    PbsOutputError,
    array_parent,
    job_key,
    job_status,
    parse_max_array_size,
    parse_qstat_json,
    parse_qstat_xml,
    parse_qsub,
    parse_version,
    unknown_job_lines,
)
from clusterd.errors import DriverError
from tests.drivers.pbs.pbs_helpers import recorded

AURORA_DONE = "pbspro/qstat-x-f-F-json-aurora-finished-held.json"
AURORA_WAIT = "pbspro/qstat-x-f-F-json-aurora-queued-held.json"
COMPOSED = "pbspro/qstat-f-F-json.json"
TORQUE = "torque/qstat-x.xml"
JSON_CAPTURES = [
    AURORA_DONE,
    AURORA_WAIT,
    COMPOSED,
    "pbspro/qstat-x-f-F-json-metacentrum-running.json",
    "pbspro/qstat-x-f-F-json-buildtest-held.json",
]
XML_CAPTURES = [TORQUE, "torque/qstat-x-held.xml", "torque/qstat-x-finished.xml"]


def status_of(jobs: dict[str, parse.PbsJob], key: str) -> tuple[str, str | None, str | None]:
    status = job_status(jobs[key])
    return status.phase, status.reason, status.scheduler_state


# --------------------------------------------------------------------------- small replies


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pbspro/qstat-version.txt", ("pbspro", "22.05.11")),
        ("torque/qstat-version.txt", ("torque", "6.1.2")),
        ("torque/qstat-version-2.4.txt", ("torque", "2.4.16")),
    ],
)
def test_version_tells_the_dialect(name: str, expected: tuple[str, str]) -> None:
    assert parse_version(recorded(name)) == expected


def test_an_unknown_version_line_says_how_to_set_the_flavor() -> None:
    with pytest.raises(PbsOutputError, match=r'flavor = "pbspro" or "torque"'):
        parse_version("qstat: command not found\n")


@pytest.mark.parametrize(
    ("name", "job_id"),
    [
        ("pbspro/qsub-array.txt", "4814333[].pbsserver"),
        ("pbspro/qsub-single.txt", "6631289.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"),
        ("torque/qsub-array.txt", "673175[].superserver.stanford.edu"),
    ],
)
def test_qsub_reply_is_the_job_id(name: str, job_id: str) -> None:
    assert parse_qsub(recorded(name)) == job_id


def test_qsub_without_a_job_id_is_an_error_quoting_it() -> None:
    with pytest.raises(PbsOutputError, match="qsub printed no job id: 'Job submitted'"):
        parse_qsub("Job submitted\n")
    with pytest.raises(PbsOutputError, match="no job id"):
        parse_qsub("")


def test_job_ids_lose_their_server_for_matching() -> None:
    assert job_key("1234[7].725ccdf1a5fb") == "1234[7]"
    assert job_key("673175[].superserver.stanford.edu") == "673175[]"
    assert job_key("157.pbs") == "157"
    assert job_key("42") == "42"
    assert array_parent("1234[7].server") == "1234[].server"
    assert array_parent("1235.server") == "1235.server"
    with pytest.raises(PbsOutputError, match="not a PBS job id"):
        job_key("qstat: Unknown Job Id")


def test_server_attributes_give_the_array_cap() -> None:
    assert parse_max_array_size(recorded("pbspro/qstat-Bf-F-json.json")) == 10000
    assert parse_max_array_size('{"Server": {"s": {"server_state": "Active"}}}') is None
    assert parse_max_array_size("") is None


def test_unknown_ids_are_told_from_real_errors() -> None:
    known, other = unknown_job_lines(recorded("pbspro/qdel-unknown.stderr.txt"))
    assert len(known) == 2 and other == []
    known, other = unknown_job_lines(recorded("torque/qstat-unknown.stderr.txt"))
    assert len(known) == 2 and other == []
    torque_qdel = "qdel: nonexistent job id: 9.h\nqdel: Request invalid for state of job 8.h\n"
    assert unknown_job_lines(torque_qdel)[1] == []
    known, other = unknown_job_lines("qdel: Unauthorized Request  1234.server\n")
    assert known == [] and other == ["qdel: Unauthorized Request  1234.server"]


# --------------------------------------------------------------------------- PBS Pro JSON


def test_finished_jobs_of_a_real_server() -> None:
    """PBS Pro 2022.1.7: two jobs killed at their walltime, one finished, one user hold."""
    jobs = parse_qstat_json(recorded(AURORA_DONE))
    assert set(jobs) == {"6617175", "6617182", "6631289", "4905472"}
    phase, reason, state = status_of(jobs, "6617175")
    assert (phase, state) == ("gone", "TIMEOUT")
    assert reason is not None and "exceeded resource walltime" in reason
    assert status_of(jobs, "6631289") == ("gone", None, "F")
    assert jobs["6631289"].exit_status == 0
    assert job_status(jobs["6631289"]).host == "x4313c2s0b0n0"
    assert status_of(jobs, "4905472") == (
        "queued",
        "held: Job held by mmin on Wed May 21 19:15:37 2025",
        "H",
    )


def test_queued_held_and_deleted_jobs_of_a_real_server() -> None:
    jobs = parse_qstat_json(recorded(AURORA_WAIT))
    assert status_of(jobs, "4683812") == (
        "queued",
        "Not Running: Insufficient amount of resource: at_queue",
        "Q",
    )
    # a system hold after 20 failed starts: shown with the server's word for it
    assert status_of(jobs, "4345644") == (
        "queued",
        "held: job held, too many failed attempts to run",
        "H",
    )
    # deleted while queued (substate 91, "... and terminated"), never ran, no Exit_status
    phase, _, state = status_of(jobs, "4846771")
    assert (phase, state) == ("gone", "CANCELLED")
    assert jobs["4846771"].exit_status is None


def test_a_hold_without_comment_says_which_hold() -> None:
    jobs = parse_qstat_json(recorded("pbspro/qstat-x-f-F-json-buildtest-held.json"))
    assert status_of(jobs, "157") == ("queued", "held (user hold)", "H")


def test_a_running_job_reports_its_first_host() -> None:
    jobs = parse_qstat_json(recorded("pbspro/qstat-x-f-F-json-metacentrum-running.json"))
    status = job_status(jobs["12860476"])
    assert (status.phase, status.host) == ("running", "charon24")


def test_array_parent_and_subjobs() -> None:
    jobs = parse_qstat_json(recorded(COMPOSED))
    assert jobs["1234[]"].is_array and jobs["1234[]"].batch == "cd.sw.3f2a9c01"
    assert [status_of(jobs, f"1234[{i}]")[0] for i in range(4)] == [
        "gone",
        "gone",
        "running",
        "queued",
    ]
    # Exit_status as a string (issue 16) reads as a number
    assert jobs["1234[1]"].exit_status == 1
    assert status_of(jobs, "1234[1]") == ("gone", "X (Exit_status 1)", "X")
    assert status_of(jobs, "1234[0]") == ("gone", None, "X")


def test_no_jobs_key_means_no_jobs() -> None:
    """A real server omits ``Jobs`` when nothing matched."""
    assert parse_qstat_json('{"timestamp":1,"pbs_version":"22.05.11","pbs_server":"s"}\n') == {}
    assert parse_qstat_json("") == {}


def test_deleted_by_a_user_names_the_user() -> None:
    text = json.dumps(
        {
            "Jobs": {
                "9.s": {
                    "job_state": "F",
                    "substate": 91,
                    "comment": "Job run at Mon at 10:00 on (n1:ncpus=1) and terminated by bob",
                    "Exit_status": 271,
                }
            }
        }
    )
    text += "\n"
    status = job_status(parse_qstat_json(text)["9"])
    assert status.scheduler_state == "CANCELLED by bob"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("[1, 2]", "not an object"),
        ('{"Jobs": []}', "'Jobs' is not an object"),
        ('{"Jobs": {"1.s": 3}}', "is not an object"),
        ('{"Jobs": {"1.s": {"Job_Name": "x"}}}', "has no job_state"),
        ('{"Jobs": {"not an id": {"job_state": "Q"}}}', "not a PBS job id"),
        ('{"Jobs": {\n', "no readable JSON"),
        ('{"Jobs": {}}', "cut short"),
    ],
)
def test_bad_json_is_a_clear_error(text: str, what: str) -> None:
    if what != "cut short":
        text += "\n"
    with pytest.raises(PbsOutputError, match=what):
        parse_qstat_json(text)


def test_json_cut_after_its_last_brace_is_still_cut_short() -> None:
    """qstat ends its JSON with a newline: the conformance kit's "truncated" output of a
    document whose last line is ``}`` parses, but lacks it."""
    whole = recorded(COMPOSED)
    assert parse_qstat_json(whole)
    with pytest.raises(PbsOutputError, match="cut short"):
        parse_qstat_json(whole.rstrip("\n"))


# --------------------------------------------------------------------------- Torque XML


def test_torque_arrays_match_across_server_names() -> None:
    """The recorded subjobs carry another server (``fruster``) than their array."""
    jobs = parse_qstat_xml(recorded(TORQUE))
    assert set(jobs) == {"665199", "667999", "673174", "673175[]", "673175[19]", "673175[20]"}
    assert jobs["673175[19]"].job_id == "673175[19].fruster.stanford.edu"
    assert status_of(jobs, "673175[19]") == ("gone", None, "C")
    assert status_of(jobs, "667999") == ("queued", None, "Q")
    running = job_status(jobs["665199"])
    assert (running.phase, running.host) == ("running", "node01")
    assert jobs["665199"].exit_status == -3 and jobs["665199"].run_count == 2


def test_torque_held_and_finished() -> None:
    held = parse_qstat_xml(recorded("torque/qstat-x-held.xml"))
    assert status_of(held, "15020227") == ("queued", "held (user hold)", "H")
    done = parse_qstat_xml(recorded("torque/qstat-x-finished.xml"))
    assert status_of(done, "4564045") == ("gone", None, "C")


def test_torque_variables_carry_the_batch_name() -> None:
    text = (
        "<Data><Job><Job_Id>5[].h</Job_Id><job_state>Q</job_state>"
        "<Variable_List>PBS_O_HOME=/h,CLUSTERD_BATCH=cd.sw.0a1b2c3d,PBS_O_SHELL=/bin/sh"
        "</Variable_List></Job></Data>"
    )
    assert parse_qstat_xml(text)["5[]"].batch == "cd.sw.0a1b2c3d"


def _variable_by_split(variables: str, name: str) -> str | None:
    """The reading rule spelled out: items split at commas without a backslash before
    them, the first ``name=value`` item wins, blanks around key and value dropped."""
    for item in re.split(r"(?<!\\),", variables):
        key, sep, value = item.partition("=")
        if sep and key.strip() == name:
            return value.strip() or None
    return None


@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(["CLUSTERD_BATCH", " CLUSTERD_BATCH ", "XCLUSTERD_BATCH", "PATH", ""]),
            st.sampled_from(["=", "", " = "]),
            st.text(alphabet="ab,\\= \t", max_size=8),
        ),
        max_size=5,
    )
)
@settings(max_examples=200, deadline=None)
def test_a_torque_variable_is_read_by_the_split_rule(items: list[tuple[str, str, str]]) -> None:
    """The one-search reading of ``Variable_List`` (fast at 10,000 jobs) agrees with
    splitting the list, whatever commas, backslashes and blanks it holds."""
    text = ",".join(key + sep + value for key, sep, value in items)
    expected = _variable_by_split(text, "CLUSTERD_BATCH")
    assert parse._variable(text, "CLUSTERD_BATCH") == expected


def test_torque_elements_not_read_do_not_matter() -> None:
    """Only the elements the driver reads are looked at: nested or unknown ones around
    them (resources_used, a future attribute) change nothing."""
    text = (
        "<Data><Job><Job_Id>5[2].h</Job_Id><resources_used><mem>1kb</mem></resources_used>"
        "<job_state>R</job_state><new_attribute><x>1</x></new_attribute>"
        "<exec_host>n1/0</exec_host><Job_Name>cd.sw.0a1b2c3d-2</Job_Name></Job></Data>\n"
    )
    job = parse_qstat_xml(text)["5[2]"]
    assert (job.state, job.host, job.name, job.key) == ("R", "n1", "cd.sw.0a1b2c3d-2", "5[2]")


def test_parsing_leaves_the_garbage_collector_as_it_was() -> None:
    """The readers pause garbage collection while they build (a poll of 10,000 jobs is
    ~0.2 s faster): it is on again afterwards, after an error too, and stays off for a
    caller that had turned it off."""
    assert gc.isenabled()
    parse_qstat_xml(recorded(TORQUE))
    parse_qstat_json(recorded(COMPOSED))
    assert gc.isenabled()
    with pytest.raises(PbsOutputError):
        parse_qstat_xml("<Data><Job>")
    with pytest.raises(PbsOutputError):
        parse_qstat_json("{")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_qstat_xml(recorded(TORQUE))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_torque_xml_refuses_a_dtd() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><Data>&b;</Data>'
    )
    with pytest.raises(PbsOutputError, match="DTD or entity"):
        parse_qstat_xml(bomb)


def test_torque_xml_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "MAX_OUTPUT_BYTES", 100)
    with pytest.raises(PbsOutputError, match="more than 100 bytes"):
        parse_qstat_xml(recorded(TORQUE))
    with pytest.raises(PbsOutputError, match="more than 100 bytes"):
        parse_qstat_json(recorded(COMPOSED))


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("<Data><Job>", "no readable XML"),
        ("<Jobs/>", "expected <Data>"),
        ("<Data><Job><job_state>Q</job_state></Job></Data>", "without <Job_Id>"),
    ],
)
def test_bad_xml_is_a_clear_error(text: str, what: str) -> None:
    with pytest.raises(PbsOutputError, match=what):
        parse_qstat_xml(text)


# --------------------------------------------------------------------------- hypothesis

#: CLUSTERD_STRESS=1 runs the long variants
EXAMPLES = 1000 if os.environ.get("CLUSTERD_STRESS") else 80
READERS = [parse_qstat_json, parse_qstat_xml, parse_version, parse_qsub, parse_max_array_size]


@given(text=st.text(max_size=300), reader=st.sampled_from(READERS))
@settings(max_examples=EXAMPLES * 2, deadline=None)
def test_any_text_is_read_or_refused_clearly(text: str, reader: object) -> None:
    with contextlib.suppress(PbsOutputError):
        reader(text)  # type: ignore[operator]


@given(data=st.data())
@settings(max_examples=EXAMPLES, deadline=None)
def test_truncated_captures_are_read_or_refused_clearly(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(JSON_CAPTURES + XML_CAPTURES))
    text = recorded(name)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    reader = parse_qstat_xml if name.endswith(".xml") else parse_qstat_json
    try:
        jobs = reader(text[:cut])
    except PbsOutputError:
        return
    for job in jobs.values():
        assert job_status(job).phase in ("queued", "running", "gone")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ATTRS = [
    "job_state",
    "Exit_status",
    "substate",
    "comment",
    "Hold_Types",
    "Variable_List",
    "exec_host",
    "run_count",
    "Job_Name",
    "Job_Owner",
]


@given(
    job_id=st.sampled_from(["1.s", "12[3].s", "12[].s", "7", "x.y", ""]),
    attrs=st.dictionaries(st.sampled_from(ATTRS), JSON_VALUES, max_size=6),
)
@settings(max_examples=EXAMPLES, deadline=None)
def test_odd_attribute_values_are_read_or_refused_clearly(job_id: str, attrs: dict) -> None:
    text = json.dumps({"Jobs": {job_id: attrs}}) + "\n"
    try:
        jobs = parse_qstat_json(text)
    except PbsOutputError:
        return
    for job in jobs.values():
        status = job_status(job)
        assert status.phase in ("queued", "running", "gone")
        assert job.exit_status is None or isinstance(job.exit_status, int)


def test_output_errors_are_driver_errors() -> None:
    """The daemon handles DriverError (backs off, asks again): the readers raise only that."""
    assert issubclass(PbsOutputError, DriverError)
