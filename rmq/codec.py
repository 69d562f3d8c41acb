"""Encoding of message bodies and stream entries.

A stream entry always has the same six short fields in the same order, so Redis stores the field
names once per listpack node:

| field | content |
| --- | --- |
| `i` | msg_id |
| `t` | tag ('' when none) |
| `k` | keys, space-joined |
| `p` | properties as JSON ('' when none) |
| `c` | body flags: 0 bytes, 1 str (UTF-8), 2 JSON (orjson); +8 when zlib-compressed |
| `d` | body |

Retry copies in a group's retry stream add `r` (failures so far), `o` (the entry id of the first
delivery in the queue stream) and `f` (first failure, epoch ms).

Entries written by other clients need only `d` (then the body is raw bytes and a msg_id is
derived from the entry id); anything else is undecodable and goes to the dead-letter stream.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from .errors import DecodeError, EncodeError, MessageTooLarge

__all__ = [
    "FLAG_BYTES",
    "FLAG_JSON",
    "FLAG_STR",
    "FLAG_ZLIB",
    "DecodedEntry",
    "decode_body",
    "decode_entry",
    "decode_fields",
    "decode_properties",
    "encode_body",
    "encode_properties",
]

FLAG_BYTES = 0
FLAG_STR = 1
FLAG_JSON = 2
FLAG_ZLIB = 8
_KIND_MASK = 7
_COMPRESS_LEVEL = 1

_loads = orjson.loads
_dumps = orjson.dumps


def encode_body(body: Any, max_bytes: int, compress_threshold: int) -> tuple[bytes, int]:
    """Encode `body` to (payload, flags).

    Raises `MessageTooLarge` when the encoded body exceeds `max_bytes` (before compression).
    """
    if isinstance(body, bytes):
        data, flags = body, FLAG_BYTES
    elif isinstance(body, str):
        try:
            data, flags = body.encode(), FLAG_STR
        except UnicodeEncodeError as exc:
            raise EncodeError(f"str body is not valid Unicode: {exc}") from exc
    elif isinstance(body, bytearray | memoryview):
        data, flags = bytes(body), FLAG_BYTES
    else:
        try:
            data = _dumps(body)
        except TypeError as exc:
            raise EncodeError(
                f"body of type {type(body).__name__} is not bytes, str or JSON-serializable: {exc}"
            ) from exc
        flags = FLAG_JSON
    size = len(data)
    if size > max_bytes:
        raise MessageTooLarge(
            f"encoded body is {size} bytes; the limit is {max_bytes} (max_body_bytes)"
        )
    if compress_threshold and size >= compress_threshold:
        packed = zlib.compress(data, _COMPRESS_LEVEL)
        if len(packed) < size:
            return packed, flags | FLAG_ZLIB
    return data, flags


def decode_body(data: bytes, flags: int) -> Any:
    """Inverse of `encode_body`; raises `DecodeError` on corrupt data or unknown flags."""
    kind = flags & _KIND_MASK
    if flags & ~(_KIND_MASK | FLAG_ZLIB) or kind not in (FLAG_BYTES, FLAG_STR, FLAG_JSON):
        raise DecodeError(f"unknown body flags {flags}")
    try:
        if flags & FLAG_ZLIB:
            data = zlib.decompress(data)
        if kind == FLAG_JSON:
            return _loads(data)
        if kind == FLAG_STR:
            return data.decode()
        return data
    except (zlib.error, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"body does not decode with flags {flags}: {exc}") from exc


def encode_properties(properties: dict[str, str] | None, max_bytes: int) -> bytes:
    """Properties as compact JSON ('' when empty), size-checked."""
    if not properties:
        return b""
    data = _dumps(properties)
    if len(data) > max_bytes:
        raise MessageTooLarge(
            f"properties are {len(data)} bytes encoded; the limit is {max_bytes} "
            "(max_properties_bytes)"
        )
    return data


class DecodedEntry:
    """The fields of one stream entry, decoded.

    Retry copies (in a group's retry stream) also carry `retries` (field r: how many times the
    message failed before), `origin` (o: its entry id in the queue stream) and `first_failure_ms`
    (f); plain entries have 0, None, None.
    """

    __slots__ = (
        "body",
        "first_failure_ms",
        "keys",
        "msg_id",
        "origin",
        "properties",
        "retries",
        "tag",
    )

    def __init__(
        self,
        msg_id: str,
        tag: str | None,
        keys: list[str],
        properties: dict[str, str],
        body: Any,
        retries: int = 0,
        origin: str | None = None,
        first_failure_ms: int | None = None,
    ) -> None:
        self.msg_id = msg_id
        self.tag = tag
        self.keys = keys
        self.properties = properties
        self.body = body
        self.retries = retries
        self.origin = origin
        self.first_failure_ms = first_failure_ms


_OUR_LAYOUT = (b"i", b"t", b"k", b"p", b"c", b"d")


def decode_fields(entry_id: str, flat: list[bytes] | dict[bytes, bytes]) -> DecodedEntry:
    """Decode an entry given as a raw flat `[field, value, ...]` list (or a dict).

    rmq's own entries (fields i, t, k, p, c, d in that order) take a fast path.
    """
    if isinstance(flat, dict):
        return decode_entry(entry_id, flat)
    if len(flat) == 12 and tuple(flat[0::2]) == _OUR_LAYOUT:
        msg_id, tag, keys, props, flags, data = flat[1::2]
        try:
            return DecodedEntry(
                msg_id.decode(),
                tag.decode() if tag else None,
                keys.decode().split(" ") if keys else [],
                decode_properties(props),
                decode_body(data, int(flags)),
            )
        except (DecodeError, ValueError, UnicodeDecodeError):
            pass  # fall through: the slow path reports precisely what is wrong
    return decode_entry(entry_id, dict(zip(flat[0::2], flat[1::2], strict=False)))


def decode_properties(raw: bytes) -> dict[str, str]:
    """The properties field `p`: a JSON object of strings, or '' for none.

    Anything else (an entry written by another client: a number, a list, a nested object as a
    value) raises `DecodeError`, so the consumer dead-letters the entry with the reason.
    """
    if not raw:
        return {}
    value = _loads(raw)
    if not isinstance(value, dict):
        raise DecodeError("properties field 'p' is not a JSON object")
    for name, item in value.items():
        if item.__class__ is not str:
            raise DecodeError(
                f"property {name!r} is a JSON {type(item).__name__}, not a string "
                "(properties are str -> str)"
            )
    return value


def decode_entry(entry_id: str, fields: dict[bytes, bytes]) -> DecodedEntry:
    """Decode a stream entry's fields; raise `DecodeError` (with the raw fields) if impossible."""
    data = fields.get(b"d")
    if data is None:
        raise DecodeError("entry has no body field 'd'", fields)
    try:
        raw_id = fields.get(b"i")
        msg_id = raw_id.decode() if raw_id else entry_id
        raw_flags = fields.get(b"c")
        flags = int(raw_flags) if raw_flags else FLAG_BYTES
        raw_tag = fields.get(b"t")
        tag = raw_tag.decode() if raw_tag else None
        raw_keys = fields.get(b"k")
        keys = raw_keys.decode().split(" ") if raw_keys else []
        properties = decode_properties(fields.get(b"p") or b"")
        body = decode_body(data, flags)
        raw_retries, raw_origin, raw_first = fields.get(b"r"), fields.get(b"o"), fields.get(b"f")
        retries = int(raw_retries) if raw_retries else 0
        origin = raw_origin.decode() if raw_origin else None
        first_failure = int(raw_first) if raw_first else None
    except DecodeError as exc:
        raise DecodeError(exc.reason, fields) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed entry: {exc}", fields) from exc
    return DecodedEntry(msg_id, tag, keys, properties, body, retries, origin, first_failure)
