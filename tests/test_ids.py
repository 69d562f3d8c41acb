"""Message ids: unique (also across fork), time-prefixed, and `born_ms` recovers the time."""

from __future__ import annotations

import os
import re
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmq.ids import born_ms, new_msg_id

ID_RE = re.compile(r"[0-9A-F]{32}")


def test_format() -> None:
    msg_id = new_msg_id()
    assert ID_RE.fullmatch(msg_id), msg_id


def test_many_ids_are_unique() -> None:
    ids = [new_msg_id() for _ in range(200_000)]
    assert len(set(ids)) == len(ids)


def test_prefix_is_stable_within_a_process_and_counter_increments() -> None:
    a, b = new_msg_id(), new_msg_id()
    assert a[12:24] == b[12:24]
    assert (int(a[24:], 16) + 1) & 0xFFFFFFFF == int(b[24:], 16)


def test_time_prefix_is_non_decreasing() -> None:
    ids = [new_msg_id() for _ in range(20_000)]
    times = [int(i[:12], 16) for i in ids]
    assert times == sorted(times)


def test_ids_sort_by_creation_time_across_milliseconds() -> None:
    first = new_msg_id()
    time.sleep(0.003)
    second = new_msg_id()
    assert first < second


def test_born_ms_recovers_the_time() -> None:
    before = time.time_ns() // 1_000_000
    msg_id = new_msg_id()
    after = time.time_ns() // 1_000_000
    born = born_ms(msg_id)
    assert born is not None
    assert before <= born <= after


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=16**12 - 1), st.binary(min_size=10, max_size=10))
def test_born_ms_of_any_rmq_shaped_id(ms: int, rest: bytes) -> None:
    assert born_ms(f"{ms:012X}{rest.hex().upper()}") == ms


@pytest.mark.parametrize(
    "foreign",
    [
        "",
        "1700000000000-0",  # a stream entry id (used as msg_id for foreign entries)
        "0-1",
        "C0A8010100002A9F0000000000000001X",  # 33 chars
        "C0A8010100002A9F000000000000001",  # 31 chars
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",  # a UUID
        "ZZZZZZZZZZZZ00000000000000000000",  # 32 chars, not hex
        "order-1234-from-the-legacy-app-1",  # 32 chars, not hex
    ],
)
def test_born_ms_of_foreign_ids_is_none(foreign: str) -> None:
    assert born_ms(foreign) is None


@pytest.mark.parametrize(
    "foreign",
    [
        "-00000000001" + "0" * 20,  # int() accepts a sign ...
        "+00000000001" + "0" * 20,
        "0x0000000001" + "0" * 20,  # ... a base prefix ...
        "0000_0000_01" + "0" * 20,  # ... underscores ...
        " 00000000001" + "0" * 20,  # ... and surrounding whitespace
    ],
)
def test_born_ms_requires_twelve_hex_digits(foreign: str) -> None:
    """Only 12 plain hex digits are a birth time; int(x, 16) alone is more lenient than that."""
    assert len(foreign) == 32
    assert born_ms(foreign) is None


def _ids_from_child(count: int) -> list[str]:
    """Fork; the child makes `count` ids and sends them back through a pipe."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded fork" (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_fd)
            payload = "\n".join(new_msg_id() for _ in range(count)).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return data.decode().split("\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_never_repeat_ids() -> None:
    new_msg_id()  # the parent's state exists before the fork
    child_a = _ids_from_child(5000)
    child_b = _ids_from_child(5000)
    parent = [new_msg_id() for _ in range(5000)]
    assert len(child_a) == len(child_b) == 5000
    everything = child_a + child_b + parent
    assert len(set(everything)) == len(everything)
    prefixes = {child_a[0][12:24], child_b[0][12:24], parent[0][12:24]}
    assert len(prefixes) == 3, "each forked child draws its own process prefix"
    assert all(ID_RE.fullmatch(i) for i in child_a + child_b)
