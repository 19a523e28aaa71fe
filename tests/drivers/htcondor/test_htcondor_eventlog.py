"""The user event log reader: recorded real records, read incrementally, never lost or
repeated, and garbage or torn records never crash it (hypothesis).

``fixtures/htcondor/event-log.txt`` is real HTCondor text (SOURCES.md); where the
``htcondor`` wheel is installed its own ``JobEventLog`` parses the same file and must
agree with ours, event by event.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterd.drivers.htcondor.eventlog import (
    ABORTED,
    EVICTED,
    EXECUTE,
    HELD,
    RELEASED,
    SHADOW_EXCEPTION,
    SUBMIT,
    TERMINATED,
    Event,
    LogReader,
    Tracks,
    parse_records,
)
from clusterd.errors import DriverError
from tests.drivers.htcondor.htc_helpers import FIXTURES, for_job, record, records

LOG = FIXTURES / "event-log.txt"
STRESS = os.environ.get("CLUSTERD_STRESS") == "1"


def all_events() -> list[Event]:
    events, consumed, skipped = parse_records(LOG.read_bytes())
    assert consumed == LOG.stat().st_size and skipped == 0
    return events


def test_the_recorded_log_gives_every_event_with_what_the_driver_needs() -> None:
    events = all_events()
    assert len(events) == 43
    by = {(e.job_id, e.code): e for e in events}
    assert by[("9231.0", TERMINATED)].return_value == 1
    assert by[("9230.0", TERMINATED)].return_value == 0
    assert by[("180158.0", TERMINATED)].signal == 11
    assert by[("180158.0", TERMINATED)].return_value is None
    assert by[("9230.0", EXECUTE)].host == "test02"  # from "SlotName: slot1_1@test02"
    assert by[("180158.0", EXECUTE)].host == "128.105.167.40"  # old log: the address
    held = by[("9240.0", HELD)]
    assert held.reason == "The job exceeded allowed execute duration of 1:00:00"
    assert (held.hold_code, held.hold_subcode) == (47, 0)
    assert by[("9240.0", EVICTED)].hold_code == 47  # the eviction a hold makes
    assert by[("9229.0", EVICTED)].hold_code is None  # a plain vacate
    assert by[("781.0", SHADOW_EXCEPTION)].reason.startswith("Error from slot1_2@bat: FATAL")
    assert by[("9241.0", RELEASED)].reason == "via condor_release (by user testuser)"
    assert by[("9229.0", ABORTED)].reason.startswith("DAG Abort")
    assert by[("180158.0", ABORTED)].reason is None  # "Job was aborted by the user."


def test_htcondors_own_reader_agrees_event_by_event() -> None:
    htcondor2 = pytest.importorskip("htcondor2")
    theirs = []
    for ev in htcondor2.JobEventLog(str(LOG)).events(stop_after=0):
        item, code = dict(ev.items()), int(ev.type)
        value = item.get("ReturnValue") if code == TERMINATED else None
        theirs.append((ev.cluster, ev.proc, code, value, item.get("HoldReasonCode")))
    ours = [
        (e.cluster, e.proc, e.code, e.return_value, e.hold_code if e.code == HELD else None)
        for e in all_events()
    ]
    assert ours == theirs


def test_the_json_format_gives_the_same_events(tmp_path: Path) -> None:
    """A JSON-format log (no real one was found to record, SOURCES.md) rendered from the
    recorded events' own ClassAds with HTCondor's JSON unparser, as the writer does
    (``write_user_log.cpp``: the event ad, then a newline)."""
    htcondor2 = pytest.importorskip("htcondor2")
    classad2 = pytest.importorskip("classad2")
    text = "".join(
        classad2.ClassAd(dict(ev.items())).printJson() + "\n"
        for ev in htcondor2.JobEventLog(str(LOG)).events(stop_after=0)
    )
    events, consumed, skipped = parse_records(text.encode())
    assert (consumed, skipped) == (len(text.encode()), 0)
    key = [(e.job_id, e.code, e.return_value, e.signal, e.hold_code) for e in events]
    want = [(e.job_id, e.code, e.return_value, e.signal, e.hold_code) for e in all_events()]
    assert key == want
    assert next(e for e in events if e.code == HELD).reason == (
        "The job exceeded allowed execute duration of 1:00:00"
    )
    assert next(e for e in events if e.code == EXECUTE).host == "test02"


def test_a_partial_last_record_waits_for_the_rest() -> None:
    data = LOG.read_bytes()
    cut = data.index(b"012 (9240")  # in the middle of the hold's record
    events, consumed, _ = parse_records(data[: cut + 30])
    assert consumed == cut and events[-1].code == EVICTED
    rest, more, _ = parse_records(data[consumed:])
    assert [e.code for e in rest][:1] == [HELD]
    assert consumed + more == len(data)


def test_the_reader_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    reader = LogReader()
    assert reader.read(str(path)) == []  # not there yet: nothing happened
    recs = records()
    path.write_text(recs[0])
    assert [e.code for e in reader.read(str(path))] == [SUBMIT]
    assert reader.read(str(path)) == []
    assert reader.reads == 1  # nothing appended: not even read
    with path.open("a") as fh:
        fh.write(recs[1] + recs[2][:40])
    assert [e.code for e in reader.read(str(path))] == [SUBMIT]  # 9230's submit
    with path.open("a") as fh:
        fh.write(recs[2][40:])
    assert [e.code for e in reader.read(str(path))] == [EXECUTE]
    assert reader.offset(str(path)) == path.stat().st_size


def test_a_replaced_or_truncated_log_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    reader = LogReader()
    recs = records()
    path.write_text("".join(recs[:4]))
    assert len(reader.read(str(path))) == 4
    path.write_text(recs[0])  # shorter: truncated and rewritten
    assert len(reader.read(str(path))) == 1
    assert set(reader.tracks(str(path)).jobs) == {"9229.0"}


def test_an_unreadable_log_is_a_driver_error(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.mkdir()  # reading a directory fails
    with pytest.raises(DriverError, match="cannot read HTCondor event log"):
        LogReader().read(str(path))


def test_tracks_follow_a_job_through_hold_release_and_eviction() -> None:
    tracks = Tracks()
    for event in all_events():
        tracks.apply(event)
    jobs = tracks.jobs
    assert jobs["9230.0"].state == "ended" and jobs["9230.0"].return_value == 0
    timed_out = jobs["9240.0"]
    assert (timed_out.state, timed_out.hold_code, timed_out.cause) == ("held", 47, "held")
    removed = jobs["9241.0"]  # held by the user, released, then condor_rm'd
    assert (removed.state, removed.releases, removed.cause) == ("removed", 1, "held")
    evicted = jobs["9229.0"]  # vacated while running, then aborted
    assert (evicted.state, evicted.cause, evicted.starts) == ("removed", "interrupted", 1)
    flapping = jobs["781.0"]
    assert flapping.state == "idle" and flapping.interrupted.startswith("shadow exception")


# --------------------------------------------------------------------------- hypothesis

RECORDS = [r.encode() for r in records()]
GARBAGE = st.binary(max_size=60).filter(lambda b: b"...\n" not in b and not b[:1].isdigit())


@settings(max_examples=300 if STRESS else 60, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    events, consumed, skipped = parse_records(data)
    assert 0 <= consumed <= len(data)
    assert skipped >= 0 and all(e.cluster >= 0 and e.proc >= 0 for e in events)


@settings(max_examples=300 if STRESS else 60, deadline=None)
@given(st.lists(st.sampled_from(RECORDS), min_size=1, max_size=12), st.data())
def test_truncated_at_any_byte_the_records_so_far_are_a_prefix(
    chosen: list[bytes], data: st.DataObject
) -> None:
    whole = b"".join(chosen)
    cut = data.draw(st.integers(0, len(whole)))
    events, consumed, _ = parse_records(whole[:cut])
    full, _, _ = parse_records(whole)
    assert events == full[: len(events)]
    complete = sum(1 for end in _ends(chosen) if end <= cut)
    assert len(events) == complete  # every complete record, no partial one
    rest, _, _ = parse_records(whole[consumed:])
    assert events + rest == full  # resuming at the offset loses and repeats nothing


def _ends(chosen: list[bytes]) -> list[int]:
    ends, pos = [], 0
    for rec in chosen:
        pos += len(rec)
        ends.append(pos)
    return ends


@settings(
    max_examples=200 if STRESS else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(RECORDS), st.one_of(st.just(b""), GARBAGE.map(lambda g: g + b"\n"))
        ),
        min_size=1,
        max_size=10,
    )
)
def test_garbage_between_records_is_skipped_and_the_records_kept(
    parts: list[tuple[bytes, bytes]],
) -> None:
    data = b"".join(rec + junk + (b"...\n" if junk else b"") for rec, junk in parts)
    events, consumed, _ = parse_records(data)
    want = parse_records(b"".join(rec for rec, _ in parts))[0]
    assert events == want
    assert consumed == len(data)


@settings(max_examples=100 if STRESS else 15, deadline=None)
@given(st.lists(st.sampled_from(RECORDS), min_size=1, max_size=10), st.data())
def test_the_reader_fed_in_random_chunks_sees_every_record_once(
    tmp_path_factory: pytest.TempPathFactory, chosen: list[bytes], data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("log") / "events.log"
    whole = b"".join(chosen)
    reader = LogReader()
    seen: list[Event] = []
    pos = 0
    with path.open("wb") as fh:
        while pos < len(whole):
            step = data.draw(st.integers(1, max(1, len(whole) - pos)))
            fh.write(whole[pos : pos + step])
            fh.flush()
            pos += step
            seen += reader.read(str(path))
    assert seen == parse_records(whole)[0]


def test_json_garbage_and_torn_objects_are_skipped() -> None:
    good = json.dumps({"EventTypeNumber": 0, "Cluster": 5, "Proc": 1}, indent=2)
    data = (good + '\n{\n  "Cluster": \n}\n' + good + '\n{\n  "Event').encode()
    events, consumed, skipped = parse_records(data)
    assert [e.job_id for e in events] == ["5.1", "5.1"] and skipped == 1
    assert data[consumed:] == b'{\n  "Event'


# --------------------------------------------------------------------------- torn writes


def test_a_record_cut_off_mid_line_does_not_hide_the_next_jobs_end(tmp_path: Path) -> None:
    """A write cut short without its newline (the writer crashed, the disk filled): the
    next record's header joins that line; the reader still sees the job end."""
    path = tmp_path / "events.log"
    submit, execute = for_job(record(SUBMIT), 23, 0), for_job(record(EXECUTE), 23, 0)
    path.write_text(submit + execute)
    reader = LogReader()
    reader.read(str(path))
    assert reader.tracks(str(path)).jobs["23.0"].state == "running"
    with path.open("ab") as fh:
        fh.write(b"005 (001.000.000) 2026-")  # no newline
    assert reader.read(str(path)) == []
    with path.open("ab") as fh:
        fh.write(for_job(record(TERMINATED), 23, 0).encode())
    (ended,) = reader.read(str(path))
    assert (ended.job_id, ended.code) == ("23.0", TERMINATED)
    assert reader.tracks(str(path)).jobs["23.0"].state == "ended"
    assert reader.offset(str(path)) == path.stat().st_size and reader.skipped(str(path)) == 1


def test_a_json_record_cut_off_mid_line_does_not_hide_the_next() -> None:
    good = json.dumps({"EventTypeNumber": 5, "Cluster": 5, "Proc": 1}, indent=2)
    nested = json.dumps({"EventTypeNumber": 0, "Cluster": 6, "Ad": {"A": 1}}, indent=2)
    data = (good + '\n{\n  "Clus' + good + "\n" + nested + "\n").encode()
    events, consumed, skipped = parse_records(data)
    assert [e.job_id for e in events] == ["5.1", "5.1", "6.0"] and skipped == 1
    assert consumed == len(data)


@settings(max_examples=300 if STRESS else 60, deadline=None)
@given(
    st.lists(st.sampled_from(RECORDS), max_size=5),
    st.sampled_from(RECORDS),
    st.lists(st.sampled_from(RECORDS), min_size=1, max_size=5),
    st.data(),
)
def test_a_record_cut_at_any_byte_never_loses_the_records_after_it(
    before: list[bytes], torn: bytes, after: list[bytes], data: st.DataObject
) -> None:
    """Records, one record cut at any byte (no newline after the cut), then valid
    records: every record but the cut one is read, and the whole input is consumed."""
    cut = data.draw(st.integers(0, len(torn) - 1))
    whole = b"".join(before) + torn[:cut] + b"".join(after)
    events, consumed, _ = parse_records(whole)
    want = parse_records(b"".join(before))[0] + parse_records(b"".join(after))[0]
    assert events == want
    assert consumed == len(whole)
