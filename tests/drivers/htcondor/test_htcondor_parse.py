"""What condor_submit, condor_q and condor_history print, read back; bad output is a clear
DriverError, never a crash (hypothesis). Fixtures: ``fixtures/htcondor`` (SOURCES.md)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.drivers.htcondor.parse import (
    AD_ATTRIBUTES,
    JobAd,
    constraint_for,
    parse_ads,
    parse_submit_terse,
)
from clusterd.errors import DriverError
from tests.drivers.htcondor.htc_helpers import fixture

STRESS = os.environ.get("CLUSTERD_STRESS") == "1"


def test_the_terse_reply_gives_the_cluster_and_its_job_count() -> None:
    assert parse_submit_terse(fixture("condor_submit-terse.txt")) == ("23", 10)
    assert parse_submit_terse("7.0 - 7.0\n") == ("7", 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        fixture("condor_submit.txt"),  # the verbose reply: -terse was not used
        fixture("condor_submit-error.txt"),
        "23.0 - 24.3\n",  # two clusters from one description: not ours
        "23.0 - 23.9\n24.0 - 24.1\n",
        "23.5 - 23.2\n",
    ],
)
def test_any_other_reply_is_refused_quoting_it(text: str) -> None:
    with pytest.raises(DriverError, match="unexpected condor_submit -terse reply"):
        parse_submit_terse(text)


def test_condor_q_json_gives_each_jobs_state_and_hold() -> None:
    ads = parse_ads(fixture("condor_q-json.json"))
    assert sorted(ads) == [f"23.{i}" for i in range(6)]
    assert [ads[f"23.{i}"].status_name for i in range(6)] == [
        "IDLE", "RUNNING", "HELD", "HELD", "SUSPENDED", "TRANSFERRING_OUTPUT",
    ]  # fmt: skip
    held = ads["23.2"]
    assert (held.hold_code, held.hold_subcode, held.token, held.batch) == (
        47, 0, "t2", "clusterd-demo",
    )  # fmt: skip
    assert held.hold_reason == "The job exceeded allowed execute duration of 1:00:00"


def test_condor_history_json_gives_exit_codes_signals_and_removals() -> None:
    ads = parse_ads(fixture("condor_history-json.json"), "condor_history")
    assert (ads["23.6"].exit_code, ads["23.7"].exit_code) == (0, 3)
    assert (ads["23.8"].exit_code, ads["23.8"].exit_signal) == (None, 9)
    assert ads["23.9"].status_name == "REMOVED"
    assert ads["23.9"].remove_reason == "via condor_rm (by user testuser)"


def test_no_jobs_is_no_output_at_all() -> None:
    assert fixture("condor_q-empty.txt") == ""
    assert parse_ads(fixture("condor_q-empty.txt")) == {}


def test_htcondors_own_sample_list_parses() -> None:
    ads = parse_ads(fixture("classad-json-unittest.json"))
    assert {k: v.status for k, v in ads.items()} == {"1.2": 5, "2.1": 3}


@pytest.mark.parametrize("text", ["[", "{}", '"x"', "-- Schedd: x : <1.2.3.4>"])
def test_output_that_is_not_an_ad_list_is_a_driver_error(text: str) -> None:
    with pytest.raises(DriverError, match="condor_q -json"):
        parse_ads(text)


def test_the_constraint_is_a_classad_expression_that_picks_our_batches() -> None:
    classad2 = pytest.importorskip("classad2")
    expr = classad2.ExprTree(constraint_for(['cd.a"b.1', "cd.sw.2"]))
    mine = classad2.ClassAd({"ClusterdToken": "t", "JobBatchName": 'cd.a"b.1'})
    other = classad2.ClassAd({"ClusterdToken": "t", "JobBatchName": "cd.sw.3"})
    foreign = classad2.ClassAd({"JobBatchName": "cd.sw.2"})
    assert expr.eval(mine) is True
    assert expr.eval(other) is False and expr.eval(foreign) is False


def test_the_attributes_asked_for_include_what_is_read() -> None:
    assert {"ClusterId", "ProcId", "JobStatus", "HoldReasonCode", "ClusterdToken"} <= set(
        AD_ATTRIBUTES
    )


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
AD = st.dictionaries(st.sampled_from([*AD_ATTRIBUTES, "Owner", "MyType"]), JSON_VALUES, max_size=12)


@settings(max_examples=200 if STRESS else 50, deadline=None)
@given(st.lists(AD | JSON_VALUES, max_size=6))
def test_any_json_list_gives_ads_or_skips_never_crashes(items: list[object]) -> None:
    ads = parse_ads(json.dumps(items))
    for job_id, ad in ads.items():
        assert isinstance(ad, JobAd) and job_id == f"{ad.cluster}.{ad.proc}"


@settings(max_examples=200 if STRESS else 50, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_ads_or_a_driver_error(text: str) -> None:
    try:
        parse_ads(text)
    except DriverError as exc:
        assert "condor_q" in str(exc)
    try:
        parse_submit_terse(text)
    except DriverError as exc:
        assert "condor_submit" in str(exc)


@settings(max_examples=100 if STRESS else 30, deadline=None)
@given(st.data())
def test_a_truncated_listing_is_a_driver_error_not_half_the_jobs(data: st.DataObject) -> None:
    text = fixture("condor_q-json.json")
    cut = data.draw(st.integers(1, len(text.rstrip()) - 1))
    try:
        ads = parse_ads(text[:cut])
    except DriverError:
        return
    assert ads == {}  # only whitespace-only prefixes parse
