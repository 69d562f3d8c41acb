"""What went wrong talking to Redis: redis-py's exceptions classified, and translated into rmq's.

- `is_transient(exc)`: goes away by itself (connection loss, timeouts, LOADING, READONLY during a
  failover, cluster resharding); safe operations are retried with backoff.
- `translate(exc, what)`: the rmq error for a redis-py (or socket) exception, chained with
  `__cause__`; rmq errors pass through unchanged:

  | redis-py                                   | rmq                                       |
  | ------------------------------------------ | ----------------------------------------- |
  | ConnectionError, TimeoutError, OSError,    | BrokerUnavailable                         |
  | BusyLoading, READONLY, cluster redirects   |                                           |
  | AuthenticationError, AuthorizationError    | BrokerError ("refused the credentials")   |
  | NoPermissionError (ACL `NOPERM`)           | BrokerError ("... lacks a permission")    |
  | OutOfMemoryError (`maxmemory`, noeviction) | BrokerFull                                |
  | any other RedisError                       | BrokerError ("Redis replied: ...")        |

The classifiers look through a translated error to its cause, so code that catches rmq errors can
still ask whether the failure was transient or a missing consumer group.
"""

from __future__ import annotations

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    MovedError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import BrokerError, BrokerFull, BrokerUnavailable, RMQError

__all__ = ["describe", "is_nogroup", "is_transient", "translate"]

_TRANSIENT_PREFIXES = ("LOADING", "UNBLOCKED", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY ")


def _cause(exc: BaseException) -> BaseException:
    """The redis-py exception behind a translated rmq error (else `exc` itself)."""
    if isinstance(exc, RMQError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves: connection loss, timeouts, LOADING, failover."""
    if isinstance(exc, BrokerUnavailable):
        return True
    exc = _cause(exc)
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return False
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError | OSError):
        return True
    if isinstance(exc, MovedError | AskError | TryAgainError | ClusterDownError):
        return True  # cluster resharding or failover: refresh the slot map and go again
    if isinstance(exc, RedisClusterUnreachableError | SlotNotCoveredError):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).startswith(_TRANSIENT_PREFIXES)
    return False


def is_nogroup(exc: BaseException) -> bool:
    """True when Redis says the stream or the consumer group does not exist."""
    exc = _cause(exc)
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


def describe(exc: BaseException) -> str:
    """`Type: message` on one line (redis-py's own repr leaves the message out)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def translate(exc: BaseException, what: str = "Redis") -> BaseException:
    """The rmq error for redis-py (or socket) exception `exc`, with `exc` as its cause.

    rmq errors and exceptions that do not come from talking to Redis are returned unchanged.
    `what` names the operation, for the message.
    """
    if isinstance(exc, RMQError) or not isinstance(
        exc, RedisError | RedisClusterException | OSError
    ):
        return exc
    wrapped: RMQError
    if isinstance(exc, AuthenticationError | AuthorizationError):
        wrapped = BrokerError(
            f"{what}: Redis refused the credentials ({describe(exc)}); check the user and "
            "password in the Redis URL (RMQ_REDIS_URL)"
        )
    elif isinstance(exc, NoPermissionError):
        reason = " ".join(str(exc).split())
        wrapped = BrokerError(
            f"{what}: the Redis user lacks a permission rmq needs (NOPERM {reason}); grant it "
            "with ACL SETUSER"
        )
    elif isinstance(exc, OutOfMemoryError):
        wrapped = BrokerFull(
            f"{what}: Redis is full (used memory > maxmemory, and the policy evicts nothing): "
            "it refuses writes until memory is freed; consume and trim (rmq topic trim) or raise "
            "maxmemory"
        )
    elif is_transient(exc):
        wrapped = BrokerUnavailable(f"{what}: Redis is unavailable: {describe(exc)}")
    else:
        wrapped = BrokerError(f"{what}: Redis replied: {describe(exc)}")
    wrapped.__cause__ = exc
    return wrapped
