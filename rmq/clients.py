"""redis-py clients whose failures come out as rmq errors (`rmq.failures.translate`).

Every everyday command rmq sends goes through one of these (the App's `commands` client, the
`readers`, each cluster node's client), so no redis-py exception reaches the public API: a lost
connection is `BrokerUnavailable`, an ACL refusal or wrong password a `BrokerError` that says so,
a full Redis `BrokerFull`, each with the redis-py exception as its `__cause__`.

One exception: the error *replies* of script commands (EVALSHA, EVAL, SCRIPT) stay redis-py's
`ResponseError`s, because the script layer reads them (NOSCRIPT means load the scripts and run
again; a script's own error becomes a `ScriptError`). Connection failures, ACL refusals and a full
Redis are translated for scripts too.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    OutOfMemoryError,
    ResponseError,
    WatchError,
)

from .failures import translate

__all__ = ["ClusterCommandClient", "CommandClient"]

_SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "SCRIPT", "FCALL"})
_ALWAYS_TRANSLATED = (OutOfMemoryError, NoPermissionError)
_REFUSALS = (NoPermissionError, AuthenticationError, AuthorizationError)


def _name(args: tuple[Any, ...]) -> str:
    if not args:
        return ""
    first = args[0]
    text = first.decode() if isinstance(first, bytes) else str(first)
    return text.partition(" ")[0].upper()


def _failure(exc: Exception, args: tuple[Any, ...]) -> Exception:
    """What `execute_command(*args)` raises instead of `exc` (`exc` itself for the error replies
    the script layer reads)."""
    if (
        isinstance(exc, ResponseError)
        and not isinstance(exc, _ALWAYS_TRANSLATED)
        and _name(args) in _SCRIPT_COMMANDS
    ):
        return exc
    name = _name(args)
    wrapped = translate(exc, name or "Redis")
    return wrapped if isinstance(wrapped, Exception) else exc


def _refusal(results: list[Any]) -> Exception | None:
    """An ACL or credential refusal among a pipeline's results (never an outcome to go on with)."""
    for result in results:
        if isinstance(result, _REFUSALS):
            wrapped = translate(result, "pipeline")
            return wrapped if isinstance(wrapped, Exception) else None
    return None


class CommandPipeline(Pipeline):
    """A pipeline whose failures are rmq errors; results of `raise_on_error=False` keep their
    error replies (callers read them), except ACL and credential refusals, which raise."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            results: list[Any] = await super().execute(raise_on_error)
        except WatchError:
            raise
        except Exception as exc:
            raise _failure(exc, ("PIPELINE",)) from exc
        refused = _refusal(results)
        if refused is not None:
            raise refused
        return results


class CommandClient(Redis):
    """`redis.asyncio.Redis` whose failures are rmq errors (see the module docstring)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except Exception as exc:
            failure = _failure(exc, args)
            if failure is exc:
                raise
            raise failure from exc

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return CommandPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


class ClusterCommandPipeline(ClusterPipeline):
    """A cluster pipeline whose failures are rmq errors (like `CommandPipeline`)."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            results: list[Any] = await super().execute(raise_on_error, allow_redirections)
        except Exception as exc:
            raise _failure(exc, ("PIPELINE",)) from exc
        refused = _refusal(results)
        if refused is not None:
            raise refused
        return results


class ClusterCommandClient(RedisCluster):
    """`redis.asyncio.RedisCluster` whose failures are rmq errors (it follows MOVED and ASK
    itself first)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except Exception as exc:
            failure = _failure(exc, args)
            if failure is exc:
                raise
            raise failure from exc

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # raises, as redis-py's does
        return ClusterCommandPipeline(self, transaction)  # type: ignore[abstract]
