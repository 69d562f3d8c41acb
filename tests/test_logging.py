"""rmq.logging: text or JSON records on stderr, extra fields carried, bad formats refused."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from collections.abc import Awaitable, Callable, Iterator

import anyio
import orjson
import pytest

import rmq
from rmq.errors import ConfigError
from rmq.logging import JsonFormatter, TextFormatter, configure, default_log_config, fields
from tests.helpers import running


async def wait_until_async(read: Callable[[], Awaitable[int]], wanted: int) -> None:
    for _ in range(500):
        if await read() >= wanted:
            return
        await anyio.sleep(0.01)
    raise AssertionError("timed out")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_formatter_fields() -> None:
    record = logging.LogRecord(
        "rmq.consumer", logging.WARNING, __file__, 1, "failed %s", ("x",), None
    )
    record.topic = "orders"
    record.msg_id = "M1"
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "rmq.consumer"
    assert doc["message"] == "failed x"
    assert (doc["topic"], doc["msg_id"]) == ("orders", "M1")
    assert doc["time"].endswith("+00:00")
    assert "args" not in doc and "msg" not in doc


def test_json_formatter_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("rmq", logging.ERROR, __file__, 1, "x", (), None)
        record.exc_info = sys.exc_info()
    doc = orjson.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in doc["exc"]


def test_configure_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setenv("RMQ_LOG_FORMAT", "json")
    configure("debug")
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("rmq.test").info("hello %d", 1, extra={"group": "g"})
    logging.getLogger("app.module").debug("user code too")
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["group"]) == ("hello 1", "g")
    assert second["logger"] == "app.module"


def test_text_format_and_bad_format(restore_logging: None) -> None:
    config = default_log_config("INFO", "text")
    assert config["formatters"]["rmq"]["()"] is TextFormatter
    assert "%(levelname)s" in TextFormatter()._fmt  # type: ignore[operator]
    with pytest.raises(ConfigError, match="RMQ_LOG_FORMAT"):
        configure("INFO", "xml")


def test_text_formatter_appends_the_fields() -> None:
    record = logging.LogRecord("rmq.consumer", logging.WARNING, __file__, 1, "dead-lettered", (),
                               None)  # fmt: skip
    record.__dict__.update(fields(topic="orders", group="billing", stream="ns:{orders:2}:s@1-0"))
    text = TextFormatter().format(record)
    assert text.endswith("dead-lettered [topic=orders group=billing queue=2 offset=1-0]")
    assert "{orders" not in text  # the key name itself is never shown


async def test_consumer_records_carry_fields_not_key_names(
    app: rmq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.consumer("orders", group="billing")
    async def reject(msg: rmq.Message) -> None:
        raise rmq.Reject("no")

    caplog.set_level(logging.WARNING, logger="rmq")
    async with running(app):
        sent = await app.send("orders", "x")
        dlq = app.dead_letters("orders", "billing")
        await wait_until_async(dlq.count, 1)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("dead-lettered")]
    doc = orjson.loads(JsonFormatter().format(record))
    assert (doc["topic"], doc["group"], doc["queue"], doc["offset"]) == (
        "orders", "billing", sent.queue_id, sent.offset,
    )  # fmt: skip
    namespace = app.settings.namespace
    for r in caplog.records:
        assert namespace + ":" not in r.getMessage(), r.getMessage()
