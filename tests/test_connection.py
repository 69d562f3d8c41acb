"""Connecting: ACL users and passwords, wrong credentials, errors that never leak a password;
the transport: bounded wire round trips, the stall signal, redis-py errors translated."""

from __future__ import annotations

import time

import anyio
import pytest
import redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import rmq
from rmq.connection import RedisConnection
from rmq.embedded import EmbeddedServer
from rmq.failures import is_nogroup, is_transient, translate
from rmq.wire import Progress, block_seconds
from tests.helpers import make_settings, running, wait_until
from tests.proxy import FaultProxy


@pytest.fixture
def acl_server(server_factory: type[EmbeddedServer]) -> EmbeddedServer:
    server = server_factory()
    server.start()
    client = redis.Redis(port=server.port)
    client.execute_command("ACL", "SETUSER", "app", "on", ">pa55-word", "~*", "&*", "+@all")
    client.execute_command("ACL", "SETUSER", "default", "off")
    client.close()
    return server


async def test_acl_user_and_password(acl_server: EmbeddedServer, namespace: str) -> None:
    url = f"redis://app:pa55-word@127.0.0.1:{acl_server.port}/0"
    app = rmq.App(make_settings(url, namespace))
    got: list[str] = []

    @app.consumer("secure", group="g")
    async def handle(msg: rmq.Message) -> None:
        got.append(msg.body)

    async with running(app):
        await app.send("secure", "hello")
        await wait_until(lambda: got == ["hello"])
    assert "pa55-word" not in repr(app.settings)
    assert "app:***@" in repr(app.settings)


async def test_wrong_password_is_a_clear_rmq_error(
    acl_server: EmbeddedServer, namespace: str
) -> None:
    url = f"redis://app:wrong-secret@127.0.0.1:{acl_server.port}/0"
    with pytest.raises(rmq.BrokerError, match="refused the credentials") as info:
        async with rmq.App(make_settings(url, namespace)):
            pass
    assert "wrong-secret" not in str(info.value)


def test_bad_url_scheme_is_a_config_error() -> None:
    with pytest.raises(rmq.ConfigError, match="redis://"):
        rmq.Settings(redis_url="http://user:pw@localhost:6379")


# ---------------------------------------------------------------------------- the transport


@pytest.mark.parametrize(
    ("commands", "seconds"),
    [
        ([("XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "BLOCK", 2500, "STREAMS", "s", ">")], 2.5),
        ([("XREAD", "COUNT", 1, "BLOCK", 100, "STREAMS", "s", "0")], 0.1),
        ([("XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", "0")], 0.0),
        ([("XACK", "s", "g", "1-1"), ("XREAD", "BLOCK", 700, "STREAMS", "s", "$")], 0.7),
        ([("SET", "BLOCK", 5)], 0.0),
    ],
)
def test_block_seconds_of_a_round_trip(commands: list[tuple[object, ...]], seconds: float) -> None:
    assert block_seconds(commands) == seconds


async def test_a_wire_round_trip_is_bounded_from_checkout_to_reply(
    server_factory: type[EmbeddedServer], namespace: str
) -> None:
    """Against a silent server (half-open: it accepts, never answers) a wire's round trip gives
    up at its deadline, even when it must connect first (the handshake waits for a reply), and a
    connection that timed out is never used again."""
    server = server_factory().start()
    async with FaultProxy(server.port) as proxy:
        settings = make_settings(proxy.url, namespace, socket_timeout=0.5, block_seconds=0.2)
        conn = RedisConnection(settings)
        wire = conn.wire_for("k")
        try:
            assert await wire.call("PING") == b"PONG"
            proxy.blackhole()
            for _ in range(2):  # the second one opens a new connection: bounded too
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await wire.call("PING")
                assert time.monotonic() - started < 0.5 + 0.3
            accepted = proxy.stats.accepted
            proxy.heal()
            assert await wire.call("PING") == b"PONG"
            assert proxy.stats.accepted == accepted + 1  # a fresh connection
        finally:
            await wire.close()
            await conn.close()


async def test_stalled_reports_a_wire_that_keeps_failing(
    server_factory: type[EmbeddedServer], namespace: str
) -> None:
    """`stalled()` names a loop whose round trips have failed for block_seconds +
    socket_timeout, even across a reconnection (a new wire under the same name), and clears at
    its next success. A round trip cancelled by its caller is not a failure."""
    server = server_factory().start()
    async with FaultProxy(server.port) as proxy:
        settings = make_settings(proxy.url, namespace, socket_timeout=0.4, block_seconds=0.1)
        conn = RedisConnection(settings)
        wire = conn.wire_for("{q}:s")
        try:
            assert await wire.call("PING") == b"PONG"
            assert conn.stalled() is None
            proxy.blackhole()
            with pytest.raises(TimeoutError):
                await wire.call("PING")
            assert conn.stalled() is None  # 0.4 s of failure, below the 0.5 s limit
            await wire.close()  # a loop that reconnects
            wire = conn.wire_for("{q}:s")
            with pytest.raises(TimeoutError):
                await wire.call("PING")
            problem = conn.stalled()
            assert problem is not None and "{q}:s" in problem
            proxy.heal()
            assert await wire.call("PING") == b"PONG"
            assert conn.stalled() is None
            with anyio.move_on_after(0.05):  # cancelled by its caller mid-way
                await wire.call("XREAD", "BLOCK", 1000, "STREAMS", "{q}:s", "$")
            assert wire.failing_since is None
        finally:
            await wire.close()
            await conn.close()


def test_progress_flags_a_round_trip_past_its_deadline() -> None:
    progress = Progress()

    class Stub:
        busy_until = 10.0
        failing_since = None
        tried_at = 0.0
        name = "fetch"

    stub = Stub()
    progress._wires.add(stub)  # type: ignore[arg-type]
    assert progress.stalled(100.0, now=10.5) is None
    problem = progress.stalled(100.0, now=12.0)
    assert problem is not None and "past its deadline" in problem


def test_a_wire_that_failed_and_is_not_used_since_is_not_stuck() -> None:
    """A producer's wire whose last send failed an hour ago, idle since, stalls nothing."""
    progress = Progress()

    class Stub:
        busy_until = 0.0
        failing_since = 1000.0
        tried_at = 1000.0
        name = None

    stub = Stub()
    progress._wires.add(stub)  # type: ignore[arg-type]
    assert progress.stalled(5.0, now=1004.0) is None  # not failing long enough yet
    assert progress.stalled(5.0, now=1005.0) is not None  # still trying, failing for 5 s
    assert progress.stalled(5.0, now=4600.0) is None  # failed, then left alone


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (RedisConnectionError("Error 111 connecting"), rmq.BrokerUnavailable, "unavailable"),
        (RedisTimeoutError("Timeout reading"), rmq.BrokerUnavailable, "unavailable"),
        (OSError("network is unreachable"), rmq.BrokerUnavailable, "unavailable"),
        (BusyLoadingError("Redis is loading"), rmq.BrokerUnavailable, "unavailable"),
        (ReadOnlyError("You can't write against a read only replica."), rmq.BrokerUnavailable, ""),
        (AuthenticationError("invalid username-password pair"), rmq.BrokerError, "credentials"),
        (NoPermissionError("User u has no permissions to run the 'xadd' command"),
         rmq.BrokerError, "'xadd' command"),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
         rmq.BrokerFull, "Redis is full"),
        (ResponseError("WRONGTYPE Operation against a key"), rmq.BrokerError, "WRONGTYPE"),
    ],
)  # fmt: skip
def test_translate(error: Exception, expected: type[Exception], text: str) -> None:
    wrapped = translate(error, "XADD")
    assert type(wrapped) is expected
    assert wrapped.__cause__ is error
    assert text in str(wrapped)
    assert is_transient(wrapped) == (expected is rmq.BrokerUnavailable)


def test_translate_leaves_other_exceptions_alone() -> None:
    error = ValueError("not a Redis problem")
    assert translate(error) is error
    rmq_error = rmq.TopicNotFound("x")
    assert translate(rmq_error) is rmq_error


async def test_command_errors_are_rmq_errors_and_stay_classifiable(
    redis_url: str, namespace: str
) -> None:
    """Everyday commands and pipelines raise rmq errors; a missing group is still recognisable
    (`is_nogroup` looks through to the cause); script error replies stay redis-py's for the
    script layer."""
    conn = RedisConnection(make_settings(redis_url, namespace))
    try:
        with pytest.raises(rmq.BrokerError) as info:
            await conn.commands.xpending(f"{namespace}:none", "g")
        assert is_nogroup(info.value) and isinstance(info.value.__cause__, ResponseError)
        pipe = conn.commands.pipeline(transaction=False)
        pipe.set(f"{namespace}:str", "x")
        pipe.xlen(f"{namespace}:str")
        with pytest.raises(rmq.BrokerError, match="WRONGTYPE"):
            await pipe.execute()
        with pytest.raises(NoScriptError):
            await conn.commands.evalsha("0" * 40, 0)
    finally:
        await conn.close()


async def test_stopped_server_is_broker_unavailable(
    server_factory: type[EmbeddedServer], namespace: str
) -> None:
    server = server_factory().start()
    conn = RedisConnection(make_settings(server.url, namespace, connect_timeout=0.5))
    try:
        assert await conn.commands.ping()
        server.kill()
        with pytest.raises(rmq.BrokerUnavailable) as info:
            await conn.commands.get("k")
        assert isinstance(info.value.__cause__, RedisConnectionError | OSError)
        pipe = conn.commands.pipeline(transaction=False)
        pipe.get("k")
        with pytest.raises(rmq.BrokerUnavailable):
            await pipe.execute()
    finally:
        await conn.close()
