"""Body and stream-entry encoding: round trips, compression, size limits and undecodable input."""

from __future__ import annotations

import os
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmq.codec import (
    FLAG_BYTES,
    FLAG_JSON,
    FLAG_STR,
    FLAG_ZLIB,
    decode_body,
    decode_entry,
    encode_body,
    encode_properties,
)
from rmq.errors import DecodeError, EncodeError, MessageTooLarge, PublishError, SerializationError

BIG = 1 << 30  # effectively no size limit
NO_COMPRESSION = 0

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


def round_trip(body: Any, threshold: int = NO_COMPRESSION) -> tuple[Any, int]:
    data, flags = encode_body(body, BIG, threshold)
    assert isinstance(data, bytes)
    return decode_body(data, flags), flags


# ---------------------------------------------------------------------------- round trips


@settings(deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([0, 1, 64, 1024]))
def test_bytes_round_trip(body: bytes, threshold: int) -> None:
    decoded, flags = round_trip(body, threshold)
    assert decoded == body
    assert type(decoded) is bytes
    assert flags & ~FLAG_ZLIB == FLAG_BYTES


@settings(deadline=None)
@given(st.text(max_size=2000), st.sampled_from([0, 1, 64, 1024]))
def test_str_round_trip(body: str, threshold: int) -> None:
    decoded, flags = round_trip(body, threshold)
    assert decoded == body
    assert type(decoded) is str
    assert flags & ~FLAG_ZLIB == FLAG_STR


@settings(deadline=None)
@given(json_values, st.sampled_from([0, 1, 64]))
def test_json_round_trip(body: Any, threshold: int) -> None:
    if isinstance(body, str):
        return  # a str body is stored as text, covered above
    decoded, flags = round_trip(body, threshold)
    assert decoded == body
    assert flags & ~FLAG_ZLIB == FLAG_JSON


def test_json_types_survive() -> None:
    body = {"a": [1, 2.5, True, None, "x", {"b": []}], "n": -(2**63), "big": 2**64 - 1}
    decoded, flags = round_trip(body)
    assert decoded == body
    assert flags == FLAG_JSON
    assert type(decoded["a"][0]) is int
    assert type(decoded["a"][1]) is float
    assert decoded["a"][2] is True


def test_scalar_json_bodies() -> None:
    bodies: list[Any] = [0, 1.5, True, False, None, [], {}]
    for body in bodies:
        decoded, flags = round_trip(body)
        assert decoded == body
        assert type(decoded) is type(body)
        assert flags == FLAG_JSON


def test_bytearray_and_memoryview_are_bytes() -> None:
    for body in (bytearray(b"\x00\xffab"), memoryview(b"\x00\xffab")):
        data, flags = encode_body(body, BIG, 0)
        assert (data, flags) == (b"\x00\xffab", FLAG_BYTES)
        assert type(data) is bytes


def test_tuples_become_lists() -> None:
    decoded, _ = round_trip({"t": (1, 2)})
    assert decoded == {"t": [1, 2]}


def test_encoded_forms_are_plain() -> None:
    assert encode_body(b"raw", BIG, 0) == (b"raw", FLAG_BYTES)
    assert encode_body("héllo", BIG, 0) == ("héllo".encode(), FLAG_STR)
    assert encode_body({"a": 1}, BIG, 0) == (b'{"a":1}', FLAG_JSON)
    assert encode_body(b"", BIG, 0) == (b"", FLAG_BYTES)
    assert encode_body("", BIG, 0) == (b"", FLAG_STR)


# ---------------------------------------------------------------------------- compression


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"a" * 5000, FLAG_BYTES), ("é" * 3000, FLAG_STR), ({"k": ["v" * 100] * 50}, FLAG_JSON)],
)
def test_compression_above_threshold(body: Any, kind: int) -> None:
    data, flags = encode_body(body, BIG, 4096)
    assert flags == kind | FLAG_ZLIB
    assert len(data) < 4096
    assert decode_body(data, flags) == body


def test_threshold_is_inclusive() -> None:
    body = b"z" * 100
    assert encode_body(body, BIG, 100)[1] == FLAG_BYTES | FLAG_ZLIB
    assert encode_body(body, BIG, 101) == (body, FLAG_BYTES)


def test_threshold_zero_disables_compression() -> None:
    body = b"z" * 100_000
    assert encode_body(body, BIG, 0) == (body, FLAG_BYTES)


def test_incompressible_body_is_stored_plain() -> None:
    body = os.urandom(8192)
    assert encode_body(body, BIG, 1024) == (body, FLAG_BYTES)


def test_large_incompressible_body_is_judged_on_a_sample() -> None:
    """A 1 MiB random body is stored as it is; only a 4 KiB sample of it was compressed."""
    body = os.urandom(1 << 20)
    calls: list[int] = []
    real = zlib.compress

    def counting(data: bytes, level: int = -1) -> bytes:
        calls.append(len(data))
        return real(data, level)

    zlib.compress = counting  # type: ignore[assignment]
    try:
        assert encode_body(body, BIG, 4096) == (body, FLAG_BYTES)
    finally:
        zlib.compress = real
    assert calls == [4096]


def test_compression_that_saves_little_is_not_kept() -> None:
    """Kept only when at least an eighth smaller: 90 % random, 10 % zeros is stored plain."""
    body = os.urandom(9000) + bytes(1000)
    assert encode_body(body, BIG, 4096) == (body, FLAG_BYTES)


def test_inflation_is_bounded() -> None:
    """A small entry that would inflate past the limit does not decode (it is dead-lettered)."""
    bomb = zlib.compress(bytes(64 << 20), 9)
    assert len(bomb) < 70_000
    with pytest.raises(DecodeError, match="inflates past 4194304 bytes"):
        decode_body(bomb, FLAG_BYTES | FLAG_ZLIB)
    with pytest.raises(DecodeError, match="inflates past 1000"):
        decode_body(zlib.compress(bytes(1001)), FLAG_BYTES | FLAG_ZLIB, 1000)
    assert decode_body(zlib.compress(bytes(1000)), FLAG_BYTES | FLAG_ZLIB, 1000) == bytes(1000)


def test_truncated_zlib_does_not_decode() -> None:
    data = zlib.compress(b"hello " * 100)
    with pytest.raises(DecodeError, match="truncated"):
        decode_body(data[:-6], FLAG_STR | FLAG_ZLIB)


@pytest.mark.parametrize(
    "body", [float("nan"), float("inf"), {"x": [1, float("-inf")]}, [{"y": float("nan")}]]
)
def test_nan_and_infinity_are_refused(body: Any) -> None:
    """orjson would store them as null: the consumer would get None back."""
    with pytest.raises(EncodeError, match="NaN or Infinity"):
        encode_body(body, BIG, NO_COMPRESSION)


def test_null_itself_is_fine() -> None:
    assert round_trip({"x": None, "y": [None, 1.5]})[0] == {"x": None, "y": [None, 1.5]}


def test_compressed_payload_is_zlib() -> None:
    body = "hello " * 1000
    data, flags = encode_body(body, BIG, 10)
    assert flags == FLAG_STR | FLAG_ZLIB
    assert zlib.decompress(data) == body.encode()


# ---------------------------------------------------------------------------- size limit


def test_message_too_large_is_checked_before_compression() -> None:
    body = b"\x00" * 1001  # compresses to a few bytes, but the limit is on the encoded body
    with pytest.raises(MessageTooLarge, match="1001"):
        encode_body(body, 1000, 10)
    data, flags = encode_body(body[:1000], 1000, 10)
    assert flags & FLAG_ZLIB
    assert decode_body(data, flags) == body[:1000]


@pytest.mark.parametrize(
    ("body", "size"),
    [(b"x" * 11, 11), ("é" * 6, 12), ({"a": "xxxxxx"}, len(b'{"a":"xxxxxx"}'))],
)
def test_limit_applies_to_encoded_size(body: Any, size: int) -> None:
    assert encode_body(body, size, 0)[0] is not None
    with pytest.raises(MessageTooLarge):
        encode_body(body, size - 1, 0)


def test_message_too_large_hierarchy() -> None:
    assert issubclass(MessageTooLarge, PublishError)
    assert issubclass(MessageTooLarge, ValueError)


def test_properties_encoding_and_limit() -> None:
    assert encode_properties(None, 10) == b""
    assert encode_properties({}, 10) == b""
    assert orjson.loads(encode_properties({"a": "b"}, 100)) == {"a": "b"}
    with pytest.raises(MessageTooLarge, match="max_properties_bytes"):
        encode_properties({"a": "b" * 100}, 50)


# ---------------------------------------------------------------------------- encode errors


class Opaque:
    pass


@pytest.mark.parametrize(
    "body",
    [
        Opaque(),
        {"a": Opaque()},
        {1: "non-str key"},
        {"s": {1, 2}},
        2**64,
        -(2**63) - 1,
        [object()],
    ],
)
def test_encode_error(body: Any) -> None:
    with pytest.raises(EncodeError) as info:
        encode_body(body, BIG, 0)
    assert isinstance(info.value, SerializationError)
    assert isinstance(info.value, ValueError)


def test_encode_error_for_str_that_is_not_utf8() -> None:
    """A lone surrogate cannot be UTF-8 encoded: that is an EncodeError, like for JSON bodies."""
    with pytest.raises(EncodeError):
        encode_body({"a": "\ud800"}, BIG, 0)
    with pytest.raises(EncodeError):
        encode_body("\ud800", BIG, 0)


# ---------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize("flags", [FLAG_BYTES | FLAG_ZLIB, FLAG_STR | FLAG_ZLIB, FLAG_JSON | 8])
def test_corrupt_zlib(flags: int) -> None:
    with pytest.raises(DecodeError, match="flags"):
        decode_body(b"definitely not zlib", flags)


@pytest.mark.parametrize("data", [b"{", b"{'a': 1}", b"nope", b"", b"\xff"])
def test_bad_json(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_body(data, FLAG_JSON)


def test_bad_json_inside_zlib() -> None:
    with pytest.raises(DecodeError):
        decode_body(zlib.compress(b"{not json"), FLAG_JSON | FLAG_ZLIB)


def test_bad_utf8_str() -> None:
    with pytest.raises(DecodeError):
        decode_body(b"\xff\xfe", FLAG_STR)


@pytest.mark.parametrize("flags", [3, 4, 5, 6, 7, 11, 16, -1])
def test_unknown_flags(flags: int) -> None:
    with pytest.raises(DecodeError):
        decode_body(b"x", flags)


@pytest.mark.parametrize("flags", [16 | FLAG_STR, 16 | FLAG_JSON, 32 | FLAG_STR | FLAG_ZLIB])
def test_unknown_flag_bits_rejected_for_every_kind(flags: int) -> None:
    """Bits above the zlib flag are unknown for str and JSON bodies too, not only for bytes."""
    data = b"1" if not flags & FLAG_ZLIB else zlib.compress(b"1")
    with pytest.raises(DecodeError, match="flags"):
        decode_body(data, flags)


# ---------------------------------------------------------------------------- entries


def fields_of(
    msg_id: str, tag: str, keys: str, props: bytes, body: Any, threshold: int = 0
) -> dict[bytes, bytes]:
    data, flags = encode_body(body, BIG, threshold)
    return {
        b"i": msg_id.encode(),
        b"t": tag.encode(),
        b"k": keys.encode(),
        b"p": props,
        b"c": str(flags).encode(),
        b"d": data,
    }


@pytest.mark.parametrize("props", [b'{"amount": 5}', b'{"a": {"b": "c"}}', b'{"a": null}'])
def test_properties_that_are_not_strings_do_not_decode(props: bytes) -> None:
    """A foreign entry with a numeric property used to crash every worker with an sql= filter."""
    with pytest.raises(DecodeError, match="not a string"):
        decode_entry("1-0", {b"d": b"x", b"p": props})


def test_decode_entry_full() -> None:
    fields = fields_of("ABC", "paid", "order-1 user-2", b'{"region":"eu"}', {"id": 1})
    e = decode_entry("1700000000000-0", fields)
    assert e.msg_id == "ABC"
    assert e.tag == "paid"
    assert e.keys == ["order-1", "user-2"]
    assert e.properties == {"region": "eu"}
    assert e.body == {"id": 1}


def test_decode_entry_empty_optional_fields() -> None:
    e = decode_entry("5-1", fields_of("ID", "", "", b"", b"raw"))
    assert e.tag is None
    assert e.keys == []
    assert e.properties == {}
    assert e.body == b"raw"


def test_decode_entry_compressed() -> None:
    body = "x" * 10_000
    fields = fields_of("ID", "t", "k", b"", body, threshold=100)
    assert int(fields[b"c"]) & FLAG_ZLIB
    assert decode_entry("1-0", fields).body == body


@settings(deadline=None)
@given(
    st.binary(max_size=300) | st.text(max_size=300) | json_values,
    st.text(alphabet="abcXYZ09_-.:", max_size=20),
    st.lists(st.text(alphabet="abc123-:", min_size=1, max_size=8), max_size=4),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
)
def test_decode_entry_round_trip(
    body: Any, tag: str, keys: list[str], props: dict[str, str]
) -> None:
    fields = fields_of("MSG", tag, " ".join(keys), encode_properties(props, BIG), body, 50)
    e = decode_entry("9-9", fields)
    assert e.body == body
    assert e.tag == (tag or None)
    assert e.keys == keys
    assert e.properties == props


def test_entry_from_another_client() -> None:
    e = decode_entry("1700000000123-4", {b"d": b"\x00payload"})
    assert e.msg_id == "1700000000123-4"
    assert e.body == b"\x00payload"
    assert e.tag is None
    assert e.keys == []
    assert e.properties == {}


def test_entry_from_another_client_with_extra_fields() -> None:
    e = decode_entry("1-1", {b"d": b"x", b"other": b"ignored"})
    assert (e.msg_id, e.body) == ("1-1", b"x")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"i": b"ID", b"c": b"0"}, "'d'"),
        ({}, "'d'"),
        ({b"foo": b"bar"}, "'d'"),
        ({b"d": b"x", b"c": b"abc"}, None),
        ({b"d": b"x", b"c": b"3"}, "flags"),
        ({b"d": b"x", b"c": b"1.5"}, None),
        ({b"d": b"{", b"c": b"2"}, None),
        ({b"d": b"not zlib", b"c": b"9"}, None),
        ({b"d": b"x", b"p": b"[1, 2]"}, "JSON object"),
        ({b"d": b"x", b"p": b'"str"'}, "JSON object"),
        ({b"d": b"x", b"p": b"{bad"}, None),
        ({b"d": b"x", b"i": b"\xff\xfe"}, None),
        ({b"d": b"x", b"t": b"\xff"}, None),
        ({b"d": b"x", b"k": b"\xc3"}, None),
        ({b"d": b"\xff", b"c": b"1"}, None),
    ],
)
def test_undecodable_entries_keep_raw_fields(
    fields: dict[bytes, bytes], reason: str | None
) -> None:
    with pytest.raises(DecodeError, match=reason) as info:
        decode_entry("1-0", fields)
    assert info.value.raw == fields
    assert info.value.reason
    assert str(info.value) == info.value.reason
    assert isinstance(info.value, SerializationError)


def test_decode_error_default_raw() -> None:
    assert DecodeError("x").raw == {}
