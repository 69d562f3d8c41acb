"""The public API: a small, sorted `__all__` whose every name is importable from `rmq`."""

from __future__ import annotations

import rmq


def test_all_is_sorted_and_importable() -> None:
    names = [n for n in rmq.__all__ if not n.startswith("_")]
    assert names == sorted(names)
    for name in rmq.__all__:
        assert getattr(rmq, name) is not None


def test_every_error_derives_from_rmq_error() -> None:
    errors = [getattr(rmq, n) for n in rmq.__all__ if n.endswith(("Error", "Unavailable", "Found"))]
    errors += [rmq.MessageTooLarge, rmq.InvalidName, rmq.ProducerClosed, rmq.Retry, rmq.Reject]
    assert all(issubclass(e, rmq.RMQError) for e in errors)
    assert not any(e.__name__ in ("ConnectionError", "TimeoutError") for e in errors)
