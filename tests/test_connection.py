"""Connecting: ACL users and passwords, wrong credentials, and errors that never leak a password."""

from __future__ import annotations

import pytest
import redis

import rmq
from rmq.embedded import EmbeddedServer
from tests.helpers import make_settings, running, wait_until


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
