"""The gpu events line (contract A): what the runner writes, the parser accepts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.node.events import GpuEvent, parse_chunk

maybe_int = st.none() | st.integers(0, 1 << 20)
maybe_float = st.none() | st.floats(0, 1e4, allow_nan=False)
entry = st.fixed_dictionaries(
    {"index": st.integers(0, 64)},
    optional={
        "uuid": st.none() | st.uuids().map(lambda u: f"GPU-{u}"),
        "util": st.none() | st.integers(0, 100),
        "mem_used": maybe_int,
        "mem_total": maybe_int,
        "power_w": maybe_float,
        "temp_c": st.none() | st.integers(0, 120),
        "own_procs": st.none() | st.integers(0, 1000),
        "own_mem": maybe_int,
        "something_new": st.text(max_size=5),
    },
)


@given(st.floats(1e9, 2e9), st.lists(entry, max_size=4))
def test_every_contract_line_parses_to_what_was_written(t: float, gpus: list[dict]) -> None:
    line = json.dumps({"type": "gpu", "t": t, "gpus": gpus}).encode() + b"\n"
    result = parse_chunk(line, 0)
    assert result.errors == []
    assert result.events == [GpuEvent(t, gpus)]


def test_an_old_runners_line_still_parses() -> None:
    line = b'{"type": "gpu", "t": 1.5, "gpus": [{"index": 0, "util": 93, "mem_used": 1}]}\n'
    assert parse_chunk(line, 0).events == [GpuEvent(1.5, [{"index": 0, "util": 93, "mem_used": 1}])]


@pytest.mark.parametrize(
    ("gpu", "named"),
    [
        ({"index": 0, "power_w": "150 W"}, "power_w"),
        ({"index": 0, "temp_c": True}, "temp_c"),
        ({"index": 0, "own_mem": [1]}, "own_mem"),
        ({"index": 0, "own_procs": -1}, "own_procs"),
        ({"index": 0, "own_procs": 1.5}, "own_procs"),
        ({"index": 0, "uuid": 7}, "uuid"),
        ({"index": 0, "uuid": ""}, "uuid"),
        ({"index": 0, "uuid": "G" * 129}, "uuid"),
    ],
)
def test_a_bad_reading_is_a_line_error_naming_the_key(gpu: dict, named: str) -> None:
    line = json.dumps({"type": "gpu", "gpus": [gpu]}).encode() + b"\n"
    result = parse_chunk(line, 0)
    assert result.events == []
    assert len(result.errors) == 1
    assert named in result.errors[0].reason
    assert "byte 0" in result.errors[0].reason
