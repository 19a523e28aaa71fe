"""Request decoding: any bytes get a clear InvalidRequest or a valid Request, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.errors import InvalidRequest
from clusterd.protocol import MAX_LINE, OPS, decode_request, encode

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        req = decode_request(data)
    except InvalidRequest as exc:
        assert exc.message
    else:
        assert req.op in OPS


@given(json_values)
def test_arbitrary_json_never_crashes(value: object) -> None:
    try:
        decode_request(json.dumps(value).encode())
    except InvalidRequest as exc:
        assert exc.code == "bad_request"


@given(
    st.sampled_from(sorted(OPS)),
    st.one_of(st.none(), st.integers(), st.text(max_size=10)),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
def test_valid_requests_round_trip(op: str, req_id: object, args: dict) -> None:
    req = decode_request(encode({"id": req_id, "op": op, "args": args}))
    assert (req.id, req.op, req.args) == (req_id, op, args)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"nope", "request is not valid JSON"),
        (b"[1]", "request must be a JSON object, got list"),
        (b'{"id": 1}', "request needs an 'op' string"),
        (b'{"op": "fly"}', "unknown op 'fly'; known ops:"),
        (b'{"op": "ping", "args": []}', "request 'args' must be a JSON object"),
        (b'{"op": "ping", "id": true}', "request 'id' must be an integer or a string"),
        (b'{"op": "ping", "extra": 1}', "unknown request field(s): extra"),
        (b"\xff\xfe", "request is not valid JSON"),
    ],
)
def test_bad_requests_say_what_is_wrong(line: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_request(line)
    assert info.value.message.startswith(message)


def test_oversized_request_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="the limit is"):
        decode_request(b" " * (MAX_LINE + 1))


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        encode({"x": float("nan")})
