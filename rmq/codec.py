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

**Compression only where it pays.** A body of `compress_threshold` (4 KiB, RocketMQ's
compressMsgBodyOverHowmuch) or more is compressed with zlib at level 1 (the fastest level: it
finds most of what the higher levels find in JSON and text, at several times their speed) only if
a sample of it shrinks by at least an eighth: incompressible data (encrypted, already compressed,
random) is stored as it is after compressing 4 KiB of it, not all of it. A compressed body is kept
only when it is at least an eighth smaller. zlib is the codec because it is in every Python and
every Redis client can read it; the Python speed-ups (lz4, zstd) would be a dependency more.

**Bounded inflation.** A compressed body is inflated to at most `max_body_bytes` (the limit a
send checks): an entry that would inflate further is undecodable (dead-lettered), never a 64 MiB
surprise in a handler.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import orjson

from .errors import DecodeError, EncodeError, MessageTooLarge

__all__ = [
    "FLAG_BYTES",
    "FLAG_JSON",
    "FLAG_STR",
    "FLAG_ZLIB",
    "DEFAULT_MAX_BODY",
    "DecodedEntry",
    "Own",
    "decode_body",
    "decode_entry",
    "decode_fields",
    "decode_own",
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
_SAMPLE = 4096
"""Bytes compressed first to tell whether compressing a large body pays."""
DEFAULT_MAX_BODY = 4 * 1024 * 1024
"""What a compressed body may inflate to when the caller gives no limit (`max_body_bytes`)."""

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
        if b"null" in data and _has_non_finite(body):  # orjson writes NaN and Infinity as null
            raise EncodeError("body holds NaN or Infinity, which JSON cannot carry")
        flags = FLAG_JSON
    size = len(data)
    if size > max_bytes:
        raise MessageTooLarge(
            f"encoded body is {size} bytes; the limit is {max_bytes} (max_body_bytes)"
        )
    if compress_threshold and size >= compress_threshold and _pays(data, size):
        packed = zlib.compress(data, _COMPRESS_LEVEL)
        if len(packed) <= size - (size >> 3):
            return packed, flags | FLAG_ZLIB
    return data, flags


def _pays(data: bytes, size: int) -> bool:
    """Whether compressing `data` is worth it, judged on a sample (the whole of a small body)."""
    if size <= 2 * _SAMPLE:
        return True
    sample = data[:_SAMPLE]
    return len(zlib.compress(sample, _COMPRESS_LEVEL)) <= _SAMPLE - (_SAMPLE >> 3)


def _has_non_finite(value: Any) -> bool:
    """NaN or +-Infinity anywhere in a JSON-able value."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def decode_body(data: bytes, flags: int, limit: int = DEFAULT_MAX_BODY) -> Any:
    """Inverse of `encode_body`; raises `DecodeError` on corrupt data, unknown flags, or a
    compressed body that would inflate past `limit` bytes."""
    kind = flags & _KIND_MASK
    if flags & ~(_KIND_MASK | FLAG_ZLIB) or kind not in (FLAG_BYTES, FLAG_STR, FLAG_JSON):
        raise DecodeError(f"unknown body flags {flags}")
    try:
        if flags & FLAG_ZLIB:
            data = _inflate(data, limit)
        if kind == FLAG_JSON:
            return _loads(data)
        if kind == FLAG_STR:
            return data.decode()
        return data
    except (zlib.error, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"body does not decode with flags {flags}: {exc}") from exc


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise DecodeError(f"compressed body inflates past {limit} bytes (max_body_bytes)")
    if not inflater.eof:
        raise DecodeError("compressed body is truncated")
    return out


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


_OUR_LAYOUT = [b"i", b"t", b"k", b"p", b"c", b"d"]
_JSON, _STR, _BYTES = b"2", b"1", b"0"

Own = tuple[str, str | None, list[str], dict[str, str], Any]
"""(msg_id, tag, keys, properties, body) of an entry in rmq's own layout."""


def decode_own(flat: Any, limit: int = DEFAULT_MAX_BODY) -> Own | None:
    """The fast path, shared by every reader: an entry in rmq's own layout (a flat list of the
    fields i, t, k, p, c, d in that order) decoded; None for any other entry, or when something
    does not decode (the slow path, `decode_entry`, then says precisely what is wrong)."""
    if flat.__class__ is not list or len(flat) != 12 or flat[0::2] != _OUR_LAYOUT:
        return None
    msg_id, tag, keys, props, flags, data = flat[1::2]
    try:
        if flags == _JSON:
            body: Any = _loads(data)
        elif flags == _BYTES:
            body = data
        elif flags == _STR:
            body = data.decode()
        else:
            body = decode_body(data, int(flags), limit)
        return (
            msg_id.decode(),
            tag.decode() if tag else None,
            keys.decode().split(" ") if keys else [],
            decode_properties(props) if props else {},
            body,
        )
    except (DecodeError, ValueError, UnicodeDecodeError):
        return None  # orjson's error is a ValueError


def decode_fields(
    entry_id: str, flat: list[bytes] | dict[bytes, bytes], limit: int = DEFAULT_MAX_BODY
) -> DecodedEntry:
    """Decode an entry given as a raw flat `[field, value, ...]` list (or a dict)."""
    if isinstance(flat, dict):
        return decode_entry(entry_id, flat, limit)
    own = decode_own(flat, limit)
    if own is not None:
        return DecodedEntry(*own)
    return decode_entry(entry_id, dict(zip(flat[0::2], flat[1::2], strict=False)), limit)


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


def decode_entry(
    entry_id: str, fields: dict[bytes, bytes], limit: int = DEFAULT_MAX_BODY
) -> DecodedEntry:
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
        body = decode_body(data, flags, limit)
        raw_retries, raw_origin, raw_first = fields.get(b"r"), fields.get(b"o"), fields.get(b"f")
        retries = int(raw_retries) if raw_retries else 0
        origin = raw_origin.decode() if raw_origin else None
        first_failure = int(raw_first) if raw_first else None
    except DecodeError as exc:
        raise DecodeError(exc.reason, fields) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed entry: {exc}", fields) from exc
    return DecodedEntry(msg_id, tag, keys, properties, body, retries, origin, first_failure)
