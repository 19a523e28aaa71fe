"""The events parser: never raises, never loses a good line, never reads a line twice."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.node.events import (
    MAX_LINE,
    CheckpointEvent,
    GpuEvent,
    MetricEvent,
    parse_chunk,
    parse_line,
)

# -- strategies ------------------------------------------------------------------------------

line_chars = st.characters(exclude_characters="\n", codec="utf-8")
names = st.text(line_chars, min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**60), 2**60)
steps = st.integers(0, 2**63 - 1)
times = st.none() | st.floats(0, 2e9)


@st.composite
def metric_events(draw: st.DrawFn) -> MetricEvent:
    values = draw(st.dictionaries(names, finite, max_size=4))
    return MetricEvent(draw(steps), {k: float(v) for k, v in values.items()}, draw(times))


@st.composite
def checkpoint_events(draw: st.DrawFn) -> CheckpointEvent:
    path = draw(st.text(line_chars, min_size=1, max_size=30))
    return CheckpointEvent(draw(steps), path, draw(times))


@st.composite
def gpu_events(draw: st.DrawFn) -> GpuEvent:
    gpu = st.fixed_dictionaries(
        {"index": st.integers(0, 16), "util": st.integers(0, 100), "mem_used": st.integers(0)}
    )
    return GpuEvent(draw(times), draw(st.lists(gpu, max_size=3)))


events = metric_events() | checkpoint_events() | gpu_events()


def encode(event: MetricEvent | CheckpointEvent | GpuEvent, ascii_only: bool = True) -> bytes:
    """Write an event the way any language might: key order and spacing vary."""
    if isinstance(event, MetricEvent):
        obj: dict = {"type": "metric", "step": event.step, "values": event.values}
    elif isinstance(event, CheckpointEvent):
        obj = {"type": "checkpoint", "step": event.step, "path": event.path}
    else:
        obj = {"type": "gpu", "gpus": event.gpus}
    if event.t is not None:
        obj["t"] = event.t
    return json.dumps(obj, ensure_ascii=ascii_only).encode() + b"\n"


#: lines that must each produce exactly one error (and nothing else)
BAD_LINES = [
    b"not json",
    b"{",
    b'{"type": "metric", "step": 1, "values": {"loss": NaN}}',
    b'{"type": "metric", "step": 1, "values": {"loss": Infinity}}',
    b'{"type": "metric", "step": 1, "values": {"loss": -Infinity}}',
    b'{"type": "metric", "step": 1, "values": {"loss": 1e999}}',
    b'{"type": "metric", "step": 1, "values": {"loss": ' + b"9" * 400 + b"}}",
    b'{"type": "metric", "step": 1, "values": {"loss": ' + b"9" * 5000 + b"}}",
    b'{"type": "metric", "step": 1, "values": {"loss": "0.5"}}',
    b'{"type": "metric", "step": 1, "values": {"loss": true}}',
    b'{"type": "metric", "step": 1, "values": {"loss": null}}',
    b'{"type": "metric", "step": 1, "values": [1]}',
    b'{"type": "metric", "step": -1, "values": {}}',
    b'{"type": "metric", "step": 1.5, "values": {}}',
    b'{"type": "metric", "step": true, "values": {}}',
    b'{"type": "metric", "step": 99999999999999999999, "values": {}}',
    b'{"type": "metric", "values": {}}',
    b'{"type": "metric", "step": 1, "values": {}, "t": "now"}',
    b'{"type": "metric", "step": 1, "values": {}, "t": NaN}',
    b'{"type": "checkpoint", "step": 1}',
    b'{"type": "checkpoint", "step": 1, "path": 5}',
    b'{"type": "gpu", "gpus": {}}',
    b'{"type": "gpu", "gpus": [{"index": "0"}]}',
    b'{"type": "gpu", "gpus": [{"index": 0, "util": "high"}]}',
    b'{"type": 3}',
    b'{"no_type": 1}',
    b"[1, 2]",
    b"42",
    b'"metric"',
    b"\xff\xfe\xfa",
    b'{"type": "metric", "step": 1, "values": {"l\xe9": 1}}',  # Latin-1, not UTF-8
    b"[" * 100_000,
    b'{"type": "metric", "step": 1, "values": {}} trailing',
]

bad_lines = st.sampled_from(BAD_LINES)
garbage = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


# -- properties ------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.integers(0, 2**40))
def test_any_bytes_never_raise(data: bytes, base: int) -> None:
    result = parse_chunk(data, base)
    assert 0 <= result.consumed <= len(data)
    assert result.consumed == 0 or data[result.consumed - 1 : result.consumed] == b"\n"
    assert b"\n" not in data[result.consumed :]
    for error in result.errors:
        assert base <= error.offset < base + len(data)
        assert error.reason.startswith(f"line at byte {error.offset}: ")


@given(st.lists(events, max_size=20), st.booleans())
def test_valid_lines_always_parsed(evs: list, ascii_only: bool) -> None:
    data = b"".join(encode(e, ascii_only) for e in evs)
    result = parse_chunk(data, 0)
    assert result.errors == []
    assert result.events == evs
    assert result.consumed == len(data)


@given(st.lists(st.tuples(st.sampled_from(["good", "bad", "garbage"]), events, bad_lines, garbage)))
def test_bad_lines_never_hide_good_ones(rows: list) -> None:
    data = b""
    good, bad_offsets = [], []
    for kind, event, bad, junk in rows:
        if kind == "good":
            good.append(event)
            data += encode(event)
        elif kind == "bad":
            bad_offsets.append(len(data))
            data += bad + b"\n"
        else:
            data += junk + b"\n"
    result = parse_chunk(data, 1000)
    assert result.events == good
    assert result.consumed == len(data)
    assert set(bad_offsets) <= {e.offset - 1000 for e in result.errors}


@given(st.lists(events, min_size=1, max_size=10), st.data())
def test_partial_line_is_left_then_parsed_once(evs: list, data: st.DataObject) -> None:
    stream = b"".join(encode(e, ascii_only=False) for e in evs)
    cut = data.draw(st.integers(0, len(stream)))
    first = parse_chunk(stream[:cut], 0)
    assert stream[: first.consumed].count(b"\n") == len(first.events)
    assert first.consumed <= cut
    second = parse_chunk(stream[first.consumed :], first.consumed)
    assert first.events + second.events == evs
    assert first.consumed + second.consumed == len(stream)


@given(st.lists(events | bad_lines, max_size=15), st.lists(st.integers(1, 200), max_size=8))
def test_incremental_reads_match_one_read(items: list, sizes: list[int]) -> None:
    """The daemon reads what is new from its saved offset: the chunking must not matter."""
    stream = b"".join(i + b"\n" if isinstance(i, bytes) else encode(i) for i in items)
    whole = parse_chunk(stream, 0)
    got, errors, offset, end = [], [], 0, 0
    for size in [*sizes, len(stream)]:
        end = min(len(stream), end + size)
        part = parse_chunk(stream[offset:end], offset)
        got += part.events
        errors += part.errors
        offset += part.consumed
    assert offset == len(stream)
    assert got == whole.events
    assert errors == whole.errors


# -- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("line", BAD_LINES)
def test_each_bad_line_gives_one_error(line: bytes) -> None:
    first = b'{"type":"metric","step":0,"values":{}}\n'
    result = parse_chunk(first + line + b"\n", 10)
    assert len(result.events) == 1
    assert len(result.errors) == 1
    assert result.errors[0].offset == 10 + len(first)


def test_error_messages_are_short_and_specific() -> None:
    data = b'\xff\nnope\n{"type": "metric", "step": 2, "values": {"loss": NaN}}\n'
    reasons = [e.reason for e in parse_chunk(data, 1234).errors]
    assert reasons == [
        "line at byte 1234: not UTF-8",
        "line at byte 1236: not valid JSON",
        "line at byte 1241: metric value 'loss' is not a finite number",
    ]


def test_error_offsets_are_bytes_after_non_ascii_lines() -> None:
    first = '{"type":"metric","step":0,"values":{"λoss":1}}\n'.encode()
    data = first + b"bad\n" + "é\n".encode() + b"bad\n"
    result = parse_chunk(data, 0)
    assert [e.offset for e in result.errors] == [len(first), len(first) + 4, len(first) + 7]
    assert result.events[0].values == {"λoss": 1.0}


def test_example_lines_of_the_contract() -> None:
    data = (
        b'{"type": "metric", "t": 1732460000.5, "step": 3, '
        b'"values": {"val_loss": 0.25, "acc": 1}}\n'
        b'{"type": "checkpoint", "t": 1732460001.0, "step": 3, "path": "/abs/step3.pt"}\n'
        b'{"type": "gpu", "t": 1732460002.0, "gpus": [{"index": 0, "util": 93, '
        b'"mem_used": 10240, "mem_total": 81920}]}\n'
    )
    result = parse_chunk(data, 0)
    assert result.errors == []
    metric, ckpt, gpu = result.events
    assert metric == MetricEvent(3, {"val_loss": 0.25, "acc": 1.0}, 1732460000.5)
    assert isinstance(metric.values["acc"], float)
    assert ckpt == CheckpointEvent(3, "/abs/step3.pt", 1732460001.0)
    assert gpu == GpuEvent(
        1732460002.0, [{"index": 0, "util": 93, "mem_used": 10240, "mem_total": 81920}]
    )


def test_shell_echo_line_without_t() -> None:
    (event,) = parse_chunk(b'{"type": "metric", "step": 7, "values": {"loss": 0.5}}\n', 0).events
    assert event == MetricEvent(7, {"loss": 0.5}, None)


def test_unknown_types_and_blank_lines_are_ignored_quietly() -> None:
    data = b'{"type": "note", "text": "hi"}\n\n   \n\r\n{"type":"metric","step":1,"values":{}}\n'
    result = parse_chunk(data, 0)
    assert result.errors == []
    assert result.events == [MetricEvent(1, {}, None)]
    assert result.consumed == len(data)


def test_whitespace_and_crlf_around_objects_are_accepted() -> None:
    data = b'  {"type":"metric","step":1,"values":{"a":2}}  \r\n'
    assert parse_chunk(data, 0).events == [MetricEvent(1, {"a": 2.0}, None)]


def test_integer_metric_values_become_floats_and_t_ints_too() -> None:
    (event,) = parse_chunk(b'{"type":"metric","step":1,"values":{"a":3},"t":5}\n', 0).events
    assert event.values == {"a": 3.0} and type(event.values["a"]) is float
    assert event.t == 5.0


def test_long_complete_line_is_an_error_and_next_line_survives() -> None:
    long_line = b'{"type":"metric","step":1,"values":{"a":1},"pad":"' + b"x" * MAX_LINE + b'"}\n'
    good = b'{"type":"metric","step":2,"values":{}}\n'
    result = parse_chunk(long_line + good, 0)
    assert [e.offset for e in result.errors] == [0]
    assert "longer than 1 MiB" in result.errors[0].reason
    assert result.events == [MetricEvent(2, {}, None)]


def test_long_partial_line_is_consumed_so_the_reader_cannot_stall() -> None:
    good = b'{"type":"metric","step":2,"values":{}}\n'
    result = parse_chunk(good + b"x" * (MAX_LINE + 1), 100)
    assert result.consumed == len(good) + MAX_LINE + 1
    assert result.errors[0].offset == 100 + len(good)
    assert result.events == [MetricEvent(2, {}, None)]


def test_short_partial_line_is_not_consumed() -> None:
    result = parse_chunk(b'{"type":"metric","step":2,"values":{}}', 0)
    assert result == ([], [], 0)


def test_huge_but_finite_numbers_are_kept() -> None:
    (event,) = parse_chunk(
        b'{"type":"metric","step":1,"values":{"a":1e308,"b":-5e-324}}\n', 0
    ).events
    assert event.values["a"] == 1e308 and math.isfinite(event.values["b"])


def test_parse_line() -> None:
    assert parse_line(b'{"type":"metric","step":1,"values":{}}') == MetricEvent(1, {}, None)
    assert parse_line(b'{"type":"other"}') is None
    error = parse_line(b"zzz", 5)
    assert error is not None and error.reason == "line at byte 5: not valid JSON"  # type: ignore[union-attr]
